#!/usr/bin/env bash
# The model test (tests/model.rs) for many seeds: 10,000 random ops on a local store and
# 2,000 on moto per seed, each compared step by step with a local directory.
# Usage: scripts/model-seeds.sh [SEEDS]   (default 16; MODEL_SEED=N runs that one seed)
set -euo pipefail
cd "$(dirname "$0")/.."
RSTORE_TEST_VENV="$(scripts/setup-test-deps.sh | sed -n "s/^RSTORE_TEST_VENV=//p")"
export RSTORE_TEST_VENV
export MODEL_SEEDS="${1:-16}"
exec cargo test --features fault-injection --test model -- --nocapture --test-threads 1
