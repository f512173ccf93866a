#!/usr/bin/env bash
# Benchmarks: controller ingest with simulated fleets over real gRPC, then
# the packages' Go benchmarks. Figures print to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/bin"
go build -o "$BIN/" ./controller/cmd/quarry-loadgen
DURATION=${BENCH_DURATION:-30s}

work=$(mktemp -d)
trap 'kill $ctrl 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
cat >"$work/controller.yaml" <<YAML
data_dir: $work/data
grpc_addr: 127.0.0.1:17443
http_addr: 127.0.0.1:17080
insecure_agents: true
local_token: false
log_level: warn
YAML
"$BIN/quarry-controller" -config "$work/controller.yaml" &
ctrl=$!
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/17080) 2>/dev/null && break; sleep 0.1; done

rss() { awk '/VmRSS/ {print $2 " kB"}' /proc/$ctrl/status; }
echo "== ingest: rigs reporting every 10s (6 GPUs each) =="
"$BIN/quarry-loadgen" -addr 127.0.0.1:17443 -rigs 1000 -interval 10s -duration "$DURATION" -prefix r1k
echo "controller RSS $(rss)"
"$BIN/quarry-loadgen" -addr 127.0.0.1:17443 -rigs 10000 -conns 100 -interval 10s -duration "$DURATION" -prefix r10k
echo "controller RSS $(rss)"
echo "== ingest: saturation (each rig sends its next report when the last is acknowledged) =="
"$BIN/quarry-loadgen" -addr 127.0.0.1:17443 -rigs 5000 -conns 50 -interval 0 -duration 20s -prefix sat
echo "controller RSS $(rss)"
kill $ctrl; wait $ctrl 2>/dev/null || true

echo "== package benchmarks =="
go test -run '^$' -bench . -benchmem -benchtime 2s \
  ./controller/fleet ./agent/link ./pkg/profit ./pkg/market ./pkg/minerapi ./pkg/telemetry ./controller/billing 2>&1 | grep -E '^(Benchmark|ok|FAIL|pkg:)'
