#!/usr/bin/env bash
# The benchmarks of BENCHMARKS.md, in one run on both pinnings (the server and the load generator on two cores, then
# both on one core, where the figure is CPU per message at saturation): a native axum echo baseline
# (benches/native-echo), Node `ws` and Python `websockets` echo servers, and the host with the Rust, JavaScript (on
# QuickJS and on SpiderMonkey) and Python echo handlers in each instance lifecycle; handshakes/s for the baseline and
# the host; the host's memory after compiling in process, after the echo runs and per idle connection. Server CPU per
# message comes from /proc/PID/stat of the server (see `wasmsock bench --server-pid`). Writes
# target/bench/results.jsonl and the tables in BENCHMARKS.md.
#
# Run with: benches/run.sh            (about 12 minutes; not part of CI)
# Settings (environment): SECONDS_PER_RUN (5), CONNECTIONS (100), IDLE_CONNECTIONS (10000), HANDSHAKE_SECONDS (5),
# PINNINGS ("split same"), SPLIT_CPUS ("0 1": the server's core, then the load generator's), SAME_CPU (0).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
CONNECTIONS=${CONNECTIONS:-100}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
HANDSHAKE_SECONDS=${HANDSHAKE_SECONDS:-5}
PINNINGS=${PINNINGS:-split same}
SPLIT_CPUS=${SPLIT_CPUS:-0 1}
SAME_CPU=${SAME_CPU:-0}
OUT=$ROOT/target/bench
RESULTS=$OUT/results.jsonl
BIN=$ROOT/target/release/wasmsock
PLUGINS=$OUT/plugins
HOST_PORT=9100
ADMIN_PORT=9101
NATIVE_PORT=9102
NODE_PORT=9103
PYTHON_PORT=9104

log() { echo "bench: $*" >&2; }

# 10,000 idle connections need as many descriptors in the server and in the load generator.
ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT"
: >"$RESULTS"

log "building the release host, the native baseline and the guests"
cargo build --quiet --release -p wasmsock -p native-echo
cargo xtask guests
(cd benches && npm ci --no-audit --no-fund --silent)
if [ ! -x "$ROOT/target/bench-venv/bin/python" ]; then
    python3 -m venv "$ROOT/target/bench-venv"
fi
"$ROOT/target/bench-venv/bin/pip" install --quiet websockets==15.0.1

log "plugins root: the echo handlers, one endpoint per language and lifecycle"
rm -rf "$PLUGINS"
mkdir -p "$PLUGINS/examples"
LANGS="rust js js-sm py"
for lang in $LANGS; do
    case $lang in
        rust) wasm=echo from=plugins/examples ;;
        js) wasm=js-echo from=plugins/examples ;;
        js-sm) wasm=js-echo-spidermonkey from=tests/components ;;
        py) wasm=py-echo from=plugins/examples ;;
    esac
    cp "$from/$wasm.wasm" "$PLUGINS/examples/$wasm.wasm"
    for instance in per-event per-connection shared; do
        printf '{"handler": "examples/%s", "endpoint": "%s-%s", "instance": "%s"}\n' \
            "$wasm" "$lang" "$instance" "$instance" >"$PLUGINS/examples/$lang-$instance.websocket"
    done
done

# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

# start NAME PORT COMMAND...: starts a server pinned to the server core; sets SERVER_PID.
start() {
    local name=$1 port=$2
    shift 2
    launch "$SERVER_CPU" "$OUT/$name.log" "$port" "$@"
    SERVER_PID=$STARTED
}

# bench SERVER LANG LIFECYCLE URL ARGS...: one measured run, appended to the results with the pinning.
bench() {
    local server=$1 lang=$2 lifecycle=$3 url=$4
    shift 4
    taskset -c "$LOAD_CPU" "$BIN" bench "$url" --server-pid "$SERVER_PID" "$@" --json |
        python3 -c 'import json, sys
r = json.load(sys.stdin)
r.update(server=sys.argv[1], lang=sys.argv[2], lifecycle=sys.argv[3], pinning=sys.argv[4])
print(json.dumps(r))' "$server" "$lang" "$lifecycle" "$PINNING" | tee -a "$RESULTS" >&2
}

# rss WHAT: the host's resident memory now, appended to the results: the RSS, its anonymous and file-backed parts, and
# the proportional set size (a page mapped N times in the process counts 1/N; the pool maps a handler's memory image
# from its compiled file into every slot that ran it, and RSS counts such a page once per slot).
rss() {
    local kib anon file pss
    kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status")
    anon=$(awk '/^RssAnon:/ {print $2}' "/proc/$SERVER_PID/status")
    file=$(awk '/^RssFile:/ {print $2}' "/proc/$SERVER_PID/status")
    pss=$(awk '/^Pss:/ {print $2}' "/proc/$SERVER_PID/smaps_rollup")
    printf '{"mode": "rss", "server": "wasmsock", "what": "%s", "server_rss_kib": %s, "server_rss_anon_kib": %s, "server_rss_file_kib": %s, "server_pss_kib": %s}\n' \
        "$1" "$kib" "$anon" "$file" "$pss" | tee -a "$RESULTS" >&2
}

