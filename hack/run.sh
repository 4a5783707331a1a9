#!/usr/bin/env bash
# make run: start the webhook locally over HTTPS with development
# certificates (and the resolver when bin/resolver exists), print curl
# commands to try, and stop everything on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

LISTEN="${WEBHOOK_LISTEN:-127.0.0.1:8443}"
NAMESERVERS="${WEBHOOK_NAMESERVERS:-10.96.0.10}"
RESOLVER_LISTEN="${RESOLVER_LISTEN:-127.0.0.1:5353}"
CERTS=dev-certs

for b in bin/webhook bin/certs; do
  [ -x "$b" ] || { echo "run: $b missing; run 'make build' first" >&2; exit 1; }
done

# The certificate controller, once: creates the CA and the serving
# certificate for 127.0.0.1, localhost and ::1 on the first run, renews them
# when due (or repairs a lost file) on later runs, otherwise leaves them.
bin/certs controller --once --out-dir="$CERTS" --log-level=warn

pids=()
cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  echo "run: stopped"
}
trap cleanup EXIT INT TERM

echo "run: starting webhook on https://$LISTEN (nameservers $NAMESERVERS)"
bin/webhook --listen="$LISTEN" \
  --tls-cert-file="$CERTS/tls.crt" --tls-key-file="$CERTS/tls.key" \
  --nameservers="$NAMESERVERS" --log-level="${WEBHOOK_LOG_LEVEL:-info}" \
  --native-sidecars=on &  # no API server to ask locally
pids+=($!)

if [ -x bin/resolver ]; then
  # The first non-loopback nameserver of this machine is the upstream; with
  # none (e.g. only systemd-resolved's 127.0.0.53) the resolver is skipped.
  upstream=$(awk '$1 == "nameserver" && $2 !~ /^127\./ && $2 != "::1" { print $2; exit }' /etc/resolv.conf 2>/dev/null || true)
  if [ -n "$upstream" ]; then
    case "$upstream" in
      *:*) upstream="[$upstream]:53" ;;
      *) upstream="$upstream:53" ;;
    esac
    echo "run: starting resolver on $RESOLVER_LISTEN (upstream $upstream)"
    bin/resolver --listen="$RESOLVER_LISTEN" --upstream="$upstream" &
    pids+=($!)
  else
    echo "run: no non-loopback nameserver in /etc/resolv.conf; resolver not started"
  fi
else
  echo "run: bin/resolver not built; resolver not started"
fi

# Wait until the webhook answers (at most ~10 s).
for _ in $(seq 1 50); do
  if curl -fsS --cacert "$CERTS/ca.crt" "https://$LISTEN/healthz" >/dev/null 2>&1; then
    break
  fi
  if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "run: the webhook exited; see the log above" >&2
    exit 1
  fi
  sleep 0.2
done

cat <<MSG

run: ready. Try (from $(pwd)):

  curl --cacert $CERTS/ca.crt -H 'Content-Type: application/json' \\
    --data @webhook/testdata/clusterfirst-deployment-pod.json https://$LISTEN/mutate \\
    | jq '.response.patch |= (@base64d | fromjson)'

  curl --cacert $CERTS/ca.crt -H 'Content-Type: application/json' \\
    --data '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"demo","annotations":{"dnsguard.io/mode":"sidecar"}},"spec":{"containers":[{"name":"app","image":"alpine:3.20"}]}}' \\
    'https://$LISTEN/explain?namespace=default' | jq -r '.mode, .reason, .resolvConf'

MSG
if [ -x bin/resolver ] && [ -n "${upstream:-}" ]; then
  echo "  dig @${RESOLVER_LISTEN%:*} -p ${RESOLVER_LISTEN##*:} example.com"
  echo
fi
echo "run: Ctrl-C stops everything."
wait -n "${pids[@]}" || true
