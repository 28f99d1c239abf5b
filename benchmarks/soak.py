"""Memory under churn: a control plane with real Envoys attached, driven by serverset changes.

Run: make bench-soak   (or: .venv/bin/python benchmarks/soak.py [--changes 50000] [--rate 200])

One `rollway serve` (a subprocess, on the file store), two stock Envoys on its ADS port, and
a driver that adds and removes serverset members of v1 at --rate changes a second, keeping
between 4 and 24 members announced (each change is one member added or one removed). The
control plane recomputes and publishes on every poll of the store that saw a change (the
file store polls every 50 ms; --debounce 0.05 batches little more), so 50,000 changes at 200 a
second make several thousand publications, each pushed to both Envoys and ACKed.

Printed: the control plane's RSS (VmRSS) at 1k, 2k, 5k, 10k, 20k, 30k, 40k and 50k
changes, the generation it published, each Envoy's RSS and EDS updates, and the growth
after warm-up (from 10k changes to the end). Target: the RSS levels off, growing at most
8 MiB from 10k to 50k changes (a leak of 2.4 KB a change, as before issue 30, grows ~94
MiB over that stretch), and stays under 160 MiB. Peer, same run: an Envoy's RSS over the
same pushes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # envoy.py shadows `envoy`
sys.path.insert(0, os.path.join(_HERE, "..", "tests"))

from rollway.envoy import bootstrap as ec  # noqa: E402
from rollway.sources.serverset import member_json  # noqa: E402
from rollway.sources.store import RouteMapRecord, open_store  # noqa: E402

from envoy_harness import EnvoyProcess, free_port, wait_until  # noqa: E402

CHECKPOINTS = (1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 40_000, 50_000)
WARM = 10_000                 # changes before the plateau is judged
GROWTH_BOUND_MIB = 8.0        # after warm-up
RSS_BOUND_MIB = 160.0
SERVERSET = "/discovery/web/prod"


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def eds_updates(envoy: EnvoyProcess) -> int:
    stats = envoy.stats()
    return sum(v for k, v in stats.items() if k.startswith("cluster.web.") and k.endswith(".update_success"))


def generation(http_port: int) -> int:
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/state", timeout=5) as response:
        doc = json.load(response)
    return max((s.get("generation", 0) for s in doc.get("services", [])), default=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=200.0, help="serverset changes a second")
    parser.add_argument("--envoys", type=int, default=2)
    parser.add_argument("--debounce", type=float, default=0.05,
                        help="the control plane's --debounce: 0.05 publishes on nearly every poll of the store")
    args = parser.parse_args()
    checkpoints = [c for c in CHECKPOINTS if c <= args.changes] or [args.changes]
    if checkpoints[-1] != args.changes:
        checkpoints.append(args.changes)

    work = Path(tempfile.mkdtemp(prefix="rollway-soak-"))
    url = f"file://{work}/store"
    agent = open_store(url)
    agent.start()
    agent.write_routemap(RouteMapRecord("web", 1, {"service": "web", "stages": [
        {"name": "prod", "weight": 1, "mode": "rolling", "serverset": SERVERSET}]}, "soak", "soak", time.time()), 0)
    steady = [agent.announce(SERVERSET, member_json("127.0.0.1", 9000 + i, "v1")) for i in range(4)]
    xds_port, http_port = free_port(), free_port()
    serve = subprocess.Popen([sys.executable, "-m", "rollway.cli.main", "serve", "--store", url,
                              "--api-port", str(free_port()), "--xds-port", str(xds_port),
                              "--http-port", str(http_port), "--debounce", str(args.debounce)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    envoys: list[EnvoyProcess] = []
    churn: list = []
    rows = []
    try:
        for i in range(args.envoys):
            listen, admin = free_port(), free_port()
            envoys.append(EnvoyProcess(ec.ads_bootstrap(xds_host="127.0.0.1", xds_port=xds_port, node_id=f"soak-{i}",
                                                        listen_port=listen, admin_port=admin, service="web"),
                                       work, listen, admin).start())
        wait_until(lambda: all(eds_updates(e) > 0 for e in envoys), 60, what="the Envoys' first endpoints")
        start = time.perf_counter()
        print(f"{'changes':>8} {'seconds':>8} {'generation':>10} {'control plane RSS':>18} "
              f"{'Envoy RSS':>10} {'EDS updates':>12}", flush=True)
        for change in range(1, args.changes + 1):
            if len(churn) >= 20 or (churn and change % 2 == 0):
                churn.pop(0).close()
            else:
                churn.append(agent.announce(SERVERSET, member_json("127.0.0.1", 10_000 + change % 50_000, "v1")))
            lag = start + change / args.rate - time.perf_counter()
            if lag > 0:
                time.sleep(lag)
            if change in checkpoints:
                time.sleep(0.2)   # the last changes published
                row = (change, time.perf_counter() - start, generation(http_port), rss_mib(serve.pid),
                       rss_mib(envoys[0].process.pid), eds_updates(envoys[0]))
                rows.append(row)
                print(f"{row[0]:8,d} {row[1]:8.0f} {row[2]:10,d} {row[3]:14.1f} MiB {row[4]:6.1f} MiB {row[5]:12,d}",
                      flush=True)
            if serve.poll() is not None:
                raise RuntimeError(f"rollway serve exited:\n{serve.stderr.read() if serve.stderr else ''}")
    finally:
        for member in churn + steady:
            member.close()
        for envoy in envoys:
            envoy.stop()
        serve.terminate()
        serve.wait(10)
        agent.stop()
    warm = next((r for r in rows if r[0] >= WARM), rows[0])
    last = rows[-1]
    growth = last[3] - warm[3]
    peak = max(r[3] for r in rows)
    print(f"control plane RSS: 1k {rows[0][3]:.1f} MiB, {warm[0] // 1000}k {warm[3]:.1f} MiB, "
          f"{last[0] // 1000}k {last[3]:.1f} MiB; growth after warm-up {growth:+.1f} MiB "
          f"(bound <= {GROWTH_BOUND_MIB:g} MiB: {'met' if growth <= GROWTH_BOUND_MIB else 'MISSED'}); "
          f"peak {peak:.1f} MiB (bound <= {RSS_BOUND_MIB:g} MiB: {'met' if peak <= RSS_BOUND_MIB else 'MISSED'})")
    print(f"peer, an Envoy over the same pushes: {rows[0][4]:.1f} MiB at 1k, {last[4]:.1f} MiB at "
          f"{last[0] // 1000}k changes ({last[5]:,d} EDS updates); generations published: {last[2]:,d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
