#!/usr/bin/env bash
# In-place change of a large file, against Garage: a 4 KiB pwrite into the middle of a 1 GiB file
# re-uploads one part and copies the rest on the server. Prints the bytes the mount
# sent (its own metrics), the parts copied, the time, and checks the content.
#   scripts/bench/overwrite.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
install_tools
rm -rf "$BENCH_DIR" && mkdir -p "$BENCH_DIR"
mp="$BENCH_DIR/mnt-rstore"
trap 'umount -l "$mp" 2>/dev/null || true; stop_garage' EXIT
start_garage
mount_client rstore "$mp" --metrics-addr 127.0.0.1:9187 --cache-dir "$BENCH_DIR/cache"
metric() { curl -s 127.0.0.1:9187/metrics | awk -v n="$1" '$1 == n {print $2}'; }
head -c 1G /dev/urandom > "$BENCH_DIR/src.bin"
cp "$BENCH_DIR/src.bin" "$mp/big.bin"
before=$(metric rstore_bytes_written_total)
start=$(date +%s.%N)
head -c 4096 /dev/zero | dd of="$mp/big.bin" bs=4096 seek=$((512 * 1024 * 1024 + 12345)) oflag=seek_bytes conv=notrunc status=none
end=$(date +%s.%N)
after=$(metric rstore_bytes_written_total)
copied=$(metric 'rstore_s3_requests_total{op="upload_part_copy",result="ok"}')
head -c 4096 /dev/zero | dd of="$BENCH_DIR/src.bin" bs=4096 seek=$((512 * 1024 * 1024 + 12345)) oflag=seek_bytes conv=notrunc status=none
unmount_client "$mp"
mount_client rstore "$mp" --cache-dir "$BENCH_DIR/cache"
if cmp -s "$BENCH_DIR/src.bin" "$mp/big.bin"; then same=identical; else same=DIFFERENT; fi
printf '4 KiB pwrite into 1 GiB on Garage: %s bytes sent, %s parts copied on the server, %.2f s, content after remount: %s\n' \
  "$(echo "$after - $before" | bc)" "$copied" "$(echo "$end - $start" | bc)" "$same"
[ "$same" = identical ]
