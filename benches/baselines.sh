#!/usr/bin/env bash
# The baselines of the performance issue (32), in interleaved rounds of one run: Bun (`Bun.serve`, uWebSockets), a
# native axum server and Node `ws` against the host, with the server and the load generator pinned to the same core,
# so each figure is server CPU per message at saturation. Every round starts every server, then measures the
# baselines again between the host's runs, so that each of the host's figures is compared with the baseline's runs
# just before and after it; benches/baselines.py prints the median, the spread and the ratios per round, and marks a
# target met only when every round meets it.
#   - echo: 100 connections × 10 in flight, 64-byte text, the load generator feeding its whole window and flushing
#     once (`wasmsock bench --pipeline`); the host with the Rust echo in `shared`, `per-connection`, `per-event` and
#     the JavaScript (QuickJS) echo in `shared` and `per-event`;
#   - fan-out: 1,000 members and one publisher, 8 publishes in flight; Bun's topic publish, the native tokio
#     broadcast, Node looping over its clients, the host's Rust chat in `shared` and `per-event` and the JavaScript
#     chat in `shared`;
#   - handshakes: 10 at a time, server CPU per open and close, the native echo and the host's Rust echo in `shared` and
#     `per-event`;
#   - the floor: the hand-written echo of benches/floor/echo.wat (one page of memory, two imports, nothing else) in
#     `shared` and `per-event`, echo and handshakes: what the host's path costs with the smallest guest an echo can be;
#   - the engine: the same floor echo in wasmtime alone, with no host, socket or runtime around it
#     (benches/engine-floor: a kept instance's call and a fresh instance's, as the host makes them), between native's
#     echo runs: the least any host on this engine adds to a native server, next to the targets that must fit above it.
# Writes target/bench/baselines.jsonl and prints the tables.
#
# Run with: benches/baselines.sh       (about 16 minutes with the defaults; not part of CI)
# Settings (environment): ROUNDS (3), SECONDS_PER_RUN (4), MEMBERS (1000), CPU (0): the core both the server and the
# load generator are pinned to; CARGO_TARGET_DIR is honoured.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-4}
MEMBERS=${MEMBERS:-1000}
CPU=${CPU:-0}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$ROOT/target/bench
RESULTS=$OUT/baselines.jsonl
BIN=$TARGET/release/wasmsock
BUN=$ROOT/benches/node_modules/@oven/bun-linux-x64/bin/bun
PLUGINS=$OUT/baselines-plugins
HOST_PORT=9140
ADMIN_PORT=9141
NATIVE_PORT=9142
NODE_PORT=9143
BUN_PORT=9144
NATIVE_FANOUT_PORT=9145
NODE_FANOUT_PORT=9146
BUN_FANOUT_PORT=9147

log() { echo "baselines: $*" >&2; }

# A room of 1,000 members plus the publisher needs more descriptors than the usual soft limit of 1,024.
ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT"
: >"$RESULTS"

log "building the release host, the native baselines and the guests; installing Node ws and Bun"
cargo build --quiet --release -p wasmsock -p native-echo -p native-fanout -p engine-floor
cargo xtask guests
(cd benches && npm ci --no-audit --no-fund --silent)
"$BUN" --version >/dev/null

rm -rf "$PLUGINS"
mkdir -p "$PLUGINS/examples"
for guest in echo js-echo chat js-chat; do cp "plugins/examples/$guest.wasm" "$PLUGINS/examples/$guest.wasm"; done
for instance in shared per-connection per-event; do
    printf '{"handler": "examples/echo", "endpoint": "echo-%s", "instance": "%s"}\n' "$instance" "$instance" \
        >"$PLUGINS/examples/echo-$instance.websocket"
    printf '{"handler": "examples/js-echo", "endpoint": "js-echo-%s", "instance": "%s"}\n' "$instance" "$instance" \
        >"$PLUGINS/examples/js-echo-$instance.websocket"
