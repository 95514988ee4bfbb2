#!/usr/bin/env bash
# Runs pjdfstest (the POSIX conformance suite, Rust rewrite, 0.2.2) on a real mount,
# group by group, and prints each group's summary.
#
# Usage: scripts/pjdfstest.sh [--on local|garage] [--s3fs] [GROUP...]   (default: every group)
#   --on local    a temporary local-directory store (the default)
#   --on garage   a bucket of a 3-node Garage cluster (scripts/cluster.sh), as users run it
#   --s3fs        also run s3fs-fuse (Debian's s3fs) on the same Garage bucket, beside us
# Output: a table "group passed failed skipped" (with s3fs's passed count under --s3fs),
# then every failing test of ours and the first line of why.
set -euo pipefail
cd "$(dirname "$0")/.."
on=local s3fs=0 groups=()
while [ $# -gt 0 ]; do
  case "$1" in
    --on) on=$2; shift 2 ;;
    --s3fs) s3fs=1; on=garage; shift ;;
    *) groups+=("$1"); shift ;;
  esac
done
[ ${#groups[@]} -gt 0 ] || groups=(chmod chown ftruncate link mkdir mkfifo mknod open rename rmdir symlink truncate unlink utimensat posix_fallocate)

command -v pjdfstest >/dev/null || cargo install pjdfstest --version 0.2.2 --locked
id tests >/dev/null 2>&1 || useradd -M tests
getent group tests >/dev/null || groupadd tests
cargo build --release --quiet
bin=$PWD/target/release/rstore-mount

work=$(mktemp -d)
chmod 755 "$work" # pjdfstest runs some checks as other users, through this path
mnt="$work/mnt" s3fs_mnt="$work/s3fs"
export CLUSTER_DIR="$work/cluster" CLUSTER_PORT="${CLUSTER_PORT:-3960}" CLUSTER_BUCKET=pjd
cleanup() {
  for m in "$mnt" "$s3fs_mnt"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  [ "$on" = garage ] && scripts/cluster.sh stop >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/root" "$mnt" "$s3fs_mnt"
case "$on" in
  local)
    cat > "$work/rstore.toml" <<TOML
[backends.scratch]
type = "local"
options = { root = "$work/root" }
[stores.pjd]
backend = "scratch"
TOML
    store=pjd config="$work/rstore.toml" ;;
  garage)
    PATH="$PATH:${RSTORE_TOOLS_BIN:-$HOME/.cache/rstore-mount-tools/bin}"
    scripts/cluster.sh start > /dev/null
    # The cluster's own config, with one more store on node 1 below a prefix of the
    # bucket (s3fs, under --s3fs, works in another).
    { cat "$CLUSTER_DIR/rstore.toml"; printf '[stores.pjd]\nbackend = "node1"\nroot_path = "rstore"\n'; } > "$work/rstore.toml"
    store=pjd config="$work/rstore.toml" ;;
  *) echo "--on $on: expected local or garage" >&2; exit 2 ;;
esac
# allow_other: pjdfstest switches to the 'tests' user for permission checks.
"$bin" --config "$config" "$store" "$mnt" --allow-other --cache-dir "$work/cache"
# s3fs is mounted anew for each group (it has been seen to crash during one, which
# would fail every group after it); each group works in a directory of its own.
s3fs_passwd="$work/s3fs.passwd"
s3fs_mount() {
  command -v s3fs >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq s3fs >/dev/null
  key=$(sed -n 's/^key = "\(.*\)"/\1/p' "$CLUSTER_DIR/rstore.toml" | head -1)
  secret=$(sed -n 's/^secret = "\(.*\)"/\1/p' "$CLUSTER_DIR/rstore.toml" | head -1)
  echo "$key:$secret" > "$s3fs_passwd" && chmod 600 "$s3fs_passwd"
  s3fs pjd "$s3fs_mnt" -o passwd_file="$s3fs_passwd" -o url="http://127.0.0.1:$CLUSTER_PORT" \
    -o use_path_request_style -o endpoint=us-east-1 -o allow_other -o mp_umask=0 ||
    { echo "s3fs could not mount" >&2; exit 1; }
}
s3fs_unmount() { umount "$s3fs_mnt" 2>/dev/null || umount -l "$s3fs_mnt" 2>/dev/null || true; }

# One group on one mount point: "passed failed skipped".
run_group() {
  local dir=$1 g=$2 out summary failed skipped passed
  out=$(cd "$dir" && timeout 900 pjdfstest -p "$dir" "$g::" 2>&1 || true)
  summary=$(grep -o '[0-9]* failed, [0-9]* skipped, [0-9]* passed' <<<"$out" | tail -1)
  read -r failed _ skipped _ passed _ <<<"${summary//,/}"
  echo "${passed:-?} ${failed:-?} ${skipped:-?}"
  [ "$dir" = "$mnt" ] && awk '/FAILED$/ {name=$1; getline; sub(/^[ \t]+/, ""); print name ": " $0}' <<<"$out" >> "$failures"
  return 0
}

failures="$work/failures.txt"
: > "$failures"
echo "pjdfstest $(pjdfstest --version 2>/dev/null | awk '{print $2}') on a $on store"
if [ "$s3fs" = 1 ]; then
  printf '%-16s %7s %7s %8s %12s\n' group passed failed skipped s3fs-passed
else
  printf '%-16s %7s %7s %8s\n' group passed failed skipped
fi
for g in "${groups[@]}"; do
  read -r passed failed skipped <<<"$(run_group "$mnt" "$g")"
  if [ "$s3fs" = 1 ]; then
    s3fs_mount
    mkdir -p "$s3fs_mnt/s3fs-$g"
    read -r s_passed s_failed _ <<<"$(run_group "$s3fs_mnt/s3fs-$g" "$g")"
    s3fs_unmount
    shown=aborts
    [ "$s_passed" != "?" ] && shown="$s_passed/$((s_passed + s_failed))"
    printf '%-16s %7s %7s %8s %12s\n' "$g" "$passed" "$failed" "$skipped" "$shown"
  else
    printf '%-16s %7s %7s %8s\n' "$g" "$passed" "$failed" "$skipped"
  fi
done
echo
echo "failing tests:"
sort "$failures"
