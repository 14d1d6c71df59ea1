#!/usr/bin/env bash
# Installs what the tests need and the machine lacks: staticcheck; the real
# servers the tests start on 127.0.0.1 (versitygw, an S3 gateway; OpenSSH's
# sshd; PostgreSQL for the database dump tests); Chromium, the browser the
# web UI is tested in; and fuse3 for the mount tests. Safe to run again: it
# installs only what is missing.
set -euo pipefail
export PATH="$PATH:$(go env GOPATH)/bin"

if ! command -v staticcheck >/dev/null; then
  echo "installing staticcheck"
  go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
if ! command -v versitygw >/dev/null; then
  echo "installing versitygw (S3 server for tests)"
  GOFLAGS= go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
apt_packages=()
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null; then
  apt_packages+=(openssh-server openssh-client) # SFTP server for tests
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  apt_packages+=(postgresql) # database dump tests
fi
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  apt_packages+=(chromium) # web UI tests
fi
if ! command -v fusermount3 >/dev/null; then
  apt_packages+=(fuse3) # mount tests
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "installing ${apt_packages[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "need root to install them: run 'sudo apt-get install ${apt_packages[*]}'" >&2
    exit 1
  fi
  apt-get update -qq
  # The packages' own services are not wanted: the tests start their servers.
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
  [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
fi
