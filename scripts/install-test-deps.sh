#!/usr/bin/env bash
# Installs what the tests need and the machine lacks: staticcheck, and the
# real servers the remote-storage tests start on 127.0.0.1 (versitygw, an
# S3 gateway; OpenSSH's sshd). Safe to run again: it installs only what is
# missing.
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
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null; then
  echo "installing openssh-server (SFTP server for tests)"
  if [ "$(id -u)" -ne 0 ]; then
    echo "need root to install openssh-server: run 'sudo apt-get install openssh-server'" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null
fi
