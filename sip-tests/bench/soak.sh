#!/usr/bin/env bash
# soak.sh - long run of Hotline (release) under a realistic call mix, sampling what a leak
# would make grow. Loopback only, bounded (MINUTES + a fixed tail, watchdog).
#
# Mix (SIPp callers, each class its own SIPp at its own rate, every call with RTP):
#   talk     : 4000 -> queue "bench", an agent answers (SIPp UAS echoing RTP), talk TALK_MS
#   abandon  : 4001 -> queue "hold" (no agents): music on hold, the caller gives up after
#              ABANDON_MS (CDR abandoned)
#   ivr      : 4002 -> menu "main" (spoken prompt, no key pressed: after its timeout the
#              default route, queue "bench"), then talk TALK_MS
#   transfer : 4003 -> queue "xfer"; the xfer agent answers and blind-transfers (REFER) the
#              caller to 4000 after 1 s, a bench agent answers, talk TALK_MS
# Defaults are half of the measured capacity (README "Call path": about 1,000 bridged
# calls with RTP on two cores): 23 calls/s, 20 s talk; measured about 400 calls up at once
# (TALK_RATE=16 would make it about 490).
#
# Each minute it prints one line "soak t=... rss_kb= fds= sockets= tasks= rtp_ports= calls="
# (RSS, fds and sockets from /proc, tasks and RTP ports from Hotline's /metrics). After the
# load it waits for the calls to end and prints the growth: RSS from the first full-load
# minute to the last, and idle-before vs idle-after for tasks, fds (by kind, the CDR
# store's pooled connections apart) and RTP ports; and checks that every call SIPp placed
# has a CDR in the SQLite store. SHARED (../shared/bench/sip) has the agents' scenarios.
#
# Usage:  sip-tests/bench/soak.sh MINUTES          (e.g. 2 for a check, 30 for the soak)
# Env:    TALK_RATE (12) ABANDON_RATE (4) IVR_RATE (4) XFER_RATE (3) calls/s per class
#         TALK_MS (20000) ABANDON_MS (5000) AGENTS (800) XFER_AGENTS (60)
#         NICE (5) NO_BUILD=1 (use the existing release binary) BIN (another binary) BASE_PORT (15170)
# Output: lines prefixed "soak ", raw files under sip-tests/out/bench/soak/.
set -u
MINUTES=${1:?usage: soak.sh MINUTES}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
IP=127.0.0.1
TALK_RATE=${TALK_RATE:-12}
ABANDON_RATE=${ABANDON_RATE:-4}
IVR_RATE=${IVR_RATE:-4}
XFER_RATE=${XFER_RATE:-3}
TALK_MS=${TALK_MS:-20000}
ABANDON_MS=${ABANDON_MS:-5000}
AGENTS=${AGENTS:-800}
XFER_AGENTS=${XFER_AGENTS:-60}
SECS=$((MINUTES * 60))
MAX_SECS=$((SECS + 300))
SHARED=${SHARED:-$ROOT/../shared/bench/sip}

