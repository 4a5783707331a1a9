#!/usr/bin/env bash
# curl-driven tests of the real dnsguard webhook binary over HTTPS.
#
# Starts bin/webhook on free loopback ports with development certificates
# from bin/certs:
#   default  the configuration webhook/golden_test.go runs with (flags)
#   sidecar  --default-mode=sidecar (flags; certificate files laid out like a
#            Kubernetes Secret volume, rotated during the run)
#   config   everything from a --config YAML file
#   one per corpus case with a <case>.config.yaml (that file, and the flags
#            golden_test.go's testConfig sets)
# then posts every AdmissionReview of the fixture corpus (webhook/testdata,
# shared with the Go golden tests) with curl --cacert and checks with jq: the
# envelope, the decoded patch applied to the original object
# (test/curl/helper, evanphx/json-patch) equal to <case>.golden.json, the
# warnings equal to <case>.warnings.golden.txt, and idempotency (the patched
# pod sent again as a new review gets no patch). Then /explain
# (test/curl/explain.checks), the HTTP error paths (405/415/400/413/404,
# server still alive after each), TLS (plain HTTP and TLS 1.1 refused),
# certificate rotation, /metrics, bad flags, SIGTERM.
#
# Usage: [WEBHOOK=BINARY] test/curl/run.sh [-v] [CASE-GLOB]   (e.g. run.sh 'sidecar-*'; -v prints
# the differences of failed cases). KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/test/curl
CORPUS=$ROOT/webhook/testdata

VERBOSE=0
if [[ ${1:-} == -v ]]; then VERBOSE=1; shift; fi
ONLY=${1:-*}

# golden_test.go's testConfig: the defaults and this cluster DNS.
CLUSTER_DNS=10.96.0.10
SIDECAR_IMAGE=registry.example.com/dnsguard/resolver:v0.1.0
CONFIG_IMAGE=registry.example.com/dnsguard/resolver:from-config

for tool in curl jq go base64; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool (run make deps)" >&2; exit 1; }
done

. "$ROOT/hack/lib.sh" curl-test
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dnsguard-curl.XXXXXX")
PIDS=()

cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      kill "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    fi
  done
  if [[ $LIB_FAILED -gt 0 || $rc -ne 0 || ${KEEP:-0} == 1 ]]; then
    echo "work directory kept: $WORK (webhook logs: $WORK/*.log)"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- binaries
build_if_missing() {
  local name=$1
  if [[ ! -x bin/$name ]]; then
    log "building bin/$name"
    mkdir -p bin
    CGO_ENABLED=0 go build -o "bin/$name" "./cmd/$name"
  fi
}
build_if_missing certs
# WEBHOOK=/path/to/binary tests another build of the webhook.
if [[ -z ${WEBHOOK:-} ]]; then
  build_if_missing webhook
  WEBHOOK=$ROOT/bin/webhook
fi
log "building the test helper"
go build -o "$WORK/helper" ./test/curl/helper
HELPER=$WORK/helper

# ---------------------------------------------------------------- certificates
log "development certificates"
bin/certs controller --once --out-dir="$WORK/pki" --hosts=127.0.0.1,localhost --log-level=warn
CA=$WORK/pki/ca.crt

# The sidecar instance reads its key pair through a Kubernetes-style Secret
# volume: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>/ (atomically
# swapped on rotation by the kubelet).
SECRET=$WORK/secret
mkdir -p "$SECRET/..gen1"
cp "$WORK/pki/tls.crt" "$WORK/pki/tls.key" "$SECRET/..gen1/"
ln -s ..gen1 "$SECRET/..data"
ln -s ..data/tls.crt "$SECRET/tls.crt"
ln -s ..data/tls.key "$SECRET/tls.key"

# ---------------------------------------------------------------- instances
declare -A PORT PID
start() { # NAME ARGS...
  local name=$1
  shift
  # A short drain: the SIGTERM checks below still go through ServeDrained
  # but finish well within their 10 s.
  "$WEBHOOK" --shutdown-delay=1s "$@" >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
  PIDS+=($!)
}
wait_healthy() { # NAME
  local name=$1 i
  for i in $(seq 1 300); do
    if curl -fsS --max-time 2 --cacert "$CA" "https://127.0.0.1:${PORT[$name]}/healthz" >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "${PID[$name]}" 2>/dev/null; then
      echo "webhook '$name' exited during start; its log:" >&2
      cat "$WORK/$name.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "webhook '$name' not healthy after 30s; its log:" >&2
  cat "$WORK/$name.log" >&2
  return 1
}

