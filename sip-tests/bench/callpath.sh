#!/usr/bin/env bash
# callpath.sh - benchmark of Hotline's call path (B2BUA + ACD queue + media relay) with
# SIPp on loopback, bounded in time. Hotline runs in release with a generated config:
# AGENTS agents (user00001..) in one queue behind number 4000, registered by SIPp
# (REGISTER from the agents' UAS port, trusted loopback, no auth); one SIPp UAS answers
# for every agent; SIPp callers dial 4000.
#
#   cps   : signalling. CPS_RATE calls/s for DUR s, each held HOLD_MS after the ACK, no
#           RTP. Every call is answered by Hotline (music), queued, offered by the ACD to a
#           free agent, answered by the agent's UAS and bridged; the caller's BYE makes
#           Hotline BYE the agent. Reports calls/s achieved with 0 failed calls (callers and
#           agents): "steady" = successful calls per second over the steady window (seconds
#           ceil(HOLD)+3 .. DUR of SIPp's 1-s statistics, next to what the callers offered in
#           it, "steady_offered"), "achieved" = ok / (wall - hold) over the whole run (SIPp's
#           start and the polling included); Hotline CPU ms per call (utime+stime delta of
#           its process / calls).
#   media : ramp of concurrent bridged calls with RTP both ways: callers stream caller.wav
#           (PCMU, 50 packets/s, SIPp rtp_stream), the agents' UAS echoes (-rtp_echo).
#           For each N in MEDIA_STEPS: set up N calls at SETUP_RATE/s, let them settle,
#           measure MEDIA_SECS, hang up. Reports loss (from Hotline's per-call relay
#           counters, logged at session end, plus kernel drops on Hotline's sockets), CPU %
#           of a core per relayed call, RSS per call, and SIPp's own CPU.
#
# Usage:  sip-tests/bench/callpath.sh [cps] [media]        (default: both)
# Env:    AGENTS (3000) CPS_RATE (1000) DUR (10) HOLD_MS (1000)
#         MEDIA_STEPS ("250 500 750 1000"; add 1500 2000 to go on) MEDIA_SECS (15) SETUP_RATE (200) WARM (3)
#         UAS_COUNT (4): agent UAS processes (agents split among them; each -rtp_echo is one
#           thread on one socket, so several keep the echo from being the bottleneck)
#         RECORD (0): 1 = record every bridged call (Hotline's default), to measure its cost
#         THREADS: Hotline's [server] threads (default: unset = one worker per core)
#         NICE (-10 as root, else 0) NO_BUILD=1 (use the existing release binary) BIN (another binary)
#         REPEAT (1): run every part N times, each with a fresh Hotline; the summary gives
#           medians with min-max (lines "callpath cps_median", "callpath media_median")
#         ECHO_RMEM (0 = the kernel default, 212992 here): receive buffer in bytes for the
#           echo UASs' media sockets. A load-generator setting: SIPp's -rtp_echo socket
#           has no option for it (-buff_size sizes SIP sockets only), so the script raises
#           net.core.rmem_default (root) just while the echo UASs bind, and restores it at
#           once (and on exit). Hotline's sockets are not affected.
#         RTP_THREADTASKS (20, SIPp's default): the callers' -rtp_threadtasks, calls per SIPp
#           playback thread. A load-generator setting: each thread wakes every millisecond
#           one of its calls is due, so at 20 per thread 2,000 calls are 100 threads and
#           ~100,000 wake-ups/s of SIPp competing with Hotline for the cores
#         SUT_PORT (5070) AGENT_PORT (5080) CALLER_PORT (5090) UAS_MP (6000): cps only, to run
#           beside another run of this script on the same machine (the media part expects
#           the defaults)
#         MAX_SECS (watchdog for the whole script, default 900 per REPEAT)
#         CPS_BINS (default: BIN): cps once per binary listed, side by side in each run
#           (before/after in the same conditions); lines and medians carry bin=<file name>
#         CALLGRIND (0): 1 = cps under valgrind's callgrind (collecting only while the
#           callers run) for the load-independent figure: instructions per call (line
#           "callpath cps_callgrind ... ir_per_call="; raw callgrind files under OUT). Use
#           a low CPS_RATE (20) and THREADS=1; REG_RATE (registrations/s, default 1000;
#           100 under callgrind) and the startup wait (120 s under callgrind) adapt
#         PERF_STAT (0): 1 = count Hotline's system calls (by type), context switches and CPU
#           migrations with `perf stat -p` while the callers run (cps only; lines
#           "callpath cps_syscalls" with per-call figures, raw counts in cps.perf.txt).
#           Load-independent, unlike CPU time. Per-thread voluntary/involuntary context
#           switches from /proc and user vs system CPU are on every cps line anyway
#         The media capacity lines give the largest N with < 0.1 % loss and no failed call,
#           and the largest N that was also timely (median over calls of the longest socket
#           wait and of the longest read gap under 150 ms): a saturated machine loses
#           nothing while serving datagrams seconds late
#         HOTLINE_MEDIA_RTP_WAIT (unset): 1 = Hotline measures how long each datagram waited
#           in its socket (lines carry rtp_wait_ms_p50/p99/max over the sessions, beside
#           read_gap_ms_*: the longest gap between a ticked session's reads)
#         SHARED_RTP_PORT (unset): callers' RTP on [media] shared_rtp_port = this port
#         KERNEL_RELAY (unset): [media] kernel_relay on these interfaces (e.g. "lo"; root and a
#           build with clang): bridged audio is forwarded by the kernel in the senders'
#           softirq, so Hotline's own CPU no longer holds the relay's cost: compare
#           machine_busy_pct (every process and softirq) with a run without it
#         TICKS (unset: Hotline's default): media part once per value of [media] tick_ms,
#           side by side in each run, e.g. TICKS="0 10" (0 = RTP read per datagram); lines
#           and medians carry tick_ms=
# Output: one machine-readable line per figure, prefixed "callpath ", then a table
#         against the references; raw files under sip-tests/out/bench/callpath/.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SHARED=${SHARED:-$(cd "$ROOT/../shared" 2>/dev/null && pwd)}
SIPDIR="$SHARED/bench/sip"
OUT=${OUT:-$ROOT/sip-tests/out/bench/callpath}
IP=127.0.0.1
SUT_PORT=${SUT_PORT:-5070}
AGENT_PORT=${AGENT_PORT:-5080}   # first agent UAS; the others on 5082, 5084, ...
UAS_COUNT=${UAS_COUNT:-4}
CALLGRIND=${CALLGRIND:-0}
if [ "$CALLGRIND" = 1 ]; then REG_RATE=${REG_RATE:-100}; else REG_RATE=${REG_RATE:-1000}; fi
[ "$UAS_COUNT" -ge 1 ] && [ "$UAS_COUNT" -le 4 ] || { echo "UAS_COUNT must be 1..4" >&2; exit 1; }
CALLER_PORT=${CALLER_PORT:-5090}
UAS_MP=${UAS_MP:-6000}   # the agent UASs' media ports (6000, 6010, ...)
AGENTS=${AGENTS:-3000}
CPS_RATE=${CPS_RATE:-1000}
DUR=${DUR:-10}
HOLD_MS=${HOLD_MS:-1000}
MEDIA_STEPS=${MEDIA_STEPS:-250 500 750 1000}
MEDIA_SECS=${MEDIA_SECS:-15}
SETUP_RATE=${SETUP_RATE:-200}
WARM=${WARM:-3}
RECORD=${RECORD:-0}
REPEAT=${REPEAT:-1}
[ "$REPEAT" -ge 1 ] 2>/dev/null || { echo "REPEAT must be a whole number >= 1" >&2; exit 1; }
ECHO_RMEM=${ECHO_RMEM:-0}
RTP_THREADTASKS=${RTP_THREADTASKS:-20}
TICKS=${TICKS:-default}
NTICKS=$(echo "$TICKS" | wc -w)
MAX_SECS=${MAX_SECS:-$((900 * REPEAT * NTICKS))}
if [ "$(id -u)" = 0 ]; then NICE=${NICE:--10}; else NICE=${NICE:-0}; fi
HZ=$(getconf CLK_TCK)
BIN=${BIN:-$ROOT/target/release/hotline}
SCEN=("$@")
[ ${#SCEN[@]} -eq 0 ] && SCEN=(cps media)
mkdir -p "$OUT"
cd "$OUT" || exit 1   # SIPp reads caller.wav from its working directory

# shellcheck source=lib.sh
. "$HERE/lib.sh"   # watchdog, cleanup of PIDS on exit, statcol, wait_port, sipp_bg, sipp_wait
HPID="" UAS_PIDS="" CONFIG=callpath.toml TICK=default

# ------------------------------------------------------------------ helpers
# utime+stime (ticks) of a process and its threads
ticks() {
	local f
	[ -r "/proc/$1/stat" ] || { echo 0; return; }
	f=$(sed 's/^.*) //' "/proc/$1/stat")
	set -- $f
	echo $((${12} + ${13}))
}
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# utime and stime (ticks) of a process and its threads, separately
ticks_split() {
	local f
	[ -r "/proc/$1/stat" ] || { echo "0 0"; return; }
	f=$(sed 's/^.*) //' "/proc/$1/stat")
	set -- $f
	echo "${12} ${13}"
}
# voluntary and involuntary context switches summed over a process's live threads
ctxsw() {
	cat /proc/"$1"/task/*/status 2>/dev/null |
		awk '/^voluntary_ctxt_switches/ { v += $2 } /^nonvoluntary_ctxt_switches/ { n += $2 } END { print v + 0, n + 0 }'
}
nthreads() { ls /proc/"$1"/task 2>/dev/null | wc -l; }
# The system calls counted by type under PERF_STAT=1 (the rest are "other").
PERF_SYSCALLS="recvfrom sendto recvmsg sendmsg recvmmsg sendmmsg epoll_wait epoll_pwait epoll_pwait2 epoll_ctl futex read write pread64 pwrite64 fdatasync fsync socket bind close setsockopt getsockname ioctl mmap munmap madvise mprotect brk sched_yield openat fcntl newfstatat lseek"
# Machine-wide busy and total ticks, then the softirq ticks among the busy ones (loopback
# delivery of the datagrams runs there, charged to no process).
sys_ticks() { awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6, $8}' /proc/stat; }
now() { date +%s.%N; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# Kernel receive-queue drops summed over the UDP sockets a process owns (/proc/net/udp).
sock_drops() {
	find "/proc/$1/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null | tr -dc '0-9\n' |
		awk 'NR==FNR { own[$1] = 1; next } FNR > 1 && ($10 in own) { d += $13 } END { print d + 0 }' - /proc/net/udp
}
# The receive buffer (bytes) of the first echo UAS's audio socket, as the kernel reports it.
echo_rcvbuf() { ss -Huamn "sport = :6000" 2>/dev/null | grep -o 'rb[0-9]*' | head -1 | tr -dc '0-9'; }
# ECHO_RMEM: SIPp's -rtp_echo sockets take the kernel's default receive buffer (SIPp sets
# no SO_RCVBUF on its media sockets; -buff_size is for SIP sockets only). rmem_raise sets
# net.core.rmem_default for the moment the echo UASs bind them; rmem_restore (also run on
# exit, see on_exit) puts the old value back, so sockets opened later get the default.
RMEM_SAVED=""
rmem_raise() {
	[ "$ECHO_RMEM" -gt 0 ] || return 0
	RMEM_SAVED=$(sysctl -n net.core.rmem_default) &&
		sysctl -qw net.core.rmem_default="$ECHO_RMEM" ||
		{ echo "ECHO_RMEM: cannot set net.core.rmem_default (root needed)" >&2; exit 1; }
}
rmem_restore() {
	[ -n "$RMEM_SAVED" ] || return 0
	sysctl -qw net.core.rmem_default="$RMEM_SAVED"; RMEM_SAVED=""
}
on_exit() { rmem_restore; }
wait_free() {
	for _ in $(seq 100); do ss -Huan "sport = :$1" 2>/dev/null | grep -q . || return 0; sleep 0.1; done
	return 1
}

RESULTS=()
emit() { echo "$*"; RESULTS+=("$*"); }

# ------------------------------------------------------------------ setup
command -v sipp >/dev/null || timeout 120 apt-get install -y -q sip-tester >/dev/null ||
	{ echo "sipp missing and apt-get install sip-tester failed" >&2; exit 1; }
[ -f "$SIPDIR/register.xml" ] || { echo "shared harness not found: $SIPDIR" >&2; exit 1; }
if [ "${NO_BUILD:-0}" != 1 ]; then
	(cd "$ROOT" && cargo build --release --locked -p hotline) || exit 1
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null

make_caller_wav   # caller.wav in the working directory (lib.sh)

{
	printf '[sip]\nudp = ["%s:%d"]\ntrusted = ["127.0.0.0/8"]\nauthenticate_requests = false\n' $IP $SUT_PORT
	[ -n "${THREADS:-}" ] && printf '[server]\nthreads = %d\n' "$THREADS"
	printf '[media]\nrtp_ip = "%s"\nrtp_ports = [20000, 39999]\n' $IP
	# SHARED_RTP_PORT=<port>: [media] shared_rtp_port. SIPp 3.6's rtp_stream sends every
	# call's stream from the -mp port, so only one caller can be on the shared port (the
	# others get port pairs): see README, "Shared RTP port".
	[ -n "${SHARED_RTP_PORT:-}" ] && printf 'shared_rtp_port = %d\n' "$SHARED_RTP_PORT"
	[ -n "${KERNEL_RELAY:-}" ] && printf 'kernel_relay = [%s]\n' "$(printf '"%s",' $KERNEL_RELAY | sed 's/,$//')"
	# Recording is on by default in Hotline; the relay figure is measured without it
	# (RECORD=1 measures with it: one stereo WAV per call, 16 KB/s, under $OUT/recordings,
	# deleted after each part).
	if [ "$RECORD" = 1 ]; then printf 'record = true\nrecordings = "%s/recordings"\n' "$OUT"; else printf 'record = false\n'; fi
	printf '[[numbers]]\nnumber = "4000"\nqueue = "bench"\n'
	printf '[acd]\n[[acd.queue]]\nname = "bench"\n'
	for i in $(seq "$AGENTS"); do printf '[[acd.agent]]\nid = "user%05d"\nqueues = { bench = 0 }\n' "$i"; done
} >"$OUT/callpath.toml"
for k in $(seq 0 $((UAS_COUNT - 1))); do   # agent i is served by UAS (i-1) mod UAS_COUNT
	{ echo SEQUENTIAL; for i in $(seq $((k + 1)) "$UAS_COUNT" "$AGENTS"); do printf 'user%05d;%s\n' "$i" $IP; done; } >"$OUT/agents-$k.csv"
done
uas_port() { echo $((AGENT_PORT + 2 * $1)); }
# start_uas <prefix> <sipp args...> : one UAS per agent group, pids in UAS_PIDS
start_uas() {
	local pre=$1 k; shift
	UAS_PIDS=""
	for k in $(seq 0 $((UAS_COUNT - 1))); do
		sipp_bg "$pre-$k" -sf "$SIPDIR/uas.xml" -i $IP -p "$(uas_port "$k")" -mp $((UAS_MP + 10 * k)) "$@"
		UAS_PIDS="$UAS_PIDS $(cat "$pre-$k.pid")"
	done
	for k in $(seq 0 $((UAS_COUNT - 1))); do wait_port "$(uas_port "$k")"; done
}
# stop_uas <prefix> : stop them (their 4 s timewait done) and sum a stat column
stop_uas() {
	local pre=$1 k
	sleep 5
	for k in $(seq 0 $((UAS_COUNT - 1))); do kill "$(cat "$pre-$k.pid")" 2>/dev/null; sipp_wait "$pre-$k"; done
	UAS_PIDS=""
}
uas_stat() { local k t=0; for k in $(seq 0 $((UAS_COUNT - 1))); do t=$((t + $(statcol "$1-$k.stat.csv" "$2"))); done; echo $t; }
sum_ticks() { local p t=0; for p in "$@"; do t=$((t + $(ticks "$p"))); done; echo $t; }
sum_drops() { local p t=0; for p in "$@"; do t=$((t + $(sock_drops "$p"))); done; echo $t; }
# steady <sipp stat csv> <hold ms> <dur s>: "completed offered window_s" over the steady
# window of a cps run, from SIPp's 1-s statistics lines: from second ceil(hold)+3 (its
# calls were created after SIPp's first second, whose set-up straggles) to the last second
# in which the callers still create calls (second DUR). Successful calls per second there is
# the rate Hotline sustained; the whole-run figure (ok / (wall - hold)) also counts SIPp's
# start, the last calls' set-up and the script's 0.2-s polling, so a run that kept up
# with every call still shows ~1.3 % less than the offer at 1,000/s for 10 s.
steady() {
	awk -F';' -v hold="$2" -v dur="$3" '
		NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
		{ k = NR - 2; n = split($col["CurrentTime"], t, "\t"); at[k] = t[n]
		  ok[k] = $col["SuccessfulCall(P)"]; out[k] = $col["OutgoingCall(P)"] }
		END {
			a = int((hold + 999) / 1000) + 3
			if (dur < a || !(dur in at) || !((a - 1) in at)) { print "0 0 0"; exit }
			for (k = a; k <= dur; k++) { c += ok[k]; o += out[k] }
			printf "%d %d %.3f\n", c, o, at[dur] - at[a - 1] }' "$1"
}

echo "sipp: $(sipp -v 2>&1 | grep -o 'v[0-9.]*' | head -1)  cpus: $(nproc)  loadavg before: $(cut -d' ' -f1-3 /proc/loadavg)"

# A fresh Hotline per scenario (so memory per call is not blurred by an earlier run), with
# every agent registered from the UAS port: Hotline sends their calls back there.
start_hotline() {
	wait_free $SUT_PORT || { echo "port $SUT_PORT busy" >&2; exit 1; }
	# Per-call media counters come from the media session's end-of-call line (target
	# hotline_media::stats); everything else at warn, so logging costs nothing per call.
	local wrap=() tries=1
	# A fresh CDR database too: the store's page writes per call grow with its size, so a
	# run after others (REPEAT, CPS_BINS) would pay for their rows.
	rm -f "$OUT"/data/hotline.db "$OUT"/data/hotline.db-wal "$OUT"/data/hotline.db-shm
	if [ "$CALLGRIND" = 1 ]; then
		# valgrind runs Hotline in its own process (same pid); instrumentation starts off.
		# callgrind_control finds the run by its pipe, named after user and host: an
		# environment without them (a container's root) gets "???" and is never found.
		export LOGNAME=${LOGNAME:-$(id -un)} USER=${USER:-$(id -un)} HOST=${HOST:-$(hostname)}
		wrap=(valgrind --tool=callgrind --instr-atstart=no "--callgrind-out-file=$OUT/callgrind.cps.%p")
		tries=12
	fi
	NO_COLOR=1 RUST_LOG=warn,hotline_media::stats=info nice -n "$NICE" "${wrap[@]}" "$BIN" serve --config "$OUT/$CONFIG" \
		>"$OUT/hotline.log" 2>&1 &
	HPID=$!
	PIDS="$PIDS $HPID"
	until wait_port $SUT_PORT; do
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || { echo "hotline did not start; see $OUT/hotline.log" >&2; exit 1; }
	done
	local k reg_ok=0
	for k in $(seq 0 $((UAS_COUNT - 1))); do
		sipp_bg "$OUT/register-$k" -sf "$SIPDIR/register.xml" -inf "$OUT/agents-$k.csv" $IP:$SUT_PORT \
			-i $IP -p "$(uas_port "$k")" -r "$REG_RATE" -m $(($(wc -l <"$OUT/agents-$k.csv") - 1)) -timeout 30s -timeout_error
	done
	for k in $(seq 0 $((UAS_COUNT - 1))); do
		sipp_wait "$OUT/register-$k"
		reg_ok=$((reg_ok + $(statcol "$OUT/register-$k.stat.csv" 'SuccessfulCall(C)')))
		wait_free "$(uas_port "$k")"
	done
	[ "$reg_ok" = "$AGENTS" ] || { echo "only $reg_ok of $AGENTS agents registered" >&2; exit 1; }
	RSS_IDLE=$(rss_kb $HPID)
	echo "hotline pid $HPID, $AGENTS agents registered, idle RSS $((RSS_IDLE / 1024)) MB"
}
stop_hotline() {
	echo "hotline peak RSS: $(awk '/VmHWM/{print $2, $3}' "/proc/$HPID/status")"
	kill "$HPID"; wait "$HPID" 2>/dev/null
	PIDS=" $PIDS "; PIDS=${PIDS// $HPID / }; HPID=""
	rm -rf "$OUT/recordings"
}

# ------------------------------------------------------------------ signalling
run_cps() {
	local n=$((CPS_RATE * DUR)) pre="$OUT/cps"
	rm -f "$pre".*
	start_uas "$pre.uas" -timeout $((DUR + 60))s
	local h0 u0 s0 t0 h1 u1 s1 t1 sb0 st0 sb1 st1
	read -r sb0 st0 _ < <(sys_ticks)
	[ "$CALLGRIND" = 1 ] && callgrind_control -i on "$HPID" >/dev/null
	local hu0 hs0 hu1 hs1 vc0 nc0 vc1 nc1 th0 th1 perf_pid=""
	read -r hu0 hs0 < <(ticks_split $HPID); read -r vc0 nc0 < <(ctxsw $HPID); th0=$(nthreads $HPID)
	if [ "${PERF_STAT:-0}" = 1 ]; then
		local ev="raw_syscalls:sys_enter,context-switches,cpu-migrations,page-faults" sc
		for sc in $PERF_SYSCALLS; do ev="$ev,syscalls:sys_enter_$sc"; done
		perf stat -x';' -e "$ev" -p "$HPID" -o "$pre.perf.txt" 2>"$pre.perf.err" &
		perf_pid=$!
		sleep 0.5
	fi
	h0=$(ticks $HPID); s0=$(sum_ticks $UAS_PIDS); t0=$(now)
	sipp_bg "$pre.uac" -sf "$SIPDIR/uac.xml" $IP:$SUT_PORT -s 4000 -i $IP -p $CALLER_PORT \
		-r "$CPS_RATE" -m "$n" -d "$HOLD_MS" -timeout $((DUR + 60))s -timeout_error
	local uac_pid; uac_pid=$(cat "$pre.uac.pid")
	# sample the UAC's CPU just before it exits: poll until it is gone
	u0=0; u1=0
	while kill -0 "$uac_pid" 2>/dev/null; do u1=$(ticks "$uac_pid"); sleep 0.2; done
	sipp_wait "$pre.uac"
	t1=$(now); h1=$(ticks $HPID); s1=$(sum_ticks $UAS_PIDS)
	read -r sb1 st1 _ < <(sys_ticks)
	read -r hu1 hs1 < <(ticks_split $HPID); read -r vc1 nc1 < <(ctxsw $HPID); th1=$(nthreads $HPID)
	if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null; fi
	local ir=0
	if [ "$CALLGRIND" = 1 ]; then
		# The dump holds what was collected since "on": the callers' whole run.
		rm -f "$OUT/callgrind.cps.$HPID".*
		callgrind_control -d "$HPID" >/dev/null; callgrind_control -i off "$HPID" >/dev/null
		ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$OUT/callgrind.cps.$HPID".* 2>/dev/null)
	fi
	stop_uas "$pre.uas"
	local ok fail retr aok afail
	ok=$(statcol "$pre.uac.stat.csv" 'SuccessfulCall(C)'); fail=$(statcol "$pre.uac.stat.csv" 'FailedCall(C)')
	retr=$(statcol "$pre.uac.stat.csv" 'Retransmissions(C)')
	aok=$(uas_stat "$pre.uas" 'SuccessfulCall(C)'); afail=$(uas_stat "$pre.uas" 'FailedCall(C)')
	local sc so sw
	read -r sc so sw < <(steady "$pre.uac.stat.csv" "$HOLD_MS" "$DUR")
	emit "$(awk -v r="$CPS_RATE" -v n="$n" -v ok="$ok" -v f="$fail" -v re="$retr" -v aok="$aok" -v af="$afail" \
		-v sc="$sc" -v so="$so" -v sw="$sw" \
		-v t0="$t0" -v t1="$t1" -v hold="$HOLD_MS" -v ht=$((h1 - h0)) -v ut=$((u1 - u0)) -v st=$((s1 - s0)) \
		-v hz="$HZ" -v sb=$((sb1 - sb0)) -v stt=$((st1 - st0)) -v nc="$(nproc)" -v run="$RUN" -v la="$(load1)" -v bin="$(basename "$BIN")" 'BEGIN {
		w = t1 - t0; busy = w - hold / 1000; if (busy <= 0) busy = w
		ms = ok > 0 ? ht / hz * 1000 / ok : 0
		printf "callpath cps run=%d bin=%s target=%d/s calls=%d ok=%d failed=%d agent_answered=%d agent_failed=%d retrans=%d wall=%.1fs achieved=%.0f/s steady=%.0f/s steady_offered=%.0f/s steady_secs=%.1f hotline_cpu_pct=%.0f hotline_cpu_ms_per_call=%.3f sipp_uac_cpu_pct=%.0f sipp_uas_cpu_pct=%.0f machine_busy_pct=%.0f/%d00 load1=%s",
			run, bin, r, n, ok, f, aok, af, re, w, ok / busy, (sw > 0 ? sc / sw : 0), (sw > 0 ? so / sw : 0), sw,
			ht / hz / w * 100, ms, ut / hz / w * 100, st / hz / w * 100, sb / stt * 100 * nc, nc, la }')"
	emit "$(awk -v run="$RUN" -v bin="$(basename "$BIN")" -v ok="$ok" -v hz="$HZ" -v u=$((hu1 - hu0)) -v s=$((hs1 - hs0)) \
		-v vc=$((vc1 - vc0)) -v nc=$((nc1 - nc0)) -v th0="$th0" -v th1="$th1" -v la="$(load1)" 'BEGIN {
		d = ok > 0 ? ok : 1
		printf "callpath cps_cpu run=%d bin=%s ok=%d user_ms_per_call=%.3f sys_ms_per_call=%.3f voluntary_cs_per_call=%.2f involuntary_cs_per_call=%.2f threads=%d/%d load1=%s",
			run, bin, ok, u / hz * 1000 / d, s / hz * 1000 / d, vc / d, nc / d, th0, th1, la }')"
	if [ -n "$perf_pid" ]; then
		emit "$(awk -F';' -v run="$RUN" -v bin="$(basename "$BIN")" -v ok="$ok" '
			$3 ~ /^(raw_syscalls:sys_enter|context-switches|cpu-migrations|page-faults|syscalls:sys_enter_)/ {
				n = $3; sub(/^syscalls:sys_enter_/, "", n); sub(/^raw_syscalls:sys_enter$/, "syscalls", n)
				v[n] = $1 + 0; if (n ~ /^(syscalls|context-switches|cpu-migrations|page-faults)$/) next; named += $1; list[++k] = n }
			END { d = ok > 0 ? ok : 1
				printf "callpath cps_syscalls run=%d bin=%s ok=%d syscalls_per_call=%.2f cs_per_call=%.2f migrations_per_call=%.2f page_faults_per_call=%.2f", run, bin, ok, v["syscalls"] / d, v["context-switches"] / d, v["cpu-migrations"] / d, v["page-faults"] / d
				for (i = 1; i <= k; i++) if (v[list[i]] > 0) printf " %s=%.2f", list[i], v[list[i]] / d
				printf " other=%.2f\n", (v["syscalls"] - named) / d }' "$pre.perf.txt")"
	fi
	[ "$CALLGRIND" = 1 ] && emit "$(awk -v run="$RUN" -v bin="$(basename "$BIN")" -v r="$CPS_RATE" -v ok="$ok" -v f="$fail" -v ir="${ir:-0}" 'BEGIN {
		printf "callpath cps_callgrind run=%d bin=%s target=%d/s ok=%d failed=%d ir=%.0f ir_per_call=%.0f", run, bin, r, ok, f, ir, (ok > 0 ? ir / ok : 0) }')"
}

# ------------------------------------------------------------------ media
# Sums the end-of-session counters Hotline logged after byte offset $1 of its log.
media_counters() {
	tail -c +"$(($1 + 1))" "$OUT/hotline.log" | grep 'media session ended' |
		awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[2] != "") v[kv[1]] += kv[2] } n++ }
		END { printf "%d %d %d %d %d %d %d\n", n, v["a_rx"], v["a_lost"], v["a_tx"], v["b_rx"], v["b_lost"], v["b_tx"] }'
}

# How far the sessions' reads fell behind, from the same end-of-call lines: median, p99 and
# max over the sessions of max_read_gap_ms (ticked reads; 0 per datagram) and of
# rtp_wait_max_ms (longest time a datagram waited in its socket; HOTLINE_MEDIA_RTP_WAIT=1),
# the sessions with a gap or a wait of 50 ms or more, and the phases their longest gap fell in.
media_lag() {
	tail -c +"$(($1 + 1))" "$OUT/hotline.log" | grep 'media session ended' | python3 -c '
import sys
gaps, waits, big, over_g, over_w, phases = [], [], 0, 0, 0, {}
for line in sys.stdin:
    kv = dict(x.split("=", 1) for x in line.split() if "=" in x)
    g, w = int(kv.get("max_read_gap_ms", 0)), int(kv.get("rtp_wait_max_ms", 0))
    gaps.append(g); waits.append(w)
    over_g += int(kv.get("read_gaps_over_50ms", 0)) > 0
    over_w += int(kv.get("rtp_wait_over_50ms", 0)) > 0
    if g >= 50:
        p = kv.get("max_read_gap_phase", "-").strip("\"")
        phases[p] = phases.get(p, 0) + 1
def q(v, f):
    v = sorted(v)
    return v[min(len(v) - 1, int(f * len(v)))] if v else 0
print("read_gap_ms_p50=%d read_gap_ms_p99=%d read_gap_ms_max=%d sessions_gap_over_50ms=%d rtp_wait_ms_p50=%d rtp_wait_ms_p99=%d rtp_wait_ms_max=%d sessions_wait_over_50ms=%d gap_phases=%s"
      % (q(gaps, .5), q(gaps, .99), q(gaps, 1), over_g, q(waits, .5), q(waits, .99), q(waits, 1), over_w,
         ",".join("%s:%d" % kv for kv in sorted(phases.items())) or "-"))'
}

run_media_step() {
	local n=$1 pre="$OUT/media-$1"
	rm -f "$pre".*
	local setup=$(( (n + SETUP_RATE - 1) / SETUP_RATE ))
	local hold=$(( (setup + WARM + MEDIA_SECS + 2) * 1000 ))
	local log0; log0=$(stat -c %s "$OUT/hotline.log")
	local hd0 ed0 hd1 ed1
	hd0=$(sock_drops $HPID); ed0=$(sum_drops $UAS_PIDS)
	sipp_bg "$pre.uac" -sf "$HERE/uac_rtp.xml" $IP:$SUT_PORT -s 4000 -i $IP -p $CALLER_PORT \
		-mp 40000 -r "$SETUP_RATE" -m "$n" -l "$n" -d "$hold" -timeout $((hold / 1000 + 60))s -timeout_error \
		-rtp_threadtasks "$RTP_THREADTASKS"
	local uac_pid; uac_pid=$(cat "$pre.uac.pid")
	# wait until all n calls are up (bounded), then let them settle
	for _ in $(seq $(( (setup + 20) * 5 ))); do
		[ "$(statcol "$pre.uac.stat.csv" CurrentCall)" -ge "$n" ] && break; sleep 0.2
	done
	sleep "$WARM"
	local h0 u0 e0 d0 t0 h1 u1 e1 d1 t1 sb0 st0 sb1 st1 si0 si1 rss load
	read -r sb0 st0 si0 < <(sys_ticks)
	h0=$(ticks $HPID); u0=$(ticks "$uac_pid"); e0=$(sum_ticks $UAS_PIDS); d0=$(sock_drops $HPID); t0=$(now)
	sleep "$MEDIA_SECS"
	h1=$(ticks $HPID); u1=$(ticks "$uac_pid"); e1=$(sum_ticks $UAS_PIDS); d1=$(sock_drops $HPID); t1=$(now)
	read -r sb1 st1 si1 < <(sys_ticks)
	rss=$(rss_kb $HPID); load=$(load1)
	local up; up=$(statcol "$pre.uac.stat.csv" CurrentCall)
	sipp_wait "$pre.uac"
	hd1=$(sock_drops $HPID); ed1=$(sum_drops $UAS_PIDS)
	local ok fail
	ok=$(statcol "$pre.uac.stat.csv" 'SuccessfulCall(C)'); fail=$(statcol "$pre.uac.stat.csv" 'FailedCall(C)')
	# every session logs its counters when its call ends (bounded wait)
	local c
	for _ in $(seq 50); do
		c=$(media_counters "$log0"); [ "${c%% *}" -ge "$n" ] && break; sleep 0.2
	done
	emit "$(echo "$c" | awk -v n="$n" -v up="$up" -v ok="$ok" -v f="$fail" -v t0="$t0" -v t1="$t1" \
		-v ht=$((h1 - h0)) -v ut=$((u1 - u0)) -v et=$((e1 - e0)) -v hz="$HZ" -v drops=$((d1 - d0)) \
		-v hdrops=$((hd1 - hd0)) -v edrops=$((ed1 - ed0)) \
		-v rss="$rss" -v rss0="$RSS_IDLE" -v sb=$((sb1 - sb0)) -v stt=$((st1 - st0)) -v si=$((si1 - si0)) -v nc="$(nproc)" \
		-v run="$RUN" -v tick="$TICK" -v la="$load" -v rcvbuf="$(echo_rcvbuf)" -v tasks="$RTP_THREADTASKS" '{
		w = t1 - t0; sessions = $1; arx = $2; alost = $3; atx = $4; brx = $5; blost = $6; btx = $7
		ex = arx + alost + brx + blost; loss = ex > 0 ? (alost + blost) / ex * 100 : 100
		cpu = ht / hz / w * 100
		hloss = arx + brx > 0 ? hdrops / (arx + brx + hdrops) * 100 : 0
		printf "callpath media run=%d tick_ms=%s calls=%d concurrent=%d ok=%d failed=%d sessions=%d loss_pct=%.4f hotline_loss_pct=%.4f caller_to_hotline_lost=%d relay_echo_path_lost=%d hotline_socket_drops=%d sipp_echo_socket_drops=%d relayed_to_agent=%d relayed_to_caller=%d hotline_socket_drops_window=%d hotline_cpu_pct=%.1f cpu_pct_per_call=%.4f rss_mb=%.1f mb_per_call=%.3f sipp_uac_cpu_pct=%.0f sipp_uas_echo_cpu_pct=%.0f sipp_cpu_pct=%.0f rtp_threadtasks=%d echo_rcvbuf=%d machine_busy_pct=%.0f/%d00 machine_softirq_pct=%.0f load1=%s",
			run, tick, n, up, ok, f, sessions, loss, hloss, alost, blost, hdrops, edrops, btx, atx, drops, cpu, cpu / n, rss / 1024, (rss - rss0) / 1024 / n,
			ut / hz / w * 100, et / hz / w * 100, (ut + et) / hz / w * 100, tasks, rcvbuf, sb / stt * 100 * nc, nc, si / stt * 100 * nc, la }') $(media_lag "$log0")"
}

run_media() {
	local pre="$OUT/media-uas"
	rm -f "$pre".*
	rmem_raise
	start_uas "$pre" -rtp_echo -timeout "$MAX_SECS"s
	local k
	for k in $(seq 0 $((UAS_COUNT - 1))); do wait_port $((6000 + 10 * k)); done
	rmem_restore
	echo "echo UAS media socket receive buffer: $(echo_rcvbuf) bytes"
	local n
	for n in $MEDIA_STEPS; do
		run_media_step "$n"
		sleep 2
	done
	stop_uas "$pre"
	printf '%s\n' "${RESULTS[@]}" | awk -v run="$RUN" -v tick="$TICK" '$2 == "media" && $3 == "run=" run && $4 == "tick_ms=" tick {
		for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		ok = v["failed"] == 0 && v["loss_pct"] < 0.1
		if (ok && v["calls"] > best) best = v["calls"]
		# Timely too: no call whose datagrams typically waited (or went unread) 150 ms or
		# more, a phone jitter buffer (the wait is measured with HOTLINE_MEDIA_RTP_WAIT=1).
		if (ok && v["rtp_wait_ms_p50"] < 150 && v["read_gap_ms_p50"] < 150 && v["calls"] > timely) timely = v["calls"] }
		END { printf "callpath media_capacity run=%d tick_ms=%s largest_calls_with_loss_below_0.1pct=%d largest_calls_timely=%d\n", run, tick, best, timely }' |
		while read -r l; do emit "$l"; done
}

for RUN in $(seq "$REPEAT"); do
	[ "$REPEAT" -gt 1 ] && echo "---- run $RUN of $REPEAT (loadavg $(cut -d' ' -f1-3 /proc/loadavg))"
	for s in "${SCEN[@]}"; do
		case $s in
		cps)
			BIN0=$BIN
			for BIN in ${CPS_BINS:-$BIN}; do start_hotline; run_cps; stop_hotline; sleep 2; done
			BIN=$BIN0 ;;
		media)
			for TICK in $TICKS; do
				CONFIG=callpath.toml
				if [ "$TICK" != default ]; then
					CONFIG=callpath-tick$TICK.toml
					sed "s/^\[media\]\$/[media]\ntick_ms = $TICK/" "$OUT/callpath.toml" >"$OUT/$CONFIG"
				fi
				start_hotline; run_media; stop_hotline
				sleep 2
			done
			TICK=default CONFIG=callpath.toml ;;
		*) echo "unknown scenario $s" >&2 ;;
		esac
		sleep 2
	done
done
echo
echo "================ summary (CPU % = of one core; references: RustPBX, Kamailio) ================"
[ "$RECORD" = 1 ] && echo "(recording every bridged call)"
[ -n "${KERNEL_RELAY:-}" ] && echo "(in-kernel relay on: $KERNEL_RELAY)"
[ "$ECHO_RMEM" -gt 0 ] && echo "(echo UAS sockets with a ${ECHO_RMEM}-byte receive buffer: ECHO_RMEM)"
printf '%s\n' "${RESULTS[@]}" | tee "$OUT/summary.txt"
# Medians over the runs (min-max when REPEAT > 1): one "callpath <kind>_median" line per
# cps target and media step, then the table against the references.
printf '%s\n' "${RESULTS[@]}" | python3 -c '
import sys, statistics
runs, groups = set(), {}
for line in sys.stdin:
    f = line.split()
    if len(f) < 3 or f[0] != "callpath":
        continue
    kv = dict(x.split("=", 1) for x in f[2:] if "=" in x)
    runs.add(kv.get("run"))
    key = (f[1], kv.get("target") or kv.get("calls") or "", kv.get("tick_ms", "default"), kv.get("bin", ""))
    g = groups.setdefault(key, {})
    for k, v in kv.items():
        try:
            g.setdefault(k, []).append(float(v.rstrip("s/").split("/")[0]))
        except ValueError:
            pass
def med(g, k):
    return statistics.median(g[k]) if g.get(k) else float("nan")
def show(g, k, fmt):
    v = g.get(k)
    if not v:
        return "-"
    s = fmt % statistics.median(v)
    return s if len(v) == 1 else "%s (%s-%s)" % (s, fmt % min(v), fmt % max(v))
lines, table = [], []
ticks = sorted({t for (kind, _, t, _) in groups if kind == "media"})
for (kind, at, tick, bin_), g in groups.items():
    n = len(g.get("run", []))
    if kind == "media" and len(ticks) > 1:
        at = "%s tick_ms=%s" % (at, tick)
    if bin_:
        at = "%s bin=%s" % (at, bin_)
    if kind == "cps_callgrind":
        keys = [("ok", "%.0f"), ("failed", "%.0f"), ("ir_per_call", "%.0f")]
        table.append("%-34s hotline %s instructions (callgrind, %s)" % ("instructions per call", show(g, "ir_per_call", "%.0f"), at))
    elif kind == "cps":
        keys = [("achieved", "%.0f"), ("steady", "%.0f"), ("steady_offered", "%.0f"),
                ("failed", "%.0f"), ("agent_failed", "%.0f"),
                ("hotline_cpu_ms_per_call", "%.3f"), ("sipp_uac_cpu_pct", "%.0f"),
                ("sipp_uas_cpu_pct", "%.0f"), ("load1", "%.2f")]
        ms = med(g, "hotline_cpu_ms_per_call")
        table.append("%-34s hotline %s ms   goal <= 1 ms   RustPBX 9-12 ms (x%.0f-%.0f)   Kamailio proxy 0.53 ms"
                     % ("CPU per queued+answered call", show(g, "hotline_cpu_ms_per_call", "%.3f"), 9 / ms, 12 / ms))
        table.append("%-34s hotline %s/s (steady window; offered %s/s there; whole run %s/s)   goal >= 1000/s  RustPBX ~200/s   (failed %s, agent_failed %s)"
                     % ("calls/s through the queue", show(g, "steady", "%.0f"), show(g, "steady_offered", "%.0f"), show(g, "achieved", "%.0f"), show(g, "failed", "%.0f"), show(g, "agent_failed", "%.0f")))
    elif kind == "media":
        keys = [("failed", "%.0f"), ("loss_pct", "%.4f"), ("hotline_loss_pct", "%.4f"),
                ("sipp_echo_socket_drops", "%.0f"), ("cpu_pct_per_call", "%.4f"),
                ("hotline_cpu_pct", "%.1f"), ("mb_per_call", "%.3f"), ("sipp_cpu_pct", "%.0f"),
                ("machine_busy_pct", "%.0f"), ("load1", "%.2f"), ("read_gap_ms_p50", "%.0f"),
                ("read_gap_ms_p99", "%.0f"), ("rtp_wait_ms_p99", "%.0f")]
        table.append("%-34s hotline %s %%   goal <= 0.05 %%  RustPBX 0.076 %%" % ("CPU per relayed call @" + at, show(g, "cpu_pct_per_call", "%.4f")))
        table.append("%-34s hotline %s MB   goal <= 0.3 MB  RustPBX 0.57 MB" % ("RSS per relayed call @" + at, show(g, "mb_per_call", "%.3f")))
        table.append("%-34s %s %% end to end, Hotline own %s %%, failed calls %s" % ("packet loss @" + at, show(g, "loss_pct", "%.4f"), show(g, "hotline_loss_pct", "%.4f"), show(g, "failed", "%.0f")))
        table.append("%-34s read gap p50 %s p99 %s ms, socket wait p99 %s max %s ms" % ("read lag @" + at, show(g, "read_gap_ms_p50", "%.0f"), show(g, "read_gap_ms_p99", "%.0f"), show(g, "rtp_wait_ms_p99", "%.0f"), show(g, "rtp_wait_ms_max", "%.0f")))
    else:
        continue
    lines.append("callpath %s_median %s=%s runs=%d " % (kind, "target" if kind == "cps" else "calls", at, n)
                 + " ".join("%s=%s" % (k, show(g, k, fmt).replace(" ", "")) for k, fmt in keys))
for tk in ticks:
    cap_med = max([int(at) for (kind, at, t, _), g in groups.items() if kind == "media" and t == tk
                   and med(g, "loss_pct") < 0.1 and max(g["failed"]) == 0] or [0])
    cap_all = max([int(at) for (kind, at, t, _), g in groups.items() if kind == "media" and t == tk
                   and max(g["loss_pct"]) < 0.1 and max(g["failed"]) == 0] or [0])
    cap_timely = max([int(at) for (kind, at, t, _), g in groups.items() if kind == "media" and t == tk
                      and max(g["loss_pct"]) < 0.1 and max(g["failed"]) == 0
                      and max(g.get("rtp_wait_ms_p50", [0])) < 150 and max(g.get("read_gap_ms_p50", [0])) < 150] or [0])
    lines.append("callpath media_capacity_median tick_ms=%s runs=%d largest_calls_median_loss_below_0.1pct=%d largest_calls_every_run_below_0.1pct=%d largest_calls_every_run_timely=%d" % (tk, len(runs), cap_med, cap_all, cap_timely))
    table.append("%-34s hotline %d (median loss), %d (every run)   goal 2000" % ("largest N with loss < 0.1% tick " + tk, cap_med, cap_all))
    table.append("%-34s hotline %d (every run: loss < 0.1 %%, wait and read gap p50 < 150 ms)" % ("largest N timely, tick " + tk, cap_timely))
print("\n".join(lines + [""] + table))
' | tee -a "$OUT/summary.txt"
echo "loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)"
