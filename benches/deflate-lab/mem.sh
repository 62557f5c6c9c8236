#!/bin/bash
# Idle memory: fresh server, 1,000 connections, each sends one ~1 KB JSON message and gets its echo (so any lazily
# built compressor exists), then all are held idle; RSS delta / 1000. Usage: mem.sh ROUNDS CONFIG...
set -u
cd "$(dirname "$0")"
B=target/release; ROUNDS=$1; shift
OFFER=${OFFER-"permessage-deflate; client_max_window_bits"}
for r in $(seq 1 $ROUNDS); do
  for cfg in "$@"; do
    name=${cfg%%:*}; rest=${cfg#*:}; stack=${rest%%:*}; envs=${rest#*:}
    port=$((9800 + RANDOM % 150))
    env $(echo "$envs" | tr ',' ' ') taskset -c ${CPU:-1} $B/echo-server $stack $port 2>/dev/null &
    spid=$!; sleep 0.5
    out=$(taskset -c ${CPU:-1} $B/loadgen url=ws://127.0.0.1:$port/ mode=idle conns=${CONNS:-1000} msg=${MSG:-json} pid=$spid "ext=$OFFER" label=$name 2>&1)
    kill $spid; wait $spid 2>/dev/null
    echo "round=$r $(echo "$out" | grep -o 'negotiated: .*' | head -1 | tr ' ' '_') $(echo "$out" | grep RESULT)" | tee -a results/idle${TAG:-}.txt
  done
done
