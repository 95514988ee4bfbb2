#!/usr/bin/env bash
# Real programs on a mount. `write MNT WORK` runs each program and checks what it sees;
# `verify MNT WORK` (after unmount + remount) checks the data survived.
# WORK is a local scratch directory outside the mount.
set -euo pipefail
phase=$1 mnt=$2 work=$3
step() { echo "== $*" >&2; }

write() {
  cd "$mnt"
  step "echo >> append loop"
  for i in $(seq 1 100); do echo "line $i" >> log.txt; done
  [ "$(wc -l < log.txt)" = 100 ] && [ "$(tail -n1 log.txt)" = "line 100" ]

  step "sed -i"
  printf 'foo\nbar\nfoo\n' > sed.txt
  sed -i 's/foo/baz/' sed.txt
  [ "$(cat sed.txt)" = "$(printf 'baz\nbar\nbaz')" ]

  step "python write temp + os.replace"
  python3 - <<'PY'
import os
for v in range(3):
    with open("settings.json.tmp", "w") as f:
        f.write('{"version": %d}\n' % v)
        f.flush()
        os.fsync(f.fileno())
    os.replace("settings.json.tmp", "settings.json")
assert open("settings.json").read() == '{"version": 2}\n'
assert not os.path.exists("settings.json.tmp")
PY

  step "vim -es edit"
  printf 'one\ntwo\nthree\n' > vim.txt
  vim -u NONE -N -es -c '%s/two/TWO/' -c 'wq' vim.txt
  [ "$(cat vim.txt)" = "$(printf 'one\nTWO\nthree')" ]

  step "git clone, status, fsck"
  rm -rf "$work/src"
  git init -q "$work/src"
  (cd "$work/src" && for i in 1 2 3; do echo "v$i" > "f$i.txt"; mkdir -p "d$i" && echo "$i" > "d$i/g"; done \
    && git add -A && git -c user.email=t@t -c user.name=t commit -qm one \
    && echo more >> f1.txt && git -c user.email=t@t -c user.name=t commit -qam two)
  git clone -q "$work/src" repo
  (cd repo && [ -z "$(git status --porcelain)" ] && git fsck --no-progress 2>&1 && [ "$(git log --oneline | wc -l)" = 2 ])

  step "sqlite3: 1,000 inserts in transactions"
  sqlite3 app.db 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);'
  for tx in $(seq 0 9); do
    { echo 'BEGIN;'; for i in $(seq 1 100); do echo "INSERT INTO t(v) VALUES ('row $tx-$i');"; done; echo 'COMMIT;'; } | sqlite3 app.db
  done
  [ "$(sqlite3 app.db 'SELECT count(*) FROM t;')" = 1000 ]
  [ "$(sqlite3 app.db 'PRAGMA integrity_check;')" = ok ]

  step "in-place overwrite of a multi-part file"
  head -c $((20 << 20)) /dev/urandom > "$work/big.bin"
  cp "$work/big.bin" big.bin
  printf 'PATCHED' | dd of=big.bin bs=1 seek=$((9 << 20)) conv=notrunc status=none
  printf 'PATCHED' | dd of="$work/big.bin" bs=1 seek=$((9 << 20)) conv=notrunc status=none
  cmp big.bin "$work/big.bin"

  step "tar xf with symlinks and modes, tar cf back"
  rm -rf "$work/t" && mkdir -p "$work/t/pkg/bin" "$work/t/pkg/etc"
  printf '#!/bin/sh\necho hi\n' > "$work/t/pkg/bin/run" && chmod 755 "$work/t/pkg/bin/run"
  echo secret > "$work/t/pkg/etc/key" && chmod 600 "$work/t/pkg/etc/key"
  echo conf > "$work/t/pkg/etc/app.conf"
  ln -s ../etc/app.conf "$work/t/pkg/bin/conf-link" && ln -s /no/such/target "$work/t/pkg/dangling"
  chmod 700 "$work/t/pkg/etc"
  touch -d '2020-02-02 02:02:02' "$work/t/pkg/etc/app.conf"
  tar -C "$work/t" -cf "$work/pkg.tar" pkg
  tar xf "$work/pkg.tar"
  [ "$(readlink pkg/bin/conf-link)" = ../etc/app.conf ] && [ "$(cat pkg/bin/conf-link)" = conf ]
  [ "$(./pkg/bin/run)" = hi ]
  tar cf "$work/back.tar" pkg
  [ "$(tar tvf "$work/pkg.tar" | sort)" = "$(tar tvf "$work/back.tar" | sort)" ]

  step "rsync -a twice: the second run transfers nothing"
  rm -rf "$work/r" && mkdir -p "$work/r/sub"
  for i in $(seq 1 20); do head -c $((i * 1000)) /dev/urandom > "$work/r/f$i"; done
  echo nested > "$work/r/sub/n" && chmod 640 "$work/r/sub/n" && ln -s f1 "$work/r/link"
  rsync -a "$work/r/" synced/
  [ "$(rsync -a --stats "$work/r/" synced/ | sed -n 's/^Number of regular files transferred: //p')" = 0 ]
  diff -r "$work/r" synced

  step "truncate, mv of files and directories"
  truncate -s 5 log.txt && [ "$(cat log.txt)" = "line " ]
  mkdir -p tree/a/b && echo x > tree/a/b/x && echo y > tree/y
  mv tree moved && [ "$(cat moved/a/b/x)" = x ] && [ ! -e tree ]
  mv moved/y moved/a/y2 && [ "$(cat moved/a/y2)" = y ]
}

verify() {
  cd "$mnt"
  step "after remount"
  [ "$(cat log.txt)" = "line " ]
  [ "$(cat sed.txt)" = "$(printf 'baz\nbar\nbaz')" ]
  [ "$(cat settings.json)" = '{"version": 2}' ]
  [ "$(cat vim.txt)" = "$(printf 'one\nTWO\nthree')" ]
  (cd repo && [ -z "$(git status --porcelain)" ] && git fsck --no-progress 2>&1)
  [ "$(sqlite3 app.db 'PRAGMA integrity_check;')" = ok ]
  [ "$(sqlite3 app.db 'SELECT count(*) FROM t;')" = 1000 ]
  cmp big.bin "$work/big.bin"
  [ "$(cat moved/a/b/x moved/a/y2)" = "$(printf 'x\ny')" ]
  [ "$(readlink pkg/bin/conf-link)" = ../etc/app.conf ] && [ "$(./pkg/bin/run)" = hi ]
  tar cf "$work/again.tar" pkg
  [ "$(tar tvf "$work/pkg.tar" | sort)" = "$(tar tvf "$work/again.tar" | sort)" ]
  [ "$(rsync -a --stats "$work/r/" synced/ | sed -n 's/^Number of regular files transferred: //p')" = 0 ]
  echo "all scenarios intact"
}

"$phase"
