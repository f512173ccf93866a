#!/usr/bin/env bash
# Benchmarks: controller ingest with simulated fleets (quarry-sim) over
# mutual TLS, then the packages' Go benchmarks. Every simulated rig enrolls
# with a join token (its own key and certificate) and reports through the
# agent's own link code. Figures print to stdout; the controller's CPU and
# heap profiles of the saturation run are kept in BENCH_OUT (default
# bench-out/). BENCH_RIGS (default "1000 10000") picks the fleet sizes.
# Then the controller with a large fleet in its store (BENCH_STORE_RIGS,
# default 100000; 0 skips it): cold start of the real binary, rig list
# pages over mutual TLS, and the dashboard overview.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/bin"
DURATION=${BENCH_DURATION:-30s}
SIZES=${BENCH_RIGS:-1000 10000}
SATURATION=${BENCH_SATURATION_RIGS:-1000}
OUT=${BENCH_OUT:-$PWD/bench-out}
mkdir -p "$OUT"

work=$(mktemp -d)
ctrl=
trap '[ -n "$ctrl" ] && kill $ctrl 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"' EXIT
cat >"$work/controller.yaml" <<YAML
data_dir: $work/data
grpc_addr: 127.0.0.1:17443
http_addr: 127.0.0.1:17080
local_token: false
log_level: warn
report_interval: 10s
YAML
QUARRY_PROFILE_DIR="$OUT" "$BIN/quarry-controller" -config "$work/controller.yaml" &
ctrl=$!
for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/17080) 2>/dev/null && break; sleep 0.1; done

# sim RIGS PREFIX ARGS...: a join token for RIGS enrolments, then a
# measured run of that many simulated rigs.
sim() {
  local n=$1 prefix=$2
  shift 2
  "$BIN/quarryctl" --controller 127.0.0.1:17443 --data-dir "$work/data" --config "$work/none.yaml" \
    token create --uses "$n" --ttl 2h 2>/dev/null | head -1 >"$work/token"
  "$BIN/quarry-sim" -controller 127.0.0.1:17443 -token-file "$work/token" -data-dir "$work/sim-$prefix" \
    -rigs "$n" -prefix "$prefix" -controller-pid "$ctrl" -warmup 10s -log-level error "$@"
}
echo "== ingest: rigs reporting every 10 s (mutual TLS, 4 or 6 GPUs a report) =="
for n in $SIZES; do sim "$n" "r$n" -interval 10s -duration "$DURATION"; done
if [ "$SATURATION" -gt 0 ]; then
  echo "== ingest: saturation (each rig sends its next report when the last is acknowledged) =="
  sim "$SATURATION" sat -saturate -duration 20s -profile-controller
  sleep 1
  echo "profiles: $OUT/controller-cpu.pprof $OUT/controller-heap.pprof (go tool pprof -top bin/quarry-controller FILE)"
  go tool pprof -top -nodecount 25 "$BIN/quarry-controller" "$OUT/controller-cpu.pprof" 2>/dev/null | head -32 >"$OUT/controller-cpu-top.txt" || true
fi
kill $ctrl; wait $ctrl 2>/dev/null || true
ctrl=

STORE_RIGS=${BENCH_STORE_RIGS:-100000}
if [ "$STORE_RIGS" -gt 0 ]; then
  echo "== controller with $STORE_RIGS rigs in its store (cold start, rigs list, overview) =="
  QUARRY_BENCH_FLEET_RIGS=$STORE_RIGS go test -run '^$' -bench 'Fleet100k' -benchtime 3x -benchmem -v -timeout 30m \
    ./controller/server 2>&1 | grep -E '^(Benchmark|ok|FAIL|pkg:|\s+scale_bench)'
fi

[ "${BENCH_PACKAGES:-1}" = 0 ] && exit 0
echo "== package benchmarks =="
go test -run '^$' -bench . -benchmem -benchtime 2s \
  ./controller/fleet ./agent/link ./pkg/profit ./pkg/market ./pkg/minerapi ./pkg/telemetry ./controller/billing 2>&1 | grep -E '^(Benchmark|ok|FAIL|pkg:)'
