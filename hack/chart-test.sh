#!/usr/bin/env bash
# chart-test: helm lint and helm template of charts/dnsguard with the default
# values and every charts/dnsguard/ci/*.yaml, then the Go checks of the
# rendered manifests (test/chart, build tag "chart"). Needs bin/helm
# (`make bin/helm` builds it from the Go module proxy).
set -euo pipefail
cd "$(dirname "$0")/.."

HELM="${HELM:-$PWD/bin/helm}"
CHART=charts/dnsguard
if [[ ! -x "$HELM" ]]; then
  echo "chart-test: $HELM not found; run 'make bin/helm' first" >&2
  exit 1
fi
export HELM
exec 3>&1 # lets a step report a line even though its output is captured

pass=0
fail=0
failed=()
step() { # step NAME CMD...: run, count, keep going
  local name=$1; shift
  local log
  log=$(mktemp)
  if "$@" >"$log" 2>&1; then
    pass=$((pass + 1)); echo "ok   $name"
  else
    fail=$((fail + 1)); failed+=("$name"); echo "FAIL $name"; sed 's/^/     /' "$log" | tail -40
  fi
  rm -f "$log"
}

echo "== helm $("$HELM" version --short)"
values=("")
for f in "$CHART"/ci/*.yaml; do values+=("$f"); done
for v in "${values[@]}"; do
  label=${v:-defaults}
  args=()
  [[ -n "$v" ]] && args=(-f "$v")
  step "helm lint --strict ${label}" "$HELM" lint --strict "$CHART" "${args[@]}"
  step "helm template ${label}" "$HELM" template dnsguard "$CHART" --namespace dnsguard "${args[@]}"
done

echo "== schema rejects a bad value"
step "helm template --set defaultMode=bogus fails" bash -c "! '$HELM' template dnsguard '$CHART' --set defaultMode=bogus"

echo "== go test -tags chart ./test/chart/..."
gotest() {
  local log
  log=$(mktemp)
  go test -count=1 -tags chart -v ./test/chart/... >"$log" 2>&1
  local rc=$?
  echo "     go checks: $(grep -cE '^\s*--- PASS' "$log") passed, $(grep -cE '^\s*--- FAIL' "$log") failed (tests and subtests)" >&3
  grep -E '^\s*--- FAIL|chart_test.go:[0-9]+:' "$log" | head -40 || true
  rm -f "$log"
  return "$rc"
}
step "go test -tags chart" gotest

echo "chart-test: ${pass} passed, ${fail} failed"
if ((fail > 0)); then
  printf '  failed: %s\n' "${failed[@]}"
  exit 1
fi
