#!/usr/bin/env bash
# What `--metadata-on-list` costs: `ls -l` of a 10,000-entry and of a 1,000-entry
# directory through rstore-mount on one Garage server, cold (a new cache directory:
# nothing known) and warm (a remount keeping its cache directory: the kernel's and the
# process's memory are gone, what was read on list is on disk), for never / auto /
# always, beside s3fs (which HEADs every entry of every listing). Prints a markdown table
# of medians of RUNS runs, and the requests each made (from rstore's metrics).
#   scripts/bench/ls.sh            # RUNS=3 BIG=10000 SMALL_DIR=1000
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS="${RUNS:-3}" BIG="${BIG:-10000}" SMALL_DIR="${SMALL_DIR:-1000}"

install_tools
rm -rf "$BENCH_DIR" && mkdir -p "$BENCH_DIR"
trap 'for m in "$BENCH_DIR"/mnt-*; do umount -l "$m" 2>/dev/null || true; done; stop_garage' EXIT
start_garage
log "populating: $BIG objects in big/, $SMALL_DIR in small/"
raw populate big/ "$BIG" 1K 32 >/dev/null
raw populate small/ "$SMALL_DIR" 1K 32 >/dev/null

declare -A RESULT
M="$BENCH_DIR/mnt-rstore"
METRICS=127.0.0.1:9187

# HEADs and LISTs the mount made so far (its Prometheus counters).
requests() {
  curl -s "http://$METRICS/metrics" |
    awk '/^rstore_s3_requests_total/ && /op="head"/ {h+=$NF} /^rstore_s3_requests_total/ && /op="list"/ {l+=$NF} END {printf "%d HEAD, %d LIST", h, l}'
}

# ls_l MODE DIR STATE: median seconds of `ls -l` of DIR over RUNS mounts, each with a
# new cache directory (cold) or with one filled by a first listing (warm).
ls_l() {
  local mode=$1 dir=$2 state=$3 times=() cache reqs=""
  for r in $(seq "$RUNS"); do
    cache="$BENCH_DIR/cache-$mode-$dir-$r"
    rm -rf "$cache"
    if [ "$state" = warm ]; then
      mount_client rstore "$M" --metadata-on-list "$mode" --cache-dir "$cache"
      ls -l "$M/$dir" > /dev/null
      unmount_client "$M"
    fi
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    mount_client rstore "$M" --metadata-on-list "$mode" --cache-dir "$cache" --metrics-addr "$METRICS"
    times+=("$(timeit ls -l "$M/$dir")")
    reqs=$(requests)
    unmount_client "$M"
  done
  RESULT["$mode|$dir|$state"]="$(printf '%s\n' "${times[@]}" | median) ($reqs)"
  log "rstore $mode $dir $state: ${times[*]} s; last run: $reqs"
}

for dir in big small; do
  for mode in never auto always; do
    for state in cold warm; do ls_l "$mode" "$dir" "$state"; done
  done
  times=()
  for _ in $(seq "$RUNS"); do
    mount_client s3fs "$BENCH_DIR/mnt-s3fs"
    times+=("$(timeit ls -l "$BENCH_DIR/mnt-s3fs/$dir")")
    unmount_client "$BENCH_DIR/mnt-s3fs"
  done
  RESULT["s3fs|$dir"]=$(printf '%s\n' "${times[@]}" | median)
  log "s3fs $dir: ${times[*]} s"
done

echo
echo "| directory | --metadata-on-list | cold: s (requests) | warm remount: s (requests) | s3fs (s) |"
echo "|---|---|---|---|---|"
for dir in big small; do
  n=$BIG; [ "$dir" = small ] && n=$SMALL_DIR
  for mode in never auto always; do
    echo "| $n entries | $mode | ${RESULT["$mode|$dir|cold"]} | ${RESULT["$mode|$dir|warm"]} | ${RESULT["s3fs|$dir"]} |"
  done
done
echo
echo "machine: $(nproc) cores, Linux $(uname -r); server: $(garage --version 2>/dev/null | head -1); $RUNS runs, medians; requests of the last run"
