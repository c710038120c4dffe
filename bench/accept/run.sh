#!/usr/bin/env bash
# Accept benchmark: sendSavedMMS against `mmsgate serve` on loopback, then Kannel's sendsms
# (the peer, ../../../shared/bench/kannel/run.sh) in the same run, and the ratio.
#
#   bench/accept/run.sh [DURATION_S] [CONNECTIONS] [THREADS]     defaults: 15 32 2
#
# Environment: MMSGATE_DATABASE_URL (default: embedded SQLite in a temp dir),
# SKIP_KANNEL=1 (mmsgate only), BENCH_PORT (default: a free port).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DURATION="${1:-15}"; CONNS="${2:-32}"; THREADS="${3:-2}"
KANNEL_RUN="${KANNEL_RUN:-$ROOT/../shared/bench/kannel/run.sh}"
HOST=127.0.0.1
MMSGATE="${MMSGATE:-$ROOT/.venv/bin/mmsgate}"

die() { echo "bench/accept: $*" >&2; exit 1; }
log() { echo "[accept] $*" >&2; }
[[ -x "$MMSGATE" ]] || die "no mmsgate at $MMSGATE (run: uv sync)"
if ! command -v wrk >/dev/null 2>&1; then
    [[ $(id -u) -eq 0 ]] || die "wrk is missing: sudo apt-get install wrk"
    log "installing wrk"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2 \
      || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2; }
fi

WORK="$(mktemp -d -t mmsgate-accept.XXXXXX)"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
    fi
    [[ -n "${KEEP_WORKDIR:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT
export MMSGATE_DATA_DIR="$WORK/data"
PORT="${BENCH_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"

if [[ -n "${MMSGATE_DATABASE_URL:-}" ]]; then "$MMSGATE" migrate >/dev/null; fi
KEY="$("$MMSGATE" accounts create bench --sender 28444 --service-id 32113 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')"
"$MMSGATE" serve --host "$HOST" --port "$PORT" --workers "${SERVE_WORKERS:-1}" --log-level warning 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do
    curl -sf "http://$HOST:$PORT/healthz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "server died: $(tail -5 "$WORK/server.log")"
    sleep 0.1
done
SAVE="<request><action>saveMMS</action><api-key>$KEY</api-key><name>bench</name><message-subject>Bench</message-subject><slide><message-text>Hello {\$name|there}, this is the benchmark template.</message-text></slide></request>"
MMS_ID="$(curl -sf --data-binary "$SAVE" "http://$HOST:$PORT/ep/v1/" | sed -n 's:.*<mms-id>\([0-9]*\)</mms-id>.*:\1:p')"
[[ -n "$MMS_ID" ]] || die "saveMMS failed"

# warm-up (imports, caches, connection pools), not measured
BENCH_API_KEY="$KEY" BENCH_MMS_ID="$MMS_ID" wrk -t1 -c4 -d2s -s "$HERE/send_saved.lua" "http://$HOST:$PORT" >/dev/null 2>&1 || true
# the server and every process it started (with --workers N: a supervisor and N workers)
tree() { local p="$1" c; echo "$p"; for c in $(pgrep -P "$p"); do tree "$c"; done; }
sum_status() { local t=0 p v; for p in $(tree "$SERVER_PID"); do v=$(awk -v k="$1" '$1 == k {print $2}' "/proc/$p/status" 2>/dev/null); t=$((t + ${v:-0})); done; echo "$t"; }
rss_kib() { sum_status VmRSS:; }
hwm_kib() { sum_status VmHWM:; }
cpu_ticks() { local t=0 p v; for p in $(tree "$SERVER_PID"); do v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null); t=$((t + ${v:-0})); done; echo "$t"; }
before_rows="$(python3 - "$MMSGATE_DATA_DIR" <<'PY'
import sqlite3, sys, os
p = os.path.join(sys.argv[1], "mmsgate.db")
print(sqlite3.connect(p).execute("select count(*) from recipients").fetchone()[0] if os.path.exists(p) else 0)
PY
)"
c0=$(cpu_ticks)
log "wrk -t$THREADS -c$CONNS -d${DURATION}s sendSavedMMS → mmsgate serve ($( [[ -n "${MMSGATE_DATABASE_URL:-}" ]] && echo PostgreSQL || echo SQLite WAL synchronous=FULL ))"
BENCH_API_KEY="$KEY" BENCH_MMS_ID="$MMS_ID" timeout $((DURATION + 30)) \
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$HERE/send_saved.lua" "http://$HOST:$PORT" > "$WORK/wrk.out" 2>&1
c1=$(cpu_ticks)
RSS=$(rss_kib); HWM=$(hwm_kib)
line="$(grep '^BENCH ' "$WORK/wrk.out")" || die "wrk failed: $(tail -5 "$WORK/wrk.out")"
eval "$(echo "$line" | sed 's/^BENCH //')"
rate=$(awk -v n="$success" -v us="$duration_us" 'BEGIN {printf "%.0f", n / (us / 1e6)}')
p50=$(awk -v v="$p50_us" 'BEGIN {printf "%.2f", v / 1000}')
p99=$(awk -v v="$p99_us" 'BEGIN {printf "%.2f", v / 1000}')
cpu=$(awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v us="$duration_us" 'BEGIN {printf "%.0f", d / hz / (us / 1e6) * 100}')
stored="n/a"
if [[ -z "${MMSGATE_DATABASE_URL:-}" ]]; then
    stored="$(python3 - "$MMSGATE_DATA_DIR" <<'PY'
import sqlite3, sys, os
print(sqlite3.connect(os.path.join(sys.argv[1], "mmsgate.db")).execute("select count(*) from recipients").fetchone()[0])
PY
)"
    stored=$((stored - before_rows))
fi
echo "mmsgate sendSavedMMS: $rate accepted/s, p50 $p50 ms, p99 $p99 ms, RSS $((RSS / 1024)) MB (peak $((HWM / 1024)) MB), server CPU ${cpu}% of a core, failures $failure, rows stored during the run $stored (successes $success)"

if [[ "${SKIP_KANNEL:-}" == 1 ]]; then exit 0; fi
[[ -x "$KANNEL_RUN" ]] || die "Kannel peer script not found at $KANNEL_RUN"
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
log "peer: Kannel sendsms ($KANNEL_RUN $DURATION $CONNS)"
kline="$("$KANNEL_RUN" "$DURATION" "$CONNS" 2>"$WORK/kannel.err")" || die "kannel run failed: $(tail -5 "$WORK/kannel.err")"
echo "$kline"
grep -E '^(latency|cpu)' "$WORK/kannel.err" | sed 's/^/  kannel /' || true
krate=$(echo "$kline" | sed -n 's/.*: \([0-9.]*\) req\/s.*/\1/p')
awk -v a="$rate" -v b="$krate" 'BEGIN {printf "ratio mmsgate/kannel accept rate: %.2fx (target >= 1.0x)\n", a / b}'
