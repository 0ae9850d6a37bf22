#!/usr/bin/env bash
# flood.sh - answer and queue times of legitimate calls, unloaded and under a SIP flood
# (issue #8: "queue/answer times stay within 2x of the unloaded figures"). Loopback only,
# bounded (a watchdog ends everything after the phases plus a margin).
#
# One Hotline (release) with the SIP guard on, a queue "bench" reached by two numbers (4000
# for the unloaded phase, 4001 for the flooded one, so the CDRs tell the phases apart) and
# AGENTS agents: SIPp UAS phones registered from 127.0.0.4 (trusted: the centre's own
# phones) that answer at once. Each phase, a legitimate caller at 127.0.0.3 (not trusted:
# digest auth, 407 first) places CALLS calls at RATE/s, each HOLD_MS in all (queue + talk):
#   1. unloaded;
#   2. while SIPp at 127.0.0.1 floods INVITE+REGISTER pairs at FLOOD_RATE/s (as fast as
#      it can), started first so the guard has blocked it before the calls begin.
# Per phase it prints the success rate, INVITE -> 200 (SIPp's response time from the first
# INVITE to the 200, the digest challenge included; SIPp's clock steps about 4 ms, so a
# fast median reads 0 and its ratio "-") and the queue wait (CDR wait_ms:
# queued -> answered by the agent), median and p99, and the flood/unloaded ratio of each.
#
# Usage:  sip-tests/bench/flood.sh
# Env:    RATE (50) CALLS (1000) HOLD_MS (2000) AGENTS (200) FLOOD_RATE (20000)
#         GUARD_RATE (300) GUARD_BURST (300) NICE (5) NO_BUILD=1 BIN BASE_PORT (15370)
#         FLOOD_CPU (unset): pin the flooding SIPp to this CPU and everything else (Hotline,
#         the legitimate caller, the agents) to MAIN_CPUS (default: the other CPUs), so the
#         attacker's own CPU does not come out of the centre's, as with an attacker on
#         another host; both phases run pinned alike.
# Output: lines prefixed "flood ", raw files under sip-tests/out/bench/flood/.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RATE=${RATE:-50}
CALLS=${CALLS:-1000}
HOLD_MS=${HOLD_MS:-2000}
AGENTS=${AGENTS:-200}
FLOOD_RATE=${FLOOD_RATE:-20000}
GUARD_RATE=${GUARD_RATE:-300}
GUARD_BURST=${GUARD_BURST:-300}
PHASE_SECS=$((CALLS / RATE + HOLD_MS / 1000 + 30))
MAX_SECS=$((2 * PHASE_SECS + 120))

# shellcheck source=lib.sh
. "$HERE/lib.sh"
bench_init flood 15370
LEGIT_PORT=$((BASE + 20))
FLOOD_PORT=$((BASE + 30))
PIN_MAIN=(); PIN_FLOOD=()
if [ -n "${FLOOD_CPU:-}" ]; then
	MAIN_CPUS=${MAIN_CPUS:-$(seq 0 $(($(nproc) - 1)) | grep -vx "$FLOOD_CPU" | paste -sd, -)}
	PIN_MAIN=(taskset -c "$MAIN_CPUS"); PIN_FLOOD=(taskset -c "$FLOOD_CPU")
fi
PIN=("${PIN_MAIN[@]}")   # sipp_bg pins by PIN
# median and p99 of the numbers on stdin: "median p99 count"
stats() { sort -n | awk '{ v[NR] = $1 } END {
	if (!NR) { print "- - 0"; exit }
	m = int((NR + 1) / 2); p = int(NR * 0.99 + 0.999); if (p > NR) p = NR
	print v[m], v[p], NR }'; }

bench_ready

{
	printf '[sip]\nudp = ["127.0.0.1:%d"]\ntrusted = ["127.0.0.4/32"]\ndigest_algorithms = ["MD5"]\n' $SUT_PORT
	printf '[sip.guard]\nrate = %d\nburst = %d\nblock_secs = 600\n' "$GUARD_RATE" "$GUARD_BURST"
	printf '[[users]]\nname = "alice"\npassword = "alice-pw"\n'
	printf '[media]\nrtp_ip = "127.0.0.1"\nrtp_ports = [40000, 49999]\nrecord = false\n'
	printf '[metrics]\nlisten = "127.0.0.1:%d"\n' $METRICS_PORT
	printf '[store]\nurl = "sqlite://%s/flood.db"\n' "$OUT"
	printf '[[numbers]]\nnumber = "4000"\nqueue = "bench"\n[[numbers]]\nnumber = "4001"\nqueue = "bench"\n'
	printf '[acd]\n[[acd.queue]]\nname = "bench"\n'
	for i in $(seq "$AGENTS"); do printf '[[acd.agent]]\nid = "agent%04d"\nqueues = { bench = 0 }\n' "$i"; done
} >flood.toml
{ echo SEQUENTIAL; for i in $(seq "$AGENTS"); do printf 'agent%04d\n' "$i"; done; } >agents.csv

