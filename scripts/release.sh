#!/usr/bin/env bash
# Builds the release binaries into dist/, each stamped with the version and
# commit ('runup --version' shows them), with a SHA256SUMS file.
#
#   bash scripts/release.sh 1.2.0          # version; default: git describe
#   TARGETS="linux/amd64" bash scripts/release.sh 1.2.0
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then commit="$commit+changes"; fi
TARGETS=${TARGETS:-"linux/amd64 linux/arm64 linux/riscv64 linux/ppc64le darwin/amd64 darwin/arm64 freebsd/amd64 freebsd/arm64 windows/amd64 windows/arm64"}
pkg=github.com/runup/runup/internal/cli
rm -rf dist && mkdir dist
for t in $TARGETS; do
	os=${t%/*} arch=${t#*/}
	name=runup-$version-$os-$arch
	[ "$os" = windows ] && name=$name.exe
	echo "== $name"
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X $pkg.Version=$version -X $pkg.Commit=$commit" -o "dist/$name" ./cmd/runup
done
(cd dist && sha256sum runup-* > SHA256SUMS)
echo "== dist/: $(ls dist | wc -l) files"
