#!/usr/bin/env bash
# Installs the Debian packages the tests use, only when one is missing, so a
# second run costs nothing. Needs root (CI runs as root); as another user it
# says what to install and fails.
set -euo pipefail

pkgs=(
  jq curl ca-certificates      # curl-driven webhook tests
  dnsmasq-base                 # real upstream DNS server (no service unit)
  bind9-dnsutils               # dig
  iproute2 iptables nftables conntrack  # race lab topology
  gcc libc6-dev musl-tools     # glibc and musl clients
  procps psmisc                # ps/pkill for cleanup
  runc containernetworking-plugins  # the e2e node: containerd's runtime and the CNI bridge
  busybox-static util-linux    # e2e test image (helm test pod); nsenter
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all Debian packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]} (run as root or install them)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
