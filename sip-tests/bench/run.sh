#!/usr/bin/env bash
# Side-by-side SIP benchmark: Kamailio, then Hotline, with the shared harness
# (../shared/bench/sip/run.sh relative to the repository root), same scenarios, same
# machine, same few minutes. Prints both summaries and the server CPU per operation.
#
#   sip-tests/bench/run.sh            # reg + cps, DUR=10 s each
#   DUR=20 SCENARIOS="reg cps ring" sip-tests/bench/run.sh
#
# Env: DUR (seconds per run, default 10), SCENARIOS (default "reg cps"), plus the
# harness's own (REG_RATE, CPS_RATE, ...). Loopback only; Hotline listens on 127.0.0.1:5070.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SHARED=${SHARED:-$(cd "$ROOT/../shared" && pwd)}
HARNESS="$SHARED/bench/sip/run.sh"
export DUR=${DUR:-10}
read -r -a SCEN <<<"${SCENARIOS:-reg cps}"
OUT=${OUT:-$ROOT/sip-tests/out/bench}
mkdir -p "$OUT"

[ -x "$HARNESS" ] || { echo "harness not found: $HARNESS" >&2; exit 1; }
(cd "$ROOT" && cargo build --release --locked -p hotline)

echo "=== Kamailio ==="
"$HARNESS" "${SCEN[@]}" | tee "$OUT/kamailio.txt"

echo "=== Hotline ==="
for _ in $(seq 50); do   # the harness stops Kamailio by PID; wait for the port to be free
	ss -Hun "sport = :5070" 2>/dev/null | grep -q . || break; sleep 0.2
done
# Same priority the harness gives Kamailio and SIPp (nice -10 as root), so both servers
# meet the neighbours' load on equal terms.
if [ "$(id -u)" = 0 ]; then HNICE=${NICE:--10}; else HNICE=${NICE:-0}; fi
RUST_LOG=warn nice -n "$HNICE" "$ROOT/target/release/hotline" serve --config "$ROOT/config/bench.toml" \
	>"$OUT/hotline.log" 2>&1 &
HPID=$!
trap 'kill $HPID 2>/dev/null || true' EXIT
for _ in $(seq 50); do
	ss -Hun "sport = :5070" 2>/dev/null | grep -q . && break; sleep 0.1
done
NO_KAMAILIO=1 SUT_PIDS="$HPID" "$HARNESS" "${SCEN[@]}" | tee "$OUT/hotline.txt"
echo "hotline peak RSS: $(awk '/VmHWM/{print $2, $3}' "/proc/$HPID/status")" | tee -a "$OUT/hotline.txt"
kill "$HPID"; wait "$HPID" 2>/dev/null || true
trap - EXIT

# Server CPU per operation = (server CPU % of one core) / (operations per second).
per_op() {
	sed -n '/= summary/,$p' "$1" | grep -E '^(reg|cps|ring) ' |
		sed -E 's/= +/=/g; s/kamailio_cpu=/server_cpu=/' |
		awk -v who="$2" '{
			for (i = 1; i <= NF; i++) {
				split($i, kv, "=");
				if (kv[1] == "achieved") { a = kv[2]; sub("/s", "", a) }
				if (kv[1] == "server_cpu") { c = kv[2]; sub("%", "", c) }
				if (kv[1] == "ok") ok = kv[2];
				if (kv[1] == "failed") f = kv[2];
			}
			us = (a > 0) ? c / 100 / a * 1e6 : 0;
			printf "%-9s %-5s achieved=%6.0f/s ok=%s failed=%s server_cpu=%s%% cpu_per_op=%.1f us\n", who, $1, a, ok, f, c, us
		}'
}
echo
echo "================ CPU per operation (server) ================"
per_op "$OUT/kamailio.txt" kamailio | tee "$OUT/per_op.txt"
per_op "$OUT/hotline.txt" hotline | tee -a "$OUT/per_op.txt"
awk '{ for (i=1;i<=NF;i++) if ($i ~ /^cpu_per_op=/) { v=$i; sub("cpu_per_op=", "", v); val[$1" "$2]=v } }
	END { for (s in val) { split(s, p, " "); if (p[1] == "hotline" && ("kamailio " p[2]) in val && val["kamailio " p[2]] > 0)
		printf "ratio hotline/kamailio %-5s = %.2f\n", p[2], val[s] / val["kamailio " p[2]] } }' "$OUT/per_op.txt"
