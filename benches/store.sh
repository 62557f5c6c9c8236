#!/usr/bin/env bash
# What a store call costs a handler (issue 29): the kv example (`plugins/examples/kv`, per-event) answering `get`,
# `incr` and `set` against the echo example answering a message of the same size and the kv example answering
# `config nothing` (its own cost without a store call: it reads the configuration, which is in memory), on one host,
# with the embedded store at each durability (`--store-sync normal`, the default, and `full`). Each phase is `wasmsock bench --mode
# spin`: CONNECTIONS connections each send the command and wait for its reply, over and over, for PHASE_SECS; the
# figures are replies per second and the host's CPU per reply (from /proc/PID/stat around the phase). Rounds are
# interleaved (every durability and operation once, then again); a fresh host per durability and round, its data
# directory kept across rounds so the file grows as it would.
# Writes target/bench/store.jsonl (one line per phase) and prints a table, each operation also as a ratio to the
# echo of the same round and host.
#
# Run with: benches/store.sh                 (about 2 minutes with the defaults; not part of CI)
# Settings (environment): BIN (the host and load generator; default this checkout's release build), ROUNDS (3),
# PHASE_SECS (4), CONNECTIONS (8), SYNCS ("normal full"), HOST_CPU (0), LOAD_CPU (1), NO_BUILD (set: build nothing);
# CARGO_TARGET_DIR is honoured.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET/release/wasmsock}
ROUNDS=${ROUNDS:-3}
PHASE_SECS=${PHASE_SECS:-4}
CONNECTIONS=${CONNECTIONS:-8}
SYNCS=${SYNCS:-normal full}
HOST_CPU=${HOST_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=$ROOT/target/bench
RESULTS=$OUT/store.jsonl
PLUGINS=$OUT/store-plugins
PORT=9150
ADMIN_PORT=9151
TICKS=$(getconf CLK_TCK)

log() { echo "store: $*" >&2; }
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

mkdir -p "$OUT"
: >"$RESULTS"
if [ -z "${NO_BUILD:-}" ]; then
    log "building the release host and the two guests"
    cargo build --quiet --release -p wasmsock
    cargo build --quiet --profile guest --target wasm32-wasip2 -p echo -p kv
fi
rm -rf "$PLUGINS" "$OUT"/store-data-*
mkdir -p "$PLUGINS/bench"
cp "$TARGET/wasm32-wasip2/guest/echo.wasm" "$PLUGINS/bench/echo.wasm"
cp "$TARGET/wasm32-wasip2/guest/kv.wasm" "$PLUGINS/bench/kv.wasm"
echo '{"handler": "bench/echo", "endpoint": "echo"}' >"$PLUGINS/bench/echo.websocket"
echo '{"handler": "bench/kv", "endpoint": "kv"}' >"$PLUGINS/bench/kv.websocket"

# The host's user+system CPU ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# phase ROUND SYNC OP URL MESSAGE
phase() {
    local round=$1 sync=$2 op=$3 url=$4 message=$5 before report
    before=$(cpu_ticks "$HOST_PID")
    report=$(taskset -c "$LOAD_CPU" "$BIN" bench "$url" --mode spin -c "$CONNECTIONS" --message "$message" \
        --duration-secs "$PHASE_SECS" --json)
    python3 -c '
import json, sys
report = json.loads(sys.argv[6])
report.update(round=int(sys.argv[1]), sync=sys.argv[2], op=sys.argv[3], host_ticks=int(sys.argv[4]), ticks_per_sec=int(sys.argv[5]))
print(json.dumps(report))' "$round" "$sync" "$op" "$(($(cpu_ticks "$HOST_PID") - before))" "$TICKS" "$report" >>"$RESULTS"
}

for round in $(seq 1 "$ROUNDS"); do
    for sync in $SYNCS; do
        log "round $round, --store-sync $sync"
        launch "$HOST_CPU" "$OUT/store-host.log" "$PORT" "$BIN" serve --listen "127.0.0.1:$PORT" \
            --admin "127.0.0.1:$ADMIN_PORT" --plugins "$PLUGINS" --data "$OUT/store-data-$sync" --store-sync "$sync" \
            --watch-interval-ms 0
        HOST_PID=$STARTED
        base="ws://127.0.0.1:$PORT/websockets/service"
        # Seed the key `get` reads (its value as long as the echo's message).
        phase "$round" "$sync" seed "$base/kv" "set k 0123456789"
        phase "$round" "$sync" echo "$base/echo" "get 0123456789"
        phase "$round" "$sync" config "$base/kv" "config nothing"
        phase "$round" "$sync" get "$base/kv" "get k"
        phase "$round" "$sync" incr "$base/kv" "incr n"
        phase "$round" "$sync" set "$base/kv" "set k 0123456789"
        kill "$HOST_PID"
        wait "$HOST_PID" 2>/dev/null || true
    done
done

python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def rate(r): return r["replies"] / r["seconds"]
def cpu_us(r): return r["host_ticks"] / r["ticks_per_sec"] * 1e6 / max(r["replies"], 1)
print("per round: replies/s, host CPU µs per reply, replies/s as a ratio to the echo's, CPU per reply as a ratio to the echo's")
for sync in dict.fromkeys(r["sync"] for r in rows):
    for op in ["echo", "config", "get", "incr", "set"]:
        cells = []
        for round_ in sorted({r["round"] for r in rows}):
            r = next(x for x in rows if x["sync"] == sync and x["op"] == op and x["round"] == round_)
            echo = next(x for x in rows if x["sync"] == sync and x["op"] == "echo" and x["round"] == round_)
            errors = f" ({r['error_replies']} errors)" if r["error_replies"] else ""
            cells.append(f"{rate(r):9.0f} {cpu_us(r):8.1f} {rate(r) / rate(echo):6.2f} ({cpu_us(r) / cpu_us(echo):4.2f}x CPU){errors}")
        print(f"{sync:6} {op:5} " + "   ".join(cells))
EOF
