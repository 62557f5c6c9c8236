#!/bin/bash
# Same-core echo benchmark: server and load generator both on CPU ${CPU:-1}, fresh server per run, rounds interleaved.
# Usage: bench.sh ROUNDS MSG(small|json) CONFIG...   CONFIG = name:stack:ENV=..,ENV=..
set -u
cd "$(dirname "$0")"
B=target/release; CPU=${CPU:-1}; ROUNDS=$1; MSG=$2; shift 2
OFFER=${OFFER-"permessage-deflate; client_max_window_bits"}
mkdir -p results
for r in $(seq ${FIRST:-1} $ROUNDS); do
  for cfg in "$@"; do
    name=${cfg%%:*}; rest=${cfg#*:}; stack=${rest%%:*}; envs=${rest#*:}
    port=$((9200 + RANDOM % 500))
    bin=$B/echo-server; [[ $name == *nosimd* ]] && bin=$B/echo-server.nosimd   # yawc built without its simd feature
    env $(echo "$envs" | tr ',' ' ') taskset -c $CPU $bin $stack $port 2>/dev/null &
    spid=$!; sleep 0.5
    out=$(taskset -c $CPU $B/loadgen url=ws://127.0.0.1:$port/ conns=${CONNS:-100} inflight=${INFLIGHT:-10} msg=$MSG pid=$spid \
          warm=${WARM:-2} secs=${SECS:-5} "ext=$OFFER" label=$name ${LGARGS:-} 2>&1)
    kill $spid; wait $spid 2>/dev/null
    echo "round=$r $(echo "$out" | grep -o 'negotiated: .*' | head -1 | tr ' ' '_') $(echo "$out" | grep RESULT)" | tee -a results/echo-$MSG${TAG:-}.txt
  done
done
