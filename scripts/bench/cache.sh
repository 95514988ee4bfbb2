#!/usr/bin/env bash
# The persistent data cache: reads of a 1 GiB object and of 1,000 × 1 MiB files through
# rstore-mount with `--cache` (FUSE passthrough, and the daemon path with
# `--no-passthrough`), s3fs `-o use_cache=DIR` and rclone `--vfs-cache-mode full`, on one
# Garage server, beside the physical limit: `dd`/`cat` of local files of the same sizes
# on the same disk as the cache directories.
#
# Rows, per client, medians of RUNS runs, each with a new cache directory:
#   cold      first read on a new mount (nothing cached; page cache dropped)
#   same      the same read again on the same mount (the kernel's page cache kept)
#   remount   after unmount, page cache dropped, a new mount on the same cache directory
# plus the mount process's CPU seconds per GiB on the cold and remount reads
# (passthrough: ~0 on the remount).
#   scripts/bench/cache.sh        # RUNS=3 SIZE=1G FILES=1000
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS="${RUNS:-3}" SIZE="${SIZE:-1G}" FILES="${FILES:-1000}"
CLIENTS="${CLIENTS:-rstore-nocache rstore rstore-daemon s3fs rclone}"

install_tools
rm -rf "$BENCH_DIR" && mkdir -p "$BENCH_DIR"
trap 'for m in "$BENCH_DIR"/mnt-*; do umount -l "$m" 2>/dev/null || true; done; stop_garage' EXIT
start_garage
BYTES=$(numfmt --from=iec "$SIZE")
GIB=$(echo "scale=4; $BYTES / 1073741824" | bc -l)
SMALL_GIB=$(echo "scale=4; $FILES / 1024" | bc -l)
log "populating: big.bin ($SIZE), $FILES × 1 MiB in small/, and local copies of the same sizes"
raw put-multipart big.bin "$SIZE" 8M 4 >/dev/null
raw populate small/ "$FILES" 1M 32 >/dev/null
head -c "$BYTES" /dev/urandom > "$BENCH_DIR/local.bin"
mkdir -p "$BENCH_DIR/local-small"
for i in $(seq "$FILES"); do head -c 1048576 /dev/urandom > "$BENCH_DIR/local-small/$i"; done
sync

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# CPU seconds (user+sys) of the mount process serving $1 so far.
mount_cpu() {
  local pid
  pid=$(pgrep -f -- "(rstore-mount|s3fs|rclone).* $1( |$)" | head -1)
  [ -n "$pid" ] && awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/t}' "/proc/$pid/stat" || echo 0
}

declare -A T CPU COLD_CPU
record() { T["$1"]+="$2 "; }
med() { printf '%s\n' ${T["$1"]} | median; }

BIG='dd if="$M/big.bin" of=/dev/null bs=1M status=none'
SMALL='cat "$M"/small/* > /dev/null'

# mount_as CLIENT MP CACHE: the client with its data cache in CACHE.
mount_as() {
  local client=$1 mp=$2 cache=$3
  case $client in
    rstore-nocache) mount_client rstore "$mp" ;;
    rstore) mount_client rstore "$mp" --cache "$cache" --max-cache-size 8G ;;
    rstore-daemon) mount_client rstore "$mp" --cache "$cache" --max-cache-size 8G --no-passthrough ;;
    s3fs) mount_client s3fs "$mp" -o "use_cache=$cache" ;;
    rclone) RCLONE_KEEP_CACHE=1 RCLONE_CACHE_DIR="$cache" mount_client rclone "$mp" --vfs-cache-mode full --vfs-cache-max-size 8G ;;
  esac
}

# run CLIENT WORKLOAD-NAME CMD
run() {
  local client=$1 name=$2 cmd=$3 cache M
  M="$BENCH_DIR/mnt-$client"; export M
  for r in $(seq "$RUNS"); do
    cache="$BENCH_DIR/cache-$client"
    rm -rf "$cache" && mkdir -p "$cache"
    drop_caches
    mount_as "$client" "$M" "$cache"
    local c0; c0=$(mount_cpu "$M")
    record "$client|$name|cold" "$(timeit bash -c "$cmd")"
    COLD_CPU["$client|$name"]+="$(echo "$(mount_cpu "$M") - $c0" | bc -l) "
    if [ "$client" != rstore-nocache ]; then
      # The cache writes behind the read (rstore) and the downloads into the cache
      # (rclone) land, and their dirty pages are written back before the next read.
      sleep 1; sync
      record "$client|$name|same" "$(timeit bash -c "$cmd")"
      unmount_client "$M"
      drop_caches
      mount_as "$client" "$M" "$cache"
      c0=$(mount_cpu "$M")
      record "$client|$name|remount" "$(timeit bash -c "$cmd")"
      CPU["$client|$name"]+="$(echo "$(mount_cpu "$M") - $c0" | bc -l) "
    fi
    unmount_client "$M"
  done
  log "$client $name: cold ${T["$client|$name|cold"]}/ same ${T["$client|$name|same"]:-}/ remount ${T["$client|$name|remount"]:-}"
}

