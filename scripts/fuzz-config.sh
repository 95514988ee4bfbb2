#!/usr/bin/env bash
# Fuzzes the config reader for FUZZ_SECS seconds (default 60): random and mutated TOML,
# YAML and pyproject texts; fails on the first panic and prints the input.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECS="${1:-${FUZZ_SECS:-60}}" exec cargo test --release --test fuzz_config -- --nocapture
