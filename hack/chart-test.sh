#!/usr/bin/env bash
# chart-test: helm lint and helm template of charts/dnsguard with the default
# values and every charts/dnsguard/ci/*.yaml, then the Go checks of the
# rendered manifests (test/chart, build tag "chart"): among them the real
# binaries' /metrics against every metric the rules and the dashboard query,
# and `promtool check rules` + `promtool test rules` (test/chart/testdata/rules)
# on the rendered PrometheusRule. Needs bin/helm and bin/promtool
# (`make bin/helm bin/promtool` builds them from the Go module proxy).
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/lib.sh chart-test

HELM="${HELM:-$PWD/bin/helm}"
PROMTOOL="${PROMTOOL:-$PWD/bin/promtool}"
CHART=charts/dnsguard
[[ -x "$HELM" ]] || die "$HELM not found; run 'make bin/helm' first"
[[ -x "$PROMTOOL" ]] || die "$PROMTOOL not found; run 'make bin/promtool' first"
export HELM PROMTOOL
exec 3>&1 # lets a check report a line even though its output is captured

log "helm $("$HELM" version --short)"
values=("")
for f in "$CHART"/ci/*.yaml; do values+=("$f"); done
for v in "${values[@]}"; do
  label=${v:-defaults}
  args=()
  [[ -n "$v" ]] && args=(-f "$v")
  check "helm lint --strict ${label}" "$HELM" lint --strict "$CHART" "${args[@]}"
  check "helm template ${label}" "$HELM" template dnsguard "$CHART" --namespace dnsguard "${args[@]}"
done

log "schema rejects a bad value"
check "helm template --set defaultMode=bogus fails" bash -c "! '$HELM' template dnsguard '$CHART' --set defaultMode=bogus"

log "go test -tags chart ./test/chart/..."
gotest() {
  local out
  out=$(mktemp)
  go test -count=1 -tags chart -v ./test/chart/... >"$out" 2>&1
  local rc=$?
  echo "     go checks: $(grep -cE '^\s*--- PASS' "$out") passed, $(grep -cE '^\s*--- FAIL' "$out") failed (tests and subtests)" >&3
  # With -v every t.Log prints too: show them only when something failed.
  ((rc == 0)) || grep -E '^\s*--- FAIL|_test.go:[0-9]+:' "$out" | head -60 || true
  rm -f "$out"
  return "$rc"
}
check "go test -tags chart" gotest

summary
