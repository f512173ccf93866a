#!/usr/bin/env bash
# Controller group against a single controller, one run on this machine:
# the same simulated fleet (BENCH_GROUP_RIGS, default 1000, over mutual
# TLS) reports every 10 s for BENCH_DURATION, then saturates, first to a
# controller without a cluster section, then to a 3-member Raft group on
# loopback; then the group's leader is SIGKILLed under the 10 s load and
# the failover is timed. Figures print to stdout; member and simulator
# logs stay in BENCH_OUT/group/. Needs bin/ from `make build`, curl and jq.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/bin"
DURATION=${BENCH_DURATION:-30s}
SAT_DURATION=${BENCH_GROUP_SATURATION_DURATION:-20s}
RIGS=${BENCH_GROUP_RIGS:-1000}
OUT=${BENCH_OUT:-$PWD/bench-out}/group
# The other sections use 17443/17080 and serf's default gossip port; the
# whole 176xx block is this section's: single controller at index 0,
# members at 1..3.
grpc_port() { echo $((17610 + $1)); }
http_port() { echo $((17620 + $1)); }
raft_port() { echo $((17630 + $1)); }
serf_port() { echo $((17640 + $1)); }
gossip_port() { echo $((17650 + $1)); }

for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "bench-group: $tool is required" >&2; exit 1; }
done
for i in 0 1 2 3; do
  for p in "$(grpc_port "$i")" "$(http_port "$i")" "$(raft_port "$i")" "$(serf_port "$i")"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "bench-group: port $p is already in use" >&2
      exit 1
    fi
  done
done
rm -rf "$OUT"
mkdir -p "$OUT"
work=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# now: seconds since the epoch, to the nanosecond.
now() { date +%s.%N; }
# secs DURATION: a Go duration (as quarry-sim prints it) in seconds.
secs() {
  awk -v d="$1" 'BEGIN {
    f["h"] = 3600; f["m"] = 60; f["s"] = 1
    f["ms"] = 1e-3; f["us"] = 1e-6; f["µs"] = 1e-6; f["ns"] = 1e-9
    t = 0
    while (match(d, /^[0-9.]+(h|ms|m|s|us|µs|ns)/)) {
      tok = substr(d, 1, RLENGTH); d = substr(d, RLENGTH + 1)
      n = tok; sub(/[^0-9.].*$/, "", n); unit = substr(tok, length(n) + 1)
      t += n * f[unit]
    }
    if (d != "") { print "NaN"; exit }
    printf "%.9f\n", t
  }'
}
# cpu_ticks PID...: utime+stime of the processes together, in clock ticks.
cpu_ticks() {
  local p s total=0
  local -a f
  for p in "$@"; do
    s=$(<"/proc/$p/stat")
    # The command name may hold spaces; the fields after it start at state.
    read -ra f <<<"${s##*) }"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}
HZ=$(getconf CLK_TCK)

# start_controller INDEX NAME [CLUSTER_YAML]: a controller on INDEX's
# ports with its data dir in $work/NAME and its log in $OUT/NAME.log.
start_controller() {
  local i=$1 name=$2 cluster=${3:-}
  mkdir -p "$work/$name/data"
  cat >"$work/$name/controller.yaml" <<YAML
data_dir: $work/$name/data
grpc_addr: 127.0.0.1:$(grpc_port "$i")
http_addr: 127.0.0.1:$(http_port "$i")
local_token: false
log_level: ${BENCH_GROUP_LOG_LEVEL:-info}
report_interval: 10s
gossip: {bind_port: $(gossip_port "$i")}
$cluster
YAML
  "$BIN/quarry-controller" -config "$work/$name/controller.yaml" >>"$OUT/$name.log" 2>&1 &
  pid[i]=$!
  pids+=("${pid[$i]}")
  wait_http "$i" healthz 30
}
declare -a pid

