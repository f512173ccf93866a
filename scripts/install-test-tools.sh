#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine: Go tools into
# ./bin with `go install`, and Debian packages with apt-get when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/bin"
mkdir -p "$BIN"

STATICCHECK_VERSION=${STATICCHECK_VERSION:-v0.8.2}
STRIPE_MOCK_VERSION=${STRIPE_MOCK_VERSION:-v0.203.0}
SERF_VERSION=${SERF_VERSION:-v0.11.0}

gotool() { # name module@version
  if [ ! -x "$BIN/$1" ]; then
    echo "installing $1 ($2)"
    GOBIN="$BIN" go install "$2"
  fi
}
gotool staticcheck "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}"
gotool stripe-mock "github.com/stripe/stripe-mock@${STRIPE_MOCK_VERSION}"
gotool serf "github.com/hashicorp/serf/cmd/serf@${SERF_VERSION}"

# Debian packages: real compilers for build jobs, netns tools for the
# partition tests, promtool for the metrics check, Chromium for the browser
# tests.
PKGS=(mono-devel cmake iproute2 iptables prometheus chromium systemd)
missing=()
command -v mcs >/dev/null || missing+=(mono-devel)
command -v cmake >/dev/null || missing+=(cmake)
command -v ip >/dev/null || missing+=(iproute2)
command -v tc >/dev/null || missing+=(iproute2)
# packet loss for the gossip partition tests where the kernel lacks sch_netem
command -v iptables >/dev/null || missing+=(iptables)
command -v promtool >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
# systemd-analyze verifies the unit files in deploy/
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "note: not root (or no apt-get); tests needing ${missing[*]} will skip (and fail under CI=true). Install: sudo apt-get install ${PKGS[*]}" >&2
    if [ "${CI:-}" = true ]; then
      exit 1
    fi
  fi
fi
