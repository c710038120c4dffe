#!/usr/bin/env bash
# The delivery benchmark in every shape the project ships, then the Kannel peer, in one run:
#   bench/deliver/run.sh [MESSAGES] [LIMITED_MESSAGES]       # defaults 5000 3000
# SQLite and PostgreSQL, 1 and 2 workers, no throughput cap (bench.py, one run each); then
# a route limited to 100 MMS/s (how closely the limit holds); then Kannel's sendsms
# (../shared/bench/kannel/run.sh, delivered msg/s). Details to stderr, the summary to stdout.
# Everything listens on 127.0.0.1; each step has a timeout and its processes end with it.
set -euo pipefail
cd "$(dirname "$0")/../.."

MESSAGES="${1:-5000}"
LIMITED="${2:-3000}"
TARGET=500
LIMIT=100
PY=.venv/bin/python
WORK="$(mktemp -d /tmp/mmsgate-bench-deliver.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

declare -a NAMES=() LINES=()
one() {  # one NAME ARGS...: a bench.py run; its output to stderr, its key lines kept
    local name="$1" n="${#NAMES[@]}"
    local out="$WORK/$n.out"
    shift
    log "$name: bench.py $* (load $(loadavg))"
    timeout 900 "$PY" bench/deliver/bench.py --skip-kannel "$@" >"$out" 2>"$out.err" \
        || log "$name: exit $? (see below)"
    cat "$out" >&2
    NAMES+=("$name")
    LINES+=("$(grep -m1 'end to end' "$out" | sed 's/^ *//' || echo 'no figure')")
    grep -m1 'peak RSS' "$out" | sed 's/^ */    /' >"$WORK/$n.rss" || true
    grep -m1 'route limit' "$out" | sed 's/^ *//' >"$WORK/$n.limit" || true
}

log "load average at start: $(loadavg)"
one "SQLite, 1 worker" --messages "$MESSAGES" --workers 1
one "SQLite, 2 workers" --messages "$MESSAGES" --workers 2
one "PostgreSQL, 1 worker" --messages "$MESSAGES" --workers 1 --postgres
one "PostgreSQL, 2 workers" --messages "$MESSAGES" --workers 2 --postgres
one "SQLite, route limit $LIMIT/s" --messages "$LIMITED" --workers 2 --max-mps "$LIMIT"

PEER="not run"
if [[ -x ../shared/bench/kannel/run.sh ]]; then
    log "Kannel peer (load $(loadavg))"
    PEER="$(timeout 600 ../shared/bench/kannel/run.sh 10 32 2>"$WORK/kannel.err" | tail -1 || true)"
    tail -5 "$WORK/kannel.err" >&2 || true
fi
log "load average at end: $(loadavg)"

peer_rate="$(sed -n 's/.*delivered \([0-9.]*\) msg\/s.*/\1/p' <<<"$PEER")"
echo "delivery benchmark, $MESSAGES messages a run (target $TARGET MMS/s end to end)"
for i in "${!NAMES[@]}"; do
    name="${NAMES[$i]}" line="${LINES[$i]}"
    rate="$(sed -n 's/^end to end \([0-9.]*\) MMS\/s.*/\1/p' <<<"$line")"
    ratios=""
    if [[ -n "$rate" ]]; then
        ratios="$(awk -v r="$rate" -v t="$TARGET" -v p="${peer_rate:-0}" 'BEGIN {
            printf "= %.2fx target", r / t; if (p > 0) printf ", %.3fx Kannel", r / p }')"
    fi
    printf '%-30s %s %s\n' "$name" "$line" "$ratios"
    cat "$WORK/$i.rss"
    if [[ -s "$WORK/$i.limit" ]]; then sed "s/^/    /" "$WORK/$i.limit"; fi
done
echo "peer: $PEER"