# http_code INDEX PATH: the HTTP status a controller answers PATH with
# (000 when it does not answer).
http_code() {
  curl -s -o /dev/null --max-time 1 -w '%{http_code}' "http://127.0.0.1:$(http_port "$1")/$2" || true
}
# wait_http INDEX PATH SECONDS: until PATH answers 200.
wait_http() {
  local deadline=$((SECONDS + $3))
  while [ "$(http_code "$1" "$2")" != 200 ]; do
    if ! kill -0 "${pid[$1]}" 2>/dev/null; then
      echo "bench-group: controller $1 exited; its log:" >&2
      tail -20 "$OUT"/*.log >&2
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "bench-group: controller $1 gave no 200 on /$2 within $3 s" >&2
      exit 1
    fi
    sleep 0.05
  done
}
# reap PID: wait for a process this script stopped, and take it off the
# exit trap's list so a reused process id is never signalled.
reap() {
  wait "$1" 2>/dev/null || true
  local -a keep=()
  local p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}
stop_controller() {
  kill "${pid[$1]}" 2>/dev/null || true
  reap "${pid[$1]}"
}

# ctl ARGS...: quarryctl with the credentials of the data dir the first
# member had alone (the group shares its CA), against ADDRS.
ADDRS=
CREDS=
ctl() {
  "$BIN/quarryctl" --controller "$ADDRS" --data-dir "$CREDS" --config "$work/none.yaml" "$@"
}

# measure LEADER_INDEX NAME DURATION SIM_ARGS...: one measured quarry-sim run
# against ADDRS, its figures on stdout and in $work/NAME.out, plus the
# CPU of every controller in CPU_PIDS over the simulator's measured
# window, read from /proc here since quarry-sim follows only one process.
CPU_PIDS=()
measure() {
  local leader=$1 name=$2 duration=$3 window
  shift 3
  window=$(secs "$duration")
  local sp try
  # A rig enrolls once, with whichever member leads: a lost lead while
  # the fleet enrolls fails the simulator before it measures anything.
  # The rigs it did enroll keep their identity in its data dir, so
  # another start goes on with the rest.
  for try in 1 2 3; do
    rm -f "$work/ready"
    "$BIN/quarry-sim" -controller "$ADDRS" -token-file "$work/token" -data-dir "$work/sim-$SIM_DIR" \
      -rigs "$RIGS" -prefix "$SIM_DIR" -controller-pid "${pid[$leader]}" \
      -controller-metrics "http://127.0.0.1:$(http_port "$leader")/metrics/controller" \
      -warmup 10s -log-level warn -ready-file "$work/ready" -duration "$duration" "$@" \
      >"$work/$name.out" 2>>"$OUT/sim-$name.log" &
    sp=$!
    pids+=("$sp")
    while [ ! -e "$work/ready" ] && kill -0 "$sp" 2>/dev/null; do sleep 0.05; done
    [ -e "$work/ready" ] && break
    reap "$sp"
    echo "  (quarry-sim failed before its measured window, try $try: $(grep -v 'level=WARN' "$OUT/sim-$name.log" | tail -1 | cut -c1-160))"
    [ "$try" = 3 ] && exit 1
  done
  local c0 t0 c1 t1
  c0=$(cpu_ticks "${CPU_PIDS[@]}")
  t0=$(now)
  # The window is the simulator's -duration; the read after it brackets
  # the same span of load.
  sleep "$window"
  c1=$(cpu_ticks "${CPU_PIDS[@]}")
  t1=$(now)
  if ! wait "$sp"; then
    reap "$sp"
    echo "bench-group: quarry-sim ($name) failed; $OUT/sim-$name.log:" >&2
    tail -20 "$OUT/sim-$name.log" >&2
    exit 1
  fi
  reap "$sp"
  cat "$work/$name.out"
  local rate
  rate=$(grep -o '= [0-9.]* reports/s' "$work/$name.out" | head -1 | awk '{print $2}')
  awk -v c="$((c1 - c0))" -v hz="$HZ" -v t0="$t0" -v t1="$t1" -v rate="$rate" -v n="${#CPU_PIDS[@]}" 'BEGIN {
    cpu = c / hz; w = t1 - t0
    printf "  %s together: %.1f µs CPU per committed report (%.2f cores busy over %.1f s, /proc utime+stime)\n",
      (n == 1 ? "controller" : "all " n " members"), cpu * 1e6 / (rate * w), cpu / w, w
  }' | tee "$work/$name.cpu"
}
rate_of() { grep -o '= [0-9.]* reports/s' "$work/$1.out" | head -1 | awk '{print $2}'; }
p99_of() { secs "$(grep -o 'p99=[^ ]*' "$work/$1.out" | head -1 | cut -d= -f2)"; }
cpu_of() { grep -o '[0-9.]* µs CPU' "$work/$1.cpu" | awk '{print $1}'; }
ratio() {
  local what=$1 single=$2 group=$3
  awk -v w="$what" \
    -v r1="$(rate_of "$single")" -v r3="$(rate_of "$group")" \
    -v p1="$(p99_of "$single")" -v p3="$(p99_of "$group")" \
    -v c1="$(cpu_of "$single")" -v c3="$(cpu_of "$group")" 'BEGIN {
    printf "%s, group/single: reports/s %.0f/%.0f = %.2f; p99 made→committed %.1f/%.1f ms = %.2f; CPU per report %.1f/%.1f µs = %.2f\n",
      w, r3, r1, r3 / r1, p3 * 1e3, p1 * 1e3, p3 / p1, c3, c1, c3 / c1
  }'
}

echo "== group: 1 controller, then 3 members on loopback ($RIGS rigs, mutual TLS; the members share this machine's $(nproc) cores with the simulator) =="
# Raft's timings assume members get the CPU when they need it: the load
# average says how much else wanted it during the run.
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"

# Single controller, the baseline.
start_controller 0 single
ADDRS=127.0.0.1:$(grpc_port 0)
CREDS=$work/single/data
ctl token create --uses "$((RIGS * 3))" --ttl 2h 2>/dev/null | head -1 >"$work/token"
CPU_PIDS=("${pid[0]}")
SIM_DIR=s
echo "-- single controller: every 10 s"
measure 0 single-10s "$DURATION" -interval 10s
echo "-- single controller: saturation"
measure 0 single-sat "$SAT_DURATION" -saturate
stop_controller 0

# The first member runs alone once so its data dir has the CA, the local
# credentials and the gossip keys the others must share.
start_controller 1 ctl-1
stop_controller 1
for i in 2 3; do
  mkdir -p "$work/ctl-$i/data"
  cp -a "$work/ctl-1/data/pki" "$work/ctl-$i/data/"
  for f in gossip-keyring.json gossip-event.key; do
    if [ -e "$work/ctl-1/data/$f" ]; then cp -a "$work/ctl-1/data/$f" "$work/ctl-$i/data/"; fi
  done
done
member() { # member INDEX BOOTSTRAP_EXPECT [JOIN]
  local c
  c=$(printf 'cluster:\n  node_id: ctl-%s\n  raft_addr: 127.0.0.1:%s\n  serf_addr: 127.0.0.1:%s\n  bootstrap_expect: %s\n' \
    "$1" "$(raft_port "$1")" "$(serf_port "$1")" "$2")
  if [ -n "${3:-}" ]; then c+=$'\n'"  join: [$3]"; fi
  start_controller "$1" "ctl-$1" "$c"
}
member 1 1
wait_http 1 readyz 30
member 2 0 "127.0.0.1:$(serf_port 1)"
member 3 0 "127.0.0.1:$(serf_port 1)"
ADDRS=127.0.0.1:$(grpc_port 1),127.0.0.1:$(grpc_port 2),127.0.0.1:$(grpc_port 3)
CREDS=$work/ctl-1/data
deadline=$((SECONDS + 60))
until [ "$(ctl operator raft list-peers -o json 2>/dev/null | jq '[.peers[]? | select(.alive and .voter)] | length')" = 3 ]; do
  if [ $SECONDS -ge $deadline ]; then
    echo "bench-group: the group did not reach three live voters in 60 s" >&2
    ctl operator raft list-peers >&2 || true
    exit 1
  fi
  sleep 0.2
done
# leader: the member whose /readyz answers 200, waiting for one.
leader() {
  local i deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    for i in "$@"; do
      if [ "$(http_code "$i" readyz)" = 200 ]; then echo "$i"; return; fi
    done
    sleep 0.02
  done
  echo "bench-group: no member became ready in 60 s" >&2
  return 1
}
ctl token create --uses "$((RIGS * 3))" --ttl 2h 2>/dev/null | head -1 >"$work/token"
CPU_PIDS=("${pid[1]}" "${pid[2]}" "${pid[3]}")
SIM_DIR=g
lead=$(leader 1 2 3)
echo "-- 3-member group (leader ctl-$lead): every 10 s"
measure "$lead" group-10s "$DURATION" -interval 10s
lead=$(leader 1 2 3)
echo "-- 3-member group (leader ctl-$lead): saturation"
measure "$lead" group-sat "$SAT_DURATION" -saturate
ratio "every 10 s" single-10s group-10s
ratio "saturation" single-sat group-sat

# Failover under the 10 s load, with the same rigs.
rigs_json() { ctl rigs list -o json 2>/dev/null || true; }
# seqs: NAME LASTSEQ ONLINE for the simulator's rigs.
seqs() { rigs_json | jq -r '.rigs[]? | select(.name | startswith("g-")) | "\(.name) \(.lastSeq // 0) \(.online // false)"'; }
"$BIN/quarry-sim" -controller "$ADDRS" -token-file "$work/token" -data-dir "$work/sim-g" -rigs "$RIGS" -prefix g \
  -interval 10s -log-level warn >/dev/null 2>>"$OUT/sim-failover.log" &
simpid=$!
pids+=("$simpid")
# Steady load first: every rig online and reporting since it connected.
deadline=$((SECONDS + 300))
base=
while :; do
  s=$(seqs)
  online=$(awk '$3 == "true"' <<<"$s" | wc -l)
  if [ -z "$base" ] && [ "$online" -eq "$RIGS" ]; then base=$s; fi
  if [ -n "$base" ] && [ "$(awk 'NR == FNR { b[$1] = $2; next } $3 == "true" && $2 > b[$1]' <(echo "$base") - <<<"$s" | wc -l)" -eq "$RIGS" ]; then
    before=$s
    break
  fi
  if [ $SECONDS -ge $deadline ] || ! kill -0 "$simpid" 2>/dev/null; then
    echo "bench-group: the $RIGS rigs did not all come online and report ($online online)" >&2
    exit 1
  fi
  sleep 0.2
done
lead=$(leader 1 2 3)
others=()
for i in 1 2 3; do [ "$i" = "$lead" ] || others+=("$i"); done
t_kill=$(now)
kill -KILL "${pid[$lead]}"
reap "${pid[$lead]}"
new=$(leader "${others[@]}")
t_ready=$(now)
t_online=
deadline=$((SECONDS + 300))
while :; do
  s=$(seqs)
  t=$(now)
  online=$(awk '$3 == "true"' <<<"$s" | wc -l)
  if [ -z "$t_online" ] && [ "$online" -eq "$RIGS" ]; then t_online=$t; fi
  advanced=$(awk 'NR == FNR { b[$1] = $2; next } $3 == "true" && $2 > b[$1]' <(echo "$before") - <<<"$s" | wc -l)
  if [ "$advanced" -eq "$RIGS" ]; then t_all=$t; break; fi
  if [ $SECONDS -ge $deadline ]; then
    echo "bench-group: after 300 s only $advanced of $RIGS rigs report to ctl-$new ($online online)" >&2
    exit 1
  fi
  sleep 0.1
done
awk -v k="$t_kill" -v r="$t_ready" -v o="$t_online" -v a="$t_all" -v old="$lead" -v new="$new" -v n="$RIGS" 'BEGIN {
  printf "failover: leader ctl-%s SIGKILLed under the 10 s load → ctl-%s /readyz 200 after %.2f s; all %d rigs online on it after %.2f s; all with a newer report committed (last seq past its value just before the kill) after %.2f s\n",
    old, new, r - k, n, o - k, a - k
}'
kill "$simpid" 2>/dev/null || true
reap "$simpid"

echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
# Leadership changes beyond the one the failover caused mean the members
# missed raft's deadlines under this load.
echo "  leadership taken $(cat "$OUT"/ctl-*.log | grep -c 'leading the group; controller serving' || true) times, lost by stepping down $(cat "$OUT"/ctl-*.log | grep -c 'no longer leading' || true) times (members log at ${BENCH_GROUP_LOG_LEVEL:-info})"
for f in "$OUT"/*.log; do
  printf '  %s: %d warnings, %d errors\n' "${f#"$PWD"/}" "$(grep -c 'level=WARN' "$f" || true)" "$(grep -c 'level=ERROR' "$f" || true)"
done
