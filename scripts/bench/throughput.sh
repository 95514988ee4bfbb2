#!/usr/bin/env bash
# Data-path benchmark (issue 7): sequential read/write of 1 GiB files through
# rstore-mount, s3fs and rclone mount against one Garage server on loopback, beside a raw
# aws-sdk-s3 client doing parallel ranged GETs / a multipart PUT (the ceiling).
#   scripts/bench/throughput.sh        # RUNS=3 SIZE=1G CLIENTS="rstore s3fs rclone"
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS="${RUNS:-3}" SIZE="${SIZE:-1G}" CLIENTS="${CLIENTS:-rstore s3fs rclone}"
MIB=$(( $(numfmt --from=iec "$SIZE") / 1048576 ))

install_tools
rm -rf "$BENCH_DIR" && mkdir -p "$BENCH_DIR"
trap 'for m in "$BENCH_DIR"/mnt-*; do umount -l "$m" 2>/dev/null || true; done; stop_garage' EXIT
start_garage

declare -A RESULT CPU
rate() { echo "scale=1; $MIB * ${2:-1} / $1" | bc -l; }  # MiB/s from seconds (× files)

run_raw() {
  local op=$1; shift
  local t=() c=()
  for _ in $(seq "$RUNS"); do
    sync
    local c0; c0=$(server_cpu)
    t+=("$(raw "$@" | cut -d' ' -f1)")
    c+=("$(echo "$(server_cpu) - $c0" | bc -l)")
  done
  RESULT["raw|$op"]=$(printf '%s\n' "${t[@]}" | median); CPU["raw|$op"]=$(printf '%s\n' "${c[@]}" | median)
  log "raw $op: ${t[*]} s"
}

log "creating 4 objects of $SIZE"
for i in 1 2 3 4; do raw put-multipart "obj$i" "$SIZE" 8M 4 >/dev/null; done
run_raw "write" put-multipart rawput "$SIZE" 8M 4
run_raw "read 1" get-parallel obj1 8M 8
run_raw "ttfb" get-first obj2 1M

peak_rss() { awk '/VmHWM/{print int($2/1024)}' "/proc/$(pgrep -f "rstore-mount.*$1" | head -1)/status" 2>/dev/null || echo "-"; }

# measure CLIENT OP CMD [mount flags]: cold mount per run, medians of wall time and server CPU.
measure() {
  local client=$1 op=$2 cmd=$3; shift 3
  local t=() c=() rss=()
  for r in $(seq "$RUNS"); do
    M="$BENCH_DIR/mnt-$client"; export M RUN=$r
    sync  # the previous run's dirty pages are written back now, not during this one
    mount_client "$client" "$M" "$@"
    local c0; c0=$(server_cpu)
    if [ -n "${SELF_TIMED:-}" ]; then t+=("$(bash -c "$cmd" | cut -d' ' -f1)"); else t+=("$(timeit bash -c "$cmd")"); fi
    c+=("$(echo "$(server_cpu) - $c0" | bc -l)")
    [ "$client" = rstore ] && rss+=("$(peak_rss "$M")")
    unmount_client "$M"
  done
  RESULT["$client|$op"]=$(printf '%s\n' "${t[@]}" | median); CPU["$client|$op"]=$(printf '%s\n' "${c[@]}" | median)
  [ ${#rss[@]} -gt 0 ] && RESULT["$client|$op|rss"]=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
  log "$client $op: ${t[*]} s; peak RSS ${rss[*]:-n/a} MiB"
}

for c in $CLIENTS; do
  measure "$c" "read 1" 'dd if="$M/obj1" of=/dev/null bs=1M status=none'
  # O_DIRECT skips the kernel page cache (one copy fewer, no page allocation): what the
  # mount's own read path delivers.
  measure "$c" "read 1 direct" 'dd if="$M/obj1" of=/dev/null bs=1M iflag=direct status=none'
  measure "$c" "read 4" 'for i in 1 2 3 4; do dd if="$M/obj$i" of=/dev/null bs=1M status=none & done; wait' \
    $([ "$c" = rstore ] && echo --max-memory 256M)
  # Timed until the object is complete in the bucket: rclone uploads after close.
  measure "$c" "write" 'dd if=/dev/zero of="$M/w-'"$c"'-$RUN" bs=1M count='"$MIB"' status=none;
    until [ "$("$RAW_BIN" head "w-'"$c"'-$RUN" | cut -d" " -f2)" = '"$((MIB * 1048576))"' ]; do
      [ $SECONDS -lt 300 ] || { echo "objects not in the bucket after 300 s" >&2; exit 1; }; sleep 0.05; done'
  # Timed inside one process (open + read of 1 MiB), as the raw GET is: no fork/exec.
  SELF_TIMED=1 measure "$c" "ttfb" '"$RAW_BIN" read-file "$M/obj2" 1M'
done

echo
echo "| operation | raw client | rstore-mount | s3fs | rclone | rstore ÷ raw | rstore ÷ s3fs | rstore ÷ rclone | rstore peak RSS |"
echo "|---|---|---|---|---|---|---|---|---|"
for op in "read 1" "read 1 direct" "read 4" "write"; do
  files=1; [ "$op" = "read 4" ] && files=4
  raw_op=$op; [[ $op == read* ]] && raw_op="read 1"
  raw_t=${RESULT["raw|$raw_op"]}
  raw_r=$(rate "$raw_t"); r_t=${RESULT["rstore|$op"]:-}
  cell() { local v=${RESULT["$1|$op"]:-}; [ -n "$v" ] && rate "$v" "$files" || echo "-"; }
  rr=$(cell rstore) sr=$(cell s3fs) cr=$(cell rclone)
  ratio() { [ "$1" != "-" ] && [ "$2" != "-" ] && echo "scale=2; $1 / $2" | bc -l || echo "-"; }
  echo "| $op (MiB/s) | $raw_r | $rr | $sr | $cr | $(ratio "$rr" "$raw_r") | $(ratio "$rr" "$sr") | $(ratio "$rr" "$cr") | ${RESULT["rstore|$op|rss"]:--} MiB |"
done
ttfb() { local v=${RESULT["$1|ttfb"]:-}; [ -n "$v" ] && echo "scale=1; $v * 1000" | bc -l || echo "-"; }
echo "| ttfb 1 MiB (ms, incl. open) | $(ttfb raw) | $(ttfb rstore) | $(ttfb s3fs) | $(ttfb rclone) | $(echo "scale=2; ${RESULT[rstore|ttfb]:-0} / ${RESULT[raw|ttfb]}" | bc -l) | | | |"
echo
echo "server CPU seconds (median per run): $(for k in "${!CPU[@]}"; do printf '%s=%s ' "$k" "${CPU[$k]}"; done)"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM; server: Garage $(garage --version 2>/dev/null | head -1); $RUNS runs, medians; read 4 = 4 files of $SIZE at once, rstore with --max-memory 256M"
