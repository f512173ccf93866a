#!/usr/bin/env bash
# Installs the Quarry agent on a rig: the binary, the systemd unit, the
# configuration with the controller's address and a join token, and starts
# the service, which enrolls with the token on its first start.
#
# Safe to run again: files are replaced only when their content changes, an
# enrolled rig keeps its identity, and a second run needs no token.
#
#   sudo scripts/install-agent.sh --controller ctl.example.net:7443 \
#        --token-file join.token --url https://example.net/quarry-agent
#
# Run with --help for every option. --root DIR installs under DIR instead
# of / (for tests and image builds); nothing is started then.
set -euo pipefail
umask 077

usage() {
  cat <<'USAGE'
Usage: install-agent.sh --controller HOST:PORT [options]

  --controller HOST:PORT  controller gRPC address (required on first install)
  --token TOKEN           join token from 'quarryctl token create'
  --token-file FILE       read the join token from FILE (keeps it off the
                          command line); QUARRY_JOIN_TOKEN works too
  --binary FILE           install this quarry-agent binary
  --url URL               download the quarry-agent binary with curl; https
                          only, redirects included; needs --sha256
  --sha256 HEX            refuse a binary whose sha256 differs (required
                          with --url)
  --server-name NAME      name to verify in the controller's certificate
  --log-level LEVEL       debug, info, warn or error (default info)
  --root DIR              install under DIR instead of / (nothing is started)
  --no-start              install and enable, but do not start the service
  -h, --help              this help

The token is written to /etc/quarry/agent.token (mode 0600) and never
printed. Without --binary or --url an installed binary is kept.
USAGE
}

die() { echo "install-agent: $*" >&2; exit 2; }
say() { echo "install-agent: $*"; }

ROOT=/
CONTROLLER=""
TOKEN="${QUARRY_JOIN_TOKEN:-}"
BINARY=""
URL=""
SHA256=""
SERVER_NAME=""
LOG_LEVEL=""
NO_START=0

need() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --controller) need "$@"; CONTROLLER=$2; shift 2 ;;
    --token) need "$@"; TOKEN=$2; shift 2 ;;
    --token-file) need "$@"; [ -r "$2" ] || die "cannot read token file $2"; TOKEN=$(tr -d ' \r\n\t' <"$2"); shift 2 ;;
    --binary) need "$@"; BINARY=$2; shift 2 ;;
    --url) need "$@"; URL=$2; shift 2 ;;
    --sha256) need "$@"; SHA256=$2; shift 2 ;;
    --server-name) need "$@"; SERVER_NAME=$2; shift 2 ;;
    --log-level) need "$@"; LOG_LEVEL=$2; shift 2 ;;
    --root) need "$@"; ROOT=$2; shift 2 ;;
    --no-start) NO_START=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" ;;
  esac
done

[ -n "$BINARY" ] && [ -n "$URL" ] && die "give --binary or --url, not both"
# A downloaded binary runs as root on the rig: it must come over https
# and match a checksum published separately.
if [ -n "$URL" ]; then
  case "$URL" in https://*) ;; *) die "--url must be an https:// URL" ;; esac
  [ -n "$SHA256" ] || die "--url needs --sha256 HEX, the binary's published checksum"
fi
if [ -n "$SHA256" ]; then
  SHA256=$(printf '%s' "$SHA256" | tr 'A-F' 'a-f')
  case "$SHA256" in *[!0-9a-f]*) die "--sha256 must be 64 hex digits" ;; esac
  [ ${#SHA256} -eq 64 ] || die "--sha256 must be 64 hex digits"
fi
case "$LOG_LEVEL" in ""|debug|info|warn|error) ;; *) die "--log-level must be debug, info, warn or error" ;; esac
[ -d "$ROOT" ] || die "--root $ROOT is not a directory"
ROOT=$(cd "$ROOT" && pwd)
R=${ROOT%/}   # prefix for paths; empty for /

BIN_PATH=$R/usr/local/bin/quarry-agent
UNIT_PATH=$R/etc/systemd/system/quarry-agent.service
CONF_DIR=$R/etc/quarry
CONF_PATH=$CONF_DIR/agent.yaml
TOKEN_PATH=$CONF_DIR/agent.token
DATA_DIR=$R/var/lib/quarry-agent

