#!/bin/bash
# pin my Autobahn processes (wstest python, the Autobahn echo servers, autobahn-client) to CPUs $1
for p in $(pgrep -f 'autobahntestsuite.wstest') $(pgrep -f 'release/autobahn-client') $(pgrep -f 'echo-server (axum|sockudo|yawc) 910[123]'); do taskset -a -p -c $1 $p >/dev/null; done
