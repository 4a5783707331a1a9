#!/usr/bin/env bash
# getent-loop COUNT LIMIT-SECONDS NAME: glibc's own `getent ahosts`, one
# process per lookup, printing gailoop's line format with the addresses
# (latency includes exec, ~1 ms).
set -uo pipefail
n=$1 limit=$2 name=$3 start=$SECONDS
for ((i = 0; i < n; i++)); do
  if ((SECONDS - start > limit)); then echo "getent-loop: time limit" >&2; exit 3; fi
  t0=$EPOCHREALTIME
  out=$(getent ahosts "$name" 2>&1); rc=$?
  t1=$EPOCHREALTIME
  ms=$(( (${t1/./} - ${t0/./}) ))
  ms=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
  if [ $rc -eq 0 ]; then
    addrs=$(awk '{print $1}' <<<"$out" | sort -u)
    echo "$ms ok $(wc -l <<<"$addrs") $(tr '\n' ' ' <<<"$addrs")"
  else
    echo "$ms fail getent-rc-$rc"
  fi
done
