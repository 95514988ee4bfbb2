#!/usr/bin/env bash
# Mounts the repo's example store (store "data" of examples/rstore.toml: the local
# directory examples/data, no S3 needed) at MOUNTPOINT (default /tmp/rstore-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
mp="${1:-/tmp/rstore-demo}"
if ! command -v fusermount3 >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
  else
    echo "install fuse3 first: sudo apt-get install -y fuse3" >&2
    exit 1
  fi
fi
if [ ! -x target/debug/rstore-mount ]; then
  echo "building rstore-mount: the first build compiles ~400 crates, about 10 minutes on 2 cores (later builds take seconds; scripts/test.sh reuses it)" >&2
fi
cargo build
mkdir -p "$mp"
RSTORE_EXAMPLE_ROOT="$PWD/examples/data" ./target/debug/rstore-mount --config examples/rstore.toml data "$mp"
echo "mounted examples/data at $mp — try: echo hi > $mp/x && cat $mp/x; unmount with: umount $mp"
