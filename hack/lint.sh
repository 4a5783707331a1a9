#!/usr/bin/env bash
# gofmt and go vet over the module; fails listing what is wrong.
set -euo pipefail
cd "$(dirname "$0")/.."
unformatted=$(find . -name '*.go' -not -path './bin/*' -not -path './.cache/*' -print0 | xargs -0 -r gofmt -l)
if [ -n "$unformatted" ]; then
  echo "gofmt: these files need formatting:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
echo "lint: gofmt and go vet clean"
