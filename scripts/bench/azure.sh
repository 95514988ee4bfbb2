#!/usr/bin/env bash
# Azure rows of the data-path benchmark: sequential read and write of a 1 GiB blob
# through rstore-mount on Azurite (Microsoft's Azure Storage emulator, on loopback),
# beside a raw azure_storage_blobs client (the crate the mount uses) doing parallel
# ranged GETs / parallel Put Block + Put Block List (the ceiling). throughput.sh runs
# it after the S3 rows; it also runs alone.
#   scripts/bench/azure.sh        # RUNS=3 SIZE=1G
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS="${RUNS:-3}" SIZE="${SIZE:-1G}"
BYTES=$(numfmt --from=iec "$SIZE"); MIB=$(( BYTES / 1048576 ))
AZ_DIR="$BENCH_DIR/azure"; AZ_PORT="${AZ_PORT:-10100}"

(cd "$REPO" && cargo build --release --quiet)
AZ_RAW="$REPO/$(cd "$REPO" && cargo bench --bench raw_azure --no-run 2>&1 | grep -o 'target/release/deps/raw_azure-[0-9a-f]*' | head -1)"
node_dir="${RSTORE_TEST_NODE:-$REPO/target/test-node}"
if [ ! -x "$node_dir/node_modules/.bin/azurite-blob" ]; then
  log "installing Azurite (npm)"
  npm install --prefix "$node_dir" --no-audit --no-fund --silent azurite@3.35.0 >&2
fi

rm -rf "$AZ_DIR" && mkdir -p "$AZ_DIR/data"
"$node_dir/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$AZ_PORT" --location "$AZ_DIR/data" \
  --skipApiVersionCheck --loose --silent > "$AZ_DIR/azurite.log" 2>&1 &
AZ_PID=$!
M="$AZ_DIR/mnt"
trap 'umount -l "$M" 2>/dev/null || true; kill $AZ_PID 2>/dev/null || true' EXIT
export AZ_URL="http://127.0.0.1:$AZ_PORT/devstoreaccount1" AZ_ACCOUNT=devstoreaccount1 AZ_CONTAINER=bench
export AZ_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$AZ_PORT") 2>/dev/null && break; sleep 0.1; done
raw_az() { "$AZ_RAW" "$@"; }
raw_az create-container > /dev/null
log "Azurite $("$node_dir/node_modules/.bin/azurite-blob" --version) up at $AZ_URL; creating a $SIZE blob"
raw_az put-blocks obj1 "$SIZE" 8M 4 > /dev/null

cat > "$AZ_DIR/rstore.toml" <<TOML
[backends.az]
type = "azure"
[backends.az.options]
container = "bench"
hns = false
account_url = "$AZ_URL"
account_key = "\${AZ_KEY}"
[stores.bench]
backend = "az"
TOML

declare -A T RSS
raw_runs() {
  local op=$1; shift; local t=()
  for r in $(seq "$RUNS"); do sync; t+=("$(raw_az "${@//RUN/$r}" | cut -d' ' -f1)"); done
  T["raw|$op"]=$(printf '%s\n' "${t[@]}" | median); log "raw $op: ${t[*]} s"
}
mount_runs() {
  local op=$1 cmd=$2; local t=() rss=()
  for r in $(seq "$RUNS"); do
    export RUN=$r; mkdir -p "$M"; sync
    "$RSTORE" --config "$AZ_DIR/rstore.toml" bench "$M"
    t+=("$(timeit bash -c "$cmd")"); rss+=("$(peak_rss "$M")")
    unmount_client "$M"
  done
  T["rstore|$op"]=$(printf '%s\n' "${t[@]}" | median); RSS["$op"]=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
  log "rstore $op: ${t[*]} s; peak RSS ${rss[*]} MiB"
}

raw_runs read get-parallel obj1 8M 8
raw_runs write put-blocks rawput-RUN "$SIZE" 8M 4
export M AZ_RAW BYTES
mount_runs read 'dd if="$M/obj1" of=/dev/null bs=1M status=none'
# Timed until the blob is complete in the container (close commits the block list).
mount_runs write 'dd if=/dev/zero of="$M/w-$RUN" bs=1M count='"$MIB"' status=none;
  until [ "$("$AZ_RAW" size "w-$RUN" | cut -d" " -f2)" = "$BYTES" ]; do sleep 0.05; done'

rate() { echo "scale=1; $MIB / $1" | bc -l; }
echo
echo "| azure, $SIZE blob (MiB/s) | raw azure_storage_blobs | rstore-mount | rstore ÷ raw | rstore peak RSS |"
echo "|---|---|---|---|---|"
for op in read write; do
  raw_r=$(rate "${T["raw|$op"]}"); ours=$(rate "${T["rstore|$op"]}")
  echo "| $op | $raw_r | $ours | $(ratio "$ours" "$raw_r") | ${RSS[$op]} MiB |"
done
echo
echo "machine: $(nproc) cores, Linux $(uname -r); server: Azurite $("$node_dir/node_modules/.bin/azurite-blob" --version) (disk persistence); $RUNS runs, medians; raw: 8 ranged GETs / 4 Put Blocks of 8 MiB in flight"