PORT[default]=$("$HELPER" freeport)
start default --listen="127.0.0.1:${PORT[default]}" \
  --tls-cert-file="$WORK/pki/tls.crt" --tls-key-file="$WORK/pki/tls.key" \
  --nameservers=$CLUSTER_DNS --native-sidecars=on

PORT[sidecar]=$("$HELPER" freeport)
start sidecar --listen="127.0.0.1:${PORT[sidecar]}" \
  --tls-cert-file="$SECRET/tls.crt" --tls-key-file="$SECRET/tls.key" \
  --nameservers=$CLUSTER_DNS --cluster-domain=cluster.local \
  --default-mode=sidecar --sidecar-image=$SIDECAR_IMAGE --native-sidecars=on

PORT[config]=$("$HELPER" freeport)
cat >"$WORK/config.yaml" <<EOF
# Every setting from the file, none from flags.
listen: 127.0.0.1:${PORT[config]}
tlsCertFile: $WORK/pki/tls.crt
tlsKeyFile: $WORK/pki/tls.key
nameservers:
  - 10.96.0.10
  - 10.96.0.11
clusterDomain: cluster.example
defaultMode: sidecar
nativeSidecars: "on"
dnsOptions:
  - name: ndots
    value: "3"
  - name: timeout
    value: "1"
  - name: attempts
    value: "2"
  - name: single-request-reopen
sidecar:
  image: $CONFIG_IMAGE
  fallback: false
extraSearchDomains:
  - ec2.internal
EOF
start config --config="$WORK/config.yaml"

log "waiting for /healthz"
declare -A DOWN
for n in default sidecar config; do
  if wait_healthy "$n"; then
    pass "webhook '$n' starts and serves /healthz on 127.0.0.1:${PORT[$n]}"
  else
    fail "webhook '$n' starts and serves /healthz on 127.0.0.1:${PORT[$n]}" "its cases fail without being run"
    DOWN[$n]=1
  fi
done
if [[ -n ${DOWN[default]:-} ]]; then
  die "the default instance is needed for everything else; giving up"
fi

url() { echo "https://127.0.0.1:${PORT[$1]}$2"; }
alive() { # NAME: /healthz answers 200 over TLS
  [[ $(curl -sS --max-time 5 --cacert "$CA" -o /dev/null -w '%{http_code}' "$(url "$1" /healthz)") == 200 ]]
}
# post NAME PATH BODYFILE OUTFILE [curl args...]: prints the HTTP status.
post() {
  local name=$1 path=$2 body=$3 out=$4
  shift 4
  curl -sS --max-time 20 --cacert "$CA" -H 'Content-Type: application/json' \
    --data-binary @"$body" -o "$out" -w '%{http_code}' "$@" "$(url "$name" "$path")" || true
}

REVIEWS_DEFAULT=0 # /mutate reviews answered 200 by the default instance

