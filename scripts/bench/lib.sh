# Shared helpers for the benchmarks: a Garage server on loopback, mounts of
# rstore-mount / s3fs / rclone / mountpoint-s3 on it, timing and medians. Source, don't run.
set -euo pipefail

BENCH_DIR="${BENCH_DIR:-/tmp/rstore-bench}"
GARAGE_PORT="${GARAGE_PORT:-3900}"
export BENCH_ENDPOINT="http://127.0.0.1:${GARAGE_PORT}"
export BENCH_BUCKET="${BENCH_BUCKET:-bench}"
export AWS_ACCESS_KEY_ID="GK0123456789abcdef01234567"
export AWS_SECRET_ACCESS_KEY="0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RSTORE="$REPO/target/release/rstore-mount"

# mountpoint-s3 (AWS's mount-s3) is measured when its binary is found: MOUNT_S3=/path, or
# mount-s3 on PATH. It has no Debian package; it builds from its public source
# (github.com/awslabs/mountpoint-s3, `cargo build --release`, needs cmake, clang, libfuse3-dev).
MOUNT_S3="${MOUNT_S3:-$(command -v mount-s3 || true)}"

log() { echo "[bench] $*" >&2; }

# The clients a script measures unless CLIENTS says: ours and the Debian-packaged peers,
# and mountpoint-s3 when its binary is there.
default_clients() { echo "rstore s3fs rclone${MOUNT_S3:+ mountpoint}"; }

# A client's name in the tables.
label() { case $1 in rstore) echo rstore-mount ;; mountpoint) echo mountpoint-s3 ;; *) echo "$1" ;; esac; }

# A client's version, for the line under each table.
client_version() {
  case $1 in
    rstore) "$RSTORE" --version ;;
    s3fs) s3fs --version 2>&1 | head -1 ;;
    rclone) rclone version 2>/dev/null | head -1 ;;
    mountpoint) "$MOUNT_S3" --version 2>&1 | head -1 ;;
  esac
}

install_tools() {
  local missing=()
  command -v s3fs >/dev/null || missing+=(s3fs)
  command -v rclone >/dev/null || missing+=(rclone)
  command -v fusermount3 >/dev/null || missing+=(fuse3)
  command -v fio >/dev/null || missing+=(fio)
  [ -x /usr/bin/time ] || missing+=(time)
  command -v bc >/dev/null || missing+=(bc)
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if ! command -v garage >/dev/null; then
    log "building Garage (cargo install garage --locked; ~10 min once)"
    cargo install garage --locked --quiet
  fi
  (cd "$REPO" && cargo build --release --quiet)
  RAW_BIN="$REPO/$(cd "$REPO" && cargo bench --bench raw_s3 --no-run 2>&1 | grep -o 'target/release/deps/raw_s3-[0-9a-f]*' | head -1)"
  export RAW_BIN
}

raw() { "$RAW_BIN" "$@"; }

start_garage() {
  mkdir -p "$BENCH_DIR/garage/meta" "$BENCH_DIR/garage/data"
  cat > "$BENCH_DIR/garage/garage.toml" <<TOML
metadata_dir = "$BENCH_DIR/garage/meta"
data_dir = "$BENCH_DIR/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$((GARAGE_PORT + 1))"
rpc_public_addr = "127.0.0.1:$((GARAGE_PORT + 1))"
rpc_secret = "$(printf '%064d' 7)"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:${GARAGE_PORT}"
root_domain = ".s3.garage.localhost"
TOML
  export GARAGE_CONFIG_FILE="$BENCH_DIR/garage/garage.toml"
  garage server > "$BENCH_DIR/garage/server.log" 2>&1 &
  GARAGE_PID=$!
  for _ in $(seq 100); do garage status >/dev/null 2>&1 && break; sleep 0.2; done
  local node
  node=$(garage node id -q | cut -d@ -f1)
  garage layout assign -z dc1 -c 10G "$node" >/dev/null
  garage layout apply --version 1 >/dev/null
  garage key import --yes "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" -n bench >/dev/null
  garage bucket create "$BENCH_BUCKET" >/dev/null
  garage bucket allow --read --write --owner "$BENCH_BUCKET" --key bench >/dev/null
  log "garage up (pid $GARAGE_PID) at $BENCH_ENDPOINT"
}

