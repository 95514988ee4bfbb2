#!/usr/bin/env bash
# Data-path benchmark: sequential read/write of 1 GiB files through rstore-mount, s3fs,
# rclone mount and (when its binary is found) mountpoint-s3, against one Garage server on
# loopback, beside a raw aws-sdk-s3 client doing parallel ranged GETs / a multipart PUT
# (the ceiling).
# Then the azure rows (scripts/bench/azure.sh: Azurite, against a raw client of the same
# crate; AZURE=0 skips them) and the sftp rows (scripts/bench/sftp.sh: sshd, against
# OpenSSH's sftp and scp; SFTP=0 skips them).
#   scripts/bench/throughput.sh        # RUNS=3 SIZE=1G CLIENTS="rstore s3fs rclone [mountpoint]"
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS="${RUNS:-3}" SIZE="${SIZE:-1G}" CLIENTS="${CLIENTS:-$(default_clients)}"
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
    rss+=("$(peak_rss "$M")")
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

peers=(); for c in $CLIENTS; do [ "$c" != rstore ] && peers+=("$c"); done
echo
head="| operation | raw client"; sep="|---|---"
for c in $CLIENTS; do head+=" | $(label "$c")"; sep+="|---"; done
head+=" | rstore ÷ raw"; sep+="|---"
for p in "${peers[@]}"; do head+=" | rstore ÷ $(label "$p")"; sep+="|---"; done
for c in $CLIENTS; do head+=" | $(label "$c") peak RSS"; sep+="|---"; done
echo "$head |"; echo "$sep|"
for op in "read 1" "read 1 direct" "read 4" "write"; do
  files=1; [ "$op" = "read 4" ] && files=4
  raw_op=$op; [[ $op == read* ]] && raw_op="read 1"
  raw_r=$(rate "${RESULT["raw|$raw_op"]}")
  cell() { local v=${RESULT["$1|$op"]:-}; [ -n "$v" ] && rate "$v" "$files" || echo "-"; }
  row="| $op (MiB/s) | $raw_r"
  for c in $CLIENTS; do row+=" | $(cell "$c")"; done
  rr=$(cell rstore)
  row+=" | $(ratio "$rr" "$raw_r")"
  for p in "${peers[@]}"; do row+=" | $(ratio "$rr" "$(cell "$p")")"; done
  for c in $CLIENTS; do row+=" | ${RESULT["$c|$op|rss"]:--} MiB"; done
  echo "$row |"
done
ttfb() { local v=${RESULT["$1|ttfb"]:-}; [ -n "$v" ] && printf '%.1f' "$(echo "$v * 1000" | bc -l)" || echo "-"; }
row="| first 1 MiB, cold mount (ms, incl. open) | $(ttfb raw)"
for c in $CLIENTS; do row+=" | $(ttfb "$c")"; done
row+=" | $(ratio "$(ttfb rstore)" "$(ttfb raw)")"
for p in "${peers[@]}"; do row+=" | $(ratio "$(ttfb "$p")" "$(ttfb rstore)") (theirs ÷ ours)"; done
for c in $CLIENTS; do row+=" | "; done
echo "$row |"
echo
echo "server CPU seconds (median per run): $(for k in "${!CPU[@]}"; do printf '%s=%s ' "$k" "${CPU[$k]}"; done)"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, Linux $(uname -r); server: $(garage --version 2>/dev/null | head -1); $RUNS runs, medians; read 4 = 4 files of $SIZE at once, rstore with --max-memory 256M"
for c in $CLIENTS; do echo "$(label "$c"): $(client_version "$c")"; done
if [ "${AZURE:-1}" != 0 ]; then
  stop_garage
  RUNS=$RUNS SIZE=$SIZE "$(dirname "$0")/azure.sh"
fi
if [ "${SFTP:-1}" != 0 ]; then
  RUNS=$RUNS SIZE=$SIZE "$(dirname "$0")/sftp.sh"
fi
