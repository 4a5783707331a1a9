#!/usr/bin/env bash
# Installs the Debian packages of the named groups, only those missing, so a
# second run costs nothing. Needs root (CI runs as root); as another user it
# says what to install and fails.
#
# Usage: hack/install-deps.sh [GROUP...]   (default: test)
#   test    what `make test` needs
#   bench   what `make bench`, `make soak` and `make sidecar-resources` add:
#           the peers and the load generator they measure against
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/lib.sh install-deps

# One array per group, GROUP_pkgs (read below through a nameref).
# shellcheck disable=SC2034
test_pkgs=(
  jq curl ca-certificates      # curl-driven webhook tests
  dnsmasq-base                 # real upstream DNS server (no service unit)
  bind9-dnsutils               # dig
  iproute2 iptables nftables conntrack  # race lab topology
  gcc libc6-dev musl-tools     # glibc and musl clients
  procps psmisc                # ps/pkill for cleanup
  runc containernetworking-plugins  # the e2e node: containerd's runtime and the CNI bridge
  busybox-static util-linux    # e2e test image (helm test pod); nsenter
)
# shellcheck disable=SC2034
bench_pkgs=(
  dnsperf                      # the load generator
  unbound dnsmasq-base         # the resolvers the benchmark compares with
  bind9-dnsutils curl          # readiness checks
  binutils                     # strip, for binary sizes
  util-linux                   # taskset, to pin servers and clients
  iproute2                     # ss, for the TIME-WAIT count
)

pkgs=()
for g in "${@:-test}"; do
  declare -p "${g}_pkgs" >/dev/null 2>&1 || die "unknown group $g (groups: test, bench)"
  declare -n group="${g}_pkgs"
  pkgs+=("${group[@]}")
  unset -n group
done
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  log "all Debian packages present (${*:-test})"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]} (run as root or install them)"
log "installing ${missing[*]}"
# Packages such as unbound would start a system service on install; the
# suites start their own instances on loopback, so service starts are
# forbidden for the install (policy-rc.d, removed again on every exit).
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
log "done"