# ---------------------------------------------------------------- corpus
# corpus_case CASE INSTANCE: posts webhook/testdata/CASE.json to /mutate and
# compares the answer with the case's goldens, as webhook/golden_test.go
# does in process: the same files, here over HTTPS to the real binary. The
# checks are review.jq's, a jq run per step. (Checked once, with these
# checks: ndots 4 written into alpine-image-musl-warning.golden.json and a
# line added to its warnings golden failed both comparisons, the diff shown
# with -v; an answer with apiVersion v1beta1, another UID, allowed false,
# patchType Merge and unpadded base64, fed to envelope, failed all five
# envelope checks; a re-review answered with the patch "[]" failed again.)
corpus_case() {
  local case=$1 target=$2 base=$CORPUS/$1 d=$WORK/cases/$1 tag="$1 [$2]" code uid2 patched=false warn
  mkdir -p "$d"
  code=$(post "$target" /mutate "$base.json" "$d/resp.json")
  if [[ $code != 200 ]] || ! jq -r -L "$HERE" --slurpfile review "$base.json" \
    'include "review"; envelope($review[0])' "$d/resp.json" >"$d/envelope.tsv" 2>"$d/jq.err"; then
    fail "$tag: HTTP 200 with a JSON body" "got HTTP $code: $(head -c 300 "$d/resp.json" 2>/dev/null)" "$(head -c 300 "$d/jq.err")"
    return
  fi
  pass "$tag: HTTP 200 with a JSON body"
  if [[ $target == default ]]; then REVIEWS_DEFAULT=$((REVIEWS_DEFAULT + 1)); fi
  review_lines "$tag" "$d" <"$d/envelope.tsv"

  # The patch applied to the original object (null for a DELETE) is the golden.
  cp "$d/orig.json" "$d/pod.json"
  if [[ $(<"$d/patch.json") != "[]" ]]; then
    patched=true
    if ! "$HELPER" apply "$d/orig.json" "$d/patch.json" >"$d/pod.json" 2>"$d/apply.err"; then
      fail "$tag: patch applies to the original object" "$(cat "$d/apply.err")"
      return
    fi
  fi
  warn=(--argjson warnings null)
  [[ ! -e $base.warnings.golden.txt ]] || warn=(--rawfile warnings "$base.warnings.golden.txt")
  read -r uid2 </proc/sys/kernel/random/uuid
  if ! jq -n -r -L "$HERE" --slurpfile review "$base.json" --slurpfile response "$d/resp.json" \
    --slurpfile pod "$d/pod.json" --slurpfile golden "$base.golden.json" "${warn[@]}" \
    --arg case "$case" --arg uid "$uid2" --arg dir "$d" --argjson patched "$patched" \
    'include "review"; {review: $review[0], response: $response[0], pod: $pod[0], patched: $patched} | outcome($golden[0]; $warnings; $case; $uid; $dir)' \
    >"$d/outcome.tsv" 2>"$d/jq.err"; then
    fail "$tag: compare with $case.golden.json" "$(head -c 300 "$d/jq.err")"
    return
  fi
  review_lines "$tag" "$d" <"$d/outcome.tsv"
  if grep -q "^FAIL	patched object" "$d/outcome.tsv"; then
    diff <(jq -S . "$base.golden.json") <(jq -S . "$d/pod.json") >"$d/golden.diff" || true
    [[ $VERBOSE == 0 ]] || sed 's/^/      /' "$d/golden.diff" | head -40
  fi

  # Idempotency: the patched pod, as a new review, must come back unpatched.
  if [[ $patched == true ]]; then
    code=$(post "$target" /mutate "$d/again.json" "$d/again-resp.json")
    if [[ $target == default && $code == 200 ]]; then REVIEWS_DEFAULT=$((REVIEWS_DEFAULT + 1)); fi
    jq -r -L "$HERE" --arg uid "$uid2" 'include "review"; again($uid)' "$d/again-resp.json" >"$d/again.tsv" 2>"$d/jq.err" ||
      echo "FAIL	idempotent (patched pod re-reviewed: allowed, own UID, no patch)	HTTP $code: $(head -c 200 "$d/again-resp.json")" >"$d/again.tsv"
    review_lines "$tag" "$d" <"$d/again.tsv"
  fi
}

# review_lines TAG DIR: counts review.jq's PASS and FAIL lines; its NAME
# lines go to DIR/name.json.
review_lines() {
  local tag=$1 d=$2 mark desc detail
  while IFS=$'\t' read -r mark desc detail; do
    case $mark in
      PASS) pass "$tag: $desc" ;;
      FAIL) fail "$tag: $desc" "$detail" ;;
      *) printf '%s\n' "$desc" >"$d/${mark,,}.json" ;;
    esac
  done
}

# A case with <case>.config.yaml gets an instance of its own: that file, plus
# the nameserver and native sidecars golden_test.go's testConfig sets when
# the file names none.
corpus_instance() { # CASE
  local case=$1 cfg=$CORPUS/$1.config.yaml args=()
  PORT[$case]=$("$HELPER" freeport)
  grep -q '^nameservers:' "$cfg" || args+=("--nameservers=$CLUSTER_DNS")
  grep -q '^nativeSidecars:' "$cfg" || args+=("--native-sidecars=on")
  start "$case" --config="$cfg" --listen="127.0.0.1:${PORT[$case]}" \
    --tls-cert-file="$WORK/pki/tls.crt" --tls-key-file="$WORK/pki/tls.key" "${args[@]}"
  wait_healthy "$case"
}
stop_instance() { # NAME
  kill -TERM "${PID[$1]}" 2>/dev/null || true
  wait "${PID[$1]}" 2>/dev/null || true
}

