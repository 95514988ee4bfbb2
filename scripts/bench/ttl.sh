#!/usr/bin/env bash
# What --metadata-ttl costs in requests: OPENS opens (cat) of one small file and as many
# `ls` of its directory, spread over SECS seconds, under --metadata-ttl 0 (revalidate at
# every open), 1 (the default) and indefinite (data that never changes). Counts come
# from the mount's own metrics (/metrics), per operation.
#   scripts/bench/ttl.sh            # OPENS=200 SECS=4
set -euo pipefail
source "$(dirname "$0")/lib.sh"
OPENS="${OPENS:-200}" SECS="${SECS:-4}"

install_tools
rm -rf "$BENCH_DIR" && mkdir -p "$BENCH_DIR"
trap 'for m in "$BENCH_DIR"/mnt-*; do umount -l "$m" 2>/dev/null || true; done; stop_garage' EXIT
start_garage
raw populate dir/ 10 4K 4 >/dev/null

pause=$(echo "scale=4; $SECS / $OPENS" | bc -l)
echo "| --metadata-ttl | HEAD | LIST | GET | requests per open + ls |"
echo "|---|---|---|---|---|"
for ttl in 0 1 indefinite; do
  M="$BENCH_DIR/mnt-rstore"; mkdir -p "$M"
  port=$((GARAGE_PORT + 50))
  "$RSTORE" --config "$(rstore_config)" bench "$M" --metadata-ttl "$ttl" --negative-metadata-ttl "$ttl" \
    --metrics-addr "127.0.0.1:$port"
  file=$(ls "$M/dir" | head -1)
  before=$(curl -s "127.0.0.1:$port/metrics")
  for _ in $(seq "$OPENS"); do
    cat "$M/dir/$file" >/dev/null
    ls "$M/dir" >/dev/null
    sleep "$pause"
  done
  after=$(curl -s "127.0.0.1:$port/metrics")
  count() {
    local op=$1
    local a b
    a=$(echo "$after" | grep "^rstore_s3_requests_total{.*op=\"$op\"" | awk '{s+=$2} END {print s+0}')
    b=$(echo "$before" | grep "^rstore_s3_requests_total{.*op=\"$op\"" | awk '{s+=$2} END {print s+0}')
    echo $((a - b))
  }
  h=$(count head) l=$(count list) g=$(count get)
  echo "| $ttl | $h | $l | $g | $(echo "scale=2; ($h + $l + $g) / $OPENS" | bc -l) |"
  unmount_client "$M"
done
echo
echo "$OPENS opens (cat) and $OPENS ls of a 10-file directory over about $SECS s per setting; Garage $(garage --version | head -1) on loopback"
