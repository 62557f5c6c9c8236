#!/usr/bin/env python3
"""The tables of benches/baselines.sh: for each kind (echo, fan-out, handshakes) and server, the server CPU per message
(per delivery, per handshake) as the median of its runs with their spread, its ratio to native axum, Bun and Node, and
how often the kernel preempted it (the involuntary context switches of its threads per second: on one shared core a
server that the load generator preempts often pays for it, BENCHMARKS.md round eleven). Then the performance issue's
targets, each met only when every round meets it.

A ratio is taken against the baseline runs nearest in time: within a round, the mean of the same baseline's run just
before and just after (one of them at a round's edge). benches/baselines.sh measures a baseline again between the
host's runs, so no host figure is compared with one taken more than a few runs earlier; on a machine whose speed
drifts within minutes, a ratio to the round's only baseline run mixed the host with the drift.

Last, the room each echo target leaves above native, beside what the engine alone takes of it: a host serves its
sockets with the same axum and tungstenite as the native server, so a target of k times native leaves (k - 1) times
native for everything the host adds, and wasmtime's own call (a kept instance) or instance (a fresh one) for the floor
echo, measured between native's runs by benches/engine-floor, must fit in it before any work of the host's.

Run with: python3 benches/baselines.py target/bench/baselines.jsonl
"""

import json
import statistics
import sys

FIELD = {
    "echo": "server_cpu_us_per_message",
    "fanout": "server_cpu_us_per_delivery",
    "connect": "server_cpu_us_per_handshake",
}
TITLE = {
    "echo": "Echo: µs of server CPU per message (100 connections × 10 in flight, 64-byte text, pipelined load)",
    "fanout": "Fan-out: µs of server CPU per delivery (1,000 members, one publisher, 8 in flight)",
    "connect": "Handshakes: µs of server CPU per open and close (10 at a time)",
}
BASELINES = ("native", "bun", "node")

# (kind, server, baseline, at most this many times the baseline): the targets of issue 32.
TARGETS = [
    ("echo", "host rust shared", "native", 1.3),
    ("echo", "host rust per-connection", "native", 1.3),
    ("echo", "host rust shared", "bun", 2.4),
    ("echo", "host rust per-connection", "bun", 2.4),
    ("echo", "host rust per-event", "native", 4.0),
    ("echo", "host js shared", "node", 1.0),
    ("echo", "host js per-event", "native", 30.0),
    ("fanout", "host rust chat shared", "native", 1.2),
    ("fanout", "host rust chat per-event", "native", 1.2),
    ("fanout", "host rust chat shared", "bun", 1.0),
    ("fanout", "host rust chat per-event", "bun", 1.0),
    ("connect", "host rust shared", "native", 1.2),
    ("connect", "host rust per-event", "native", 1.5),
]

# The echo targets against native, and the engine-alone measure of the same lifecycle that must fit in their room.
ENGINE = {
    "host rust shared": "wasmtime alone: floor echo, kept instance",
    "host rust per-connection": "wasmtime alone: floor echo, kept instance",
    "host rust per-event": "wasmtime alone: floor echo, fresh instance",
}


def load(path):
    """The runs in the order they were measured: [{kind, server, round, figure, preempted}] (preempted: involuntary
    context switches per second, None from a load generator that did not count them)."""
    runs = []
    with open(path, encoding="utf-8") as results:
        for line in results:
            if not line.strip():
                continue
            run = json.loads(line)
            figure = run.get(FIELD[run["kind"]])
            if figure is not None:
                switches, seconds = run.get("server_switches_involuntary"), run.get("seconds")
                preempted = switches / seconds if switches is not None and seconds else None
                runs.append(
                    {
                        "kind": run["kind"],
                        "server": run["server"],
                        "round": run["round"],
                        "figure": figure,
                        "preempted": preempted,
                    }
                )
    return runs


def nearest_baseline(runs, at, baseline):
    """The mean of `baseline`'s runs of the same kind and round just before and just after run `at` (None if it has
    none in that round)."""
    me = runs[at]

    def same(run):
        return run["kind"] == me["kind"] and run["round"] == me["round"] and run["server"] == baseline

    before = next((run["figure"] for run in reversed(runs[:at]) if same(run)), None)
    after = next((run["figure"] for run in runs[at + 1 :] if same(run)), None)
    around = [f for f in (before, after) if f is not None and f > 0]
    return statistics.mean(around) if around else None


def ratios(runs, kind, server, baseline):
    """[(round, ratio)] of each run of `server` to `baseline`'s runs around it."""
    found = []
    for at, run in enumerate(runs):
        if run["kind"] == kind and run["server"] == server:
            base = nearest_baseline(runs, at, baseline)
            if base:
                found.append((run["round"], run["figure"] / base))
    return found


def main(path):
    runs = load(path)
    for kind in ("echo", "fanout", "connect"):
        servers, preempted = {}, {}
        for run in runs:
            if run["kind"] == kind:
                servers.setdefault(run["server"], []).append(run["figure"])
                if run["preempted"] is not None:
                    preempted.setdefault(run["server"], []).append(run["preempted"])
        if not servers:
            continue
        print(f"\n{TITLE[kind]}\n")
        print("| server | median (runs) | × native, median (worst) | × Bun, median (worst) | preempted /s, median |")
        print("|---|---|---|---|---|")
        for server, figures in sorted(servers.items(), key=lambda item: statistics.median(item[1])):
            cells = [f"{statistics.median(figures):.2f} ({', '.join(f'{f:.2f}' for f in figures)})"]
            for baseline in ("native", "bun"):
                found = [r for _, r in ratios(runs, kind, server, baseline)] if server not in BASELINES else []
                cells.append(f"{statistics.median(found):.2f} ({max(found):.2f})" if found else "")
            counts = preempted.get(server)
            cells.append(f"{statistics.median(counts):,.0f}" if counts else "")
            print(f"| {server} | " + " | ".join(cells) + " |")
    print("\nTargets (met only when every round meets it; each ratio against the baseline's runs around it)\n")
    print("| target | ratio per round | met |")
    print("|---|---|---|")
    for kind, server, baseline, most in TARGETS:
        found = ratios(runs, kind, server, baseline)
        met = "yes" if found and max(r for _, r in found) <= most else "no"
        shown = ", ".join(f"{r:.2f}" for _, r in found) or "not measured"
        print(f"| {kind}: {server} ≤ {most}× {baseline} | {shown} | {met} |")
    engine_rows = []
    for kind, server, baseline, most in TARGETS:
        if kind != "echo" or baseline != "native" or server not in ENGINE:
            continue
        found = ratios(runs, kind, ENGINE[server], baseline)
        if found:
            fits = "yes" if max(r for _, r in found) < most - 1 else "no"
            shown = ", ".join(f"{r:.2f}" for _, r in found)
            measure = ENGINE[server].removeprefix("wasmtime alone: floor echo, ")
            engine_rows.append(f"| {server} ≤ {most}× native | {most - 1:.1f}× | {measure}: {shown} | {fits} |")
    if engine_rows:
        print("\nThe room each echo target leaves above native, and what wasmtime alone takes of it (× native, per round)\n")
        print("| target | room above native | wasmtime alone, the floor echo | fits |")
        print("|---|---|---|---|")
        print("\n".join(engine_rows))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench/baselines.jsonl")
