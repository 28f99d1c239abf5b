"""Probes the fleet test runs inside a host's namespace (the test itself cannot reach it).

    python probe.py http URL [--timeout S]            # until URL answers 200
    python probe.py zk HOSTS [--timeout S]            # until the ensemble serves a session
    python probe.py converged SERVER CA [--timeout S] [--envoys N] [--newer-than GENERATION]
        # until every Envoy is connected, in the quorum and on the service's generation;
        # prints {"seconds": ..., "leader": ..., "envoys": [...]} as JSON
    python probe.py gone HOSTS PATH ADDRESS           # until no member of PATH is at ADDRESS
    python probe.py leader SERVER CA                  # prints the service's leader replica
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
import urllib.request


def wait_http(url: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return 0
        except OSError:
            pass
        time.sleep(0.2)
    print(f"{url} did not answer 200 in {timeout}s", file=sys.stderr)
    return 1


def wait_zk(hosts: str, timeout: float) -> int:
    from kazoo.client import KazooClient

    client = KazooClient(hosts=hosts, timeout=5)
    try:
        client.start(timeout=timeout)
        client.ensure_path("/rollway")
        return 0
    finally:
        client.stop()
        client.close()


def wait_gone(hosts: str, path: str, address: str, timeout: float) -> int:
    """Until no member of ``path`` is at ``address`` (its ZooKeeper session expired)."""
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoNodeError

    client = KazooClient(hosts=hosts, timeout=5)
    client.start(timeout=30)
    start = time.monotonic()
    try:
        while time.monotonic() - start < timeout:
            members = []
            for child in client.get_children(path):
                try:
                    members.append(client.get(f"{path}/{child}")[0])
                except NoNodeError:          # removed between the listing and the read
                    pass
            if not any(address.encode() in m for m in members):
                print(json.dumps({"seconds": round(time.monotonic() - start, 2)}))
                return 0
            time.sleep(0.2)
    finally:
        client.stop()
        client.close()
    print(f"a member at {address} still in {path} after {timeout}s", file=sys.stderr)
    return 1


def stub(server: str, ca: str):
    from rollway.proto import routemap_pb2_grpc as pb_grpc
    from rollway.tls import ClientTLS

    return pb_grpc.RouteMapServiceStub(ClientTLS.load(ca).channel(server))


def status(server: str, ca: str, service: str = "web"):
    from rollway.proto import routemap_pb2 as pb

    stream = stub(server, ca).WatchStatus(pb.WatchStatusRequest(service=service), timeout=5)
    first = next(iter(stream))
    stream.cancel()
    return first


def converged(servers: list[str], ca: str, timeout: float, envoys: int, newer_than: int = -1,
              not_on: str = "", services: tuple[str, ...] = ("web",)) -> int:
    """Every service converged on one replica's view (``newer_than``: the first service's
    generation)."""
    start = time.monotonic()
    last = None
    pending = list(services)
    done: dict[str, dict] = {}
    while time.monotonic() - start < timeout and pending:
        service = pending[0]
        for server in servers:
            try:
                s = status(server, ca, service)
            except Exception as error:  # a replica down: ask the other
                last = f"{server}: {error}"
                continue
            # Every Envoy connected (to either replica), in the quorum, holding the filter
            # config generation the service is at (the fleet records carry generations).
            nodes = [e for e in s.envoys if e.connected and not e.stale and e.generation == s.generation
                     and e.replica != not_on]
            last = {"service": service, "generation": s.generation,
                    "envoys": [(e.node_id, e.connected, e.stale, e.generation) for e in s.envoys]}
            if len(nodes) >= envoys and (s.generation > newer_than or service != services[0]):
                done[service] = {"leader": s.leader, "generation": s.generation, "server": server,
                                 "envoys": sorted(e.node_id for e in nodes)}
                pending.pop(0)
            break
        if pending:
            time.sleep(0.25)
    if not pending:
        first = done[services[0]]
        print(json.dumps({"seconds": round(time.monotonic() - start, 2), **first,
                          "services": {k: v["generation"] for k, v in done.items()}}))
        return 0
    print(f"not converged in {timeout}s: {last}", file=sys.stderr)
    return 1


def away(servers: list[str], ca: str, node: str, timeout: float) -> int:
    """Waits until ``node`` is seen cut off: not connected, stale, or behind the service's
    generation on every replica that answers. Prints how it was seen and after how long."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        seen = []
        for server in servers:
            try:
                s = status(server, ca)
            except Exception:   # a replica down: ask the other
                continue
            seen += [(e.connected, e.stale, e.generation, s.generation) for e in s.envoys if e.node_id == node]
        cut = [f"{'disconnected' if not c else 'stale' if stale else f'behind ({g} < {sg})'}"
               for c, stale, g, sg in seen if not c or stale or g < sg]
        if seen and len(cut) == len(seen):
            print(json.dumps({"seconds": round(time.monotonic() - start, 2), "seen": sorted(set(cut))}))
            return 0
        time.sleep(0.25)
    print(f"{node} still seen in step after {timeout}s", file=sys.stderr)
    return 1


