#!/usr/bin/env bash
# make fuzz: run every native Go fuzz target in the module for FUZZTIME
# (default 30s) each, one after the other (each fuzzer already uses every
# core). Targets are discovered, not listed here, so a new `func FuzzX` is
# fuzzed without touching this script. `make unit` (go test ./...) runs the
# seed corpora of the same targets; a crash found here is written by Go to
# PKG/testdata/fuzz/FuzzX/ and becomes a regression case once committed.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/lib.sh fuzz

FUZZTIME=${FUZZTIME:-30s}
# Accept a bare number of seconds as well as Go's duration syntax.
[[ "$FUZZTIME" =~ ^[0-9]+$ ]] && FUZZTIME="${FUZZTIME}s"

# Modules: the product and hack/imagebuild (a module of its own, which
# ./... of the product does not reach).
MODULES=(. hack/imagebuild)
log "discovering targets (go test -list '^Fuzz' ./... in ${MODULES[*]})"
# go test -list prints the matching names of a package, then its "ok PKG"
# line; pair each name with the package that follows it.
# A package that does not compile is reported and counted as a failure, but
# the targets of the packages that do compile are still fuzzed.
targets=()
for mod in "${MODULES[@]}"; do
  if ! listing=$(cd "$mod" && go test -list '^Fuzz' ./... 2>&1); then
    fail "listing the targets in $mod: some packages do not build" \
      "$(printf '%s\n' "$listing" | grep -v -e '^Fuzz' -e '^ok[[:space:]]' -e '^?[[:space:]]' || true)"
  fi
  mapfile -t -O "${#targets[@]}" targets < <(printf '%s\n' "$listing" | awk -v mod="$mod" '
    /^Fuzz/ { names[n++] = $1; next }
    /^ok[ \t]/ { for (i = 0; i < n; i++) print mod " " $2 " " names[i]; n = 0 }')
done

[ ${#targets[@]} -gt 0 ] || die "no Fuzz targets found"
log "${#targets[@]} targets, $FUZZTIME each"

for t in "${targets[@]}"; do
  read -r mod pkg name <<<"$t"
  log "$pkg $name ($FUZZTIME)"
  if (cd "$mod" && go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg"); then
    pass "$pkg $name"
  else
    fail "$pkg $name" "crasher under its testdata/fuzz/"
  fi
done
summary
