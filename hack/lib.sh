# shellcheck shell=bash
# hack/lib.sh: the helpers every bash suite and hack script shares, so a
# suite's output reads the same everywhere and ends with one count line.
# Source it with the name its log lines carry:
#
#   . "$ROOT/hack/lib.sh" resolver-test
#
#   log MSG...              "[NAME HH:MM:SS] MSG" on stderr
#   pass DESC               "PASS  DESC", counted
#   fail DESC [DETAIL...]   "FAIL  DESC", each DETAIL indented below it, counted
#   check DESC CMD...       runs CMD in this shell (so `wait` and variables work);
#                           pass, or fail showing the command and its output
#   die MSG...              "FATAL: MSG" on stderr and exit 1; once a check
#                           was counted, the fatal error counts as a failed
#                           one and summary is printed first
#   summary                 the failed checks, then "N passed, N failed" alone
#                           on a line; returns 1 when any failed
#
# LIB_PASSED, LIB_FAILED and LIB_FAILURES (the failed descriptions) are for
# scripts that need the counts, e.g. to keep a work directory after a failure.

LIB_NAME=${1:-$(basename "$0" .sh)}
LIB_PASSED=0
LIB_FAILED=0
LIB_FAILURES=()

log() { printf '[%s %s] %s\n' "$LIB_NAME" "$(date +%H:%M:%S)" "$*" >&2; }

pass() {
  LIB_PASSED=$((LIB_PASSED + 1))
  printf 'PASS  %s\n' "$1"
}

fail() {
  LIB_FAILED=$((LIB_FAILED + 1))
  LIB_FAILURES+=("$1")
  printf 'FAIL  %s\n' "$1"
  shift
  local d
  for d in "$@"; do
    [ -n "$d" ] && printf '%s\n' "$d" | sed 's/^/      /'
  done
  return 0
}

check() {
  local desc=$1 out rc=0
  shift
  # A file, not $(...): a command substitution is a subshell, where `wait`
  # on the suite's background processes and assignments would be lost.
  out=$(mktemp "${TMPDIR:-/tmp}/dnsguard-check.XXXXXX")
  "$@" >"$out" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    pass "$desc"
  else
    fail "$desc" "command: $* (exit $rc)" "$(tail -n 40 "$out")"
  fi
  rm -f "$out"
}

die() {
  printf '[%s %s] FATAL: %s\n' "$LIB_NAME" "$(date +%H:%M:%S)" "$*" >&2
  # Before the first check this is a setup error (no root, a tool missing)
  # and a count line would only suggest that checks ran.
  if [ $((LIB_PASSED + LIB_FAILED)) -gt 0 ]; then
    LIB_FAILED=$((LIB_FAILED + 1))
    LIB_FAILURES+=("FATAL: $*")
    summary || true
  fi
  exit 1
}

summary() {
  if [ "$LIB_FAILED" -gt 0 ]; then
    echo "failed checks:"
    printf '  %s\n' "${LIB_FAILURES[@]}"
  fi
  echo "$LIB_PASSED passed, $LIB_FAILED failed"
  [ "$LIB_FAILED" -eq 0 ]
}

# commit_stamp names the checkout a page measured: the short commit, and
# "+dirty" when tracked files other than docs/ differ from it (a page
# another run just rewrote is no part of what is measured). The Go pages
# use the same rule (test/racelab/lab Commit).
commit_stamp() {
	local c
	c=$(git rev-parse --short HEAD)
	[ -z "$(git status --porcelain --untracked-files=no -- . ':!docs')" ] || c="$c+dirty"
	echo "$c"
}
