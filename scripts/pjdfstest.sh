#!/usr/bin/env bash
# Runs pjdfstest (the POSIX conformance suite, Rust rewrite) on a real mount of a
# temporary local-directory store, group by group, and prints each group's summary.
# Usage: scripts/pjdfstest.sh [GROUP...]    (default: every group)
# Output: a table "group passed failed skipped", then every failing test and why.
set -euo pipefail
cd "$(dirname "$0")/.."
groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(chmod chown ftruncate link mkdir mkfifo open rename rmdir symlink truncate unlink utimensat posix_fallocate)

command -v pjdfstest >/dev/null || cargo install pjdfstest --locked
id tests >/dev/null 2>&1 || useradd -M tests
getent group tests >/dev/null || groupadd tests
cargo build --release --quiet
bin=target/release/rstore-mount

work=$(mktemp -d)
mnt="$work/mnt"
cleanup() { umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/root" "$mnt"
cat > "$work/rstore.toml" <<TOML
[backends.scratch]
type = "local"
options = { root = "$work/root" }
[stores.pjd]
backend = "scratch"
TOML
# allow_other: pjdfstest switches to the 'tests' user for permission checks.
"$bin" --config "$work/rstore.toml" pjd "$mnt" --allow-other --cache-dir "$work/cache"

printf '%-16s %7s %7s %8s\n' group passed failed skipped
failures="$work/failures.txt"
: > "$failures"
for g in "${groups[@]}"; do
  out=$(cd "$mnt" && timeout 600 pjdfstest -p "$mnt" "$g::" 2>&1 || true)
  summary=$(grep -o '[0-9]* failed, [0-9]* skipped, [0-9]* passed' <<<"$out" | tail -1)
  read -r failed _ skipped _ passed _ <<<"${summary//,/}"
  printf '%-16s %7s %7s %8s\n' "$g" "${passed:-?}" "${failed:-?}" "${skipped:-?}"
  # Each failing test with the first line of its reason.
  awk '/FAILED$/ {name=$1; getline; sub(/^[ \t]+/, ""); print name ": " $0}' <<<"$out" >> "$failures"
done
echo
echo "failing tests:"
sort "$failures"
