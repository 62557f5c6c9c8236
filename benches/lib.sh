# Sourced by the benchmark scripts: the servers they start (every one killed when the script exits), waiting for a
# port, and starting a server pinned to a core. The sourcing script defines `log`.

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

wait_for_port() {
    for _ in $(seq 1 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    log "nothing listens on port $1 after 120 s"
    return 1
}

# launch CPU LOG-FILE PORT COMMAND...: starts a server pinned to core CPU, appending its output to LOG-FILE, and
# waits until it listens on PORT; sets STARTED to its pid.
launch() {
    local cpu=$1 log_file=$2 port=$3
    shift 3
    taskset -c "$cpu" "$@" >>"$log_file" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
    wait_for_port "$port"
}