done
for instance in shared per-event; do
    printf '{"handler": "examples/chat", "endpoint": "chat-%s", "instance": "%s"}\n' "$instance" "$instance" \
        >"$PLUGINS/examples/chat-$instance.websocket"
done
printf '{"handler": "examples/js-chat", "endpoint": "js-chat-shared", "instance": "shared"}\n' \
    >"$PLUGINS/examples/js-chat-shared.websocket"
# The floor echo, from its text with jco (in sdk/js/node_modules once `cargo xtask guests` has built the JavaScript
# guests; fetched from npm otherwise).
JCO=$ROOT/sdk/js/node_modules/.bin/jco
[ -x "$JCO" ] || JCO="npx --yes @bytecodealliance/jco@1.35.0"
$JCO parse benches/floor/echo.wat -o "$PLUGINS/examples/floor-echo.wasm"
for instance in shared per-event; do
    printf '{"handler": "examples/floor-echo", "endpoint": "floor-echo-%s", "instance": "%s"}\n' "$instance" "$instance" \
        >"$PLUGINS/examples/floor-echo-$instance.websocket"
done

# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

start() {
    local name=$1 port=$2
    shift 2
    launch "$CPU" "$OUT/baselines-$name.log" "$port" "$@"
    SERVER_PID=$STARTED
}

stop() {
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
}

# measure ROUND KIND SERVER URL ARGS...: a 1 s unmeasured run (connections accepted, JIT and caches warm), then one
# measured run appended to the results.
measure() {
    local round=$1 kind=$2 server=$3 url=$4
    shift 4
    taskset -c "$CPU" "$BIN" bench "$url" "$@" --count 100000000 --duration-secs 1 --json >/dev/null
    taskset -c "$CPU" "$BIN" bench "$url" "$@" --count 100000000 --duration-secs "$SECONDS_PER_RUN" \
        --server-pid "$SERVER_PID" --json |
        python3 -c 'import json, sys
r = json.load(sys.stdin)
r.update(round=int(sys.argv[1]), kind=sys.argv[2], server=sys.argv[3])
print(json.dumps(r))' "$round" "$kind" "$server" | tee -a "$RESULTS" >&2
}

ECHO=(--mode echo -c 100 -w 10 --size 64 --pipeline)
FANOUT=(--mode fanout -c "$MEMBERS" -w 8 --size 64)
CONNECT=(--mode connect -c 10)

# run KIND SERVER PID URL: one measured run of KIND (echo, fanout, connect) against SERVER, whose process is PID, in
# the current round.
run() {
    local kind=$1 server=$2 pid=$3 url=$4 args
    case $kind in
        echo) args=("${ECHO[@]}") ;;
        fanout) args=("${FANOUT[@]}") ;;
        connect) args=("${CONNECT[@]}") ;;
    esac
    SERVER_PID=$pid measure "$round" "$kind" "$server" "$url" "${args[@]}"
}
base="ws://127.0.0.1:$HOST_PORT/websockets/service"
native_echo() { run echo native "$NATIVE_PID" "ws://127.0.0.1:$NATIVE_PORT/echo"; }
bun_echo() { run echo bun "$BUN_PID" "ws://127.0.0.1:$BUN_PORT/"; }
node_echo() { run echo node "$NODE_PID" "ws://127.0.0.1:$NODE_PORT/"; }
host_echo() { run echo "host $1" "$HOST_PID" "$base/$2"; }
native_fanout() { run fanout native "$NATIVE_FANOUT_PID" "ws://127.0.0.1:$NATIVE_FANOUT_PORT/room"; }
bun_fanout() { run fanout bun "$BUN_FANOUT_PID" "ws://127.0.0.1:$BUN_FANOUT_PORT/"; }
node_fanout() { run fanout node "$NODE_FANOUT_PID" "ws://127.0.0.1:$NODE_FANOUT_PORT/"; }
host_fanout() { run fanout "host $1" "$HOST_PID" "$base/$2?room=bench"; }
native_connect() { run connect native "$NATIVE_PID" "ws://127.0.0.1:$NATIVE_PORT/echo"; }
host_connect() { run connect "host $1" "$HOST_PID" "$base/$2"; }
# The floor echo in wasmtime alone, on the same core: one line per measure (benches/engine-floor).
engine_floor() {
    taskset -c "$CPU" "$TARGET/release/engine-floor" "$PLUGINS/examples/floor-echo.wasm" "$SECONDS_PER_RUN" |
        python3 -c 'import json, sys
for line in sys.stdin:
    r = json.loads(line)
    r.update(round=int(sys.argv[1]))
    print(json.dumps(r))' "$round" | tee -a "$RESULTS" >&2
}