echo_runs() {
    local server=$1 lang=$2 lifecycle=$3 url=$4
    # A 1 s warm-up first: shared instances created, JIT and allocator caches warm, connections accepted once.
    taskset -c "$LOAD_CPU" "$BIN" bench "$url" -c "$CONNECTIONS" --count 100000000 --duration-secs 1 --json >/dev/null
    for w in 1 10; do
        bench "$server" "$lang" "$lifecycle" "$url" --mode echo -c "$CONNECTIONS" -w "$w" --size 64 \
            --count 100000000 --duration-secs "$SECONDS_PER_RUN"
    done
}

# run_pinning: every echo and handshake run on the current pinning (PINNING, SERVER_CPU, LOAD_CPU).
run_pinning() {
    log "[$PINNING] native baseline"
    start native $NATIVE_PORT "$ROOT/target/release/native-echo" "127.0.0.1:$NATIVE_PORT"
    NATIVE_PID=$SERVER_PID
    echo_runs native rust native "ws://127.0.0.1:$NATIVE_PORT/echo"
    bench native rust native "ws://127.0.0.1:$NATIVE_PORT/echo" --mode connect -c 10 --count 100000000 \
        --duration-secs "$HANDSHAKE_SECONDS"
    if [ "$PINNING" = split ]; then
        bench native rust native "ws://127.0.0.1:$NATIVE_PORT/echo" --mode idle -c "$IDLE_CONNECTIONS" \
            --duration-secs 60 --hold-secs 2
    fi
    kill "$NATIVE_PID"

    log "[$PINNING] Node.js ws"
    start node $NODE_PORT node benches/node-echo.js $NODE_PORT
    echo_runs node js native "ws://127.0.0.1:$NODE_PORT/"
    kill "$SERVER_PID"

    log "[$PINNING] Python websockets"
    start python $PYTHON_PORT "$ROOT/target/bench-venv/bin/python" benches/python-echo.py $PYTHON_PORT
    echo_runs python py native "ws://127.0.0.1:$PYTHON_PORT/"
    kill "$SERVER_PID"

    log "[$PINNING] the host"
    # Twelve endpoints of one project, four of them `per-connection` with 100 connections each (one at a time): past
    # the default quota of 64 kept instances per project, connections would be refused with 1013.
    start wasmsock $HOST_PORT "$BIN" serve --plugins "$PLUGINS" --listen "127.0.0.1:$HOST_PORT" \
        --admin "127.0.0.1:$ADMIN_PORT" --project-resident-instances 256 "$@"
    if [ "$PINNING" = split ]; then
        # The plugins root is new, so this first start compiles every handler (into its empty compile cache).
        sleep 2
        rss "idle after the first start, every handler compiled (into an empty cache)"
    fi
    for lang in $LANGS; do
        for instance in shared per-connection per-event; do
            echo_runs wasmsock "$lang" "$instance" "ws://127.0.0.1:$HOST_PORT/websockets/service/$lang-$instance"
        done
    done
    if [ "$PINNING" = split ]; then
        rss "after the echo runs"
    fi
    for instance in shared per-event; do
        bench wasmsock rust "$instance" "ws://127.0.0.1:$HOST_PORT/websockets/service/rust-$instance" \
            --mode connect -c 10 --count 100000000 --duration-secs "$HANDSHAKE_SECONDS"
    done
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    if [ "$PINNING" = split ]; then
        # Idle connections on a freshly started host (the compile cache warm), as the native server is measured: a heap
        # that the runs above grew would take the new connections in memory it already holds.
        # All of them are one project's: past the default quota of 2,500 inbound sessions per project the rest would be
        # refused (503), and the bench stops at the first refusal.
        start wasmsock $HOST_PORT "$BIN" serve --plugins "$PLUGINS" --listen "127.0.0.1:$HOST_PORT" \
            --admin "127.0.0.1:$ADMIN_PORT" --project-connections "$IDLE_CONNECTIONS"
        sleep 2
        bench wasmsock rust per-event "ws://127.0.0.1:$HOST_PORT/websockets/service/rust-per-event" --mode idle \
            -c "$IDLE_CONNECTIONS" --duration-secs 60 --hold-secs 2
        kill "$SERVER_PID"
    fi
}

for PINNING in $PINNINGS; do
    case $PINNING in
        split) read -r SERVER_CPU LOAD_CPU <<<"$SPLIT_CPUS" ;;
        same) SERVER_CPU=$SAME_CPU LOAD_CPU=$SAME_CPU ;;
        *) log "PINNINGS: unknown pinning $PINNING (split or same)"; exit 2 ;;
    esac
    run_pinning
done

python3 benches/report.py "$RESULTS" BENCHMARKS.md "benches/run.sh" \
    "SECONDS_PER_RUN=$SECONDS_PER_RUN CONNECTIONS=$CONNECTIONS IDLE_CONNECTIONS=$IDLE_CONNECTIONS PINNINGS=\"$PINNINGS\" SPLIT_CPUS=\"$SPLIT_CPUS\" SAME_CPU=$SAME_CPU"
log "wrote BENCHMARKS.md"
