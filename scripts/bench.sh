#!/usr/bin/env bash
# Benchmarks: controller ingest with simulated fleets (quarry-sim) over
# mutual TLS, then the packages' Go benchmarks. Every simulated rig enrolls
# with a join token (its own key and certificate) and reports through the
# agent's own link code. Figures print to stdout; the controller's CPU and
# heap profiles of the saturation run are kept in BENCH_OUT (default
# bench-out/; the backlog replay's in bench-out/replay/). BENCH_RIGS
# (default "1000 10000") picks the fleet sizes; BENCH_IN_FLIGHT (default
# 64) how many reports a replaying rig keeps unacknowledged.
# Then the controller with a large fleet in its store (BENCH_STORE_RIGS,
# default 100000; 0 skips it): cold start of the real binary, rig list
# pages over mutual TLS, and the dashboard overview. Before those, a
# controller group against a single controller under the same fleet, and
# the group's leader failover (scripts/bench-group.sh; BENCH_GROUP=0
# skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/bin"
DURATION=${BENCH_DURATION:-30s}
SIZES=${BENCH_RIGS-1000 10000}
SATURATION=${BENCH_SATURATION_RIGS:-1000}
IN_FLIGHT=${BENCH_IN_FLIGHT:-64}
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
    -rigs "$n" -prefix "$prefix" -controller-pid "$ctrl" -controller-metrics http://127.0.0.1:17080/metrics/controller \
    -warmup 10s -log-level error "$@"
}
echo "== ingest: rigs reporting every 10 s (mutual TLS, 4 or 6 GPUs a report) =="
for n in $SIZES; do sim "$n" "r$n" -interval 10s -duration "$DURATION"; done
if [ "$SATURATION" -gt 0 ]; then
  echo "== ingest: saturation (each rig sends its next report when the last is acknowledged) =="
  sim "$SATURATION" sat -saturate -duration 20s -profile-controller
  sleep 1
  echo "profiles: $OUT/controller-cpu.pprof $OUT/controller-heap.pprof (go tool pprof -top bin/quarry-controller FILE)"
  go tool pprof -top -nodecount 25 "$BIN/quarry-controller" "$OUT/controller-cpu.pprof" 2>/dev/null | head -32 >"$OUT/controller-cpu-top.txt" || true
  # The same rigs replaying a backlog: the link sends whatever is
  # buffered without waiting, so up to IN_FLIGHT reports a rig are
  # unacknowledged, as after an outage.
  mkdir -p "$OUT/replay"
  # The controller writes every profile under one name; the lockstep run's
  # step aside while the replay writes its own, whatever either run left.
  for f in controller-cpu.pprof controller-heap.pprof; do [ ! -e "$OUT/$f" ] || mv "$OUT/$f" "$OUT/$f.lockstep"; done
  echo "== ingest: saturation replaying a backlog ($IN_FLIGHT reports in flight a rig) =="
  sim "$SATURATION" sat -saturate -in-flight "$IN_FLIGHT" -duration 20s -profile-controller
  sleep 1
  for f in controller-cpu.pprof controller-heap.pprof; do
    [ ! -e "$OUT/$f" ] || mv "$OUT/$f" "$OUT/replay/$f"
    [ ! -e "$OUT/$f.lockstep" ] || mv "$OUT/$f.lockstep" "$OUT/$f"
  done
  go tool pprof -top -nodecount 25 "$BIN/quarry-controller" "$OUT/replay/controller-cpu.pprof" 2>/dev/null | head -32 >"$OUT/replay/controller-cpu-top.txt" || true
  echo "profiles of the replay: $OUT/replay/"
fi
kill $ctrl; wait $ctrl 2>/dev/null || true
ctrl=

if [ "${BENCH_GROUP:-1}" != 0 ]; then
  BENCH_OUT="$OUT" BENCH_DURATION="$DURATION" scripts/bench-group.sh
fi

