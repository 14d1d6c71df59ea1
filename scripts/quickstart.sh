#!/usr/bin/env bash
# Builds RunUp and runs a backup and a restore on the local default
# repository (.runup/ beside runup.yaml), in a throwaway project.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
go build -o "$top/bin/runup" "$top/cmd/runup"
runup="$top/bin/runup"
demo=$(mktemp -d "${TMPDIR:-/tmp}/runup-demo.XXXXXX")
trap 'rm -rf "$demo"' EXIT
mkdir -p "$demo/app/src" "$demo/docs"
cp -r "$top/internal" "$demo/app/src/"
echo "RunUp quickstart" > "$demo/docs/README.txt"
cat > "$demo/runup.yaml" <<'YAML'
version: '1'
project:
  app:
    include:
      - './app'
  docs:
    include:
      - './docs'
YAML
cd "$demo"
"$runup" init
"$runup" backup
echo "// a change" >> app/src/internal/repo/repo.go
"$runup" backup app
"$runup" restore -l restored -f
diff -r app restored/app
diff -r docs restored/docs
echo "Quickstart OK: backed up, changed, backed up again, restored and compared ($demo)."
