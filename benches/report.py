"""Turns benches/run.sh's results (JSON lines of `wasmsock bench --json`) into the tables of BENCHMARKS.md.

Run with: python3 benches/report.py target/bench/results.jsonl BENCHMARKS.md COMMAND SETTINGS
Only the part between the results markers is replaced; the notes around it are kept.
"""

import datetime
import json
import sys

START = "<!-- results:start (written by benches/report.py) -->"
END = "<!-- results:end -->"


def fmt(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def main(results_path, doc_path, command, settings):
    rows = [json.loads(line) for line in open(results_path) if line.strip()]
    echo = [r for r in rows if r["mode"] == "echo"]
    native = {r["in_flight"]: r["server_cpu_us_per_message"] for r in echo if r["server"] == "native"}
    lines = [
        START,
        "",
        f"Produced by `{command}` ({settings}) on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        "### Echo: server CPU per message (64-byte text messages, "
        f"{echo[0]['connections'] if echo else '?'} connections)",
        "",
        "| server | handler | lifecycle | in flight | msg/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/msg "
        "| × native | server RSS MB | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in echo:
        cpu = r.get("server_cpu_us_per_message")
        base = native.get(r["in_flight"])
        ratio = cpu / base if cpu is not None and base else None
        lat = r["latency_us"]
        lines.append(
            f"| {r['server']} | {r['lang']} | {r['lifecycle']} | {r['in_flight']} | {r['per_second']:.0f} "
            f"| {lat['p50']} | {lat['p99']} | {lat['p999']} | {fmt(cpu, 2)} | {fmt(ratio, 2)} "
            f"| {r.get('server_rss_kib', 0) / 1024:.0f} | {r['errors']} |"
        )
    connect = [r for r in rows if r["mode"] == "connect"]
    if connect:
        base = next((r["per_second"] for r in connect if r["server"] == "native"), None)
        lines += [
            "",
            "### Handshakes (open and close, " f"{connect[0]['concurrency']} at a time)",
            "",
            "| server | handshakes/s | × native | p50 µs | p99 µs | server CPU µs/handshake | errors |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in connect:
            ratio = r["per_second"] / base if base else None
            lines.append(
                f"| {r['server']} ({r['lifecycle']}) | {r['per_second']:.0f} | {fmt(ratio, 2)} "
                f"| {r['latency_us']['p50']} | {r['latency_us']['p99']} "
                f"| {fmt(r.get('server_cpu_us_per_handshake'), 1)} | {r['errors']} |"
            )
    idle = [r for r in rows if r["mode"] == "idle"]
    if idle:
        lines += [
            "",
            "### Idle connections",
            "",
            "| server | connections held | RSS before MB | RSS after MB | bytes per connection | errors |",
            "|---|---|---|---|---|---|",
        ]
        for r in idle:
            lines.append(
                f"| {r['server']} ({r['lifecycle']}) | {r['connections']} "
                f"| {r.get('server_rss_kib_before', 0) / 1024:.1f} | {r.get('server_rss_kib_after', 0) / 1024:.1f} "
                f"| {fmt(r.get('server_rss_bytes_per_connection'), 0)} | {r['errors']} |"
            )
    lines += ["", END]
    block = "\n".join(lines)
    try:
        doc = open(doc_path).read()
    except FileNotFoundError:
        doc = f"# Benchmarks\n\n{START}\n{END}\n"
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        _, tail = rest.split(END, 1)
        doc = head + block + tail
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    open(doc_path, "w").write(doc)


if __name__ == "__main__":
    main(*sys.argv[1:5])