def zk_down(hostport: str, timeout: float) -> int:
    """Waits until the ZooKeeper server at ``hostport`` no longer answers ``ruok``."""
    host, port = hostport.rsplit(":", 1)
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with socket.create_connection((host, int(port)), timeout=1) as sock:
                sock.sendall(b"ruok")
                if sock.recv(4) != b"imok":
                    raise OSError("no imok")
        except OSError:
            print(json.dumps({"seconds": round(time.monotonic() - start, 2)}))
            return 0
        time.sleep(0.25)
    print(f"{hostport} still answers after {timeout}s", file=sys.stderr)
    return 1


def zk_locked(hosts: str, secure: str, chroot: str) -> int:
    """What a client without credentials gets from the locked-down ensemble: each write it
    tries refused (NoAuth) on the plaintext port, and no session at all on the TLS port."""
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoAuthError

    refused = []
    client = KazooClient(hosts=hosts + chroot)
    client.start(timeout=30)
    try:
        for name, attempt in (("route map", lambda: client.set("/rollway/web/routemap", b"{}")),
                              ("deploy state", lambda: client.set("/rollway/web/deploy", b"{}")),
                              ("serverset", lambda: client.create("/discovery/web/prod/member_9999999999", b"{}"))):
            try:
                attempt()
            except NoAuthError:
                refused.append(name)
    finally:
        client.stop()
        client.close()
    plaintext = KazooClient(hosts=secure, connection_retry={"max_tries": 1})
    try:
        plaintext.start(timeout=5)
        reached = True
    except Exception:
        reached = False
    finally:
        plaintext.stop()
        plaintext.close()
    print(json.dumps({"refused": refused, "plaintext_reached_tls": reached}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("http")
    p.add_argument("url")
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("zk")
    p.add_argument("hosts")
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("converged")
    p.add_argument("servers")
    p.add_argument("ca")
    p.add_argument("--timeout", type=float, default=90)
    p.add_argument("--envoys", type=int, default=3)
    p.add_argument("--newer-than", type=int, default=-1, help="only a generation newer than this")
    p.add_argument("--not-on", default="", help="no Envoy still counted on this (killed) replica")
    p.add_argument("--services", default="web", help="comma-separated: every one must converge")
    p = sub.add_parser("gone")
    p.add_argument("hosts")
    p.add_argument("path")
    p.add_argument("address")
    p.add_argument("--timeout", type=float, default=90)
    p = sub.add_parser("away")
    p.add_argument("servers")
    p.add_argument("ca")
    p.add_argument("node")
    p.add_argument("--timeout", type=float, default=20)
    p = sub.add_parser("zk-down")
    p.add_argument("hostport")
    p.add_argument("--timeout", type=float, default=20)
    p = sub.add_parser("zk-locked")
    p.add_argument("hosts")
    p.add_argument("secure")
    p.add_argument("chroot")
    p = sub.add_parser("leader")
    p.add_argument("servers")
    p.add_argument("ca")
    args = parser.parse_args()
    if args.what == "http":
        return wait_http(args.url, args.timeout)
    if args.what == "zk":
        return wait_zk(args.hosts, args.timeout)
    if args.what == "gone":
        return wait_gone(args.hosts, args.path, args.address, args.timeout)
    if args.what == "away":
        return away(args.servers.split(","), args.ca, args.node, args.timeout)
    if args.what == "zk-locked":
        return zk_locked(args.hosts, args.secure, args.chroot)
    if args.what == "zk-down":
        return zk_down(args.hostport, args.timeout)
    if args.what == "converged":
        return converged(args.servers.split(","), args.ca, args.timeout, args.envoys, args.newer_than,
                         args.not_on, tuple(args.services.split(",")))
    for server in args.servers.split(","):
        try:
            print(status(server, args.ca).leader)
            return 0
        except Exception:
            continue
    return 1


if __name__ == "__main__":
    sys.exit(main())
