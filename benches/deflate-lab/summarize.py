#!/usr/bin/env python3
"""Prints markdown tables of the raw per-round figures in results/*.txt."""
import re, sys, collections
def rows(path):
    out = []
    for line in open(path):
        d = dict(re.findall(r'(\w+)=(\S+)', line))
        m = re.search(r'negotiated:_"(.*?)"', line)
        d['neg'] = (m.group(1).replace('_', ' ').replace('permessage-deflate', 'pmd') if m else '') or '-'
        out.append(d)
    return out
for f in sys.argv[1:]:
    rs = rows(f)
    print(f"\n### {f}\n")
    if 'idle' in f:
        print("| round | config | negotiated | RSS before KB | RSS after KB | KB per conn |\n|---|---|---|---|---|---|")
        for d in rs: print(f"| {d['round']} | {d['label']} | {d['neg']} | {d['rss_before_kb']} | {d['rss_after_kb']} | {d['per_conn_KB']} |")
        continue
    print("| round | config | negotiated | msgs/s | server µs/msg | server CPU util | wire B/msg server→client | wire B/msg client→server |\n|---|---|---|---|---|---|---|---|")
    agg = collections.defaultdict(list)
    for d in rs:
        print(f"| {d['round']} | {d['label']} | {d['neg']} | {d['rate'].rstrip('/s')} | {d['server_us_per_msg']} | {d['server_cpu_util']} | {d['wire_in_B_per_msg']} | {d['wire_out_B_per_msg']} |")
        agg[d['label']].append(float(d['server_us_per_msg']))
    base = None
    print("\n| config | mean server µs/msg | vs axum-off |\n|---|---|---|")
    means = {k: sum(v)/len(v) for k, v in agg.items()}
    b = means.get('axum-off')
    for k, v in means.items(): print(f"| {k} | {v:.2f} | {'%.2f×' % (v/b) if b else '-'} |")
