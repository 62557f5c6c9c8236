#!/usr/bin/env bash
# The fan-out benchmark of BENCHMARKS.md: one publisher and a room of MEMBERS members on loopback, SIZE-byte text
# messages, sender included; server CPU per message delivered to a member, for a native axum server broadcasting
# through a tokio broadcast channel (benches/native-fanout; the baseline writes what is waiting with one flush, as the
# host does, and a second row flushes every message as axum's chat example does), Node `ws` looping over its clients
# (benches/node-fanout.js), and the host with the Rust chat example in the `shared` and `per-event` lifecycles.
# Server and load generator (`wasmsock bench --mode fanout`) are pinned to the same core. Each round measures every
# server once, so a ratio is taken between figures of the same round. Writes target/bench/fanout.jsonl and the
# Fan-out table in BENCHMARKS.md (benches/report.py).
#
# Run with: benches/fanout.sh          (about 8 minutes; not part of CI)
# Settings (environment): ROUNDS (3), SECONDS_PER_RUN (5), MEMBERS (1000), IN_FLIGHT ("4 8": a measured run for
# each; publishes not yet delivered to every member), SIZE (64), CPU (0): the core both the server and the load
# generator are pinned to; CARGO_TARGET_DIR is honoured.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
MEMBERS=${MEMBERS:-1000}
IN_FLIGHT=${IN_FLIGHT:-4 8}
SIZE=${SIZE:-64}
CPU=${CPU:-0}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$ROOT/target/bench
RESULTS=$OUT/fanout.jsonl
BIN=$TARGET/release/wasmsock
PLUGINS=$OUT/fanout-plugins
HOST_PORT=9110
ADMIN_PORT=9111
NATIVE_PORT=9112
NODE_PORT=9113

log() { echo "fanout: $*" >&2; }

# A room of 1,000 members plus the publisher needs more descriptors than the usual soft limit of 1,024.
ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT"
: >"$RESULTS"

log "building the release host, the native baseline and the chat guest"
cargo build --quiet --release -p wasmsock -p native-fanout
cargo build --quiet --profile guest --target wasm32-wasip2 -p chat
(cd benches && npm ci --no-audit --no-fund --silent)

log "plugins root: the chat example in two lifecycles"
rm -rf "$PLUGINS"
mkdir -p "$PLUGINS/examples"
cp "$TARGET/wasm32-wasip2/guest/chat.wasm" "$PLUGINS/examples/chat.wasm"
for instance in shared per-event; do
    printf '{"handler": "examples/chat", "endpoint": "chat-%s", "instance": "%s"}\n' "$instance" "$instance" \
        >"$PLUGINS/examples/chat-$instance.websocket"
done

# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

# start NAME PORT COMMAND...: starts a server pinned to the core; sets SERVER_PID.
start() {
    local name=$1 port=$2
    shift 2
    launch "$CPU" "$OUT/fanout-$name.log" "$port" "$@"
    SERVER_PID=$STARTED
}

stop() {
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
}

# fanout ROUND SERVER LIFECYCLE URL: a short unmeasured run (connections accepted once, JIT and caches warm), then
# one measured run per window of IN_FLIGHT, appended to the results.
fanout() {
    local round=$1 server=$2 lifecycle=$3 url=$4
    local args=(--mode fanout -c "$MEMBERS" --size "$SIZE" --count 100000000 --server-pid "$SERVER_PID" --json)
    taskset -c "$CPU" "$BIN" bench "$url" "${args[@]}" -w 8 --duration-secs 1 >/dev/null
    for w in $IN_FLIGHT; do
        taskset -c "$CPU" "$BIN" bench "$url" "${args[@]}" -w "$w" --duration-secs "$SECONDS_PER_RUN" |
            python3 -c 'import json, sys
r = json.load(sys.stdin)
r.update(round=int(sys.argv[1]), server=sys.argv[2], lifecycle=sys.argv[3])
print(json.dumps(r))' "$round" "$server" "$lifecycle" | tee -a "$RESULTS" >&2
    done
}

for round in $(seq 1 "$ROUNDS"); do
    log "round $round of $ROUNDS: native axum broadcast"
    start native $NATIVE_PORT "$TARGET/release/native-fanout" "127.0.0.1:$NATIVE_PORT"
    fanout "$round" native native "ws://127.0.0.1:$NATIVE_PORT/room"
    stop

    log "round $round of $ROUNDS: native axum broadcast, one flush per message"
    start native $NATIVE_PORT "$TARGET/release/native-fanout" "127.0.0.1:$NATIVE_PORT" flush-each
    fanout "$round" native flush-each "ws://127.0.0.1:$NATIVE_PORT/room"
    stop

    log "round $round of $ROUNDS: Node.js ws"
    start node $NODE_PORT node benches/node-fanout.js $NODE_PORT
    fanout "$round" node native "ws://127.0.0.1:$NODE_PORT/"
    stop

    log "round $round of $ROUNDS: the host, chat example"
    start wasmsock $HOST_PORT "$BIN" serve --plugins "$PLUGINS" --listen "127.0.0.1:$HOST_PORT" \
        --admin "127.0.0.1:$ADMIN_PORT"
    for instance in shared per-event; do
        fanout "$round" wasmsock "$instance" "ws://127.0.0.1:$HOST_PORT/websockets/service/chat-$instance?room=bench"
    done
    stop
done

python3 benches/report.py "$RESULTS" BENCHMARKS.md "benches/fanout.sh" \
    "ROUNDS=$ROUNDS SECONDS_PER_RUN=$SECONDS_PER_RUN MEMBERS=$MEMBERS IN_FLIGHT='$IN_FLIGHT' SIZE=$SIZE CPU=$CPU"
log "wrote the Fan-out table of BENCHMARKS.md"