STAT_SECS=5
# shellcheck source=lib.sh
. "$HERE/lib.sh"
bench_init soak 15170
XFER_PORT=$((BASE + 12))
CALLER_PORT=$((BASE + 20))
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$HPID/status" 2>/dev/null || echo 0; }
fds() { find "/proc/$HPID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
sockets() { find "/proc/$HPID/fd" -mindepth 1 -maxdepth 1 -lname 'socket:*' 2>/dev/null | wc -l; }
# What the fds are, by kind (sockets by protocol from /proc/net), for the idle comparison.
fd_kinds() {   # fd_kinds <file>
	local l i
	for l in /proc/"$HPID"/fd/*; do
		i=$(readlink "$l" 2>/dev/null) || continue
		case $i in
		socket:*) i=${i#socket:[}; i=${i%]}
			if grep -qs " $i " /proc/"$HPID"/net/udp /proc/"$HPID"/net/udp6; then echo socket:udp
			elif grep -qs " $i " /proc/"$HPID"/net/tcp /proc/"$HPID"/net/tcp6; then echo socket:tcp
			else echo socket:other; fi ;;
		pipe:*) echo pipe ;;
		*) echo "$i" ;;
		esac
	done | sort | uniq -c | sort -k2 >"$1"
}
sample() {   # sample <label>
	echo "soak t=$1 rss_kb=$(rss_kb) fds=$(fds) sockets=$(sockets) tasks=$(metric hotline_tasks_alive) rtp_ports=$(metric hotline_rtp_ports_in_use) calls=$(metric hotline_calls_active) load=$(cut -d' ' -f1 /proc/loadavg)"
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

bench_ready
make_caller_wav   # caller.wav in the working directory (lib.sh)

{
	printf '[sip]\nudp = ["%s:%d"]\ntrusted = ["127.0.0.0/8"]\nauthenticate_requests = false\n' $IP $SUT_PORT
	printf '[media]\nrtp_ip = "%s"\nrtp_ports = [50000, 59999]\nrecord = false\nprompt_cache = "%s/prompts"\n' $IP "$OUT"
	printf '[metrics]\nlisten = "%s:%d"\n' $IP $METRICS_PORT
	printf '[store]\nurl = "sqlite://%s/soak.db"\n' "$OUT"
	printf '[[numbers]]\nnumber = "4000"\nqueue = "bench"\n'
	printf '[[numbers]]\nnumber = "4001"\nqueue = "hold"\n'
	printf '[[numbers]]\nnumber = "4002"\nmenu = "main"\n'
	printf '[[numbers]]\nnumber = "4003"\nqueue = "xfer"\n'
	printf '[[menus]]\nname = "main"\nsay = "Welcome. Please hold."\ntimeout_secs = 1\nretries = 0\ndefault = { queue = "bench" }\n'
	printf '[acd]\n[[acd.queue]]\nname = "bench"\n[[acd.queue]]\nname = "hold"\n[[acd.queue]]\nname = "xfer"\n'
	for i in $(seq "$AGENTS"); do printf '[[acd.agent]]\nid = "agent%04d"\nqueues = { bench = 0 }\n' "$i"; done
	for i in $(seq "$XFER_AGENTS"); do printf '[[acd.agent]]\nid = "xfer%04d"\nqueues = { xfer = 0 }\n' "$i"; done
} >soak.toml
{ echo SEQUENTIAL; for i in $(seq "$AGENTS"); do printf 'agent%04d;%s\n' "$i" $IP; done; } >agents.csv
{ echo SEQUENTIAL; for i in $(seq "$XFER_AGENTS"); do printf 'xfer%04d;%s\n' "$i" $IP; done; } >xfer.csv

echo "soak minutes=$MINUTES rates talk=$TALK_RATE abandon=$ABANDON_RATE ivr=$IVR_RATE transfer=$XFER_RATE /s talk_ms=$TALK_MS agents=$AGENTS+$XFER_AGENTS cpus=$(nproc) load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
hotline_bg soak.toml || exit 1
# Agents register from the ports their UAS then listens on.
sipp_bg register -sf "$SHARED/register.xml" -inf agents.csv $IP:$SUT_PORT -i $IP -p $AGENT_PORT -r 500 -m "$AGENTS" -timeout 60s -timeout_error
wait "$(cat register.pid)"
sipp_bg register-xfer -sf "$SHARED/register.xml" -inf xfer.csv $IP:$SUT_PORT -i $IP -p $XFER_PORT -r 500 -m "$XFER_AGENTS" -timeout 60s -timeout_error
wait "$(cat register-xfer.pid)"
reg=$(( $(statcol register.stat.csv 'SuccessfulCall(C)') + $(statcol register-xfer.stat.csv 'SuccessfulCall(C)') ))
[ "$reg" = $((AGENTS + XFER_AGENTS)) ] || { echo "only $reg agents registered" >&2; exit 1; }
for _ in $(seq 50); do ss -Huan "sport = :$AGENT_PORT" | grep -q . || break; sleep 0.1; done

sipp_bg agents -sf "$SHARED/uas.xml" -i $IP -p $AGENT_PORT -mp 61000 -rtp_echo -timeout "$MAX_SECS"s
sipp_bg xfer-agents -sf "$SCEN/uas_refer_blind.xml" -i $IP -p $XFER_PORT -mp 62000 -key target 4000 -timeout "$MAX_SECS"s
wait_port $AGENT_PORT && wait_port $XFER_PORT || { echo "agent UAS did not start" >&2; exit 1; }
IDLE0=$(sample idle-before)
echo "$IDLE0"
fd_kinds fds-idle-before.txt

# callers: class number rate hold_ms port media_port
start_class() {
	local n=$(( $3 * SECS ))
	[ "$n" -gt 0 ] || return 0
	sipp_bg "uac-$1" -sf "$HERE/uac_rtp.xml" $IP:$SUT_PORT -s "$2" -i $IP -p "$5" -mp "$6" \
		-r "$3" -m "$n" -d "$4" -timeout "$MAX_SECS"s
}
start_class talk 4000 "$TALK_RATE" "$TALK_MS" "$CALLER_PORT" 63000
start_class abandon 4001 "$ABANDON_RATE" "$ABANDON_MS" $((CALLER_PORT + 2)) 64000
start_class ivr 4002 "$IVR_RATE" "$TALK_MS" $((CALLER_PORT + 4)) 65000
start_class transfer 4003 "$XFER_RATE" "$TALK_MS" $((CALLER_PORT + 6)) 60000

SAMPLES=()
for m in $(seq "$MINUTES"); do
	sleep 60
	s=$(sample "${m}m")
	echo "$s"
	SAMPLES+=("$s")
done
# Callers place their last calls at the end of the window; wait for them to finish.
for c in talk abandon ivr transfer; do [ -f "uac-$c.pid" ] && wait "$(cat "uac-$c.pid")"; done
for _ in $(seq 120); do
	[ "$(metric hotline_calls_active)" = 0 ] && [ "$(metric hotline_rtp_ports_in_use)" = 0 ] && break
	sleep 1
done
sleep 5   # UAS timewait; tasks of ended calls are gone
IDLE1=$(sample idle-after)
echo "$IDLE1"
fd_kinds fds-idle-after.txt
# Which kinds of fd differ between the idle samples (count before -> after).
# The CDR store's files (soak.db, -wal) count apart: its SQLite pool opens connections
# (one fd for the database, one for its WAL each) as concurrent writes need them, up to
# its size (4), and sqlx closes them after 10 idle minutes, so a few more of those after
# a load is the pool, not a leak. Any other growth is.
join -1 2 -2 2 -a 1 -a 2 -e 0 -o 0,1.1,2.1 fds-idle-before.txt fds-idle-after.txt |
	awk '$2 != $3 { printf "soak fds_changed %s %d->%d\n", $1, $2, $3; d = 1 } END { if (!d) print "soak fds_changed none" }'
FDS_STORE=$(join -1 2 -2 2 -a 1 -a 2 -e 0 -o 0,1.1,2.1 fds-idle-before.txt fds-idle-after.txt |
	awk '$1 ~ /\/soak\.db(-wal)?$/ { g += $3 - $2 } END { print g + 0 }')

placed=0 failed=0
for c in talk abandon ivr transfer; do
	ok=$(statcol "uac-$c.stat.csv" 'SuccessfulCall(C)'); f=$(statcol "uac-$c.stat.csv" 'FailedCall(C)')
	echo "soak class=$c ok=$ok failed=$f"
	placed=$((placed + ok + f)); failed=$((failed + f))
done
kill "$HPID" 2>/dev/null; wait "$HPID" 2>/dev/null
cdrs=$(python3 -c "import sqlite3,sys; c=sqlite3.connect('soak.db'); print(c.execute('select count(*) from calls where direction=\"inbound\"').fetchone()[0]); print(' '.join(f'{r}={n}' for r,n in c.execute('select result, count(*) from calls group by result')), file=sys.stderr)" 2>cdr_results.txt)
echo "soak cdrs=$cdrs placed=$placed failed=$failed results: $(cat cdr_results.txt)"
first=${SAMPLES[0]:-$IDLE0}
last=${SAMPLES[$((${#SAMPLES[@]} - 1))]:-$IDLE1}
awk -v r0="$(field rss_kb "$first")" -v r1="$(field rss_kb "$last")" -v m="$MINUTES" \
	-v t0="$(field tasks "$IDLE0")" -v t1="$(field tasks "$IDLE1")" \
	-v f0="$(field fds "$IDLE0")" -v f1="$(field fds "$IDLE1")" \
	-v p1="$(field rtp_ports "$IDLE1")" -v ri0="$(field rss_kb "$IDLE0")" -v ri1="$(field rss_kb "$IDLE1")" \
	-v fs="$FDS_STORE" -v s0="$(field sockets "$IDLE0")" -v s1="$(field sockets "$IDLE1")" 'BEGIN {
	span = m > 1 ? m - 1 : 1
	pct = r0 > 0 ? (r1 - r0) / r0 * 100 : 0
	printf "soak growth rss_loaded_first_to_last_kb=%d (%.1f%%, %.0f kb/min over %d min) rss_idle_before=%d rss_idle_after=%d tasks_idle %d->%d fds_idle %d->%d (store pool %+d, other %+d) sockets_idle %d->%d rtp_ports_after=%d\n",
		r1 - r0, pct, (r1 - r0) / span, span, ri0, ri1, t0, t1, f0, f1, fs, f1 - f0 - fs, s0, s1, p1 }'
