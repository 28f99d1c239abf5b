"""The browser host of the fleet test: N sessions sending real HTTP to the Envoys.

Each session keeps its cookies and, like a page, the version it was loaded from: it sends
``x-app-version`` with it, and reloads (takes the served version as its own) when the
response carries ``x-rw-refresh``. Every request goes to an Envoy picked at random, by
name. One JSON line per request: time, session, Envoy, status, version served, refresh.
With ``--api-sessions`` more sessions call the second app (``api``, its own host name)
through the same Envoys. Runs until the stop file appears.

    python browsers.py --envoys env1,env2,env3 --sessions 200 --out requests.jsonl --stop stop
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import threading
import time

from rollway.tools.session import BrowserSession


def session_loop(index: int, envoys: list[str], interval: float, out, lock, stop: str,
                 host: str | None = None) -> None:
    rng = random.Random(index)
    session = BrowserSession(keep=1)          # rollway.tools.session: the model every harness shares
    connections: dict[str, http.client.HTTPConnection] = {}
    time.sleep(rng.random() * interval)
    while not os.path.exists(stop):
        envoy = rng.choice(envoys)
        record = {"t": time.time(), "session": index, "envoy": envoy, "service": "api" if host else "web"}
        try:
            conn = connections.get(envoy) or http.client.HTTPConnection(envoy, 10000, timeout=10)
            connections[envoy] = conn
            headers = session.headers()
            if host:
                headers["host"] = host
            conn.request("GET", "/api", headers=headers)
            response = conn.getresponse()
            body = response.read()
            record["status"] = response.status
            if response.status == 200:
                record["version"] = json.loads(body)["version"]
            else:
                record["body"] = body[:120].decode(errors="replace")
            refresh = response.headers.get("x-rw-refresh")
            if refresh:
                record["refresh"] = refresh
            session.answered(response.status, response.getheaders(), record.get("version"))
        except (OSError, http.client.HTTPException, ValueError) as error:
            record["status"] = 0
            record["error"] = type(error).__name__
            connections.pop(envoy, None)
        with lock:
            out.write(json.dumps(record) + "\n")
        time.sleep(interval * (0.5 + rng.random()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envoys", required=True)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--interval", type=float, default=3.0, help="mean seconds between a session's requests")
    parser.add_argument("--out", required=True)
    parser.add_argument("--stop", required=True)
    parser.add_argument("--api-sessions", type=int, default=0,
                        help="more sessions, on the second app (Host: --api-host) behind the same Envoys")
    parser.add_argument("--api-host", default="api.fleet.test")
    args = parser.parse_args()
    envoys = args.envoys.split(",")
    lock = threading.Lock()
    with open(args.out, "w", buffering=1) as out:
        threads = [threading.Thread(target=session_loop, args=(i, envoys, args.interval, out, lock, args.stop,
                                                               args.api_host if i >= args.sessions else None),
                                    daemon=True) for i in range(args.sessions + args.api_sessions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


if __name__ == "__main__":
    main()