log "fixture corpus (webhook/testdata)"
ncases=0
shopt -s nullglob
for f in "$CORPUS"/$ONLY.json; do
  case $f in *.golden.json) continue ;; esac
  c=$(basename "$f" .json)
  ncases=$((ncases + 1))
  if [[ -e $CORPUS/$c.config.yaml ]]; then
    if corpus_instance "$c"; then
      corpus_case "$c" "$c"
    else
      fail "$c: webhook with $c.config.yaml starts"
    fi
    stop_instance "$c"
  else
    corpus_case "$c" default
  fi
done
shopt -u nullglob
if [[ $ONLY == '*' ]]; then
  check "corpus: every review of webhook/testdata was sent ($ncases)" test "$ncases" -ge 80
else
  check "corpus: some review matches '$ONLY' ($ncases)" test "$ncases" -gt 0
fi

# ---------------------------------------------------------------- /explain
# explain.checks: "@explain CASE INSTANCE NAMESPACE|-" then lines
# "label :: jq expression" over {orig, response, patch, pod} (lib.jq).
explain_case() { # CASE INSTANCE NAMESPACE CHECKS-FILE
  local case=$1 target=$2 qns=$3 checks=$4 d=$WORK/explain/$1-$2 path=/explain code line label expr
  local tag="/explain $case [$target${qns:+ ?namespace=$qns}]"
  mkdir -p "$d"
  [[ -z $qns ]] || path="/explain?namespace=$qns"
  jq '.request.object' "$CORPUS/$case.json" >"$d/orig.json"
  code=$(post "$target" "$path" "$d/orig.json" "$d/resp.json")
  if [[ $code != 200 ]] || ! jq -e . "$d/resp.json" >/dev/null 2>&1; then
    fail "$tag: HTTP 200 with a JSON body" "got HTTP $code: $(head -c 300 "$d/resp.json" 2>/dev/null)"
    return
  fi
  pass "$tag: HTTP 200 with a JSON body"
  check "$tag: answer has mode, reason, patch, resolvConf" \
    jq -e '(.mode | IN("dnsconfig", "sidecar", "off")) and (.reason | type == "string" and length > 0) and (.patch == null or (.patch | type == "array")) and (.resolvConf | type == "string")' "$d/resp.json"
  jq '.patch // []' "$d/resp.json" >"$d/patch.json"
  cp "$d/orig.json" "$d/pod.json"
  if [[ $(jq 'length' "$d/patch.json") -gt 0 ]] && ! "$HELPER" apply "$d/orig.json" "$d/patch.json" >"$d/pod.json" 2>"$d/apply.err"; then
    fail "$tag: explained patch applies to the pod" "$(cat "$d/apply.err")"
  fi
  jq -n --slurpfile orig "$d/orig.json" --slurpfile response "$d/resp.json" --slurpfile patch "$d/patch.json" \
    --slurpfile pod "$d/pod.json" '{orig: $orig[0], response: $response[0], patch: $patch[0], pod: $pod[0]}' >"$d/doc.json"
  while IFS= read -r line; do
    label=$(sed -E 's/[[:space:]]+$//' <<<"${line%%::*}")
    expr=${line#*::}
    if jq -e -L "$HERE" "include \"lib\"; ($expr)" "$d/doc.json" >/dev/null 2>"$d/jq.err"; then
      pass "$tag: $label"
    else
      fail "$tag: $label" "expected:$expr$([[ -s $d/jq.err ]] && echo " (jq: $(head -c 200 "$d/jq.err"))")"
    fi
  done <"$checks"
}

log "/explain (test/curl/explain.checks)"
mkdir -p "$WORK/explain"
ex_case="" ex_n=0
while IFS= read -r line || [[ -n $line ]]; do
  [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
  if [[ $line == "@explain "* ]]; then
    ex_n=$((ex_n + 1))
    read -r _ ex_case ex_target ex_ns <<<"$line"
    [[ $ex_ns != - ]] || ex_ns=""
    printf '%s\t%s\t%s\n' "$ex_case" "$ex_target" "$ex_ns" >"$WORK/explain/$ex_n.head"
    : >"$WORK/explain/$ex_n.checks"
  else
    printf '%s\n' "$line" >>"$WORK/explain/$ex_n.checks"
  fi
done <"$HERE/explain.checks"
for i in $(seq 1 "$ex_n"); do
  IFS=$'\t' read -r ex_case ex_target ex_ns <"$WORK/explain/$i.head"
  explain_case "$ex_case" "$ex_target" "$ex_ns" "$WORK/explain/$i.checks"
done

# ---------------------------------------------------------------- certificate rotation
# Rotate the sidecar instance's Secret-style files to a certificate from a new
# CA the way the kubelet does (new timestamped dir, atomic ..data swap) and
# look again at the end of the run.
log "rotating the sidecar instance's certificate (Secret-volume style)"
bin/certs controller --once --out-dir="$WORK/pki2" --hosts=127.0.0.1,localhost --log-level=warn
mkdir -p "$SECRET/..gen2"
cp "$WORK/pki2/tls.crt" "$WORK/pki2/tls.key" "$SECRET/..gen2/"
ln -s ..gen2 "$SECRET/..data_tmp"
mv -T "$SECRET/..data_tmp" "$SECRET/..data"
ROTATED_AT=$(date +%s)

# ---------------------------------------------------------------- HTTP errors
log "HTTP error paths (default instance)"
REQ01=$CORPUS/replicaset-pod-generatename.json
# http_case LABEL WANT-CODE BODY-REGEX CURL-ARGS... (URL last)
http_case() {
  local label=$1 want=$2 re=$3
  shift 3
  local out=$WORK/http.out code
  : >"$out"
  code=$(curl -sS --max-time 30 --cacert "$CA" -o "$out" -w '%{http_code}' "$@" 2>"$WORK/http.err" || true)
  if [[ $code == "$want" ]]; then pass "HTTP $label -> $want"; else fail "HTTP $label -> $want" "got $code: $(head -c 200 "$out")"; fi
  if [[ -n $re ]]; then
    if grep -Eqi -- "$re" "$out"; then
      pass "HTTP $label: error body says what was wrong (/$re/)"
    else
      fail "HTTP $label: error body says what was wrong (/$re/)" "body: $(head -c 200 "$out")"
    fi
  fi
  check "HTTP $label: server still alive afterwards" alive default
}
JSON=(-H 'Content-Type: application/json')
http_case "GET /mutate" 405 'method|POST' "$(url default /mutate)"
http_case "PUT /mutate" 405 'method|POST' -X PUT "${JSON[@]}" --data-binary @"$REQ01" "$(url default /mutate)"
http_case "GET /explain" 405 'method|POST' "$(url default /explain)"
http_case "POST /mutate text/plain" 415 'content.?type|json' -H 'Content-Type: text/plain' --data-binary @"$REQ01" "$(url default /mutate)"
http_case "POST /mutate form-encoded (curl default type)" 415 'content.?type|json' --data-binary @"$REQ01" "$(url default /mutate)"
http_case "POST /mutate empty body" 400 'empty|body' "${JSON[@]}" -X POST "$(url default /mutate)"
printf '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"0b2d5a9e' >"$WORK/truncated.json"
http_case "POST /mutate truncated JSON" 400 'json|decod|pars|malformed|invalid|unexpected|EOF' "${JSON[@]}" --data-binary @"$WORK/truncated.json" "$(url default /mutate)"
http_case "POST /mutate not JSON" 400 'json|decod|pars|malformed|invalid|unexpected|character' "${JSON[@]}" --data-binary 'pods are great' "$(url default /mutate)"
http_case "POST /mutate review without request" 400 'request' "${JSON[@]}" --data-binary '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}' "$(url default /mutate)"
# 16 MiB: far above "a few MiB" (an API server request body is capped at 3 MiB;
# a review carries object and oldObject); built as one JSON document so only
# the size is wrong with it.
huge_line=$(jq -c '.request.object.metadata.annotations = {"example.com/padding": "@@PAD@@"}' "$REQ01")
{
  printf '%s' "${huge_line%%@@PAD@@*}"
  head -c $((16 * 1024 * 1024)) /dev/zero | tr '\0' 'a'
  printf '%s' "${huge_line#*@@PAD@@}"
} >"$WORK/huge.json"
http_case "POST /mutate 16 MiB body" 413 'large|limit|size|bytes|exceed|too' "${JSON[@]}" --data-binary @"$WORK/huge.json" "$(url default /mutate)"
rm -f "$WORK/huge.json"
# A big but legal pod (1 MiB of env, under etcd's 1.5 MiB object limit) is
# still reviewed normally.
big_line=$(jq -c '.request.object.spec.containers[0].env = [{"name": "BLOB", "value": "@@PAD@@"}]' "$REQ01")
{
  printf '%s' "${big_line%%@@PAD@@*}"
  head -c $((1024 * 1024)) /dev/zero | tr '\0' 'b'
  printf '%s' "${big_line#*@@PAD@@}"
} >"$WORK/big.json"
code=$(post default /mutate "$WORK/big.json" "$WORK/big.out")
check "HTTP POST /mutate 1 MiB pod -> 200 and patched (HTTP $code)" \
  jq -e '.response.allowed == true and .response.patchType == "JSONPatch"' "$WORK/big.out"
if [[ $code == 200 ]]; then REVIEWS_DEFAULT=$((REVIEWS_DEFAULT + 1)); fi
http_case "POST /explain empty body" 400 'empty|body' "${JSON[@]}" -X POST "$(url default /explain)"
http_case "POST /explain not JSON" 400 'json|decod|pars|malformed|invalid|unexpected|character' "${JSON[@]}" --data-binary 'nope' "$(url default /explain)"
http_case "GET /no-such-path" 404 '' "$(url default /no-such-path)"
http_case "POST /no-such-path" 404 '' "${JSON[@]}" --data-binary @"$REQ01" "$(url default /mutate-pods)"
http_case "GET /readyz" 200 '' "$(url default /readyz)"
# A charset parameter is still application/json.
code=$(curl -sS --max-time 20 --cacert "$CA" -H 'Content-Type: application/json; charset=utf-8' \
  --data-binary @"$REQ01" -o "$WORK/charset.json" -w '%{http_code}' "$(url default /mutate)" || true)
check "HTTP POST /mutate 'application/json; charset=utf-8' -> 200 review" \
  jq -e '.response.uid == "0b2d5a9e-6f1c-4d3a-9a51-3c8e1f7b2a01"' "$WORK/charset.json"
if [[ $code == 200 ]]; then REVIEWS_DEFAULT=$((REVIEWS_DEFAULT + 1)); fi

# ---------------------------------------------------------------- concurrency
log "40 reviews, 8 at a time"
mkdir -p "$WORK/conc"
for i in $(seq 1 40); do
  jq --arg uid "c0ffee00-0000-4000-8000-$(printf '%012d' "$i")" '.request.uid = $uid' "$REQ01" >"$WORK/conc/$i.json"
done
seq 1 40 | xargs -P 8 -I{} sh -c 'curl -sS --max-time 20 --cacert "$1" -H "Content-Type: application/json" --data-binary @"$2/{}.json" -o "$2/{}.out" "$3" || true' _ "$CA" "$WORK/conc" "$(url default /mutate)"
conc_ok=0
for i in $(seq 1 40); do
  if jq -e --arg uid "c0ffee00-0000-4000-8000-$(printf '%012d' "$i")" \
    '.response.uid == $uid and .response.allowed == true and .response.patchType == "JSONPatch"' "$WORK/conc/$i.out" >/dev/null 2>&1; then
    conc_ok=$((conc_ok + 1))
  fi
done
REVIEWS_DEFAULT=$((REVIEWS_DEFAULT + conc_ok))
check "concurrent: 40/40 reviews answered with their own UID and a patch (got $conc_ok)" test "$conc_ok" -eq 40

# ---------------------------------------------------------------- TLS
log "TLS"
code=$(curl -sS --max-time 5 -o "$WORK/plain.out" -w '%{http_code}' "http://127.0.0.1:${PORT[default]}/healthz" 2>/dev/null || true)
check "TLS: plain HTTP /healthz is not served (got HTTP ${code:-none})" test "$code" != 200
code=$(curl -sS --max-time 5 -o "$WORK/plain.out" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$REQ01" "http://127.0.0.1:${PORT[default]}/mutate" 2>/dev/null || true)
check "TLS: plain HTTP /mutate gets no review (got HTTP ${code:-none})" \
  bash -c '[[ $1 != 200 ]] && ! jq -e .response "$2" >/dev/null 2>&1' _ "$code" "$WORK/plain.out"
check "TLS: curl --tlsv1.2 --tls-max 1.2 accepted (control)" \
  curl -fsS --max-time 5 --cacert "$CA" --tlsv1.2 --tls-max 1.2 "$(url default /healthz)"
check "TLS: curl --tlsv1.3 accepted" curl -fsS --max-time 5 --cacert "$CA" --tlsv1.3 "$(url default /healthz)"
check "TLS: curl --tls-max 1.1 refused" \
  bash -c '! curl -fsS --max-time 5 --cacert "$1" --tlsv1 --tls-max 1.1 "$2"' _ "$CA" "$(url default /healthz)"
# curl's OpenSSL may refuse TLS 1.1 itself; a Go client really offers 1.0-1.1,
# so a protocol-version alert shows the server refused.
if "$HELPER" tls "127.0.0.1:${PORT[default]}" "$CA" 1.0 1.1 >"$WORK/tls11.out" 2>&1; then
  fail "TLS: server refuses a TLS 1.0-1.1 handshake" "negotiated $(cat "$WORK/tls11.out")"
elif grep -qi 'protocol version' "$WORK/tls11.out"; then
  pass "TLS: server refuses a TLS 1.0-1.1 handshake (protocol version alert)"
else
  fail "TLS: server refuses a TLS 1.0-1.1 handshake (protocol version alert)" "$(cat "$WORK/tls11.out")"
fi
check "TLS: Go client TLS 1.2 handshake (control)" "$HELPER" tls "127.0.0.1:${PORT[default]}" "$CA" 1.2 1.2
check "TLS: certificate valid for the name localhost" \
  curl -fsS --max-time 5 --cacert "$CA" --resolve "localhost:${PORT[default]}:127.0.0.1" "https://localhost:${PORT[default]}/healthz"
check "TLS: a different CA is not trusted (certificate really verified)" \
  bash -c '! curl -fsS --max-time 5 --cacert "$1" "$2"' _ "$WORK/pki2/ca.crt" "$(url default /healthz)"

# ---------------------------------------------------------------- metrics
# metrics NAME OUT: "series value" for every dnsguard_webhook_ sample whose
# metric family is a counter or gauge (histogram buckets excluded).
metrics() {
  curl -fsS --max-time 5 --cacert "$CA" "$(url "$1" /metrics)" >"$2.raw"
  awk '
    /^# TYPE / { type[$3] = $4; next }
    /^#/ || NF < 2 { next }
    {
      name = $1; sub(/\{.*/, "", name)
      if (name !~ /^dnsguard_webhook_/) next
      fam = name
      if (!(fam in type)) { f2 = fam; sub(/_(total|created)$/, "", f2); if (f2 in type) fam = f2 }
      if (type[fam] == "counter" || type[fam] == "gauge" || type[fam] == "untyped" || type[fam] == "") {
        val = $NF; series = substr($0, 1, length($0) - length(val)); sub(/[ \t]+$/, "", series)
        print type[fam] "\t" series "\t" val
      }
    }' "$2.raw" | sort >"$2"
}
counter_sum() { awk -F'\t' '$1 == "counter" { s += $3 } END { printf "%d\n", s }' "$1"; }
changed() { # A B: series whose value differs from A to B (or is new in B)
  awk -F"\t" 'NR == FNR { a[$2] = $3; next } !($2 in a) || a[$2] != $3 { print $2 }' "$1" "$2" | sort -u
}

log "/metrics"
metrics default "$WORK/m-final"
check "metrics: dnsguard_webhook_ series exported" grep -q . "$WORK/m-final"
check "metrics: a dnsguard_webhook_ latency histogram exists" grep -Eq '^# TYPE dnsguard_webhook_[a-z_]+ histogram' "$WORK/m-final.raw"
total=$(counter_sum "$WORK/m-final")
# Every review is counted at least once in "reviews by result and mode".
check "metrics: dnsguard_webhook_ counters sum ($total) >= reviews answered ($REVIEWS_DEFAULT)" test "$total" -ge "$REVIEWS_DEFAULT"
check "metrics: a counter has a mode label" grep -Eq '^counter	dnsguard_webhook_[a-z_]+\{[^}]*mode="' "$WORK/m-final"

# An object the webhook cannot understand must move a metric of its own:
# compare the series it changes with those two understood, unpatched reviews
# and a patched one change.
metrics default "$WORK/m-a"
for f in configmap-with-mode-annotation-skip mode-off-annotation-skip replicaset-pod-generatename; do
  post default /mutate "$CORPUS/$f.json" /dev/null >/dev/null
done
metrics default "$WORK/m-b"
post default /mutate "$CORPUS/pod-labels-string-undecodable.json" /dev/null >/dev/null
metrics default "$WORK/m-c"
changed "$WORK/m-a" "$WORK/m-b" >"$WORK/m-ab"
changed "$WORK/m-b" "$WORK/m-c" >"$WORK/m-bc"
garbage_only=$(comm -13 "$WORK/m-ab" "$WORK/m-bc" | tr '\n' ' ')
check "metrics: the garbage pod moves a series no good review moves (${garbage_only:-none})" test -n "$garbage_only"
metrics default "$WORK/m-d"
for i in 1 2 3; do post default /mutate "$REQ01" /dev/null >/dev/null; done
metrics default "$WORK/m-e"
check "metrics: counters rise by >= 3 after 3 more reviews" \
  test "$(($(counter_sum "$WORK/m-e") - $(counter_sum "$WORK/m-d")))" -ge 3

# ---------------------------------------------------------------- rotation, checked
log "certificate rotation: waiting for the sidecar instance to serve the new certificate"
# Poll until 75 s after the swap, but at least 10 s from now (the sections in
# between may already have taken that long on a busy machine).
rotated=0
deadline=$((ROTATED_AT + 75))
(($(date +%s) + 10 <= deadline)) || deadline=$(($(date +%s) + 10))
while (($(date +%s) < deadline)); do
  if curl -fsS --max-time 2 --cacert "$WORK/pki2/ca.crt" "$(url sidecar /healthz)" >/dev/null 2>&1; then
    rotated=1
    break
  fi
  sleep 1
done
check "TLS reload: new certificate served after the Secret-style swap (seen $(($(date +%s) - ROTATED_AT))s after it)" test $rotated -eq 1
check "TLS reload: old CA no longer accepted" \
  bash -c '! curl -fsS --max-time 5 --cacert "$1" "$2"' _ "$CA" "$(url sidecar /healthz)"
check "TLS reload: the process kept running (same pid)" kill -0 "${PID[sidecar]}"
check "TLS reload: reviews still answered" \
  bash -c 'curl -fsS --max-time 5 --cacert "$1" -H "Content-Type: application/json" --data-binary @"$2" "$3" | jq -e ".response.allowed == true"' \
  _ "$WORK/pki2/ca.crt" "$REQ01" "$(url sidecar /mutate)"

# ---------------------------------------------------------------- command line
log "command line"
"$WEBHOOK" --help >"$WORK/help.out" 2>&1 || true
for flag in listen tls-cert-file tls-key-file nameservers cluster-domain default-mode sidecar-image sidecar-fallback config log-level; do
  check "--help documents --$flag" grep -q -- "-$flag" "$WORK/help.out"
done
bad_flag() { # LABEL REGEX ARGS...: the binary must exit nonzero within 20 s naming the bad value
  local label=$1 re=$2
  shift 2
  local rc=0
  timeout 20 "$WEBHOOK" --listen=127.0.0.1:0 --tls-cert-file="$WORK/pki/tls.crt" \
    --tls-key-file="$WORK/pki/tls.key" "$@" >"$WORK/badflag.out" 2>&1 || rc=$?
  if [[ $rc -ne 0 && $rc -ne 124 ]] && grep -Eqi -- "$re" "$WORK/badflag.out"; then
    pass "bad value fails at start: $label"
  else
    fail "bad value fails at start: $label" "rc=$rc: $(head -c 200 "$WORK/badflag.out")"
  fi
}
bad_flag "--default-mode=turbo" 'default-mode|turbo' --nameservers=$CLUSTER_DNS --default-mode=turbo
bad_flag "--nameservers=10.96.0.300" 'nameserver|10\.96\.0\.300' --nameservers=10.96.0.300
bad_flag "--cluster-domain=-bad_domain-" 'cluster-domain|bad_domain' --nameservers=$CLUSTER_DNS '--cluster-domain=-bad_domain-'
printf 'defaultMode: [not, a, mode]\n' >"$WORK/bad-config.yaml"
bad_flag "--config with a malformed defaultMode" 'config|defaultMode|bad-config' --config="$WORK/bad-config.yaml"

# ---------------------------------------------------------------- SIGTERM
log "graceful shutdown"
for n in default sidecar config; do
  [[ -z ${DOWN[$n]:-} ]] || continue
  kill -TERM "${PID[$n]}"
  rc=0
  for _ in $(seq 1 100); do kill -0 "${PID[$n]}" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "${PID[$n]}" 2>/dev/null; then
    fail "SIGTERM: '$n' exits within 10s"
  else
    wait "${PID[$n]}" || rc=$?
    check "SIGTERM: '$n' exits cleanly (exit status $rc)" test "$rc" -eq 0
  fi
done

echo
summary
