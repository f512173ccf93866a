#!/usr/bin/env bash
# Benchmarks: controller ingest with simulated fleets over real gRPC, then
# the packages' Go benchmarks. Figures print to stdout. Simulated rigs enroll
# with a join token and report over their own mutual-TLS streams, as real
# agents do. BENCH_RIGS (default "1000 10000") picks the fleet sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/bin"
go build -o "$BIN/" ./controller/cmd/quarry-loadgen
DURATION=${BENCH_DURATION:-30s}
SIZES=${BENCH_RIGS:-1000 10000}
SATURATION=${BENCH_SATURATION_RIGS:-5000}

work=$(mktemp -d)
trap 'kill $ctrl 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
cat >"$work/controller.yaml" <<YAML
data_dir: $work/data
grpc_addr: 127.0.0.1:17443
http_addr: 127.0.0.1:17080
local_token: false
log_level: warn
YAML
"$BIN/quarry-controller" -config "$work/controller.yaml" &
ctrl=$!
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/17080) 2>/dev/null && break; sleep 0.1; done

rss() { awk '/VmRSS/ {print $2 " kB"}' /proc/$ctrl/status; }
# loadgen RIGS INTERVAL DURATION PREFIX: a join token for RIGS enrolments,
# then the run.
loadgen() {
  "$BIN/quarryctl" --controller 127.0.0.1:17443 --data-dir "$work/data" --config "$work/none.yaml" \
    token create --uses "$1" --ttl 1h >"$work/token" 2>/dev/null
  "$BIN/quarry-loadgen" -addr 127.0.0.1:17443 -ca "$work/data/ca.crt" -token-file "$work/token" \
    -rigs "$1" -interval "$2" -duration "$3" -prefix "$4"
  echo "controller RSS $(rss)"
}
echo "== ingest: rigs reporting every 10s (6 GPUs each, mutual TLS) =="
for n in $SIZES; do loadgen "$n" 10s "$DURATION" "r$n"; done
if [ "$SATURATION" -gt 0 ]; then
  echo "== ingest: saturation (each rig sends its next report when the last is acknowledged) =="
  loadgen "$SATURATION" 0 20s sat
fi
kill $ctrl; wait $ctrl 2>/dev/null || true

[ "${BENCH_PACKAGES:-1}" = 0 ] && exit 0
echo "== package benchmarks =="
go test -run '^$' -bench . -benchmem -benchtime 2s \
  ./controller/fleet ./agent/link ./pkg/profit ./pkg/market ./pkg/minerapi ./pkg/telemetry ./controller/billing 2>&1 | grep -E '^(Benchmark|ok|FAIL|pkg:)'
