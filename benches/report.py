"""Turns the results of benches/run.sh, fanout.sh, cluster.sh and compare.sh (JSON lines of `wasmsock bench --json`) into the tables
of BENCHMARKS.md.

Run with: python3 benches/report.py target/bench/results.jsonl BENCHMARKS.md COMMAND SETTINGS
Only the part between the results markers (echo, handshakes, idle), the fan-out markers (fan-out rows) or the cluster
markers (cluster rows) is replaced; the notes around it are kept. The fan-out and cluster tables are printed too.
"""

import datetime
import json
import statistics
import sys

START = "<!-- results:start (written by benches/report.py) -->"
END = "<!-- results:end -->"
FANOUT_START = "<!-- fanout:start (written by benches/report.py) -->"
FANOUT_END = "<!-- fanout:end -->"
CLUSTER_START = "<!-- cluster:start (written by benches/report.py) -->"
CLUSTER_END = "<!-- cluster:end -->"
COMPARE_START = "<!-- compare:start (written by benches/report.py) -->"
COMPARE_END = "<!-- compare:end -->"


def fmt(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def median(values):
    """The median of the values that are there (None is a missing figure), or None."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def produced(command, settings):
    return (
        f"Produced by `{command}` ({settings}) on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC."
    )


def fanout_lines(rows, command, settings):
    """One row per server, lifecycle and window: the median over the rounds, and the median of the per-round ratios
    (each against the native or Node figure of the same round and window)."""
    rounds = sorted({r["round"] for r in rows})
    cpu_key = "server_cpu_us_per_delivery"
    by_round = {(r["round"], r["server"], r["lifecycle"], r["in_flight"]): r for r in rows}

    def ratio(r, server):
        base = by_round.get((r["round"], server, "native", r["in_flight"]))
        if base is None or r.get(cpu_key) is None or not base.get(cpu_key):
            return None
        return r[cpu_key] / base[cpu_key]

    first = rows[0]
    lines = [
        FANOUT_START,
        "",
        produced(command, settings),
        "",
        f"### Fan-out: server CPU per delivered message ({first['members']} members and one publisher, "
        f"{first['size']}-byte text messages, median of {len(rounds)} rounds)",
        "",
        "| server | lifecycle | in flight | deliveries/s | publishes/s | p50 µs | p99 µs "
        "| server CPU µs/delivery (range) | × native | × Node | missed deliveries | members closed | server RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups = {}
    for r in sorted(rows, key=lambda r: r["in_flight"]):
        groups.setdefault((r["server"], r["lifecycle"], r["in_flight"]), []).append(r)
    for (server, lifecycle, in_flight), group in groups.items():
        cpus = [r.get(cpu_key) for r in group if r.get(cpu_key) is not None]
        spread = f" ({min(cpus):.2f}–{max(cpus):.2f})" if len(cpus) > 1 else ""
        lines.append(
            f"| {server} | {lifecycle} | {in_flight} | {median(r['per_second'] for r in group):.0f} "
            f"| {median(r['published_per_second'] for r in group):.0f} "
            f"| {fmt(median(r['latency_us']['p50'] for r in group), 0)} "
            f"| {fmt(median(r['latency_us']['p99'] for r in group), 0)} "
            f"| {fmt(median(cpus), 2)}{spread} "
            f"| {fmt(median(ratio(r, 'native') for r in group), 2)} "
            f"| {fmt(median(ratio(r, 'node') for r in group), 2)} "
            f"| {sum(r['missed_deliveries'] for r in group)} | {sum(r['members_closed'] for r in group)} "
            f"| {max(r.get('server_rss_kib', 0) for r in group) / 1024:.0f} |"
        )
    return lines + ["", FANOUT_END]


def cluster_lines(rows, command, settings):
    """One row per pinning and setup: medians over the rounds, and the median of the per-round ratios against one
    host of the same round and pinning (latency in the `split` pinning, CPU in `same`)."""
    rounds = sorted({r["round"] for r in rows})
    cpu_key = "server_cpu_us_per_delivery"
    by_round = {(r["round"], r["pinning"], r["setup"]): r for r in rows}

    def against_one(r, value):
        base = by_round.get((r["round"], r["pinning"], "one-host"))
        if base is None or value(r) is None or not value(base):
            return None
        return value(r) / value(base)

    def added(r, quantile):
        base = by_round.get((r["round"], r["pinning"], "one-host"))
        return None if base is None else r["latency_us"][quantile] - base["latency_us"][quantile]

    first = rows[0]
    lines = [
        CLUSTER_START,
        "",
        produced(command, settings),
        "",
        f"### Cluster: a room's messages across the broker ({first['size']}-byte text, Rust chat `shared`, one "
        f"publisher, median of {len(rounds)} rounds)",
        "",
        "| pinning | setup | members | in flight | deliveries/s | p50 µs | p99 µs | added p50 µs | added p99 µs "
        "| CPU µs/delivery (range) | × one host | missed deliveries |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups = {}
    for r in rows:
        groups.setdefault((r["pinning"], r["setup"]), []).append(r)
    for (pinning, setup), group in groups.items():
        cpus = [r.get(cpu_key) for r in group if r.get(cpu_key) is not None]
        spread = f" ({min(cpus):.2f}–{max(cpus):.2f})" if len(cpus) > 1 else ""
        lines.append(
            f"| {pinning} | {setup} | {group[0]['members']} | {group[0]['in_flight']} "
            f"| {median(r['per_second'] for r in group):.0f} "
            f"| {fmt(median(r['latency_us']['p50'] for r in group), 0)} "
            f"| {fmt(median(r['latency_us']['p99'] for r in group), 0)} "
            f"| {fmt(median(added(r, 'p50') for r in group), 0)} "
            f"| {fmt(median(added(r, 'p99') for r in group), 0)} "
            f"| {fmt(median(cpus), 2)}{spread} "
            f"| {fmt(median(against_one(r, lambda x: x.get(cpu_key)) for r in group), 2)} "
            f"| {sum(r['missed_deliveries'] for r in group)} |"
        )
    return lines + ["", CLUSTER_END]


def compare_lines(rows, command, settings):
    """One row per pinning and lifecycle: the baseline and current hosts' CPU per message (or per delivery), each as a
    ratio to the native echo of the same round and pinning, and current against baseline; medians over the rounds."""
    memory = [r for r in rows if r["mode"] == "rss"]
    rows = [r for r in rows if r["mode"] != "rss"]
    rounds = sorted({r["round"] for r in rows})
    by_round = {(r["round"], r["pinning"], r["server"], r["lifecycle"]): r for r in rows}

    def cpu(r):
        return r.get("server_cpu_us_per_message", r.get("server_cpu_us_per_delivery"))

    def ratio(a, b):
        return None if a is None or b is None or cpu(a) is None or not cpu(b) else cpu(a) / cpu(b)

    lines = [
        COMPARE_START,
        "",
        produced(command, settings),
        "",
        f"### Before and after: server CPU, the current host against a baseline build (median of {len(rounds)} rounds)",
        "",
        "| pinning | handler, lifecycle | native µs | baseline µs | current µs | baseline × native | current × native "
        "| current × baseline |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["pinning"], r["lifecycle"]) for r in rows if r["server"] != "native"})
    for pinning, lifecycle in keys:
        cells = {"native": [], "baseline": [], "current": [], "b/n": [], "c/n": [], "c/b": []}
        for n in rounds:
            native = by_round.get((n, pinning, "native", "native"))
            base = by_round.get((n, pinning, "baseline", lifecycle))
            cur = by_round.get((n, pinning, "current", lifecycle))
            cells["native"].append(cpu(native) if native else None)
            cells["baseline"].append(cpu(base) if base else None)
            cells["current"].append(cpu(cur) if cur else None)
            if lifecycle != "fanout":
                cells["b/n"].append(ratio(base, native))
                cells["c/n"].append(ratio(cur, native))
            cells["c/b"].append(ratio(cur, base))
        what = "chat `shared`, per delivery (1000 members)" if lifecycle == "fanout" else f"echo `{lifecycle}`"
        native = "-" if lifecycle == "fanout" else fmt(median(cells["native"]), 2)
        lines.append(
            f"| {pinning} | {what} | {native} | {fmt(median(cells['baseline']), 2)} | {fmt(median(cells['current']), 2)} "
            f"| {fmt(median(cells['b/n']), 2)} | {fmt(median(cells['c/n']), 2)} | {fmt(median(cells['c/b']), 2)} |"
        )
    for what in dict.fromkeys(r["what"] for r in memory):
        rss = {r["server"]: r["server_rss_kib"] / 1024 for r in memory if r["what"] == what}
        lines += [
            "",
            f"Host RSS {what}: baseline {fmt(rss.get('baseline'))} MB, current {fmt(rss.get('current'))} MB.",
        ]
    return lines + ["", COMPARE_END]


def replace_block(doc, start, end, block):
    if start in doc and end in doc:
        head, rest = doc.split(start, 1)
        _, tail = rest.split(end, 1)
        return head + block + tail
    return doc.rstrip("\n") + "\n\n" + block + "\n"


def main(results_path, doc_path, command, settings):
    rows = [json.loads(line) for line in open(results_path) if line.strip()]
    try:
        doc = open(doc_path).read()
    except FileNotFoundError:
        doc = f"# Benchmarks\n\n{START}\n{END}\n"
    compared = [r for r in rows if r.get("compare")]
    if compared:
        block = "\n".join(compare_lines(compared, command, settings))
        print(block)
        doc = replace_block(doc, COMPARE_START, COMPARE_END, block)
        rows = [r for r in rows if not r.get("compare")]
    clustered = [r for r in rows if r.get("cluster")]
    if clustered:
        block = "\n".join(cluster_lines(clustered, command, settings))
        print(block)
        doc = replace_block(doc, CLUSTER_START, CLUSTER_END, block)
    fanout = [r for r in rows if r["mode"] == "fanout" and not r.get("cluster")]
    if fanout:
        block = "\n".join(fanout_lines(fanout, command, settings))
        print(block)
        doc = replace_block(doc, FANOUT_START, FANOUT_END, block)
    if any(r["mode"] != "fanout" and not r.get("cluster") for r in rows):
        doc = replace_block(doc, START, END, "\n".join(echo_lines(rows, command, settings)))
    open(doc_path, "w").write(doc)


LANGS = {"rust": "Rust", "js": "JavaScript (QuickJS)", "js-sm": "JavaScript (SpiderMonkey)", "py": "Python"}
# The native servers' languages: Node runs its own engine, not a guest's.
NATIVE_LANGS = {"rust": "Rust", "js": "JavaScript", "py": "Python"}
PINNINGS = {
    "split": "server and load generator on two cores",
    "same": "server and load generator on one core (CPU per message at saturation)",
}


def echo_lines(rows, command, settings):
    """The echo table of each pinning (× native against the native echo of the same pinning and in-flight depth),
    then handshakes, memory and idle connections."""
    lines = [START, "", produced(command, settings)]
    echo = [r for r in rows if r["mode"] == "echo"]
    for pinning in [p for p in PINNINGS if any(r.get("pinning") == p for r in echo)]:
        runs = [r for r in echo if r.get("pinning") == pinning]
        native = {r["in_flight"]: r["server_cpu_us_per_message"] for r in runs if r["server"] == "native"}
        lines += [
            "",
            f"### Echo, {PINNINGS[pinning]}: server CPU per message (64-byte text, {runs[0]['connections']} connections)",
            "",
            "| server | handler | lifecycle | in flight | msg/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/msg "
            "| × native | server RSS MB | errors |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in runs:
            cpu = r.get("server_cpu_us_per_message")
            base = native.get(r["in_flight"])
            ratio = cpu / base if cpu is not None and base else None
            lat = r["latency_us"]
            lines.append(
                f"| {r['server']} | {(LANGS if r['server'] == 'wasmsock' else NATIVE_LANGS).get(r['lang'], r['lang'])} "
                f"| {r['lifecycle']} | {r['in_flight']} "
                f"| {r['per_second']:.0f} | {lat['p50']} | {lat['p99']} | {lat['p999']} | {fmt(cpu, 2)} "
                f"| {fmt(ratio, 2)} | {r.get('server_rss_kib', 0) / 1024:.0f} | {r['errors']} |"
            )
    connect = [r for r in rows if r["mode"] == "connect"]
    if connect:
        lines += [
            "",
            f"### Handshakes (open and close, with the onopen and onclose events; {connect[0]['concurrency']} at a time)",
            "",
            "| pinning | server | handshakes/s | p50 µs | p99 µs | server CPU µs/handshake | CPU × native | errors |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in connect:
            base = next(
                (b for b in connect if b["server"] == "native" and b.get("pinning") == r.get("pinning")), None
            )
            cpu = r.get("server_cpu_us_per_handshake")
            base_cpu = base.get("server_cpu_us_per_handshake") if base else None
            ratio = cpu / base_cpu if cpu is not None and base_cpu else None
            lines.append(
                f"| {r.get('pinning', '-')} | {r['server']} ({r['lifecycle']}) | {r['per_second']:.0f} "
                f"| {r['latency_us']['p50']} | {r['latency_us']['p99']} | {fmt(cpu, 1)} | {fmt(ratio, 2)} "
                f"| {r['errors']} |"
            )
    memory = [r for r in rows if r["mode"] == "rss"]
    if memory:
        lines += [
            "",
            "### The host's memory",
            "",
            "| when | host RSS MB | anonymous MB | file-backed MB | PSS MB |",
            "|---|---|---|---|---|",
        ]
        for r in memory:
            mb = [r.get(k) for k in ("server_rss_kib", "server_rss_anon_kib", "server_rss_file_kib", "server_pss_kib")]
            lines.append(f"| {r['what']} | " + " | ".join(fmt(k / 1024 if k is not None else None, 1) for k in mb) + " |")
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
    return lines + ["", END]


if __name__ == "__main__":
    main(*sys.argv[1:5])