for client in $CLIENTS; do
  run "$client" big "$BIG"
  run "$client" small "$SMALL"
done

# The physical limit: the same bytes read from local files on the same disk.
for r in $(seq "$RUNS"); do
  # Through `bash -c`, as the mounts' commands are.
  drop_caches
  record "local|big|cold" "$(timeit bash -c "dd if='$BENCH_DIR/local.bin' of=/dev/null bs=1M status=none")"
  record "local|big|same" "$(timeit bash -c "dd if='$BENCH_DIR/local.bin' of=/dev/null bs=1M status=none")"
  drop_caches
  record "local|small|cold" "$(timeit bash -c "cat '$BENCH_DIR'/local-small/* > /dev/null")"
  record "local|small|same" "$(timeit bash -c "cat '$BENCH_DIR'/local-small/* > /dev/null")"
done

mibs() { [ -n "$2" ] && [ "$2" != - ] && printf '%.0f' "$(echo "scale=4; $1 * 1024 / $2" | bc -l)" || echo -; }
row() {  # row LABEL CLIENT WORKLOAD GIB
  local c=$2 w=$3 g=$4 cold same remount cpu ccpu
  cold=$(med "$c|$w|cold"); same=$( [ -n "${T["$c|$w|same"]:-}" ] && med "$c|$w|same" || echo -)
  remount=$( [ -n "${T["$c|$w|remount"]:-}" ] && med "$c|$w|remount" || echo -)
  cpu=$( [ -n "${CPU["$c|$w"]:-}" ] && printf '%.2f' "$(echo "scale=4; $(printf '%s\n' ${CPU["$c|$w"]} | median) / $g" | bc -l)" || echo -)
  ccpu=$(printf '%.2f' "$(echo "scale=4; $(printf '%s\n' ${COLD_CPU["$c|$w"]} | median) / $g" | bc -l)")
  echo "| $1 | $(mibs "$g" "$cold") | $ccpu | $(mibs "$g" "$same") | $(mibs "$g" "$remount") | $cpu |"
}
for w in big small; do
  g=$GIB; what="1 object of $SIZE"
  [ "$w" = small ] && g=$SMALL_GIB && what="$FILES files of 1 MiB"
  echo
  echo "**$what** (MiB/s; cold = nothing cached, page cache dropped; same = again on the same mount; remount = new mount on the same cache directory, page cache dropped)"
  echo
  echo "| client | cold | mount CPU s/GiB (cold) | same mount | after remount | mount CPU s/GiB (remount) |"
  echo "|---|---|---|---|---|---|"
  for c in $CLIENTS; do
    case $c in
      rstore-nocache) l="rstore-mount, no --cache" ;;
      rstore) l="rstore-mount --cache (passthrough)" ;;
      rstore-daemon) l="rstore-mount --cache --no-passthrough" ;;
      s3fs) l="s3fs -o use_cache" ;;
      rclone) l="rclone --vfs-cache-mode full" ;;
    esac
    row "$l" "$c" "$w" "$g"
  done
  echo "| local file (dd / cat), same disk | $(mibs "$g" "$(med "local|$w|cold")") | - | $(mibs "$g" "$(med "local|$w|same")") | - | - |"
  echo
  cold_with=$(med "rstore|$w|cold"); cold_without=$(med "rstore-nocache|$w|cold")
  echo "ratios ($w): remount ÷ local dropped $(ratio "$(med "local|$w|cold")" "$(med "rstore|$w|remount")");" \
    "same mount ÷ local cached $(ratio "$(med "local|$w|same")" "$(med "rstore|$w|same")");" \
    "cold with ÷ without --cache $(ratio "$cold_without" "$cold_with");" \
    "remount ÷ s3fs $(ratio "$(med "s3fs|$w|remount")" "$(med "rstore|$w|remount")"), ÷ rclone $(ratio "$(med "rclone|$w|remount")" "$(med "rstore|$w|remount")");" \
    "same ÷ s3fs $(ratio "$(med "s3fs|$w|same")" "$(med "rstore|$w|same")"), ÷ rclone $(ratio "$(med "rclone|$w|same")" "$(med "rstore|$w|same")")"
done
echo
echo "machine: $(nproc) cores, Linux $(uname -r); $(client_version rstore); $(client_version s3fs); $(client_version rclone); server: $(garage --version 2>/dev/null | head -1); $RUNS runs, medians; ratios are speed ratios (time of the other ÷ time of rstore-mount)"
