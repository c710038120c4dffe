#!/usr/bin/env bash
# Fallback benchmark: SMS/s through one SmppConnector bind to the simulated SMSC, hosted
# page and page media requests/s (wrk) against a real `mmsgate serve`, and the Kannel peer
# (../shared/bench/kannel/run.sh) in the same run; one summary table with the ratios.
#
#   bench/fallback/run.sh [DURATION_S] [CONNECTIONS] [THREADS]     defaults: 15 32 2
#
# Environment (all optional):
#   SMS_MESSAGES=20000     SMS per SMPP run          SMS_WINDOWS="10 64"  one run per window
#   SMPP_PEER=1            also run smpp34's own ESME on the first window (slow: ~350 SMS/s)
#   SKIP_KANNEL=1          no Kannel peer            KEEP_WORKDIR=1       keep the temp dir
#   BENCH_PORT             port of `mmsgate serve` (default: a free one)
# Everything listens on 127.0.0.1. Every process this script starts is stopped by its PID on
# exit, error or INT/TERM. Details go to stderr; the summary table to stdout.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DURATION="${1:-15}"; CONNS="${2:-32}"; THREADS="${3:-2}"
SMS_MESSAGES="${SMS_MESSAGES:-20000}"
SMS_WINDOWS="${SMS_WINDOWS:-10 64}"
KANNEL_RUN="${KANNEL_RUN:-$ROOT/../shared/bench/kannel/run.sh}"
PY="$ROOT/.venv/bin/python"
MMSGATE="${MMSGATE:-$ROOT/.venv/bin/mmsgate}"
HOST=127.0.0.1
SMS_TARGET=1000       # SMS/s on one bind
P99_TARGET_MS=20      # hosted page p99

die() { echo "bench/fallback: $*" >&2; exit 1; }
log() { echo "[fallback] $*" >&2; }
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 && "$DURATION" -le 600 ]] || die "DURATION_S must be 1..600"
[[ "$CONNS" =~ ^[0-9]+$ && "$CONNS" -ge 1 ]] || die "CONNECTIONS must be a number"
[[ "$THREADS" =~ ^[0-9]+$ && "$THREADS" -ge 1 ]] || die "THREADS must be a number"
[[ -x "$MMSGATE" && -x "$PY" ]] || die "no mmsgate at $MMSGATE (run: uv sync)"
if ! command -v wrk >/dev/null 2>&1; then
    [[ $(id -u) -eq 0 ]] || die "wrk is missing: sudo apt-get install wrk"
    log "installing wrk"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2 \
      || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2; }
fi

WORK="$(mktemp -d -t mmsgate-fallback.XXXXXX)"
SERVER_PID=""; CHILD_PID=""
stop_pid() {  # stop_pid PID: TERM one process we started, wait up to 10 s, then KILL
    local pid="$1" i
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop_pid "$CHILD_PID"
    stop_pid "$SERVER_PID"
    if [[ -n "${KEEP_WORKDIR:-}" ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# child OUT ERR CMD...: run CMD in the background (so INT/TERM reach the trap at once), wait
child() {
    local out="$1" err="$2" rc=0; shift 2
    "$@" >"$out" 2>"$err" &
    CHILD_PID=$!
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=""
    return "$rc"
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"d": d}))' "$@"; }
to_ms() { awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.2f", v * 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
    else print "nan" }'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
CLK_TCK="$(getconf CLK_TCK)"

LOAD_START="$(loadavg)"
log "$(nproc) cores, load average at start: $LOAD_START; work dir $WORK"

# ------------------------------------------------------------------ (a) SMPP --
declare -A SMS_RATE RCPT_RATE CPU_1K SMSC_1K
PEER_LINE=""
first=1
for w in $SMS_WINDOWS; do
    peer=(--no-peer)
    [[ "${SMPP_PEER:-}" == 1 && $first == 1 ]] && peer=()
    first=0
    log "SMPP: $SMS_MESSAGES SMS over one bind, window $w (load $(loadavg))"
    child "$WORK/smpp_$w.json" "$WORK/smpp_$w.err" timeout --kill-after=10 400 \
        "$PY" "$HERE/smpp_bench.py" --messages "$SMS_MESSAGES" --window "$w" --timeout 180 --json "${peer[@]}" \
        || die "smpp_bench failed (window $w): $(tail -5 "$WORK/smpp_$w.err")"
    f="$WORK/smpp_$w.json"
    SMS_RATE[$w]="$(jget "$f" 'd["mmsgate"]["sms_per_s"]')"
    RCPT_RATE[$w]="$(jget "$f" 'd["mmsgate"]["receipts_per_s"]')"
    CPU_1K[$w]="$(jget "$f" 'd["mmsgate"]["cpu_s_per_1000_sms"]')"
    SMSC_1K[$w]="$(jget "$f" 'd["mmsgate"]["smsc"].get("cpu_s_per_1000_sms", "n/a")')"
    log "  window $w: ${SMS_RATE[$w]} SMS/s, receipts ${RCPT_RATE[$w]}/s, $(jget "$f" 'd["mmsgate"]["accepted"]') accepted, CPU ${CPU_1K[$w]} s per 1,000 SMS (SMSC ${SMSC_1K[$w]})"
    if [[ "$(jget "$f" 'd["peer_smpp34"] is not None')" == True ]]; then
        PEER_LINE="smpp34 ESME, window $w: $(jget "$f" 'd["peer_smpp34"]["sms_per_s"]') SMS/s, CPU $(jget "$f" 'd["peer_smpp34"]["cpu_s_per_1000_sms"]') s per 1,000 SMS; mmsgate/peer $(jget "$f" 'd["ratio_sms_per_s"]')x"
        log "  peer $PEER_LINE"
    fi
done

# ---------------------------------------------------- (b) a real fallback page --
export MMSGATE_DATA_DIR="$WORK/data"
unset MMSGATE_DATABASE_URL
log "page: sendMMS (image + text) to a not-MMS-capable simulator number through \`mmsgate run\`"
child "$WORK/setup.json" "$WORK/setup.err" timeout --kill-after=10 150 \
    "$PY" "$HERE/page_setup.py" --data-dir "$MMSGATE_DATA_DIR" --mmsgate "$MMSGATE" --log "$WORK/run.log" --timeout 120 \
    || die "page setup failed: $(tail -5 "$WORK/setup.err") $(tail -5 "$WORK/run.log")"
TOKEN="$(jget "$WORK/setup.json" 'd["token"]')"
log "  page /m/$TOKEN of tracking-id $(jget "$WORK/setup.json" 'd["tracking_id"]'), state $(jget "$WORK/setup.json" 'd["state"]'), in $(jget "$WORK/setup.json" 'd["seconds"]') s"

PORT="${BENCH_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
"$MMSGATE" serve --host "$HOST" --port "$PORT" --log-level warning 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 1 150); do
    curl -sf "http://$HOST:$PORT/healthz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "server died: $(tail -5 "$WORK/server.log")"
    sleep 0.1