# Settings not given again are kept from an earlier install.
existing() { [ -f "$CONF_PATH" ] || return 0; sed -n "s/^$1: *\"\{0,1\}\([^\"]*\)\"\{0,1\}\$/\1/p" "$CONF_PATH" | head -n1; return 0; }
[ -n "$CONTROLLER" ] || CONTROLLER=$(existing controller)
[ -n "$SERVER_NAME" ] || SERVER_NAME=$(existing server_name)
[ -n "$LOG_LEVEL" ] || LOG_LEVEL=$(existing log_level)
[ -n "$LOG_LEVEL" ] || LOG_LEVEL=info
[ -n "$CONTROLLER" ] || die "--controller HOST:PORT is required"
case "$CONTROLLER" in
  *[!A-Za-z0-9.:_\[\]-]*) die "--controller $CONTROLLER has characters a host:port cannot have" ;;
  *:[0-9]*) ;;
  *) die "--controller $CONTROLLER is not host:port" ;;
esac
case "$SERVER_NAME" in *[!A-Za-z0-9._-]*) die "--server-name has characters a host name cannot have" ;; esac
case "$TOKEN" in *[!A-Za-z0-9._:+/=-]*) die "the join token has unexpected characters; copy it again from 'quarryctl token create'" ;; esac

enrolled=0
[ -d "$DATA_DIR/agent-data/pki" ] && [ -n "$(ls -A "$DATA_DIR/agent-data/pki" 2>/dev/null)" ] && enrolled=1
if [ -z "$TOKEN" ] && [ ! -s "$TOKEN_PATH" ] && [ $enrolled = 0 ]; then
  die "a join token is needed for the first install (--token-file FILE, --token or QUARRY_JOIN_TOKEN)"
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# put SRC DEST MODE: replace DEST with SRC only when the content differs;
# prints "changed" when it did.
put() {
  install -d -m 0755 "$(dirname "$2")"
  if [ -f "$2" ] && cmp -s "$1" "$2"; then
    chmod "$3" "$2"
    return 0
  fi
  install -m "$3" "$1" "$2.new"
  mv -f "$2.new" "$2"
  echo changed
}

# 1. The binary.
if [ -n "$URL" ]; then
  command -v curl >/dev/null || die "--url needs curl"
  say "downloading $URL"
  # --proto-redir keeps a redirect from downgrading to plain http.
  curl --proto =https --proto-redir =https -fsSL --retry 3 -o "$TMP/quarry-agent" "$URL" || die "download failed: $URL"
  BINARY=$TMP/quarry-agent
fi
if [ -n "$BINARY" ]; then
  [ -f "$BINARY" ] || die "--binary $BINARY does not exist"
  if [ -n "$SHA256" ]; then
    got=$(sha256sum "$BINARY" | cut -d' ' -f1)
    [ "$got" = "$SHA256" ] || die "sha256 of the binary is $got, not $SHA256"
  fi
  [ -n "$(put "$BINARY" "$BIN_PATH" 0755)" ] && say "installed $BIN_PATH" || say "$BIN_PATH unchanged"
elif [ ! -x "$BIN_PATH" ]; then
  die "no quarry-agent at $BIN_PATH: give --binary FILE or --url URL"
fi

# 2. The unit (the same text as deploy/quarry-agent.service).
cat >"$TMP/unit" <<'UNIT'
# Quarry rig agent. scripts/install-agent.sh installs this unit, the binary
# and /etc/quarry/agent.yaml.
#
# Why root: the agent sets GPU power limits and clocks (NVML's set calls
# and AMD's sysfs pp_od_clk_voltage / power1_cap files are root-only),
# runs and kills miners in their own process groups, may reboot a wedged
# rig, and reads every GPU device node. A dedicated user would need
# CAP_SYS_ADMIN for NVML clock control anyway, which is root in all but
# name, plus write access to /sys — so the unit runs as root and instead
# takes away what the agent never needs. Miners run only from flight sheets
# with a pinned sha256.
#
# Hardening that would break mining is deliberately absent:
#   PrivateDevices=       hides /dev/nvidia*, /dev/dri and /dev/kfd
#   ProtectKernelTunables= makes /sys read-only (AMD clocks and fans)
#   ProtectKernelModules= blocks nvidia-modprobe loading the driver
#   MemoryDenyWriteExecute= breaks miners' JIT (RandomX) and OpenCL/CUDA
#   SystemCallFilter=     GPU runtimes use ioctls and calls outside the sets

