#!/usr/bin/env bash
# Control-path benchmark: listing, stat and small-file copies through rstore-mount, s3fs,
# rclone mount and (when its binary is found) mountpoint-s3, against one Garage server on
# loopback, beside a raw aws-sdk-s3 client (the ceiling). Prints a markdown table of
# medians of RUNS runs.
#   scripts/bench/metadata.sh            # RUNS=3 FLAT=10000 TREE_DIRS=400 PER_DIR=50 SMALL=2000
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS="${RUNS:-3}" FLAT="${FLAT:-10000}" TREE_DIRS="${TREE_DIRS:-400}" PER_DIR="${PER_DIR:-50}" SMALL="${SMALL:-2000}"
CLIENTS="${CLIENTS:-$(default_clients)}"
OPS="${OPS:-.}"   # a regex: run only the operations it matches

install_tools
rm -rf "$BENCH_DIR" && mkdir -p "$BENCH_DIR"
trap 'for m in "$BENCH_DIR"/mnt-*; do umount -l "$m" 2>/dev/null || true; done; stop_garage' EXIT
start_garage

log "populating: $FLAT objects in flat/, $((TREE_DIRS * PER_DIR)) in tree/ ($TREE_DIRS dirs)"
raw populate flat/ "$FLAT" 1K 32 >/dev/null
for d in $(seq -w 1 "$TREE_DIRS"); do echo "$d"; done | xargs -P 8 -I{} "$RAW_BIN" populate tree/d{}/ "$PER_DIR" 1K 8 >/dev/null
SRC="$BENCH_DIR/small"; mkdir -p "$SRC"
for i in $(seq -w 1 "$SMALL"); do head -c $(( (RANDOM % 61 + 4) * 1024 )) /dev/urandom > "$SRC/s$i"; done

declare -A RESULT
record() { RESULT["$1|$2"]=$3; }

# measure CLIENT OP COMMAND...: remounts cold, runs COMMAND (with $M the mount) RUNS times.
measure() {
  local client=$1 op=$2; shift 2
  [[ $op =~ $OPS ]] || return 0
  local times=() cpu0 cpu1 cpus=()
  for r in $(seq "$RUNS"); do
    M="$BENCH_DIR/mnt-$client"; export M RUN=$r
    sync  # the previous run's dirty pages are written back now, not during this one
    mount_client "$client" "$M"
    cpu0=$(server_cpu)
    times+=("$(timeit bash -c "$*")")
    cpu1=$(server_cpu)
    cpus+=("$(echo "$cpu1 - $cpu0" | bc -l)")
    unmount_client "$M"
  done
  local t c
  t=$(printf '%s\n' "${times[@]}" | median); c=$(printf '%s\n' "${cpus[@]}" | median)
  record "$client" "$op" "$t"
  log "$client $op: ${times[*]} s (median $t s, server cpu $c s)"
}

raw_measure() {
  local op=$1; shift
  [[ $op =~ $OPS ]] || return 0
  local times=()
  for _ in $(seq "$RUNS"); do times+=("$(raw "$@" | cut -d' ' -f1)"); done
  record raw "$op" "$(printf '%s\n' "${times[@]}" | median)"
  log "raw $op: ${times[*]} s"
}

raw_measure "ls -f flat" list flat/
raw_measure "find tree" list-tree tree/
raw_measure "cp -r in" put-dir "$SRC" rawcopy/ 16
raw_measure "cp -r out" get-prefix rawcopy/ 16

# What `ls -l` itself costs with no network (sort, format, 10k lstat on tmpfs): the floor
# under every client's "ls -l" row, beside the raw listing.
if [[ "ls -l flat" =~ $OPS ]]; then
  T=$(mktemp -d /dev/shm/rstore-ls.XXXX); (cd "$T" && seq -w 1 "$FLAT" | xargs touch)
  times=(); for _ in $(seq "$RUNS"); do times+=("$(timeit ls -l "$T")"); done
  record tmpfs "ls -l flat" "$(printf '%s\n' "${times[@]}" | median)"; rm -rf "$T"
  log "ls -l of $FLAT empty files on tmpfs: ${times[*]} s"
fi

for c in $CLIENTS; do
  measure "$c" "ls -f flat" 'ls -f "$M/flat" | wc -l'
  measure "$c" "ls -l flat" 'ls -l "$M/flat" | wc -l'
  measure "$c" "find tree" 'find "$M/tree" | wc -l'
  measure "$c" "du -s tree" 'du -s "$M/tree"'
  measure "$c" "stat flat x2" 'ls -f "$M/flat" >/dev/null; for i in 1 2; do find "$M/flat" -type f -print0 | xargs -0 stat >/dev/null; done'
  # Timed until every object is in the bucket: rclone uploads after close.
  measure "$c" "cp -r in" 'cp -r "'"$SRC"'" "$M/cp-'"$c"'-$RUN";
    until [ "$("$RAW_BIN" count "cp-'"$c"'-$RUN/" | cut -d" " -f2)" = '"$SMALL"' ]; do
      [ $SECONDS -lt 300 ] || { echo "objects not in the bucket after 300 s" >&2; exit 1; }; sleep 0.05; done'
  measure "$c" "cp -r out" 'rm -rf "'"$BENCH_DIR"'/out"; cp -r "$M/cp-'"$c"'-$RUN" "'"$BENCH_DIR"'/out"'
done

ops=("ls -f flat" "ls -l flat" "find tree" "du -s tree" "stat flat x2" "cp -r in" "cp -r out")
peers=(); for c in $CLIENTS; do [ "$c" != rstore ] && peers+=("$c"); done
echo
head="| operation | raw client (s)"; sep="|---|---"
for c in $CLIENTS; do head+=" | $(label "$c") (s)"; sep+="|---"; done
head+=" | rstore ÷ raw"; sep+="|---"
for p in "${peers[@]}"; do head+=" | $(label "$p") ÷ rstore"; sep+="|---"; done
echo "$head |"; echo "$sep|"
for op in "${ops[@]}"; do
  [[ $op =~ $OPS ]] || continue
  raw_t=${RESULT["raw|$op"]:-}
  [ -z "$raw_t" ] && case $op in "ls -l flat"|"stat flat x2") raw_t=${RESULT["raw|ls -f flat"]:-} ;; "du -s tree") raw_t=${RESULT["raw|find tree"]:-} ;; esac
  r=${RESULT["rstore|$op"]:-}
  row="| $op | ${raw_t:--}"
  for c in $CLIENTS; do row+=" | ${RESULT["$c|$op"]:--}"; done
  row+=" | $(ratio "$r" "$raw_t")"
  for p in "${peers[@]}"; do row+=" | $(ratio "${RESULT["$p|$op"]:-}" "$r")"; done
  echo "$row |"
done
echo
[ -n "${RESULT["tmpfs|ls -l flat"]:-}" ] && echo "ls -l of the same number of files on tmpfs (ls's own work): ${RESULT["tmpfs|ls -l flat"]} s"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, Linux $(uname -r); server: $(garage --version 2>/dev/null | head -1); $RUNS runs, medians"
for c in $CLIENTS; do echo "$(label "$c"): $(client_version "$c")"; done
