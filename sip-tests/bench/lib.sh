# lib.sh - shell helpers shared by the SIPp benchmark scripts (flood.sh, soak.sh,
# callpath.sh). Source it after setting MAX_SECS (watchdog); METRICS_PORT and NICE must be
# set before the helpers run (bench_init sets them). Background SIPps started with sipp_bg
# (and pids the script adds to PIDS) are killed on exit, then the script's own `on_exit`
# runs if it defines one. PIN (an array, e.g. `taskset -c 0`) prefixes sipp_bg's SIPp;
# STAT_SECS is its statistics interval (default 1).
PIDS=""
PIN=()
cleanup() {
	local p
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	if declare -F on_exit >/dev/null; then on_exit; fi
}
trap 'cleanup; exit 130' INT TERM
( trap 'kill $sp 2>/dev/null; exit 0' TERM
  sleep "$MAX_SECS" & sp=$!; wait $sp
  echo "WATCHDOG: ${MAX_SECS}s reached, aborting" >&2; kill -TERM $$ ) &
WD_PID=$!
trap 'kill $WD_PID 2>/dev/null; cleanup' EXIT

# statcol <sipp stat csv> <column>: the column's last value (0 if absent).
statcol() {
	awk -F';' -v c="$2" 'NR==1{for(i=1;i<=NF;i++) if($i==c) k=i; next} {v=$k} END{print v+0}' "$1" 2>/dev/null || echo 0
}
# metric <name>: the value of an unlabelled metric on Hotline's /metrics (-1 if absent).
metric() { curl -s --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v k="$1" '$1 == k { print $2 + 0; f = 1 } END { if (!f) print -1 }'; }
# wait_port <udp port>: until something listens (bounded, 10 s).
wait_port() {
	for _ in $(seq 100); do ss -Huan "sport = :$1" 2>/dev/null | grep -q . && return 0; sleep 0.1; done
	return 1
}
# hotline_bg <config> [command...]: Hotline (BIN) serving <config> in the background
# (after `command`, e.g. a taskset; niced), HPID its pid, its output in hotline.log.
# Returns once Hotline itself has bound SUT_PORT; fails when it exits first (a port
# taken by another process would otherwise pass for Hotline listening).
hotline_bg() {
	local cfg=$1; shift
	NO_COLOR=1 RUST_LOG=warn "$@" nice -n "$NICE" "$BIN" serve --config "$cfg" >hotline.log 2>&1 &
	HPID=$!
	PIDS="$PIDS $HPID"
	for _ in $(seq 300); do
		ss -Huanp "sport = :$SUT_PORT" 2>/dev/null | grep -q "pid=$HPID," && return 0
		kill -0 "$HPID" 2>/dev/null || break
		sleep 0.1
	done
	echo "hotline did not start; see $OUT/hotline.log" >&2
	return 1
}
# sipp_bg <name> <args...>: SIPp in the background, files <name>.{stat.csv,err.log,stdout,pid}.
sipp_bg() {
	local pre=$1; shift
	"${PIN[@]}" nice -n "$NICE" sipp "$@" -nostdin -trace_stat -stf "$pre.stat.csv" -fd "${STAT_SECS:-1}" \
		-trace_err -error_file "$pre.err.log" >"$pre.stdout" 2>&1 &
	echo $! >"$pre.pid"
	PIDS="$PIDS $!"
}
# sipp_wait <name>: waits for sipp_bg's SIPp <name>, drops its pid (file and PIDS, so a
# later cleanup cannot hit a reused pid); returns its exit status.
sipp_wait() {
	local p rc
	p=$(cat "$1.pid"); wait "$p"; rc=$?
	rm -f "$1.pid"
	PIDS=" $PIDS "; PIDS=${PIDS// $p / }
	return $rc
}
# make_caller_wav: caller.wav in the working directory, 4 s of a 440 Hz tone as G.711
# u-law WAV (the format SIPp's rtp_stream plays).
make_caller_wav() {
	python3 - <<'PY'
import math, struct
def ulaw(s):
    s = max(-32635, min(32635, s)); sign = 0x80 if s < 0 else 0; s = abs(s) + 0x84
    exp = 7
    while exp > 0 and not (s & (0x4000 >> (7 - exp))): exp -= 1
    return (~(sign | (exp << 4) | ((s >> (exp + 3)) & 0x0F))) & 0xFF
data = bytes(ulaw(int(8000 * math.sin(2 * math.pi * 440 * i / 8000))) for i in range(32000))
n = len(data)
hdr = b"RIFF" + struct.pack("<I", 4 + 26 + 12 + 8 + n) + b"WAVEfmt " + struct.pack("<IHHIIHHH", 18, 7, 1, 8000, 8000, 1, 8, 0)
hdr += b"fact" + struct.pack("<II", 4, n) + b"data" + struct.pack("<I", n)
open("caller.wav", "wb").write(hdr + data)
PY
}
# bench_init <name> <base port>: the run's directory OUT (default
# sip-tests/out/bench/<name>, emptied of the last run's files; the working directory from
# here on), ports from BASE_PORT (default <base port>): SUT_PORT (Hotline's SIP),
# METRICS_PORT (+1), AGENT_PORT (+10); SCEN (the scenarios), and the defaults of NICE (5)
# and BIN (the release binary). ROOT must be set.
bench_init() {
	OUT=${OUT:-$ROOT/sip-tests/out/bench/$1}
	SCEN="$ROOT/sip-tests/scenarios"
	BASE=${BASE_PORT:-$2}
	SUT_PORT=$BASE
	METRICS_PORT=$((BASE + 1))
	AGENT_PORT=$((BASE + 10))
	NICE=${NICE:-5}
	BIN=${BIN:-$ROOT/target/release/hotline}
	mkdir -p "$OUT" && cd "$OUT" || exit 1
	rm -f ./*.csv ./*.log ./*.stdout ./*.pid "./$1.db"*
}
# bench_ready: SIPp is installed, the release binary is built (unless NO_BUILD=1), and
# the open-file limit is raised to the hard limit (every call holds sockets).
bench_ready() {
	command -v sipp >/dev/null || { echo "sipp missing (apt-get install sip-tester)" >&2; exit 1; }
	if [ "${NO_BUILD:-0}" != 1 ]; then
		(cd "$ROOT" && nice -n "$NICE" cargo build --release --locked -p hotline) || exit 1
	fi
	ulimit -n "$(ulimit -Hn)" 2>/dev/null
}
