#!/usr/bin/env bash
# Starts a controller and an agent on this machine, the two-command quick
# start's first command. Data goes to ./quarry-data and ./quarry-agent-data.
# Unless SIM_RIGS=0, it also starts SIM_RIGS (default 5) simulated rigs
# named sim-1… (quarry-sim, data in ./quarry-sim-data) and runs the
# controller with the demo configuration deploy/demo/controller.yaml:
# profit switching on the built-in market snapshot, its prices moved on a
# clock, marked OFFLINE everywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/bin"
SIM_RIGS=${SIM_RIGS:-5}
args=()
if [ "$SIM_RIGS" -gt 0 ]; then
  args=(-config deploy/demo/controller.yaml)
fi
"$BIN/quarry-controller" "${args[@]}" &
ctrl=$!
agent= sim=
trap 'kill -TERM $agent $sim $ctrl 2>/dev/null; wait' EXIT INT TERM
for _ in $(seq 1 100); do
  (exec 3<>/dev/tcp/127.0.0.1/7080) 2>/dev/null && break
  sleep 0.1
done
"$BIN/quarry-agent" &
agent=$!
if [ "$SIM_RIGS" -gt 0 ]; then
  # Simulated rigs enrolled with another controller's CA cannot connect to
  # this one: start them afresh when the controller's data was replaced.
  if ! cmp -s quarry-data/ca.crt quarry-sim-data/controller-ca.crt 2>/dev/null; then
    rm -rf quarry-sim-data
    mkdir -p quarry-sim-data
    cp quarry-data/ca.crt quarry-sim-data/controller-ca.crt
  fi
  "$BIN/quarryctl" token create --uses "$SIM_RIGS" --ttl 10m 2>/dev/null | head -1 >quarry-sim-data/token
  "$BIN/quarry-sim" -rigs "$SIM_RIGS" -data-dir quarry-sim-data -token-file quarry-sim-data/token &
  sim=$!
fi
cat <<MSG

  Quarry is running: a controller (gRPC 127.0.0.1:7443, HTTP http://127.0.0.1:7080)
  and an agent on this machine. In another terminal try:

    bin/quarryctl rigs list
    bin/quarryctl rig show \$(hostname)
    bin/quarryctl rig command \$(hostname) ping
    bin/quarryctl token create --ttl 1h      # to enroll another rig

MSG
if [ "$SIM_RIGS" -gt 0 ]; then
  cat <<MSG
  Also $SIM_RIGS simulated rigs (sim-1 … sim-$SIM_RIGS) mining on a demo market
  (built-in prices moved on a clock, not live data; SIM_RIGS=0 for none):

    bin/quarryctl profit                     # ranked options and what the switcher did
    bin/quarryctl profit switches            # switches so far
    bin/quarryctl rig show sim-1             # GPUs, miner, events
    touch quarry-sim-data/cues/crash-sim-2   # make sim-2's miner crash
    http://127.0.0.1:7080                    # dashboard; sign in with the token in quarry-data/admin.token

MSG
fi
echo "  Ctrl-C stops everything."
echo
wait $ctrl
