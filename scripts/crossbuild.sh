#!/usr/bin/env bash
# Builds, vets and compiles the test binaries of RunUp for every system it
# ships for, so that nothing stops building unseen. CI runs it on every
# submission; it needs nothing but Go.
#
#   bash scripts/crossbuild.sh            # all ten targets
#   TARGETS="windows/amd64" bash scripts/crossbuild.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# The ten release targets. 32-bit Linux is not among them: go-fuse does not
# build there.
TARGETS=${TARGETS:-"linux/amd64 linux/arm64 linux/riscv64 linux/ppc64le darwin/amd64 darwin/arm64 freebsd/amd64 freebsd/arm64 windows/amd64 windows/arm64"}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for t in $TARGETS; do
	os=${t%/*} arch=${t#*/}
	echo "== $os/$arch"
	export GOOS=$os GOARCH=$arch
	go build -o "$out/" ./cmd/runup
	go vet ./...
	go test -c -o "$out/tests/" ./... >/dev/null
	rm -rf "$out/tests"
done
echo "== all targets build, vet and compile their tests"
