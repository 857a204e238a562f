"""Summarises a gateway-overhead run (scripts/bench-gateway-llama.sh, bench-gateway-vllm.sh):
the thresh-bench load reports ov-PORT-RUN.json of the direct and the gateway side, run by run.

    python3 scripts/bench_gateway_summary.py OUT_DIR DIRECT_PORT GATEWAY_PORT
"""

import glob
import json
import statistics
import sys

out, direct, gw = sys.argv[1:]


def runs(port):
    files = sorted(glob.glob(f"{out}/ov-{port}-*.json"), key=lambda f: int(f.rsplit("-", 1)[1][:-5]))
    return [json.load(open(f)) for f in files]


d, g = runs(direct), runs(gw)
rps = lambda r: r["throughput"]["requests_per_s"]
p50 = lambda r: r["latency_ms"]["e2e"]["median"]
print("direct  req/s", [round(rps(r), 2) for r in d], "p50 ms", [round(p50(r)) for r in d])
print("gateway req/s", [round(rps(r), 2) for r in g], "p50 ms", [round(p50(r)) for r in g])
print("median req/s direct %.2f gateway %.2f" % (statistics.median(map(rps, d)), statistics.median(map(rps, g))))
print("median throughput ratio (gateway / direct, per run): %.3f" % statistics.median(rps(b) / rps(a) for a, b in zip(d, g)))
print("median p50 difference (gateway - direct, per run): %.0f ms" % statistics.median(p50(b) - p50(a) for a, b in zip(d, g)))
ttft = lambda r: r["latency_ms"]["ttft"]["median"]
if all(ttft(r) is not None for r in d + g):
    print("direct  TTFT p50 ms", [round(ttft(r)) for r in d])
    print("gateway TTFT p50 ms", [round(ttft(r)) for r in g])
    print("median TTFT p50 difference (gateway - direct, per run): %.0f ms" % statistics.median(ttft(b) - ttft(a) for a, b in zip(d, g)))
