#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine (idempotent):
# fuse3 for real mounts, the programs the POSIX scenarios run, a Python venv with moto
# (S3 server) and remote-store with its azure/sql/sftp extras, PostgreSQL, Azurite and
# http-server (npm), and Garage (the 3-node cluster of tests/cluster.rs).
# Prints, last, RSTORE_TEST_VENV=<venv> and RSTORE_TOOLS_BIN=<dir with garage>.
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
# s3fs-fuse: the peer whose headers our special files and times share (tests/remount_metadata.rs).
command -v s3fs >/dev/null || need_apt+=(s3fs)
# PostgreSQL for the sql-blob tests (a throwaway cluster per test; no service is started).
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
command -v runuser >/dev/null || need_apt+=(util-linux)
# OpenSSH's sshd and ssh-keygen for the sftp tests (each test runs its own sshd).
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh-keygen >/dev/null || need_apt+=(openssh-client)
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
# npm packages, pinned: Azurite (Microsoft's Azure Storage emulator) for the azure
# tests, http-server (serves files with Range, ETag, Last-Modified) for the http tests.
node_dir="${RSTORE_TEST_NODE:-$PWD/target/test-node}"
node_pkgs="azurite@3.35.0 http-server@14.1.1"
if [ "$(cat "$node_dir/.ready" 2>/dev/null)" != "$node_pkgs" ]; then
  if ! command -v npm >/dev/null; then
    [ "$(id -u)" -eq 0 ] || { echo "npm is missing (sudo apt-get install -y npm)" >&2; exit 1; }
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  mkdir -p "$node_dir"
  # shellcheck disable=SC2086
  npm install --prefix "$node_dir" --no-audit --no-fund --silent $node_pkgs >&2
  echo "$node_pkgs" > "$node_dir/.ready"
fi
# Garage has no Debian package: built once from crates.io (about 10 minutes on 2 cores)
# into a cache directory that later runs, and CI runs on the same machine, reuse.
garage_version=2.5.0
tools="${RSTORE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/rstore-mount-tools}"
if ! "$tools/bin/garage" --version 2>/dev/null | grep -Eq "[v:]$garage_version( |$)"; then
  if command -v garage >/dev/null && garage --version | grep -Eq "[v:]$garage_version( |$)"; then
    mkdir -p "$tools/bin" && ln -sf "$(command -v garage)" "$tools/bin/garage"
  else
    echo "building Garage $garage_version for the cluster tests (once, about 10 minutes on 2 cores)" >&2
    cargo install --locked --quiet --root "$tools" garage --version "$garage_version" >&2
  fi
fi

echo "RSTORE_TEST_VENV=$venv"
echo "RSTORE_TEST_NODE=$node_dir"
echo "RSTORE_TOOLS_BIN=$tools/bin"