done
PAGE_URL="http://$HOST:$PORT/m/$TOKEN"
MEDIA_URL="http://$HOST:$PORT/media/$TOKEN/1"
PAGE_BYTES="$(curl -sf "$PAGE_URL" | wc -c)" || die "page not served"
MEDIA_BYTES="$(curl -sf "$MEDIA_URL" | wc -c)" || die "media not served"
log "  page $PAGE_BYTES bytes (uncompressed), image $MEDIA_BYTES bytes"
opens() {
    python3 - "$MMSGATE_DATA_DIR/mmsgate.db" "$TOKEN" <<'PY'
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("select opens from fallbacks where token = ?", (sys.argv[2],)).fetchone()[0])
PY
}

# ------------------------------------------------------------------ (c) wrk --
declare -A RPS P50 P99 NON2XX ERRS SCPU
wrk_run() {  # wrk_run NAME URL
    local name="$1" url="$2" c0 c1 t0 t1 w="$WORK/wrk_$1.out"
    wrk -t1 -c4 -d2s "$url" >/dev/null 2>&1 || true    # warm-up, not measured
    [[ "$name" == page ]] && OPENS0="$(opens)"
    log "wrk -t$THREADS -c$CONNS -d${DURATION}s --latency $name (load $(loadavg))"
    c0=$(cpu_ticks "$SERVER_PID"); t0=$(date +%s.%N)
    child "$w" "$w.err" timeout --signal=INT --kill-after=10 $((DURATION + 30)) \
        wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s --latency "$url" \
        || die "wrk failed: $(tail -3 "$w" "$w.err")"
    c1=$(cpu_ticks "$SERVER_PID"); t1=$(date +%s.%N)
    [[ "$name" == page ]] && OPENS1="$(opens)"
    RPS[$name]="$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$w")"
    P50[$name]="$(to_ms "$(awk '$1 == "50%" {print $2}' "$w")")"
    P99[$name]="$(to_ms "$(awk '$1 == "99%" {print $2}' "$w")")"
    NON2XX[$name]="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$w")"; NON2XX[$name]="${NON2XX[$name]:-0}"
    ERRS[$name]="$(grep -m1 'Socket errors' "$w" | sed 's/^ *Socket errors: //' || true)"; ERRS[$name]="${ERRS[$name]:-none}"
    SCPU[$name]="$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", d / hz / (b - a) * 100}')"
    log "  ${RPS[$name]} req/s, p50 ${P50[$name]} ms, p99 ${P99[$name]} ms, non-2xx ${NON2XX[$name]}, socket errors ${ERRS[$name]}, server CPU ${SCPU[$name]}% of a core"
}
OPENS0=0; OPENS1=0
wrk_run page "$PAGE_URL"
PAGE_REQS="$(awk '/requests in/ {print $1}' "$WORK/wrk_page.out")"
log "  opens recorded during the page run: $((OPENS1 - OPENS0)) (one database write per GET; wrk counted $PAGE_REQS answers, the rest were in flight when it stopped)"
wrk_run media "$MEDIA_URL"
stop_pid "$SERVER_PID"; SERVER_PID=""

