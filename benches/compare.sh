#!/usr/bin/env bash
# Before and after, in one run: the host built from this checkout against BASELINE (a `wasmsock` binary built from an
# earlier commit), with the native axum echo as the yardstick, on the two pinnings of the performance issue: `same`
# (server and load generator on one core: CPU per message at saturation) and `split` (server on SERVER_CPU, load on
# LOAD_CPU). Each round measures every server once per pinning, so a ratio is taken between figures of the same round:
#   - echo: 100 connections × 10 in flight, 64-byte text, the Rust echo in `shared`, `per-connection` and `per-event`;
#   - fan-out: the Rust chat (`shared`), 1000 members and one publisher, 8 publishes in flight.
# Then, once, memory: each host started on the JavaScript (SpiderMonkey, 12 MB) and Python (18 MB) echo components, so
# it compiles them in the process, first into an empty compile cache (a first start), then with --no-cache; its RSS
# once it serves and is idle.
# Writes target/bench/compare.jsonl and the Before and after table of BENCHMARKS.md (benches/report.py).
#
# Run with: BASELINE=/path/to/old/wasmsock benches/compare.sh      (about 6 minutes with the defaults; not part of CI)
# Settings (environment): ROUNDS (3), SECONDS_PER_RUN (4), MEMBERS (1000), PINNINGS ("same split"), LOAD_CPU (0),
# SERVER_CPU (1); CARGO_TARGET_DIR is honoured.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BASELINE=${BASELINE:?set BASELINE to a wasmsock binary built from the commit to compare against}
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-4}
MEMBERS=${MEMBERS:-1000}
PINNINGS=${PINNINGS:-same split}
LOAD_CPU=${LOAD_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$ROOT/target/bench
RESULTS=$OUT/compare.jsonl
BIN=$TARGET/release/wasmsock
PLUGINS=$OUT/compare-plugins
HOST_PORT=9130
ADMIN_PORT=9131
NATIVE_PORT=9132

log() { echo "compare: $*" >&2; }

ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT"
: >"$RESULTS"

log "building the release host, the native baseline and the guests"
cargo build --quiet --release -p wasmsock -p native-echo
cargo build --quiet --profile guest --target wasm32-wasip2 -p echo -p chat
cargo xtask guests

rm -rf "$PLUGINS"
mkdir -p "$PLUGINS/examples"
for guest in echo chat; do cp "$TARGET/wasm32-wasip2/guest/$guest.wasm" "$PLUGINS/examples/$guest.wasm"; done
for instance in shared per-connection per-event; do
    printf '{"handler": "examples/echo", "endpoint": "echo-%s", "instance": "%s"}\n' "$instance" "$instance" \
        >"$PLUGINS/examples/echo-$instance.websocket"
done
printf '{"handler": "examples/chat", "endpoint": "chat", "instance": "shared"}\n' >"$PLUGINS/examples/chat.websocket"

# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

# measure ROUND PINNING SERVER LIFECYCLE URL ARGS...: a 1 s warm-up, then one measured run appended to the results.
measure() {
    local round=$1 pinning=$2 server=$3 lifecycle=$4 url=$5
    shift 5
    taskset -c "$LOAD_CPU" "$BIN" bench "$url" "$@" --count 100000000 --duration-secs 1 --json >/dev/null
    taskset -c "$LOAD_CPU" "$BIN" bench "$url" "$@" --count 100000000 --duration-secs "$SECONDS_PER_RUN" \
        --server-pid "$STARTED" --json |
        python3 -c 'import json, sys
r = json.load(sys.stdin)
r.update(round=int(sys.argv[1]), pinning=sys.argv[2], server=sys.argv[3], lifecycle=sys.argv[4], compare=True)
print(json.dumps(r))' "$round" "$pinning" "$server" "$lifecycle" | tee -a "$RESULTS" >&2
}

echo_args=(--mode echo -c 100 -w 10 --size 64)

# The `per-connection` echo's 100 connections keep 100 instances of one project, past the default quota of 64: a host
# that has the quota gets a larger one (as in baselines.sh), or about a third of them would be refused with 1013. A
# baseline built before the quota has no such flag and no such limit.
quota_args() {
    if "$1" serve --help 2>/dev/null | grep -q -- --project-resident-instances; then
        echo --project-resident-instances 256
    fi
}
for round in $(seq 1 "$ROUNDS"); do
    for pinning in $PINNINGS; do
        if [ "$pinning" = same ]; then cpu=$LOAD_CPU; else cpu=$SERVER_CPU; fi
        log "round $round of $ROUNDS, $pinning: native echo"
        launch "$cpu" "$OUT/compare-native.log" $NATIVE_PORT "$TARGET/release/native-echo" "127.0.0.1:$NATIVE_PORT"
        measure "$round" "$pinning" native native "ws://127.0.0.1:$NATIVE_PORT/echo" "${echo_args[@]}"
        kill "$STARTED"
        wait "$STARTED" 2>/dev/null || true
        for server in baseline current; do
            if [ "$server" = baseline ]; then bin=$BASELINE; else bin=$BIN; fi
            log "round $round of $ROUNDS, $pinning: the $server host"
            # shellcheck disable=SC2046 # the flag and its value are two words, or none
            launch "$cpu" "$OUT/compare-$server.log" $HOST_PORT "$bin" serve --plugins "$PLUGINS" \
                --listen "127.0.0.1:$HOST_PORT" --admin "127.0.0.1:$ADMIN_PORT" $(quota_args "$bin")
            for instance in shared per-connection per-event; do
                measure "$round" "$pinning" "$server" "$instance" \
                    "ws://127.0.0.1:$HOST_PORT/websockets/service/echo-$instance" "${echo_args[@]}"
            done
            measure "$round" "$pinning" "$server" fanout "ws://127.0.0.1:$HOST_PORT/websockets/service/chat?room=b" \
                --mode fanout -c "$MEMBERS" -w 8 --size 64
            kill "$STARTED"
            wait "$STARTED" 2>/dev/null || true
        done
    done
done

log "memory: each host compiling the JavaScript and Python echo components in the process"
MEMORY_PLUGINS=$OUT/compare-memory-plugins
rm -rf "$MEMORY_PLUGINS"
mkdir -p "$MEMORY_PLUGINS/examples"
cp tests/components/js-echo-spidermonkey.wasm plugins/examples/py-echo.wasm "$MEMORY_PLUGINS/examples/"
for guest in js-echo-spidermonkey py-echo; do
    printf '{"handler": "examples/%s", "endpoint": "%s"}\n' "$guest" "$guest" >"$MEMORY_PLUGINS/examples/$guest.websocket"
done
for start in first-start no-cache; do
    for server in baseline current; do
        if [ "$server" = baseline ]; then bin=$BASELINE; else bin=$BIN; fi
        rm -rf "$MEMORY_PLUGINS/.wasmsock-cache"
        cache=()
        [ "$start" = no-cache ] && cache=(--no-cache)
        launch "$SERVER_CPU" "$OUT/compare-memory-$server.log" $HOST_PORT "$bin" serve --plugins "$MEMORY_PLUGINS" \
            "${cache[@]}" --listen "127.0.0.1:$HOST_PORT" --admin "127.0.0.1:$ADMIN_PORT"
        sleep 2
        kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$STARTED/status")
        printf '{"mode": "rss", "compare": true, "server": "%s", "what": "%s", "server_rss_kib": %s}\n' "$server" \
            "idle after compiling the JavaScript (SpiderMonkey) and Python echo, $start" "$kib" | tee -a "$RESULTS" >&2
        kill "$STARTED"
        wait "$STARTED" 2>/dev/null || true
    done
done

python3 benches/report.py "$RESULTS" BENCHMARKS.md "BASELINE=… benches/compare.sh" \
    "ROUNDS=$ROUNDS SECONDS_PER_RUN=$SECONDS_PER_RUN MEMBERS=$MEMBERS LOAD_CPU=$LOAD_CPU SERVER_CPU=$SERVER_CPU"
log "wrote the Before and after table of BENCHMARKS.md"
