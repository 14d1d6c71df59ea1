#!/usr/bin/env bash
# Runs every check and test RunUp has: formatting, vet, staticcheck, unit
# and end-to-end tests with the race detector (including the remote-storage
# tests against real versitygw and sshd servers), and a short run of each
# fuzz target. FUZZTIME=1m scripts/test.sh fuzzes longer.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:$(go env GOPATH)/bin"
bash scripts/install-test-deps.sh

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted"
  exit 1
fi
echo "== go vet"
go vet ./...
echo "== staticcheck"
staticcheck ./...
echo "== go test -race"
go test -race -count=1 -timeout 20m ./...
echo "== the restore of macOS, FreeBSD and Windows (os.Root), run here"
go test -race -count=1 -tags runup_osroot ./internal/restorer
echo "== fuzz (${FUZZTIME:=8s} each)"
for target in \
  ./internal/pack:FuzzReadHeader ./internal/pack:FuzzParseHeader \
  ./internal/index:FuzzDecode ./internal/tree:FuzzDecode \
  ./internal/config:FuzzParse ./internal/crypto:FuzzParseKeyFile \
  ./internal/repo:FuzzDecodeJob ./internal/repo:FuzzDecompress \
  ./internal/repo:FuzzDecodeGroup ./internal/repo:FuzzOpen; do
  pkg=${target%%:*}
  fn=${target##*:}
  log=$(mktemp)
  # A failing input is saved under testdata/fuzz and fails every later run.
  # A failure without one is the fuzzing engine itself (a worker lost under
  # load): say so and try once more.
  if ! go test -run='^$' -fuzz="^$fn\$" -fuzztime="$FUZZTIME" "$pkg" >"$log" 2>&1; then
    tail -20 "$log"
    if [ -n "$(git status --porcelain -- "$pkg/testdata/fuzz" 2>/dev/null)" ]; then
      echo "FAIL $pkg $fn: a failing input was saved under $pkg/testdata/fuzz/$fn"
      exit 1
    fi
    echo "retrying $pkg $fn once: the run failed without a failing input"
    go test -run='^$' -fuzz="^$fn\$" -fuzztime="$FUZZTIME" "$pkg" >"$log" 2>&1 || { tail -20 "$log"; exit 1; }
  fi
  rm -f "$log"
  echo "ok  $pkg $fn"
done
echo "all checks passed"
