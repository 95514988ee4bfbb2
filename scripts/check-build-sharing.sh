#!/usr/bin/env bash
# Fails when the tests' dev-dependencies turn on a feature of a shared dependency that the
# binary's own dependencies do not: then `cargo build` (scripts/mount-example.sh) and
# `cargo test` (scripts/test.sh) compile that dependency, and everything above it (the AWS
# SDK), twice. The fix is to name the feature in Cargo.toml's [dependencies].
set -euo pipefail
cd "$(dirname "$0")/.."
features() { cargo tree --locked --prefix none -f '{p} {f}' "$@" | grep -v '(proc-macro)' | sed 's/ (\*)$//' | sort -u; }
bin=$(features -e no-dev)
all=$(features)
# A package the binary uses whose feature set differs once dev-dependencies are added.
differ=$(comm -23 <(echo "$bin") <(echo "$all"))
if [ -n "$differ" ]; then
  echo "build sharing broken: these dependencies get more features under cargo test:" >&2
  echo "$differ" | sed 's/^/  /' >&2
  comm -13 <(echo "$bin") <(echo "$all") | grep -F -f <(echo "$differ" | cut -d' ' -f1,2) | sed 's/^/  test build: /' >&2
  exit 1
fi
echo "build sharing: the binary and the tests compile dependencies once"
