#!/usr/bin/env bash
# The whole test suite: unit tests, backend conformance against real S3 servers
# (s3s-fs in-process, moto), real FUSE mounts, CLI behaviour, remote-store interop, and
# two mounts on a 3-node Garage cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
deps="$(scripts/setup-test-deps.sh)"
RSTORE_TEST_VENV="$(echo "$deps" | sed -n 's/^RSTORE_TEST_VENV=//p')"
RSTORE_TEST_NODE="$(echo "$deps" | sed -n 's/^RSTORE_TEST_NODE=//p')"
PATH="$(echo "$deps" | sed -n 's/^RSTORE_TOOLS_BIN=//p'):$PATH"
export RSTORE_TEST_VENV RSTORE_TEST_NODE PATH
exec cargo test --all-targets --features fault-injection "$@"
