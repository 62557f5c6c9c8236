#!/usr/bin/env bash
# Fair share between projects (issue 28): does another project's handler that keeps running out its deadline slow a
# quiet project down? One host, two projects under one plugins root: `noisy` (the `misbehave` test component,
# per-event: `loop` spins until the handler deadline) and `quiet` (the echo example, per-event). The figure is the
# quiet echo's round trip as a new user sees it, a fresh connection and one message (`wasmsock bench --mode
# roundtrip`, from the start of the handshake to the echo; one sample started every INTERVAL_MS, each with its own
# TIMEOUT_MS, a sample that times out, fails or gets another reply counted as failed), under three patterns:
#   - alone:    nothing else runs;
#   - spin16:   SPINNERS (16) connections to `noisy` send `loop` over and over, each waiting for its onerror's reply,
#               reconnecting when the host closes them after three failures (`wasmsock bench --mode spin`);
#   - burst300: BURST (300) connections to `noisy` each send `loop` once and hold their connection.
# and two pinnings: `default` (nothing pinned: the host on its default threads, both cores) and `pinned` (the whole
# host on HOST_CPU with `taskset -a -p`, after it started, so it keeps its default threads; the load generators on
# LOAD_CPU). Each phase (pattern × pinning × host) gets a freshly started host, killed at its end (SIGKILL), so no
# phase inherits another's backlog of spinning calls: a burst of 300 one-second calls takes the old host minutes to
# drain. The noise starts WARMUP_SECS before the round trips and lasts until they stop starting. Rounds are
# interleaved: every pattern and pinning once, then again. With BASELINE set, every phase is measured on that binary
# too, just before the same phase on BIN, so the two can be compared within one round.
# Writes target/bench/fairness.jsonl (one line per `wasmsock bench --json` report, with round, pattern, pinning,
# server and role) and prints a table: the quiet echo's p50, p99, max and failed/total per round, the noise's
# figures, and each target's verdict (met when every round meets it).
#
# Run with: benches/fairness.sh                      (about 4 minutes with the defaults; not part of CI)
#      or:  BIN=/path/to/wasmsock benches/fairness.sh   (the host to measure; BASELINE=/path/to/other adds that one)
# Settings (environment): BIN (the host; default this checkout's release build), BASELINE (unset), LOADGEN (the
# `wasmsock bench` client; default this checkout's release build, which has the roundtrip and spin modes), ROUNDS
# (3), PATTERNS ("alone spin16 burst300"), PINNINGS ("default pinned"), PHASE_SECS (5), INTERVAL_MS (10),
# TIMEOUT_MS (10000), MAX_IN_FLIGHT (1000), WARMUP_SECS (2), SPINNERS (16), BURST (300), HOST_CPU (0), LOAD_CPU (1),
# SERVE_ARGS (extra flags for `wasmsock serve`, e.g. a newer host's quota flags), NO_BUILD (set: build nothing, use
# what is there); CARGO_TARGET_DIR is honoured.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET/release/wasmsock}
BASELINE=${BASELINE:-}
LOADGEN=${LOADGEN:-$TARGET/release/wasmsock}
ROUNDS=${ROUNDS:-3}
PATTERNS=${PATTERNS:-alone spin16 burst300}
PINNINGS=${PINNINGS:-default pinned}
PHASE_SECS=${PHASE_SECS:-5}
INTERVAL_MS=${INTERVAL_MS:-10}
TIMEOUT_MS=${TIMEOUT_MS:-10000}
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-1000}
WARMUP_SECS=${WARMUP_SECS:-2}
SPINNERS=${SPINNERS:-16}
BURST=${BURST:-300}
HOST_CPU=${HOST_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SERVE_ARGS=${SERVE_ARGS:-}
OUT=$ROOT/target/bench
RESULTS=$OUT/fairness.jsonl
PLUGINS=$OUT/fairness-plugins
HOST_PORT=9140
ADMIN_PORT=9141
QUIET_URL="ws://127.0.0.1:$HOST_PORT/websockets/service/quiet-echo"
NOISY_URL="ws://127.0.0.1:$HOST_PORT/websockets/service/noisy-misbehave"

log() { echo "fairness: $*" >&2; }

ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT"
: >"$RESULTS"

if [ -z "${NO_BUILD:-}" ]; then
    log "building the release host (the load generator) and the two guests"
    cargo build --quiet --release -p wasmsock
    cargo build --quiet --profile guest --target wasm32-wasip2 -p echo -p misbehave
fi
for bin in "$BIN" "$LOADGEN" ${BASELINE:+"$BASELINE"}; do
    [ -x "$bin" ] || { log "$bin is not an executable"; exit 1; }
done
"$LOADGEN" bench --help | grep -q roundtrip ||
    { log "$LOADGEN has no roundtrip mode: set LOADGEN to a build of this checkout"; exit 1; }

rm -rf "$PLUGINS"
mkdir -p "$PLUGINS/noisy" "$PLUGINS/quiet"
cp "$TARGET/wasm32-wasip2/guest/misbehave.wasm" "$PLUGINS/noisy/misbehave.wasm"
cp "$TARGET/wasm32-wasip2/guest/echo.wasm" "$PLUGINS/quiet/echo.wasm"
printf '{"handler": "noisy/misbehave", "endpoint": "noisy-misbehave", "instance": "per-event"}\n' \
    >"$PLUGINS/noisy/misbehave.websocket"
printf '{"handler": "quiet/echo", "endpoint": "quiet-echo", "instance": "per-event"}\n' >"$PLUGINS/quiet/echo.websocket"

# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

# load PINNING COMMAND...: runs a load generator, on LOAD_CPU when the host is pinned.
load() {
    local pinning=$1
    shift
    if [ "$pinning" = pinned ]; then taskset -c "$LOAD_CPU" "$@"; else "$@"; fi
}

# start_host BINARY PINNING: starts a host on the plugins root, pins every thread of it when asked, and waits until
# both endpoints answer a round trip (a fresh host compiles nothing: the compile cache is warm after the first).
start_host() {
    local bin=$1 pinning=$2
    # shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
    "$bin" serve --plugins "$PLUGINS" --listen "127.0.0.1:$HOST_PORT" --admin "127.0.0.1:$ADMIN_PORT" $SERVE_ARGS \
        >>"$OUT/fairness-host.log" 2>&1 &
    HOST=$!
    PIDS+=("$HOST")
    wait_for_port $HOST_PORT
    if [ "$pinning" = pinned ]; then taskset -a -p -c "$HOST_CPU" "$HOST" >/dev/null; fi
    for url in "$QUIET_URL" "$NOISY_URL"; do
        for attempt in $(seq 1 50); do
            if "$LOADGEN" bench "$url" --mode roundtrip -n 1 --message ready --timeout-ms 2000 --json |
                grep -q '"completed":1'; then
                break
            fi
            [ "$attempt" = 50 ] && { log "$url does not echo"; exit 1; }
            sleep 0.2
        done
    done
}

stop_host() {
    kill -KILL "$HOST" 2>/dev/null || true
    wait "$HOST" 2>/dev/null || true
}

# tag ROUND PATTERN PINNING SERVER ROLE: adds the phase to a `--json` report on stdin and appends it to the results.
tag() {
    python3 -c 'import json, sys
r = json.load(sys.stdin)
r.update(round=int(sys.argv[1]), pattern=sys.argv[2], pinning=sys.argv[3], server=sys.argv[4], role=sys.argv[5])
print(json.dumps(r))' "$@" >>"$RESULTS"
}

# phase ROUND PATTERN PINNING SERVER BINARY: one measurement on a fresh host.
phase() {
    local round=$1 pattern=$2 pinning=$3 server=$4 bin=$5 noise=()
    case $pattern in
        alone) ;;
        spin16) noise=(-c "$SPINNERS" --message loop) ;;
        burst300) noise=(-c "$BURST" --message loop --once) ;;
        *) log "unknown pattern $pattern"; exit 1 ;;
    esac
    log "round $round of $ROUNDS, $pattern, $pinning: the $server host ($bin)"
    start_host "$bin" "$pinning"
    local noise_pid=
    if [ ${#noise[@]} -gt 0 ]; then
        # Until the round trips stop starting, and a second more.
        load "$pinning" "$LOADGEN" bench "$NOISY_URL" --mode spin "${noise[@]}" --count 100000000 \
            --duration-secs $((WARMUP_SECS + PHASE_SECS + 1)) --json >"$OUT/fairness-noise.json" &
        noise_pid=$!
        PIDS+=("$noise_pid")
        sleep "$WARMUP_SECS"
    fi
    load "$pinning" "$LOADGEN" bench "$QUIET_URL" --mode roundtrip -c "$MAX_IN_FLIGHT" --interval-ms "$INTERVAL_MS" \
        --timeout-ms "$TIMEOUT_MS" --count 100000000 --duration-secs "$PHASE_SECS" --server-pid "$HOST" --json |
        tag "$round" "$pattern" "$pinning" "$server" quiet
    if [ -n "$noise_pid" ]; then
        wait "$noise_pid"
        tag "$round" "$pattern" "$pinning" "$server" noise <"$OUT/fairness-noise.json"
    fi
    stop_host
}

started=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
    for pattern in $PATTERNS; do
        for pinning in $PINNINGS; do
            if [ -n "$BASELINE" ]; then phase "$round" "$pattern" "$pinning" baseline "$BASELINE"; fi
            phase "$round" "$pattern" "$pinning" current "$BIN"
        done
    done
done
log "done in $(($(date +%s) - started)) s; results in $RESULTS"

python3 - "$RESULTS" <<'EOF'
import json, sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1])]
noise = {(r["round"], r["pattern"], r["pinning"], r["server"]): r for r in rows if r["role"] == "noise"}
quiet = [r for r in rows if r["role"] == "quiet"]
ms = lambda us: "-" if us is None else f"{us / 1000:.2f}"
print("| pattern | pinning | server | round | p50 ms | p99 ms | max ms | failed/total | noise: sent, error replies, closes |")
print("|---|---|---|---|---|---|---|---|---|")
for r in quiet:
    key = (r["round"], r["pattern"], r["pinning"], r["server"])
    n = noise.get(key)
    extra = "-" if n is None else f'{n["sent"]}, {n["error_replies"]}, {n["closes"]} {json.dumps(n["close_codes"])}'
    lat = r["latency_us"]
    failed = r["errors"]
    kinds = ", ".join(f"{k} {v}" for k, v in r["failures"].items() if v)
    print(f'| {r["pattern"]} | {r["pinning"]} | {r["server"]} | {r["round"]} | {ms(lat["p50"])} | {ms(lat["p99"])} '
          f'| {ms(lat["max"])} | {failed}/{r["samples"]}{" (" + kinds + ")" if kinds else ""} | {extra} |')

targets = {"spin16": 20_000, "burst300": 100_000}
verdicts = defaultdict(list)
for r in quiet:
    if r["pattern"] in targets:
        p99 = r["latency_us"]["p99"]
        ok = r["errors"] == 0 and p99 is not None and p99 <= targets[r["pattern"]]
        verdicts[(r["pattern"], r["pinning"], r["server"])].append(ok)
print()
for (pattern, pinning, server), oks in sorted(verdicts.items()):
    limit = targets[pattern] // 1000
    verdict = "met" if all(oks) else f"missed in {oks.count(False)} of {len(oks)} rounds"
    print(f"target {pattern} p99 <= {limit} ms, no failed round trip, {pinning}, {server}: {verdict}")
EOF