# Switch: a controller whose profit switcher moves every rig at once
# (batch_size above the fleet, no spacing) when the market file says erg
# now pays more than etc. quarry-sim times each rig's flight sheet from
# being queued at the controller to the rig's answer.
SWITCH_SIZES=${BENCH_SWITCH_RIGS-1000 10000}
if [ -n "$SWITCH_SIZES" ]; then
  echo "== switch: every rig moved from etc to erg by one profit decision (mutual TLS) =="
  market() { # market ERG_PRICE
    cat >"$work/market.json.tmp" <<JSON
{"format": "quarry-market/v1", "fetched": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "coins": [
  {"tag": "etc", "algorithm": "etchash", "block_time": 13, "block_reward": 2.5, "difficulty": 2e15, "nethash": 1.5e14, "price_usd": 25},
  {"tag": "erg", "algorithm": "autolykos2", "block_time": 120, "block_reward": 24, "difficulty": 2e15, "nethash": 1.6e13, "price_usd": $1}]}
JSON
    mv "$work/market.json.tmp" "$work/market.json"
  }
  sheet() { echo "{name: $1, algorithm: $2, miner: {name: lolminer, path: /opt/quarry/miners/lolminer/lolMiner, sha256: \"$(printf '0%.0s' $(seq 64))\"}, pools: [{url: \"stratum+tcp://$1.example.net:1010\", user: w}]}"; }
  c3070=$(printf 'NVIDIA GeForce RTX 3070,%.0s' 1 2 3 4 5 6); c3070=${c3070%,}
  c3080=$(printf 'NVIDIA GeForce RTX 3080,%.0s' 1 2 3 4); c3080=${c3080%,}
  for n in $SWITCH_SIZES; do
    market 0.2
    rm -rf "$work/data"
    cat >"$work/controller.yaml" <<YAML
data_dir: $work/data
grpc_addr: 127.0.0.1:17443
http_addr: 127.0.0.1:17080
local_token: false
log_level: warn
report_interval: 10s
profit:
  tick: 1s
  batch_size: $((n + 1))
  batch_spacing: 0s
  market: {ttl: 500ms, confirm_fetches: 1, sources: [{kind: file, path: $work/market.json}]}
  policy: {relative_threshold: 0.05, absolute_threshold: 0.01, min_dwell: 1s, switch_downtime: 1s}
  profiles:
    "$c3070": {etchash: {hashrate: 366e6, power: 720}, autolykos2: {hashrate: 840e6, power: 660}}
    "$c3080": {etchash: {hashrate: 388e6, power: 880}, autolykos2: {hashrate: 880e6, power: 760}}
  options:
    - {coin: etc, flight_sheet: $(sheet etc etchash)}
    - {coin: erg, flight_sheet: $(sheet erg autolykos2)}
YAML
    mkdir -p "$OUT/switch-$n"
    QUARRY_PROFILE_DIR="$OUT/switch-$n" "$BIN/quarry-controller" -config "$work/controller.yaml" &
    ctrl=$!
    for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/17080) 2>/dev/null && break; sleep 0.1; done
    rm -f "$work/ready"
    sim "$n" "sw$n" -interval 10s -measure-switch 5m -switch-algorithm autolykos2 -ready-file "$work/ready" -cpu-profile "$OUT/switch-$n/sim-cpu.pprof" &
    simpid=$!
    while [ ! -e "$work/ready" ] && kill -0 $simpid 2>/dev/null; do sleep 0.2; done
    # The controller profiles from the price change to the last answer.
    kill -USR1 $ctrl
    market 20
    wait $simpid || true
    kill -USR1 $ctrl
    sleep 1
    go tool pprof -top -nodecount 25 "$BIN/quarry-controller" "$OUT/switch-$n/controller-cpu.pprof" 2>/dev/null | head -32 >"$OUT/switch-$n/controller-cpu-top.txt" || true
    go tool pprof -top -nodecount 25 "$BIN/quarry-sim" "$OUT/switch-$n/sim-cpu.pprof" 2>/dev/null | head -32 >"$OUT/switch-$n/sim-cpu-top.txt" || true
    kill $ctrl; wait $ctrl 2>/dev/null || true
    ctrl=
  done
fi

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
