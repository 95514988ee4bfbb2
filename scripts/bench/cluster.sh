#!/usr/bin/env bash
# Many mounts, one cluster: on the 3-node Garage cluster of scripts/cluster.sh, the
# aggregate read throughput of 1, 2 and 3 rstore mounts (each on its own node's
# endpoint, as on separate machines) reading different files of SIZE at once, beside 1,
# 2 and 3 raw aws-sdk-s3 clients doing the same (parallel ranged GETs, the ceiling).
#   scripts/bench/cluster.sh           # RUNS=3 SIZE=1G
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS="${RUNS:-3}" SIZE="${SIZE:-1G}"
MIB=$(( $(numfmt --from=iec "$SIZE") / 1048576 ))
export CLUSTER_DIR="$BENCH_DIR/cluster" CLUSTER_PORT="${CLUSTER_PORT:-3910}" CLUSTER_BUCKET="$BENCH_BUCKET"
export AWS_ACCESS_KEY_ID="GK00000000000000000000c1a5"
export AWS_SECRET_ACCESS_KEY="c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5"
endpoint() { echo "http://127.0.0.1:$((CLUSTER_PORT + 10 * ($1 - 1)))"; }

install_tools
rm -rf "$BENCH_DIR" && mkdir -p "$BENCH_DIR"
trap 'for m in "$BENCH_DIR"/mnt-*; do umount -l "$m" 2>/dev/null || true; done; "$REPO/scripts/cluster.sh" stop' EXIT
"$REPO/scripts/cluster.sh" start >/dev/null

log "writing 3 objects of $SIZE (through node 1; replicated to all three)"
for i in 1 2 3; do BENCH_ENDPOINT=$(endpoint 1) raw put-multipart "obj$i" "$SIZE" 8M 4 >/dev/null; done

# One run of N readers at once; prints the wall seconds until the last one finishes.
readers() {
  local kind=$1 n=$2 t0 t1 pids=()
  t0=$(date +%s.%N)
  for i in $(seq "$n"); do
    if [ "$kind" = raw ]; then
      BENCH_ENDPOINT=$(endpoint "$i") raw get-parallel "obj$i" 8M 8 >/dev/null &
    else
      dd if="$BENCH_DIR/mnt-$i/obj$i" of=/dev/null bs=1M status=none &
    fi
    pids+=($!)
  done
  # A failed reader must fail the run, not show up as a fast one.
  for p in "${pids[@]}"; do wait "$p"; done
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

declare -A RESULT
for n in 1 2 3; do
  t=(); for _ in $(seq "$RUNS"); do t+=("$(readers raw "$n")"); done
  RESULT["raw|$n"]=$(printf '%s\n' "${t[@]}" | median)
  log "raw x$n: ${t[*]} s"
  t=()
  for _ in $(seq "$RUNS"); do
    sync
    for i in $(seq "$n"); do
      mkdir -p "$BENCH_DIR/mnt-$i"
      "$RSTORE" --config "$CLUSTER_DIR/rstore.toml" "n$i" "$BENCH_DIR/mnt-$i"
    done
    t+=("$(readers rstore "$n")")
    for i in $(seq "$n"); do unmount_client "$BENCH_DIR/mnt-$i"; done
  done
  RESULT["rstore|$n"]=$(printf '%s\n' "${t[@]}" | median)
  log "rstore x$n: ${t[*]} s"
done

echo
echo "| readers at once (one per node) | raw clients, total MiB/s | rstore mounts, total MiB/s | rstore ÷ raw |"
echo "|---|---|---|---|"
for n in 1 2 3; do
  raw_r=$(echo "scale=0; $MIB * $n / ${RESULT["raw|$n"]}" | bc -l)
  r=$(echo "scale=0; $MIB * $n / ${RESULT["rstore|$n"]}" | bc -l)
  echo "| $n | $raw_r | $r | $(ratio "$r" "$raw_r") |"
done
echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, Linux $(uname -r); 3 Garage nodes on loopback ($(garage --version | head -1)), replication 3; files of $SIZE; $RUNS runs, medians; every client, mount and node shares the machine's cores"
