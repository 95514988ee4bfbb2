#!/usr/bin/env bash
# Installs rstore-mount for the whole machine (run as root):
#   PREFIX/bin/rstore-mount                     the binary (release build)
#   /etc/systemd/system/rstore-mount@.service   one store per unit instance
#   /etc/systemd/system/rstore-mount-all.service  every store of the config in one process
#   /sbin/mount.rstore                          mount(8) helper: fstab lines, mount -t rstore
#   /etc/rstore/config.toml                     a commented template (an existing one is kept)
#   PREFIX/share/doc/rstore-mount/              README.md, SEMANTICS.md, BENCHMARKS.md
# Usage: scripts/install.sh [--uninstall]
# Environment: PREFIX (default /usr/local); DESTDIR to stage the tree under a directory
# (packaging, tests); RSTORE_BIN to install an already built binary instead of building.
set -euo pipefail
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
# Relative paths are the caller's, resolved before moving to the repository.
[ -n "$DESTDIR" ] && DESTDIR=$(realpath -m "$DESTDIR")
[ -n "${RSTORE_BIN:-}" ] && RSTORE_BIN=$(realpath "$RSTORE_BIN")
cd "$(dirname "$0")/.."
bin_path=$PREFIX/bin/rstore-mount
doc_dir=$PREFIX/share/doc/rstore-mount
units=(rstore-mount@.service rstore-mount-all.service)

if [ "${1:-}" = --uninstall ]; then
  if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
    # Running mounts stop (their uploads finish first) and no enable link is left behind.
    for u in $(systemctl list-units --all --plain --no-legend 'rstore-mount@*' 'rstore-mount-all.service' | awk '{print $1}'); do
      systemctl disable --now "$u" || true
    done
    systemctl disable rstore-mount-all.service 2>/dev/null || true
  fi
  for u in "${units[@]}"; do rm -f "$DESTDIR/etc/systemd/system/$u"; done
  rm -f "$DESTDIR$bin_path" "$DESTDIR/sbin/mount.rstore"
  rm -rf "$DESTDIR$doc_dir"
  if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
  echo "removed rstore-mount; kept /etc/rstore (your config) and the caches"
  exit 0
elif [ $# -gt 0 ]; then
  echo "usage: scripts/install.sh [--uninstall]" >&2
  exit 2
fi
if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
  echo "scripts/install.sh installs into $PREFIX, /etc and /sbin: run it as root (or set DESTDIR)" >&2
  exit 1
fi

if [ -n "${RSTORE_BIN:-}" ]; then
  built=$RSTORE_BIN
else
  command -v cargo >/dev/null || {
    echo "cargo not found (with sudo, PATH may lack ~/.cargo/bin): install Rust from https://rustup.rs, or build first and pass RSTORE_BIN=target/release/rstore-mount" >&2
    exit 1
  }
  echo "building the release binary (the first build takes about 10 minutes on 2 cores)" >&2
  cargo build --release --locked
  built=target/release/rstore-mount
fi

install -D -m755 "$built" "$DESTDIR$bin_path"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for u in "${units[@]}"; do
  # The units and the helper name the binary and the docs where this install put them.
  sed -e "s|/usr/local/bin/rstore-mount|$bin_path|g" -e "s|file:///usr/local/share/doc/rstore-mount|file://$doc_dir|g" \
    "systemd/$u" >"$tmp/$u"
  install -D -m644 "$tmp/$u" "$DESTDIR/etc/systemd/system/$u"
done
sed -e "s|bin=\${RSTORE_MOUNT_BIN:-rstore-mount}|bin=\${RSTORE_MOUNT_BIN:-$bin_path}|" scripts/mount.rstore >"$tmp/mount.rstore"
install -D -m755 "$tmp/mount.rstore" "$DESTDIR/sbin/mount.rstore"
install -d -m755 "$DESTDIR/etc/rstore"
if [ -e "$DESTDIR/etc/rstore/config.toml" ]; then
  echo "kept the existing /etc/rstore/config.toml"
else
  install -m600 examples/etc-config.toml "$DESTDIR/etc/rstore/config.toml"
fi
install -D -m644 -t "$DESTDIR$doc_dir" README.md docs/SEMANTICS.md BENCHMARKS.md
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
echo "installed $bin_path, the systemd units, /sbin/mount.rstore and /etc/rstore/config.toml"
echo "next: describe your stores in /etc/rstore/config.toml, then: systemctl enable --now rstore-mount@STORE"
