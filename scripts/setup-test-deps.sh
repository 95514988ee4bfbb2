#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine (idempotent):
# fuse3 for real mounts, the programs the POSIX scenarios run, and a Python venv with moto (S3 server) and remote-store.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v fusermount3 >/dev/null || need_apt+=(fuse3)
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
# The programs the POSIX scenario tests run on a mount.
for prog in sqlite3 rsync git tar sed; do
  command -v "$prog" >/dev/null || need_apt+=("$prog")
done
command -v vim >/dev/null || need_apt+=(vim-nox)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need_apt[*]} (run as root or: sudo apt-get install -y ${need_apt[*]})" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
[ -e /dev/fuse ] || { echo "/dev/fuse is missing: FUSE tests cannot run here" >&2; exit 1; }

venv="${RSTORE_TEST_VENV:-$PWD/target/test-venv}"
# .ready holds the checksum of the requirements it was made from: a changed pin reinstalls.
want="$(sha256sum scripts/test-requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$venv/.ready" 2>/dev/null)" != "$want" ]; then
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r scripts/test-requirements.txt
  echo "$want" > "$venv/.ready"
fi
echo "$venv"