stop_garage() { [ -n "${GARAGE_PID:-}" ] && kill "$GARAGE_PID" 2>/dev/null; wait 2>/dev/null || true; }

# CPU seconds (user+sys) the server has used so far.
server_cpu() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$GARAGE_PID/stat"; }

rstore_config() {
  cat > "$BENCH_DIR/rstore.toml" <<TOML
[backends.g]
type = "s3"
[backends.g.options]
bucket = "$BENCH_BUCKET"
endpoint_url = "$BENCH_ENDPOINT"
key = "\${AWS_ACCESS_KEY_ID}"
secret = "\${AWS_SECRET_ACCESS_KEY}"
region_name = "us-east-1"
[stores.bench]
backend = "g"
TOML
  echo "$BENCH_DIR/rstore.toml"
}

# mount_client NAME MOUNTPOINT [extra flags of that client...]
mount_client() {
  local name=$1 mp=$2; shift 2
  mkdir -p "$mp"
  case $name in
    rstore) "$RSTORE" --config "$(rstore_config)" bench "$mp" "$@" ;;
    s3fs)
      echo "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" > "$BENCH_DIR/s3fs.passwd"; chmod 600 "$BENCH_DIR/s3fs.passwd"
      s3fs "$BENCH_BUCKET" "$mp" -o "url=$BENCH_ENDPOINT,use_path_request_style,passwd_file=$BENCH_DIR/s3fs.passwd,endpoint=us-east-1" "$@"
      for _ in $(seq 50); do mountpoint -q "$mp" && break; sleep 0.1; done ;;
    rclone)
      # Cold unless RCLONE_KEEP_CACHE=1: no reads served from a local copy. RCLONE_CACHE_DIR
      # names another cache directory; later flags (e.g. --vfs-cache-mode full) override.
      local rcache="${RCLONE_CACHE_DIR:-$BENCH_DIR/rclone-cache}"
      [ "${RCLONE_KEEP_CACHE:-0}" = 1 ] || rm -rf "$rcache"
      RCLONE_CONFIG_G_TYPE=s3 RCLONE_CONFIG_G_PROVIDER=Other RCLONE_CONFIG_G_ENDPOINT="$BENCH_ENDPOINT" \
      RCLONE_CONFIG_G_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" RCLONE_CONFIG_G_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
      RCLONE_CONFIG_G_REGION=us-east-1 \
        env -u AWS_CA_BUNDLE rclone mount "g:$BENCH_BUCKET" "$mp" --vfs-cache-mode writes --daemon --cache-dir "$rcache" "$@"
      for _ in $(seq 100); do mountpoint -q "$mp" && break; sleep 0.1; done ;;
    mountpoint)
      # Its documented flags for an S3-compatible server; it returns once mounted.
      "$MOUNT_S3" "$BENCH_BUCKET" "$mp" --endpoint-url "$BENCH_ENDPOINT" --force-path-style --region us-east-1 \
        --allow-delete --allow-overwrite >/dev/null
      for _ in $(seq 100); do mountpoint -q "$mp" && break; sleep 0.1; done ;;
    *) echo "unknown client $name" >&2; return 1 ;;
  esac
}

unmount_client() {
  local mp=$1
  for _ in $(seq 50); do umount "$mp" 2>/dev/null && return 0; sleep 0.2; done
  umount -l "$mp" 2>/dev/null || true
}

# rclone refuses AWS_CA_BUNDLE ("transport unsupported type"); the others ignore it for http.
# timeit CMD...: prints the wall seconds of CMD (its output discarded).
timeit() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > /dev/null
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l | xargs printf '%.3f\n'
}

# ratio A B: A ÷ B to 2 decimals, or "-" when either is missing.
ratio() { [ -n "$1" ] && [ -n "$2" ] && [ "$1" != - ] && [ "$2" != - ] && printf '%.2f' "$(echo "scale=4; $1 / $2" | bc -l)" || echo "-"; }

# Peak RSS (MiB) of the mount process serving $1, or "-".
peak_rss() {
  local pid
  pid=$(pgrep -f -- "(rstore-mount|mount-s3|s3fs|rclone).* $1( |$)" | head -1)
  [ -n "$pid" ] && awk '/VmHWM/{print int($2/1024)}' "/proc/$pid/status" 2>/dev/null || echo "-"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