[Unit]
Description=Quarry mining rig agent
Documentation=https://github.com/quarryfleet/quarry
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=10min
StartLimitBurst=20

[Service]
Type=simple
User=root
ExecStart=/usr/local/bin/quarry-agent -config /etc/quarry/agent.yaml
WorkingDirectory=/var/lib/quarry-agent
StateDirectory=quarry-agent
StateDirectoryMode=0700
UMask=0077

# Stop: SIGTERM to the agent only, which stops its miners in order; what
# is left after the timeout is killed.
KillMode=mixed
KillSignal=SIGTERM
TimeoutStopSec=45
Restart=always
RestartSec=5s
LimitNOFILE=65536

# Hardening that leaves GPUs, sysfs and miners working.
NoNewPrivileges=yes
ProtectSystem=full
ProtectHome=read-only
PrivateTmp=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectKernelLogs=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK

[Install]
WantedBy=multi-user.target
UNIT
unit_changed=$(put "$TMP/unit" "$UNIT_PATH" 0644)
[ -n "$unit_changed" ] && say "installed $UNIT_PATH" || say "$UNIT_PATH unchanged"

# 3. Configuration and token. Token first, so the config never names a
# missing file.
install -d -m 0755 "$CONF_DIR"
if [ -n "$TOKEN" ]; then
  printf '%s\n' "$TOKEN" >"$TMP/token"
  [ -n "$(put "$TMP/token" "$TOKEN_PATH" 0600)" ] && say "join token written to /etc/quarry/agent.token" || say "join token unchanged"
fi
{
  echo "# Written by scripts/install-agent.sh; running it again rewrites this file."
  echo "# Every setting, with its default: deploy/agent.yaml."
  echo "controller: \"$CONTROLLER\""
  [ -n "$SERVER_NAME" ] && echo "server_name: \"$SERVER_NAME\""
  echo "data_dir: /var/lib/quarry-agent/agent-data"
  echo "token_file: /etc/quarry/agent.token"
  echo "log_level: $LOG_LEVEL"
} >"$TMP/agent.yaml"
conf_changed=$(put "$TMP/agent.yaml" "$CONF_PATH" 0640)
[ -n "$conf_changed" ] && say "wrote $CONF_PATH" || say "$CONF_PATH unchanged"
install -d -m 0700 "$DATA_DIR"
# The agent runs miner binaries only from here (its default miners_dir).
install -d -m 0755 "$R/var/lib/quarry/miners"

# 4. Enable and start. The service enrolls with the token on its first
# start and keeps its certificate in /var/lib/quarry-agent.
if ! command -v systemctl >/dev/null; then
  say "systemctl not found: start it yourself with: quarry-agent -config /etc/quarry/agent.yaml"
  exit 0
fi
if [ "$ROOT" != / ]; then
  systemctl --root="$ROOT" enable quarry-agent.service >/dev/null 2>&1 && say "enabled quarry-agent.service under $ROOT" || say "could not enable the unit under $ROOT"
  say "installed under $ROOT; not starting anything"
  exit 0
fi
if [ ! -d /run/systemd/system ]; then
  say "systemd is not running here; not starting the service"
  exit 0
fi
systemctl daemon-reload
systemctl enable quarry-agent.service >/dev/null
if [ $NO_START = 1 ]; then
  say "enabled; not started (--no-start)"
  exit 0
fi
if systemctl is-active --quiet quarry-agent.service; then
  systemctl restart quarry-agent.service
  say "restarted quarry-agent.service"
else
  systemctl start quarry-agent.service
  say "started quarry-agent.service; it enrolls on its first connection: journalctl -u quarry-agent -f"
fi
