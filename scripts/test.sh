#!/usr/bin/env bash
# The whole test suite: unit tests, backend conformance against real S3 servers
# (s3s-fs in-process, moto), real FUSE mounts, CLI behaviour, remote-store interop.
set -euo pipefail
cd "$(dirname "$0")/.."
RSTORE_TEST_VENV="$(scripts/setup-test-deps.sh | tail -n 1)"
export RSTORE_TEST_VENV
exec cargo test --all-targets --features fault-injection "$@"