# Every server of a round is started first and stays up for the round (an idle one takes no CPU), so that the
# baselines can be measured again between the host's runs: each of the host's figures is compared with the baseline's
# runs just before and after it (benches/baselines.py), not with one taken minutes earlier on a machine whose speed
# drifts.
for round in $(seq 1 "$ROUNDS"); do
    log "round $round of $ROUNDS: starting Bun, native axum, Node.js ws and the host"
    start bun $BUN_PORT "$BUN" benches/bun-echo.js $BUN_PORT
    BUN_PID=$SERVER_PID
    start bun-fanout $BUN_FANOUT_PORT "$BUN" benches/bun-fanout.js $BUN_FANOUT_PORT
    BUN_FANOUT_PID=$SERVER_PID
    start native $NATIVE_PORT "$TARGET/release/native-echo" "127.0.0.1:$NATIVE_PORT"
    NATIVE_PID=$SERVER_PID
    start native-fanout $NATIVE_FANOUT_PORT "$TARGET/release/native-fanout" "127.0.0.1:$NATIVE_FANOUT_PORT"
    NATIVE_FANOUT_PID=$SERVER_PID
    start node $NODE_PORT node benches/node-echo.js $NODE_PORT
    NODE_PID=$SERVER_PID
    start node-fanout $NODE_FANOUT_PORT node benches/node-fanout.js $NODE_FANOUT_PORT
    NODE_FANOUT_PID=$SERVER_PID
    # The `per-connection` echo keeps an instance for each of its 100 connections, besides the `shared` endpoints' of
    # the same project: past the default quota of 64 kept instances per project, a third of its connections were
    # refused with 1013 and the row measured the rest.
    start wasmsock $HOST_PORT "$BIN" serve --plugins "$PLUGINS" --listen "127.0.0.1:$HOST_PORT" \
        --admin "127.0.0.1:$ADMIN_PORT" --project-resident-instances 256
    HOST_PID=$SERVER_PID
    log "round $round of $ROUNDS: echo"
    native_echo
    bun_echo
    host_echo "rust shared" echo-shared
    host_echo "rust per-connection" echo-per-connection
    native_echo
    bun_echo
    host_echo "rust per-event" echo-per-event
    host_echo "floor echo shared" floor-echo-shared
    host_echo "floor echo per-event" floor-echo-per-event
    native_echo
    engine_floor
    native_echo
    node_echo
    host_echo "js shared" js-echo-shared
    host_echo "js per-event" js-echo-per-event
    node_echo
    native_echo

    log "round $round of $ROUNDS: fan-out"
    native_fanout
    bun_fanout
    host_fanout "rust chat shared" chat-shared
    host_fanout "rust chat per-event" chat-per-event
    native_fanout
    bun_fanout
    host_fanout "js chat shared" js-chat-shared
    node_fanout
    native_fanout

    log "round $round of $ROUNDS: handshakes"
    native_connect
    host_connect "rust shared" echo-shared
    host_connect "rust per-event" echo-per-event
    native_connect
    host_connect "floor echo per-event" floor-echo-per-event
    native_connect

    for pid in $BUN_PID $BUN_FANOUT_PID $NATIVE_PID $NATIVE_FANOUT_PID $NODE_PID $NODE_FANOUT_PID $HOST_PID; do
        SERVER_PID=$pid stop
    done
done

python3 benches/baselines.py "$RESULTS"
