#!/usr/bin/env bash
# A 3-node Garage cluster on 127.0.0.1 (replication factor 3, one zone per node): the
# distributed S3 store that several rstore mounts share, for tests and for trying it.
#
#   scripts/cluster.sh start     # 3 `garage server`s, a bucket and a key; prints an rstore config
#   scripts/cluster.sh status    # which nodes answer
#   scripts/cluster.sh kill N    # stop node N (1-3) at once (SIGKILL), as a crash
#   scripts/cluster.sh revive N  # start node N again with its data
#   scripts/cluster.sh stop      # stop every node and remove the cluster's files
#
# Environment: CLUSTER_DIR (default /tmp/rstore-cluster), CLUSTER_PORT (default 3910:
# node N serves S3 on CLUSTER_PORT + 10*(N-1), RPC on the port after it), CLUSTER_BUCKET
# (default shared). Needs `garage` on PATH (cargo install garage --locked; ~10 minutes
# once). The config it prints (also in $CLUSTER_DIR/rstore.toml) has one backend and one
# store per node endpoint, n1 n2 n3, so two mounts can talk to different nodes:
#   rstore-mount --config $CLUSTER_DIR/rstore.toml n1 /mnt/a
#   rstore-mount --config $CLUSTER_DIR/rstore.toml n2 /mnt/b
set -euo pipefail
DIR="${CLUSTER_DIR:-/tmp/rstore-cluster}"
PORT="${CLUSTER_PORT:-3910}"
BUCKET="${CLUSTER_BUCKET:-shared}"
KEY_ID="GK00000000000000000000c1a5"
SECRET="c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5"
RPC_SECRET="$(printf '%064d' 3)"

s3_port() { echo $((PORT + 10 * ($1 - 1))); }
rpc_port() { echo $(($(s3_port "$1") + 1)); }
conf() { echo "$DIR/node$1/garage.toml"; }
g() { local n=$1; shift; garage -c "$(conf "$n")" "$@"; }

write_conf() {
  local n=$1
  mkdir -p "$DIR/node$n/meta" "$DIR/node$n/data"
  cat >"$(conf "$n")" <<TOML
metadata_dir = "$DIR/node$n/meta"
data_dir = "$DIR/node$n/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:$(rpc_port "$n")"
rpc_public_addr = "127.0.0.1:$(rpc_port "$n")"
rpc_secret = "$RPC_SECRET"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$(s3_port "$n")"
root_domain = ".s3.garage.localhost"
TOML
}

start_node() {
  local n=$1 pid
  # A node restarted right after a crash can be slow (its database recovers) or fail to
  # bind at once: give it 20 s a try, three tries.
  for _ in 1 2 3; do
    garage -c "$(conf "$n")" server >>"$DIR/node$n/server.log" 2>&1 &
    pid=$!
    echo "$pid" >"$DIR/node$n/pid"
    for _ in $(seq 200); do
      g "$n" status >/dev/null 2>&1 && return 0
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    sleep 1
  done
  echo "cluster: node $n did not start; the end of $DIR/node$n/server.log:" >&2
  tail -n 5 "$DIR/node$n/server.log" >&2
  return 1
}

alive() { [ -f "$DIR/node$1/pid" ] && kill -0 "$(cat "$DIR/node$1/pid")" 2>/dev/null; }

print_config() {
  {
    for n in 1 2 3; do
      cat <<TOML
[backends.node$n]
type = "s3"
[backends.node$n.options]
bucket = "$BUCKET"
endpoint_url = "http://127.0.0.1:$(s3_port "$n")"
key = "$KEY_ID"
secret = "$SECRET"
region_name = "us-east-1"
[backends.node$n.retry]
max_attempts = 3
backoff_max = 1
[stores.n$n]
backend = "node$n"

TOML
    done
  } >"$DIR/rstore.toml"
  cat "$DIR/rstore.toml"
}

case "${1:-}" in
  start)
    command -v garage >/dev/null || { echo "cluster: garage not found (cargo install garage --locked)" >&2; exit 1; }
    if alive 1 || alive 2 || alive 3; then echo "cluster: already running in $DIR (stop it first)" >&2; exit 1; fi
    # Only a directory this script made (or none) is replaced.
    if [ -e "$DIR" ] && [ ! -e "$DIR/.rstore-cluster" ] && [ -n "$(ls -A "$DIR")" ]; then
      echo "cluster: $DIR exists and is not a cluster directory; set CLUSTER_DIR" >&2
      exit 1
    fi
    rm -rf "$DIR" && mkdir -p "$DIR" && touch "$DIR/.rstore-cluster"
    for n in 1 2 3; do write_conf "$n"; start_node "$n"; done
    for n in 2 3; do g 1 node connect "$(g "$n" node id -q)" >/dev/null; done
    for n in 1 2 3; do
      g 1 layout assign -z "zone$n" -c 1G "$(g "$n" node id -q | cut -d@ -f1)" >/dev/null
    done
    g 1 layout apply --version 1 >/dev/null
    # Every node must know the layout before the bucket is made.
    for _ in $(seq 100); do
      [ "$(g 1 status 2>/dev/null | grep -c 'zone')" -ge 3 ] && break
      sleep 0.1
    done
    g 1 key import --yes "$KEY_ID" "$SECRET" -n rstore >/dev/null
    g 1 bucket create "$BUCKET" >/dev/null
    g 1 bucket allow --read --write --owner "$BUCKET" --key rstore >/dev/null
    print_config
    echo "# cluster: 3 nodes up in $DIR, S3 on 127.0.0.1:$(s3_port 1) $(s3_port 2) $(s3_port 3)" >&2
    ;;
  status)
    for n in 1 2 3; do
      if alive "$n"; then echo "node$n up (s3 127.0.0.1:$(s3_port "$n"), pid $(cat "$DIR/node$n/pid"))"; else echo "node$n down"; fi
    done
    ;;
  kill)
    n=${2:?node number 1-3}
    alive "$n" && kill -9 "$(cat "$DIR/node$n/pid")"
    rm -f "$DIR/node$n/pid"
    ;;
  revive)
    n=${2:?node number 1-3}
    alive "$n" || start_node "$n"
    ;;
  stop)
    for n in 1 2 3; do
      if alive "$n"; then kill "$(cat "$DIR/node$n/pid")" 2>/dev/null || true; fi
    done
    sleep 0.3
    for n in 1 2 3; do
      if alive "$n"; then kill -9 "$(cat "$DIR/node$n/pid")" 2>/dev/null || true; fi
    done
    if [ -e "$DIR/.rstore-cluster" ]; then rm -rf "$DIR"; fi
    ;;
  *)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
