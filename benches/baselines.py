#!/usr/bin/env python3
"""The tables of benches/baselines.sh: for each kind (echo, fan-out, handshakes) and server, the server CPU per message
(per delivery, per handshake) as the median of the rounds with its spread, and its ratio to native axum and to Bun
taken within each round (median and worst round). Then the performance issue's targets, each met only when every round
meets it.

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


def load(path):
    """{kind: {server: {round: figure}}}"""
    table = {}
    with open(path, encoding="utf-8") as results:
        for line in results:
            if not line.strip():
                continue
            run = json.loads(line)
            figure = run.get(FIELD[run["kind"]])
            if figure is None:
                continue
            table.setdefault(run["kind"], {}).setdefault(run["server"], {})[run["round"]] = figure
    return table


def ratios(servers, server, baseline):
    """The ratio of `server` to `baseline` in each round both ran."""
    mine, theirs = servers.get(server, {}), servers.get(baseline, {})
    return [mine[r] / theirs[r] for r in sorted(mine) if r in theirs and theirs[r] > 0]


def main(path):
    table = load(path)
    for kind in ("echo", "fanout", "connect"):
        servers = table.get(kind)
        if not servers:
            continue
        print(f"\n{TITLE[kind]}\n")
        print("| server | median (rounds) | × native, median (worst) | × Bun, median (worst) |")
        print("|---|---|---|---|")
        for server, rounds in sorted(servers.items(), key=lambda item: statistics.median(item[1].values())):
            figures = [rounds[r] for r in sorted(rounds)]
            cells = [f"{statistics.median(figures):.2f} ({', '.join(f'{f:.2f}' for f in figures)})"]
            for baseline in ("native", "bun"):
                found = ratios(servers, server, baseline)
                cells.append(f"{statistics.median(found):.2f} ({max(found):.2f})" if found else "")
            print(f"| {server} | " + " | ".join(cells) + " |")
    print("\nTargets (met only when every round meets it)\n")
    print("| target | ratio per round | met |")
    print("|---|---|---|")
    for kind, server, baseline, most in TARGETS:
        found = ratios(table.get(kind, {}), server, baseline)
        met = "yes" if found and max(found) <= most else "no"
        shown = ", ".join(f"{r:.2f}" for r in found) or "not measured"
        print(f"| {kind}: {server} ≤ {most}× {baseline} | {shown} | {met} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench/baselines.jsonl")