# ---------------------------------------------------------------- (d) Kannel --
K_REQ="n/a"; K_P99="n/a"; K_DEL="n/a"
if [[ "${SKIP_KANNEL:-}" != 1 ]]; then
    [[ -x "$KANNEL_RUN" ]] || die "Kannel peer script not found at $KANNEL_RUN (SKIP_KANNEL=1 to go without)"
    log "peer: Kannel sendsms ($KANNEL_RUN $DURATION $CONNS) (load $(loadavg))"
    child "$WORK/kannel.out" "$WORK/kannel.err" "$KANNEL_RUN" "$DURATION" "$CONNS" \
        || die "kannel run failed: $(tail -5 "$WORK/kannel.err")"
    kline="$(cat "$WORK/kannel.out")"
    grep -E '^(http|latency|delivered|end-to-end|cpu|WARNING)' "$WORK/kannel.err" | sed 's/^/  kannel /' >&2 || true
    K_REQ="$(echo "$kline" | sed -n 's/.*: \([0-9.]*\) req\/s.*/\1/p')"
    K_P99="$(echo "$kline" | sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p')"
    K_DEL="$(echo "$kline" | sed -n 's/.*delivered \([0-9.]*\) msg\/s.*/\1/p')"
fi
LOAD_END="$(loadavg)"

# --------------------------------------------------------------- (e) summary --
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b + 0 > 0 && a + 0 == a) printf "%.2fx", a / b; else print "n/a"}'; }
verdict_ge() { awk -v a="$1" -v b="$2" 'BEGIN {print (a + 0 >= b) ? "meets" : "MISSES"}'; }
verdict_le() { awk -v a="$1" -v b="$2" 'BEGIN {print (a + 0 <= b) ? "meets" : "MISSES"}'; }
echo "=== bench/fallback $(date -u +%FT%TZ), $(nproc) cores, load average start $LOAD_START / end $LOAD_END ==="
printf '%-44s %-34s %s\n' "measure" "figure" "vs target / peer"
for w in $SMS_WINDOWS; do
    printf '%-44s %-34s %s\n' "SMPP submits, one bind, window $w" "${SMS_RATE[$w]} SMS/s" \
        "$(ratio "${SMS_RATE[$w]}" "$SMS_TARGET") of ${SMS_TARGET}/s ($(verdict_ge "${SMS_RATE[$w]}" "$SMS_TARGET")); $(ratio "${SMS_RATE[$w]}" "$K_DEL") of Kannel delivered"
    printf '%-44s %-34s %s\n' "  receipts, window $w" "${RCPT_RATE[$w]}/s" ""
    printf '%-44s %-34s %s\n' "  CPU per 1,000 SMS, window $w" "${CPU_1K[$w]} s (SMSC ${SMSC_1K[$w]} s)" ""
done
[[ -n "$PEER_LINE" ]] && printf '%-44s %s\n' "  peer" "$PEER_LINE"
printf '%-44s %-34s %s\n' "hosted page GET /m/{token} ($PAGE_BYTES B)" "${RPS[page]} req/s, p50 ${P50[page]} ms" \
    "p99 ${P99[page]} ms = $(ratio "${P99[page]}" "$P99_TARGET_MS") of ${P99_TARGET_MS} ms ($(verdict_le "${P99[page]}" "$P99_TARGET_MS"))"
printf '%-44s %-34s %s\n' "  server CPU, errors, opens recorded" "${SCPU[page]}% of a core" "non-2xx ${NON2XX[page]}, socket errors ${ERRS[page]}, $((OPENS1 - OPENS0)) opens written"
printf '%-44s %-34s %s\n' "page image GET /media/{token}/1 ($MEDIA_BYTES B)" "${RPS[media]} req/s, p50 ${P50[media]} ms" \
    "p99 ${P99[media]} ms = $(ratio "${P99[media]}" "$P99_TARGET_MS") of ${P99_TARGET_MS} ms"
printf '%-44s %-34s %s\n' "  server CPU, errors" "${SCPU[media]}% of a core" "non-2xx ${NON2XX[media]}, socket errors ${ERRS[media]}"
printf '%-44s %-34s %s\n' "Kannel sendsms (peer, same run)" "${K_REQ} req/s, p99 ${K_P99} ms" "delivered ${K_DEL} msg/s"
