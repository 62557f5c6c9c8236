#!/usr/bin/env bash
# Timers at scale (issue 30): TIMERS sessions of the ticker example (`plugins/examples/ticker?every=EVERY_MS`, per
# event), each with one timer armed at all times (every tick arms the next), held by `wasmsock bench --mode idle` for
# HOLD_SECS. The host's own figures, read from /metrics before and after the hold: `ontimer` events per second, how
# late timers fired (`wasmsock_timer_lateness_seconds`: from when each was due to when its session took it; p50 and
# p99 interpolated within the histogram's buckets, which double from 0.1 ms), and the host's CPU per timer event
# (/proc/PID/stat). ROUNDS rounds, each on a freshly started host.
# Writes target/bench/timers.jsonl (one line per round) and prints a table.
#
# Run with: benches/timers.sh                 (about 1 minute per round with the defaults; not part of CI)
# Settings (environment): BIN (host and load generator; default this checkout's release build), ROUNDS (3), TIMERS
# (10000), EVERY_MS (1000), HOLD_SECS (10), HOST_CPU (0), LOAD_CPU (1), NO_BUILD (set: build nothing);
# CARGO_TARGET_DIR is honoured.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET/release/wasmsock}
ROUNDS=${ROUNDS:-3}
TIMERS=${TIMERS:-10000}
EVERY_MS=${EVERY_MS:-1000}
HOLD_SECS=${HOLD_SECS:-10}
HOST_CPU=${HOST_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=$ROOT/target/bench
RESULTS=$OUT/timers.jsonl
PLUGINS=$OUT/timers-plugins
PORT=9160
ADMIN_PORT=9161

log() { echo "timers: $*" >&2; }
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT"
: >"$RESULTS"
if [ -z "${NO_BUILD:-}" ]; then
    log "building the release host and the ticker"
    cargo build --quiet --release -p wasmsock
    cargo build --quiet --profile guest --target wasm32-wasip2 -p ticker
fi
rm -rf "$PLUGINS"
mkdir -p "$PLUGINS/bench"
cp "$TARGET/wasm32-wasip2/guest/ticker.wasm" "$PLUGINS/bench/ticker.wasm"
echo '{"handler": "bench/ticker", "endpoint": "ticker"}' >"$PLUGINS/bench/ticker.websocket"
LIMIT=$((TIMERS + 1000))

for round in $(seq 1 "$ROUNDS"); do
    log "round $round: $TIMERS timers every $EVERY_MS ms"
    launch "$HOST_CPU" "$OUT/timers-host.log" "$PORT" "$BIN" serve --listen "127.0.0.1:$PORT" \
        --admin "127.0.0.1:$ADMIN_PORT" --plugins "$PLUGINS" --data "$OUT/timers-data" --watch-interval-ms 0 \
        --max-connections "$LIMIT" --max-endpoint-connections "$LIMIT" --project-connections "$LIMIT" \
        --project-timers "$LIMIT"
    HOST_PID=$STARTED
    # Open every session, then measure a window of HOLD_SECS while all of them tick.
    taskset -c "$LOAD_CPU" "$BIN" bench "ws://127.0.0.1:$PORT/websockets/service/ticker?every=$EVERY_MS" --mode idle \
        -c "$TIMERS" --duration-secs 120 --hold-secs $((HOLD_SECS + 6)) --json >"$OUT/timers-load.json" &
    LOAD=$!
    # Wait until every session has armed its timer, plus a second to settle.
    for _ in $(seq 1 240); do
        armed=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" |
            awk '/^wasmsock_connections_open\{/ {s += $2} END {print s + 0}')
        [ "$armed" -ge "$TIMERS" ] && break
        sleep 0.5
    done
    sleep 1
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" >"$OUT/timers-before.txt"
    before_ticks=$(awk '{print $14 + $15}' "/proc/$HOST_PID/stat")
    sleep "$HOLD_SECS"
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" >"$OUT/timers-after.txt"
    after_ticks=$(awk '{print $14 + $15}' "/proc/$HOST_PID/stat")
    wait "$LOAD" || true
    kill "$HOST_PID"
    wait "$HOST_PID" 2>/dev/null || true
    python3 - "$round" "$HOLD_SECS" "$((after_ticks - before_ticks))" "$(getconf CLK_TCK)" "$TIMERS" \
        "$OUT/timers-before.txt" "$OUT/timers-after.txt" >>"$RESULTS" <<'EOF'
import json, re, sys
round_, hold, ticks, per_sec, timers, before, after = sys.argv[1:8]
def read(path):
    buckets, events = {}, 0.0
    for line in open(path):
        m = re.match(r'wasmsock_timer_lateness_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m:
            buckets[float("inf") if m[1] == "+Inf" else float(m[1])] = float(m[2])
        m = re.match(r'wasmsock_events_total\{handler="bench/ticker",method="ontimer"\} (\S+)', line)
        if m:
            events = float(m[1])
    return buckets, events
(b0, e0), (b1, e1) = read(before), read(after)
bounds = sorted(b1)
counts = [b1[b] - b0.get(b, 0.0) for b in bounds]
total = counts[-1] if counts else 0.0
def quantile(q):
    target, lower, below = q * total, 0.0, 0.0
    for bound, cum in zip(bounds, counts):
        if cum >= target:
            if bound == float("inf"):
                return lower
            share = (target - below) / max(cum - below, 1e-9)
            return lower + share * (bound - lower)
        lower, below = bound, cum
    return lower
events = e1 - e0
print(json.dumps({
    "round": int(round_), "timers": int(timers), "seconds": float(hold), "events": events,
    "events_per_sec": events / float(hold), "lateness_p50_ms": quantile(0.5) * 1e3,
    "lateness_p99_ms": quantile(0.99) * 1e3, "cpu_us_per_event": int(ticks) / int(per_sec) * 1e6 / max(events, 1),
}))
EOF
done

python3 - "$RESULTS" <<'EOF'
import json, sys
print("round  timers  ontimer/s  lateness p50 ms  p99 ms  host CPU µs/event")
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"{r['round']:5}  {r['timers']:6}  {r['events_per_sec']:9.0f}  {r['lateness_p50_ms']:15.2f}  "
          f"{r['lateness_p99_ms']:6.2f}  {r['cpu_us_per_event']:17.1f}")
EOF
