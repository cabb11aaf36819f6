#!/usr/bin/env bash
# Install the Debian packages the tests drive for real. Idempotent; a no-op when present.
# Without root (a developer laptop), prints what is missing and lets the tests skip.
set -euo pipefail
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v scamper >/dev/null 2>&1 || need+=(scamper)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v traceroute >/dev/null 2>&1 || need+=(traceroute)   # real output for the converter tests
command -v mtr >/dev/null 2>&1 || need+=(mtr-tiny)
command -v nft >/dev/null 2>&1 || need+=(nftables)            # the lab's silent router
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)      # the raw-socket permission test
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-system-deps: not root; missing ${need[*]} (tests that need them will skip)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# two test runs on one machine (two clones) would otherwise race for apt's locks and the
# loser fail ("Could not get lock /var/lib/apt/lists/lock"): one at a time, and apt itself
# waits for a lock another program holds
exec 9>"${TMPDIR:-/tmp}/pathexp-system-deps.lock"
flock 9
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
