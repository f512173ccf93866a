#!/usr/bin/env bash
# Starts a controller and an agent on this machine, the two-command quick
# start's first command. Data goes to ./quarry-data and ./quarry-agent-data.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/bin"
"$BIN/quarry-controller" &
ctrl=$!
trap 'kill -TERM $agent $ctrl 2>/dev/null; wait' EXIT INT TERM
for _ in $(seq 1 100); do
  (exec 3<>/dev/tcp/127.0.0.1/7080) 2>/dev/null && break
  sleep 0.1
done
"$BIN/quarry-agent" &
agent=$!
cat <<MSG

  Quarry is running: a controller (gRPC 127.0.0.1:7443, HTTP http://127.0.0.1:7080)
  and an agent on this machine. In another terminal try:

    bin/quarryctl rigs list
    bin/quarryctl rig show \$(hostname)
    bin/quarryctl rig command \$(hostname) ping
    bin/quarryctl token create --ttl 1h      # to enroll another rig

  Ctrl-C stops both.

MSG
wait $ctrl
