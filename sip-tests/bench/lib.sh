# lib.sh - shell helpers shared by the SIPp benchmark scripts (flood.sh, soak.sh).
# Source it after setting MAX_SECS (watchdog), METRICS_PORT and NICE; background SIPps
# started with sipp_bg are killed on exit. PIN (an array, e.g. `taskset -c 0`) prefixes
# sipp_bg's SIPp; STAT_SECS is its statistics interval (default 1).
PIDS=""
PIN=()
cleanup() { local p; for p in $PIDS; do kill "$p" 2>/dev/null; done; }
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
# sipp_bg <name> <args...>: SIPp in the background, files <name>.{stat.csv,err.log,stdout,pid}.
sipp_bg() {
	local pre=$1; shift
	"${PIN[@]}" nice -n "$NICE" sipp "$@" -nostdin -trace_stat -stf "$pre.stat.csv" -fd "${STAT_SECS:-1}" \
		-trace_err -error_file "$pre.err.log" >"$pre.stdout" 2>&1 &
	echo $! >"$pre.pid"
	PIDS="$PIDS $!"
}