echo "flood rate=$RATE/s calls=$CALLS hold_ms=$HOLD_MS agents=$AGENTS flood_rate=$FLOOD_RATE/s guard=$GUARD_RATE/s+$GUARD_BURST cpus=$(nproc) flood_cpu=${FLOOD_CPU:-shared} load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
hotline_bg flood.toml "${PIN_MAIN[@]}" || exit 1
sipp_bg register -sf "$SCEN/register_csv.xml" -inf agents.csv 127.0.0.1:$SUT_PORT -i 127.0.0.4 -p $AGENT_PORT \
	-r 200 -m "$AGENTS" -timeout 60s -timeout_error
wait "$(cat register.pid)"
[ "$(statcol register.stat.csv 'SuccessfulCall(C)')" = "$AGENTS" ] || { echo "agents did not register" >&2; exit 1; }
for _ in $(seq 50); do ss -Huan "sport = :$AGENT_PORT" | grep -q . || break; sleep 0.1; done
sipp_bg agents -sf "$SCEN/uas_call.xml" -i 127.0.0.4 -p $AGENT_PORT -mp 51000 -m 1000000 -timeout "$MAX_SECS"s
wait_port $AGENT_PORT || { echo "agent UAS did not start" >&2; exit 1; }

# phase <name> <number>: CALLS legitimate calls; prints success and INVITE->200 times.
phase() {
	sipp_bg "legit-$1" -sf "$HERE/uac_queue_rtd.xml" 127.0.0.1:$SUT_PORT -s "$2" -i 127.0.0.3 -p "$3" \
		-au alice -ap alice-pw -key caller alice -r "$RATE" -m "$CALLS" -d "$HOLD_MS" \
		-timeout "$PHASE_SECS"s -trace_rtt -rtt_freq 1
	wait "$(cat "legit-$1.pid")"
	local ok f
	ok=$(statcol "legit-$1.stat.csv" 'SuccessfulCall(C)'); f=$(statcol "legit-$1.stat.csv" 'FailedCall(C)')
	# SIPp's rtt file: date_ms;response_time_ms;rtd_no per call.
	read -r m p n < <(cat ./uac_queue_rtd_*_rtt.csv 2>/dev/null |
		awk -F';' '$2 ~ /^[0-9.]+$/ { print $2 }' | stats)
	eval "INV_$1=\"$m $p\""
	echo "flood phase=$1 calls=$CALLS ok=$ok failed=$f success=$(awk -v o="$ok" -v c="$CALLS" 'BEGIN{printf "%.2f", 100*o/c}')% invite_200_ms median=$m p99=$p n=$n load=$(cut -d' ' -f1 /proc/loadavg)"
	mkdir -p "rtt-$1" && mv ./uac_queue_rtd_*_rtt.csv "rtt-$1/" 2>/dev/null
}
phase unloaded 4000 $LEGIT_PORT

dropped0=$(metric hotline_sip_guard_dropped_total)
PIN=("${PIN_FLOOD[@]}")
sipp_bg flood -sf "$HERE/flood_inv_reg.xml" 127.0.0.1:$SUT_PORT -i 127.0.0.1 -p $FLOOD_PORT \
	-r "$FLOOD_RATE" -l 1000000 -m $((FLOOD_RATE * (PHASE_SECS + 10))) -timeout "$((PHASE_SECS + 10))"s
PIN=("${PIN_MAIN[@]}")
for _ in $(seq 100); do   # the guard has blocked the flood once it starts dropping
	[ "$(metric hotline_sip_guard_dropped_total)" -gt "$dropped0" ] 2>/dev/null && break; sleep 0.1
done
sent0=$(statcol flood.stat.csv 'OutgoingCall(C)')
phase flood 4001 $((LEGIT_PORT + 2))
sent1=$(statcol flood.stat.csv 'OutgoingCall(C)')
dropped1=$(metric hotline_sip_guard_dropped_total)
kill "$(cat flood.pid)" 2>/dev/null
echo "flood attacker: $(( (sent1 - sent0) * 2 )) requests sent during the flooded phase (stat sampled per second), $((dropped1 - dropped0)) dropped by the guard in all"

# Queue wait from the CDRs: queued -> answered by the agent, per phase.
for ph in "unloaded 4000" "flood 4001"; do
	set -- $ph
	read -r m p n < <(python3 -c "
import sqlite3; c = sqlite3.connect('flood.db')
for (w,) in c.execute(\"select wait_ms from calls where dialed = ? and result = 'answered'\", ('$2',)): print(w)" | stats)
	res=$(python3 -c "
import sqlite3; c = sqlite3.connect('flood.db')
print(' '.join(f'{r}={n}' for r, n in c.execute('select result, count(*) from calls where dialed = ? group by result', ('$2',))))")
	echo "flood phase=$1 queue_wait_ms median=$m p99=$p answered=$n cdrs: $res"
	eval "Q_$1=\"$m $p\""
done
kill "$HPID" 2>/dev/null; wait "$HPID" 2>/dev/null
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "-" }'; }
read -r ium iup <<<"$INV_unloaded"; read -r ifm ifp <<<"$INV_flood"
read -r qum qup <<<"$Q_unloaded"; read -r qfm qfp <<<"$Q_flood"
echo "flood ratio (flooded / unloaded): invite_200 median $(ratio "$ium" "$ifm") p99 $(ratio "$iup" "$ifp"); queue_wait median $(ratio "$qum" "$qfm") p99 $(ratio "$qup" "$qfp") (goal: <= 2)"
echo "flood load_after=$(cut -d' ' -f1-3 /proc/loadavg); raw files in $OUT"
