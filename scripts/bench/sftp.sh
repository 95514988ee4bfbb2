#!/usr/bin/env bash
# SFTP rows of the data-path benchmark: sequential read and write of a 1 GiB file
# through rstore-mount on OpenSSH's sshd (loopback), beside OpenSSH's own clients on the
# same server and file: `sftp` (get/put) and `scp` (the ceiling a user would compare
# with). throughput.sh runs it after the S3 rows; it also runs alone. Root only (it
# starts its own sshd on a spare port, logging in as root with a throwaway key).
#   scripts/bench/sftp.sh        # RUNS=3 SIZE=1G
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS="${RUNS:-3}" SIZE="${SIZE:-1G}"
BYTES=$(numfmt --from=iec "$SIZE"); MIB=$(( BYTES / 1048576 ))
SD="$BENCH_DIR/sftp"; SSH_PORT="${SSH_PORT:-2299}"

command -v /usr/sbin/sshd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null; }
(cd "$REPO" && cargo build --release --quiet)
rm -rf "$SD" && mkdir -p "$SD/data" && chmod 755 "$SD"
ssh-keygen -q -t ed25519 -N "" -f "$SD/host_key"
ssh-keygen -q -t ed25519 -N "" -f "$SD/client_key"
cp "$SD/client_key.pub" "$SD/authorized_keys"
cat > "$SD/sshd_config" <<CFG
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $SD/host_key
PidFile $SD/sshd.pid
AuthorizedKeysFile $SD/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
CFG
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$SD/sshd_config" 2> "$SD/sshd.log" &
SSHD_PID=$!
M="$SD/mnt"
trap 'umount -l "$M" 2>/dev/null || true; kill $SSHD_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$SSH_PORT") 2>/dev/null && break; sleep 0.1; done
echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$SD/host_key.pub")" > "$SD/known_hosts"
SSH_OPTS=(-i "$SD/client_key" -o "UserKnownHostsFile=$SD/known_hosts" -o BatchMode=yes)
log "sshd $(/usr/sbin/sshd -V 2>&1 | head -1) on port $SSH_PORT; writing a $SIZE file"
head -c "$BYTES" /dev/urandom > "$SD/data/obj1"
head -c "$BYTES" /dev/urandom > "$SD/local.bin"

cat > "$SD/rstore.toml" <<TOML
[backends.box]
type = "sftp"
[backends.box.options]
host = "127.0.0.1"
port = $SSH_PORT
username = "root"
base_path = "$SD/data"
host_keys_path = "$SD/known_hosts"
[backends.box.options.connect_kwargs]
key_filename = "$SD/client_key"
allow_agent = false
look_for_keys = false
[stores.bench]
backend = "box"
TOML

declare -A T RSS
runs() {  # runs NAME CMD: median wall seconds of CMD over RUNS runs
  local name=$1 cmd=$2 t=()
  for r in $(seq "$RUNS"); do
    export RUN=$r; sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    t+=("$(timeit bash -c "$cmd")")
  done
  T["$name"]=$(printf '%s\n' "${t[@]}" | median); log "$name: ${t[*]} s"
}
mount_runs() {  # mount_runs NAME CMD: as runs, on a new mount each run
  local name=$1 cmd=$2 t=() rss=()
  for r in $(seq "$RUNS"); do
    export RUN=$r; mkdir -p "$M"; sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    "$RSTORE" --config "$SD/rstore.toml" bench "$M"
    t+=("$(timeit bash -c "$cmd")"); rss+=("$(peak_rss "$M")")
    unmount_client "$M"
  done
  T["$name"]=$(printf '%s\n' "${t[@]}" | median); RSS["$name"]=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
  log "$name: ${t[*]} s; peak RSS ${rss[*]} MiB"
}
export SD M SSH_PORT
S="${SSH_OPTS[*]}"
runs "sftp read" "echo 'get obj1 /dev/null' | sftp $S -P $SSH_PORT -b - root@127.0.0.1:$SD/data >/dev/null"
# scp cannot write to /dev/null (it truncates its target): a tmpfs file, removed after.
runs "scp read" "scp $S -P $SSH_PORT root@127.0.0.1:$SD/data/obj1 /dev/shm/rstore-scp-read; rm -f /dev/shm/rstore-scp-read"
# The same with the cipher rstore-mount prefers (AES-GCM; OpenSSH's own default is ChaCha20-Poly1305).
runs "scp-gcm read" "scp -c aes256-gcm@openssh.com $S -P $SSH_PORT root@127.0.0.1:$SD/data/obj1 /dev/shm/rstore-scp-read; rm -f /dev/shm/rstore-scp-read"
runs "scp-gcm write" "scp -c aes256-gcm@openssh.com $S -P $SSH_PORT $SD/local.bin root@127.0.0.1:$SD/data/scpg-\$RUN"
runs "sftp write" "echo \"put $SD/local.bin sftp-\$RUN\" | sftp $S -P $SSH_PORT -b - root@127.0.0.1:$SD/data >/dev/null"
runs "scp write" "scp $S -P $SSH_PORT $SD/local.bin root@127.0.0.1:$SD/data/scp-\$RUN"
mount_runs "rstore read" 'dd if="$M/obj1" of=/dev/null bs=1M status=none'
# Timed to the end of close: the file is renamed into place before close returns.
mount_runs "rstore write" 'dd if="$SD/local.bin" of="$M/w-$RUN" bs=1M status=none'
cmp "$SD/local.bin" "$SD/data/w-1" && log "written file identical on the server"

rate() { echo "scale=1; $MIB / $1" | bc -l; }
echo
echo "| sftp, $SIZE file (MiB/s) | OpenSSH sftp | OpenSSH scp | scp, AES-GCM | rstore-mount | rstore ÷ sftp | rstore ÷ scp | rstore ÷ scp AES-GCM | rstore peak RSS |"
echo "|---|---|---|---|---|---|---|---|---|"
for op in read write; do
  a=$(rate "${T["sftp $op"]}"); b=$(rate "${T["scp $op"]}"); g=$(rate "${T["scp-gcm $op"]}"); ours=$(rate "${T["rstore $op"]}")
  echo "| $op | $a | $b | $g | $ours | $(ratio "$ours" "$a") | $(ratio "$ours" "$b") | $(ratio "$ours" "$g") | ${RSS["rstore $op"]} MiB |"
done
echo
echo "machine: $(nproc) cores, Linux $(uname -r); server: $(/usr/sbin/sshd -V 2>&1 | head -1); $RUNS runs, medians, page cache dropped before each"
