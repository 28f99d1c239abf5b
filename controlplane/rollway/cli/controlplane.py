"""Control-plane commands of the ``rollway`` CLI (serve, routemap, status, serverset).

Human tables by default, ``--json`` for scripts. Client commands talk to ``rollway serve``
at ``--server`` (default ``$ROLLWAY_SERVER`` or 127.0.0.1:7700); writes send the operator
token from ``--token-file`` or ``$ROLLWAY_TOKEN``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

import grpc
import yaml

from rollway.cli.errors import CommandError, UsageError
from rollway.inputs import endpoint_text, printable

if TYPE_CHECKING:
    from rollway.server import ServerOptions

DEFAULT_SERVER = os.environ.get("ROLLWAY_SERVER", "127.0.0.1:7700")


def _read(path: str, what: str = "file", limit: int | None = None) -> str:
    from rollway.cli.main import MAX_INPUT_FILE, read_file

    return read_file(path, what, limit or MAX_INPUT_FILE)


def _read_routemap(path: str) -> str:
    from rollway.model.routemap import MAX_DOCUMENT

    return _read(path, "route map", MAX_DOCUMENT)


def _token(args) -> str | None:
    if getattr(args, "token_file", None):
        return _read(args.token_file).strip()
    return os.environ.get("ROLLWAY_TOKEN")


def _write_metadata(args, command: str) -> tuple:
    """gRPC metadata carrying the operator token; exits with a clear message without one."""
    token = _token(args)
    if not token:
        raise UsageError(f"{command} needs the operator token (--token-file or $ROLLWAY_TOKEN)")
    return (("authorization", f"Bearer {token}"),)


def _stub(args):
    """The operator API: over TLS when a CA is given (``--tls-ca`` or ``$ROLLWAY_TLS_CA``)."""
    from rollway.proto import routemap_pb2_grpc as pb_grpc
    from rollway.tls import ClientTLS, TLSConfigError

    ca = getattr(args, "tls_ca", None) or os.environ.get("ROLLWAY_TLS_CA")
    if ca:
        try:
            tls = ClientTLS.load(ca, getattr(args, "tls_cert", None), getattr(args, "tls_key", None),
                                 getattr(args, "tls_server_name", None))
        except TLSConfigError as error:
            raise CommandError(str(error)) from None
        channel = tls.channel(args.server)
    else:
        channel = grpc.insecure_channel(args.server)
    return pb_grpc.RouteMapServiceStub(channel)


def _call(fn):
    try:
        return fn()
    except grpc.RpcError as error:
        raise CommandError(printable(f"{error.code().name}: {error.details()}")) from None


def _revision_dict(rev) -> dict:
    return {"service": rev.service, "revision": rev.revision, "author": rev.author, "reason": rev.reason,
            "time": rev.time, "document": json.loads(rev.document) if rev.document else None}


def _print(args, data, human, stream: bool = False) -> int:
    """--json: one document, indented; in a stream (``--watch``), JSON Lines, one compact
    document per line, flushed as it comes, so a reader can parse line by line."""
    if args.json and stream:
        print(json.dumps(data, sort_keys=True, separators=(",", ":")), flush=True)
    elif args.json:
        json.dump(data, sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        human(data)
        if stream:
            sys.stdout.flush()
    return 0


def _session_options(url: str, session_timeout: float | None) -> dict:
    """--session-timeout for either store: ZooKeeper's session, the file store's lease."""
    if session_timeout is None:
        return {}
    return {"session_timeout": session_timeout} if url.startswith("zk") else {"lease_seconds": session_timeout}


def _store_security(args, url: str) -> dict:
    """--zk-auth-file and --zk-tls-*: the store's identity and TLS (ZooKeeper only). The
    credentials are read from their file here; they appear nowhere else (no flag, no log)."""
    from rollway.inputs import InputError
    from rollway.sources.zk_security import ZkTls, read_credentials

    tls_flags = (args.zk_tls_ca, args.zk_tls_cert, args.zk_tls_key)
    if not url.startswith("zk"):
        if args.zk_auth_file or any(tls_flags):
            raise UsageError("--zk-auth-file and --zk-tls-*: only for a zk:// or zk+tls:// store")
        return {}
    options: dict = {}
    try:
        if args.zk_auth_file:
            options["credentials"], warning = read_credentials(args.zk_auth_file)
            if warning:
                print(f"rollway: warning: {warning}", file=sys.stderr)
        if url.startswith("zk+tls:") or any(tls_flags):
            options["tls"] = ZkTls(*tls_flags).check()
    except InputError as error:
        raise UsageError(str(error)) from None
    if "tls" in options and url.startswith("zk:"):
        raise UsageError("--zk-tls-*: name the store zk+tls://HOST:PORT (ZooKeeper's secureClientPort)")
    return options


def _store_flags(p: argparse.ArgumentParser) -> None:
    """What every command that opens the store takes: its identity and TLS."""
    p.add_argument("--zk-auth-file", metavar="FILE",
                   help="ZooKeeper digest credentials, one line user:password (chmod 600); this process's znodes "
                        "get ACLs only this identity may change")
    p.add_argument("--zk-tls-ca", metavar="FILE", help="(zk+tls://) the CA that signs ZooKeeper's certificates")
    p.add_argument("--zk-tls-cert", metavar="FILE", help="(zk+tls://) this client's certificate (with --zk-tls-key)")
    p.add_argument("--zk-tls-key", metavar="FILE")


# -- serve -------------------------------------------------------------------------------------

def serve_options(args) -> ServerOptions:
    """The flags of ``rollway serve`` as options: nothing past the CLI sees argparse."""
    from rollway.server import PlaneOptions, ServerOptions

    token = _read(args.token_file).strip() if args.token_file else os.environ.get("ROLLWAY_TOKEN")
    tls = None
    if args.tls_cert or args.tls_key or args.tls_client_ca:
        from rollway.tls import ServerTLS, TLSConfigError

        if not (args.tls_cert and args.tls_key):
            raise UsageError("--tls-cert and --tls-key go together (--tls-client-ca needs both)")
        try:
            tls = ServerTLS.load(args.tls_cert, args.tls_key, args.tls_client_ca)
        except TLSConfigError as error:
            raise CommandError(str(error)) from None
    plane = PlaneOptions(debounce=args.debounce, empty_grace=args.empty_grace, secrets_file=args.secrets_file,
                         ack_timeout=args.ack_timeout, replica_id=args.replica_id, startup_grace=args.startup_grace)
    store_options = {**_session_options(args.store, args.session_timeout), **_store_security(args, args.store)}
    return ServerOptions(args.store, plane, store_options,
                         api_host=args.api_host, api_port=args.api_port, token=token, tls=tls,
                         xds_host=args.xds_host, xds_port=args.xds_port, http_host=args.http_host,
                         http_port=args.http_port)


def cmd_serve(args) -> int:
    from rollway.ports import PortInUse
    from rollway.server import ControlPlaneServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = serve_options(args)
    store = _open_store(options.store_url, **options.store_options)
    try:
        replica = ControlPlaneServer.start(options, store)
    except PortInUse as error:
        # A port another process holds: refuse to start (exit 2); start() released the rest.
        store.stop()
        raise UsageError(str(error)) from None
    tls = options.tls
    xds_host = options.xds_host or options.api_host
    http_host = options.http_host or options.api_host
    scheme = "https" if tls else "http"
    print(f"rollway: control plane on {args.store}, operator API on {args.api_host}:{replica.api_port}"
          + (" (TLS)" if tls else "")
          + (f", xDS (ADS) on {xds_host}:{replica.xds_port}" if replica.xds else "")
          + (" (mTLS)" if replica.xds and tls and tls.client_ca else " (TLS)" if replica.xds and tls else "")
          + (f", dashboard and /metrics on {scheme}://{http_host}:{replica.http_port}/" if replica.dashboard else ""),
          flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    replica.stop()
    store.stop()
    return 0


# -- routemap -------------------------------------------------------------------------------------

def cmd_validate(args) -> int:
    from rollway.model.validation import RouteMapError, check_routemap
    from rollway.proto import routemap_pb2 as pb

    text = _read_routemap(args.file)
    try:
        routemap = check_routemap(text)   # the same validation as the server's push
    except RouteMapError as error:
        raise CommandError(f"invalid route map {args.file!r}: {error}") from None
    if args.local:
        return _print(args, {"service": routemap.service, "valid": True}, lambda d: print(f"{args.file}: valid"))
    result = _call(lambda: _stub(args).Validate(pb.ValidateRequest(document=text, sample_size=args.sample)))
    data = {"service": result.service, "sample_size": result.sample_size,
            "total_change_share": result.total_change_share,
            "stages": [{"stage": s.stage, "current_share": s.current_share, "proposed_share": s.proposed_share,
                        "stage_change_share": s.stage_change_share,
                        "version_change_share": s.version_change_share} for s in result.stages]}

    def human(d):
        print(f"{args.file}: valid; if pushed now, {d['total_change_share']:.2%} of sessions would move "
              f"(sample of {d['sample_size']})")
        print(f"{'stage':12} {'now':>8} {'after':>8} {'leave stage':>12} {'change version':>15}")
        for s in d["stages"]:
            print(f"{s['stage']:12} {s['current_share']:8.2%} {s['proposed_share']:8.2%} "
                  f"{s['stage_change_share']:12.2%} {s['version_change_share']:15.2%}")
    return _print(args, data, human)


def cmd_push(args) -> int:
    from rollway.proto import routemap_pb2 as pb

    metadata = _write_metadata(args, "push")
    request = pb.PushRequest(document=_read_routemap(args.file), expected_revision=args.expected_revision,
                             author=args.author, reason=args.reason)
    rev = _call(lambda: _stub(args).Push(request, metadata=metadata)).revision
    return _print(args, _revision_dict(rev), lambda d: print(f"{d['service']}: pushed revision {d['revision']}"))


def cmd_get(args) -> int:
    from rollway.proto import routemap_pb2 as pb

    rev = _call(lambda: _stub(args).Get(pb.GetRequest(service=args.service, revision=args.revision)))
    data = _revision_dict(rev)
    return _print(args, data, lambda d: (print(printable(f"# {d['service']} revision {d['revision']} by "
                                                         f"{d['author']}: {d['reason']}")),
                                         print(yaml.safe_dump(d["document"],
                                                                                      sort_keys=False), end="")))


def cmd_history(args) -> int:
    from rollway.proto import routemap_pb2 as pb

    revs = _call(lambda: _stub(args).History(pb.HistoryRequest(service=args.service))).revisions
    data = [_revision_dict(r) for r in revs]

    def human(d):
        print(f"{'revision':>8}  {'time (UTC)':20} {'author':12} reason")
        for r in d:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["time"]))
            print(printable(f"{r['revision']:>8}  {stamp:20} {r['author']:12} {r['reason']}"))
    return _print(args, data, human)


def cmd_rollback(args) -> int:
    from rollway.proto import routemap_pb2 as pb

    metadata = _write_metadata(args, "rollback")
    request = pb.RollbackRequest(service=args.service, to_revision=args.to, expected_revision=args.expected_revision,
                                 author=args.author, reason=args.reason)
    rev = _call(lambda: _stub(args).Rollback(request, metadata=metadata)).revision
    return _print(args, _revision_dict(rev),
                  lambda d: print(f"{d['service']}: revision {d['revision']} restores revision {args.to}"))


def cmd_diff(args) -> int:
    from rollway.model.validation import RouteMapError, check_routemap
    from rollway.proto import routemap_pb2 as pb

    try:
        proposed = check_routemap(_read_routemap(args.file))
    except RouteMapError as error:
        raise CommandError(f"invalid route map {args.file!r}: {error}") from None
    current = _call(lambda: _stub(args).Get(pb.GetRequest(service=proposed.service)))
    old = yaml.safe_dump(json.loads(current.document), sort_keys=False).splitlines(keepends=True)
    new = yaml.safe_dump(proposed.document, sort_keys=False).splitlines(keepends=True)
    diff = list(difflib.unified_diff(old, new, f"{proposed.service}@{current.revision}", args.file))
    return _print(args, {"service": proposed.service, "revision": current.revision, "diff": "".join(diff)},
                  lambda d: print(d["diff"] or "no change", end="" if d["diff"] else "\n"))


# -- status -----------------------------------------------------------------------------------------

def _version_halt(status, name: str) -> dict | None:
    """A version's ``halted`` object in ``status --json`` (null when it is not halted). An
    operator's halt has no figures: the ratios and the request count are null."""
    for h in status.halts:
        if h.version == name:
            return {"reason": h.reason or "halted by an operator", "author": h.author, "rollback": h.rollback,
                    "time": h.time, **_measured(h)}
    return None


def _measured(h) -> dict:
    """A halt's figures in numbers (the guard's: the stage that judged it, the ratios, the
    version's requests), null for an operator's."""
    return {"stage": h.stage or None,
            "error_ratio": h.error_ratio if h.HasField("error_ratio") else None,
            "baseline_error_ratio": h.baseline_error_ratio if h.HasField("baseline_error_ratio") else None,
            "requests": h.requests if h.HasField("requests") else None}


def _status_dict(status) -> dict:
    return {"service": status.service, "revision": status.revision, "generation": status.generation,
            "halts": [_halt_dict(h) for h in status.halts],
            "store_state": status.store_state, "leader": status.leader,
            "duplicate_node_ids": list(status.duplicate_node_ids), "problems": list(status.problems),
            "envoys": [{"node_id": e.node_id, "acked": dict(e.acked), "nacks": e.nacks, "last_nack": e.last_nack,
                        "replica": e.replica, "connected": e.connected, "generation": e.generation,
                        "stale": e.stale or None, "stale_since": e.stale_since or None,
                        "services": list(e.services)}
                       for e in status.envoys],
            "stages": [{"name": s.name, "mode": s.mode, "weight": s.weight, "direction": s.direction,
                        "target": s.target or None, "skipped_members": s.skipped_members,
                        "held_empty": s.held_empty, "active_slot": s.active_slot or None,
                        "versions": [{"name": v.name, "capacity": v.capacity, "members": v.members,
                                      "halted": _version_halt(status, v.name)}
                                     for v in s.versions]} for s in status.stages]}


def _inert(value):
    """``value`` with every string in it made printable (control characters escaped)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {k: _inert(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_inert(v) for v in value]
    return value


def _print_status(d: dict) -> None:
    """The human table. Its strings came over the network (node ids, replica names, NACK
    messages): control characters are escaped first, so none reaches the terminal."""
    d = _inert(d)
    stale = [e for e in d["envoys"] if e["stale"]]
    print(f"{d['service']}: route map revision {d['revision']}, filter config generation {d['generation']}, "
          f"store {d['store_state']}, leader {d['leader'] or '-'}, {len(d['envoys'])} Envoy(s)"
          + (f", {len(stale)} stale" if stale else ""))
    for e in d["envoys"]:
        acked = " ".join(f"{k}={v[:8]}" for k, v in sorted(e["acked"].items()))
        state = "STALE since " + time.strftime("%H:%M:%S", time.gmtime(e["stale_since"] or 0)) + \
            f" ({e['stale']})" if e["stale"] else ("connected" if e["connected"] else "disconnected")
        fronts = f"; fronts {', '.join(e['services'])}" if len(e.get("services", [])) > 1 else ""
        print(f"  envoy {e['node_id']} via {e['replica'] or '-'}: {state}{fronts}; generation {e['generation']}"
              + (f"; acked {acked}" if acked else "") + f"; NACKs {e['nacks']}"
              + (f" (last: {e['last_nack']})" if e["last_nack"] else ""))
    for node_id in d["duplicate_node_ids"]:
        print(f"  ERROR: node id {node_id} is connected to more than one replica (two Envoys share it)")
    print(f"{'stage':12} {'weight':>7} {'direction':18} {'version':14} {'capacity':>9} {'members':>8}")
    for s in d["stages"]:
        direction = s["direction"] + (f" -> {s['target']}" if s["target"] else "")
        if s["active_slot"]:
            direction = f"active {s['active_slot']}"
        note = (" (holding last view: serverset empty)" if s["held_empty"] else "") + \
               (f" ({s['skipped_members']} malformed skipped)" if s["skipped_members"] else "")
        rows = s["versions"] or [{"name": "-", "capacity": 0, "members": 0}]
        for i, v in enumerate(rows):
            head = f"{s['name']:12} {s['weight']:7g} {direction:18}" if i == 0 else " " * 39
            halted = v.get("halted")
            flag = f" HALTED{' (rolled back)' if halted['rollback'] else ''}" if halted else ""
            print(f"{head} {v['name']:14} {v['capacity']:9g} {v['members']:8d}{flag}{note if i == 0 else ''}")
    for h in d.get("halts", []):
        print(f"  HALT: version {h['version']}{' rolled back' if h['rollback'] else ''} by {h['author']} at "
              f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(h['time']))} UTC: {h['reason'] or '(no reason)'}"
              + (f" ({h['figures']})" if h.get("figures") else ""))
    for problem in d["problems"]:
        print(f"  PROBLEM: {problem}")


def _services_dict(listing) -> dict:
    return {"services": [{"service": s.service, "revision": s.revision, "generation": s.generation,
                          "domains": list(s.domains), "path_prefix": s.path_prefix, "envoys": s.envoys,
                          "stale_envoys": s.stale_envoys, "halted": list(s.halted)} for s in listing.services],
            "envoys": [{"node_id": e.node_id, "services": list(e.services)} for e in listing.envoys]}


def _print_services(d: dict) -> None:
    d = _inert(d)
    print(f"{'service':16} {'where':40} {'revision':>8} {'generation':>10} {'envoys':>7} {'stale':>6}")
    for s in d["services"]:
        where = ",".join(s["domains"]) + ("" if s["path_prefix"] == "/" else s["path_prefix"])
        halted = f"  HALTED {', '.join(s['halted'])}" if s["halted"] else ""
        print(f"{s['service']:16} {where:40} {s['revision']:8d} {s['generation']:10d} {s['envoys']:7d} "
              f"{s['stale_envoys']:6d}{halted}")
    for e in d["envoys"]:
        print(f"  envoy {e['node_id']} fronts {', '.join(e['services'])}")


def cmd_status(args) -> int:
    from rollway.proto import routemap_pb2 as pb

    if args.service is None:     # every service, and per Envoy the services it fronts
        try:
            listing = _stub(args).ListServices(pb.ListServicesRequest(), timeout=30)
        except grpc.RpcError as error:
            raise CommandError(printable(f"{error.code().name}: {error.details()}")) from None
        return _print(args, _services_dict(listing), _print_services)

    stream = _stub(args).WatchStatus(pb.WatchStatusRequest(service=args.service))
    try:
        for status in stream:
            _print(args, _status_dict(status), _print_status, stream=args.watch)
            if not args.watch:
                stream.cancel()
                return 0
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.CANCELLED:
            return 0
        raise CommandError(printable(f"{error.code().name}: {error.details()}")) from None
    finally:
        stream.cancel()   # also when the reader went away (BrokenPipeError) or ^C
    return 0


# -- deploy gate -------------------------------------------------------------------------------

def _halt_dict(h) -> dict:
    return {"version": h.version, "rollback": h.rollback, "author": h.author, "reason": h.reason, "time": h.time,
            "figures": h.figures or None, **_measured(h)}


def cmd_deploy_wait(args) -> int:
    from rollway.proto import routemap_pb2 as pb

    request = pb.WaitConvergedRequest(service=args.service, timeout_seconds=args.timeout)
    result = _call(lambda: _stub(args).WaitConverged(request, timeout=args.timeout + 10))
    data = {"service": args.service, "converged": result.converged, "generation": result.generation,
            "outstanding": list(result.outstanding), "halts": [_halt_dict(h) for h in result.halts]}
    # A halted version stops the deploy tool (exit 1, naming it), unless the tool is the one
    # carrying out the rollback and paces its steps by the gate (--allow-halted).
    stopped = bool(data["halts"]) and not args.allow_halted

    def human(d):
        if d["converged"]:
            print(f"{d['service']}: converged at generation {d['generation']}")
        else:
            print(f"{d['service']}: not converged after {args.timeout:g}s (generation {d['generation']}); "
                  "outstanding:", file=sys.stderr)
            for item in d["outstanding"]:
                print(f"  {item}", file=sys.stderr)
        for h in d["halts"]:
            print(f"{d['service']}: version {h['version']} is halted{' and rolled back' if h['rollback'] else ''} "
                  f"by {h['author']}: {h['reason'] or '(no reason given)'}"
                  f"{' (' + h['figures'] + ')' if h['figures'] else ''}", file=sys.stderr if stopped else sys.stdout)
    _print(args, data, human)
    return 0 if result.converged and not stopped else 1


def cmd_deploy_halt(args) -> int:
    from rollway.proto import routemap_pb2 as pb

    metadata = _write_metadata(args, "halt")
    request = pb.HaltRequest(service=args.service, version=args.version, rollback=args.rollback,
                             author=args.author, reason=args.reason)
    result = _call(lambda: _stub(args).Halt(request, metadata=metadata))
    return _print(args, {"service": args.service, "halts": [_halt_dict(h) for h in result.halts]},
                  lambda d: print(f"{d['service']}: version {args.version} halted"
                                  f"{' and rolled back' if args.rollback else ''} (no new sessions"
                                  f"{'; its sessions go back once' if args.rollback else ''})"))


def cmd_deploy_resume(args) -> int:
    from rollway.proto import routemap_pb2 as pb

    metadata = _write_metadata(args, "resume")
    request = pb.ResumeRequest(service=args.service, version=args.version, author=args.author, reason=args.reason)
    result = _call(lambda: _stub(args).Resume(request, metadata=metadata))
    return _print(args, {"service": args.service, "halts": [_halt_dict(h) for h in result.halts]},
                  lambda d: print(f"{d['service']}: version {args.version} resumed"))


# -- serverset announce -------------------------------------------------------------------------

MAX_ANNOUNCE = 1000   # members one announcer holds: a host agent announces one or a few
DEFAULT_DRAIN_TIMEOUT = 30.0    # a termination grace period's worth; long-lived connections ask for more
MAX_DRAIN_TIMEOUT = 24 * 3600.0


def _open_store(url: str, **options):
    """A started store, or exit 2 for a URL that names none (``serve --store bogus://x``)."""
    from rollway.sources.store import StoreError, open_store

    try:
        store = open_store(url, **options)
    except ValueError as error:
        raise UsageError(f"--store: {error}") from None
    try:
        store.start()
    except StoreError as error:
        raise CommandError(str(error)) from None
    return store


def _serverset_spec(args):
    """The serverset the flags name: --path, --format, --version-from (a route map's
    ``serverset: {path, format, version}``)."""
    from rollway.inputs import InputError
    from rollway.sources.member_formats import Format, ServersetSpec, default_version_source

    raw = {"path": args.path, "format": args.format,
           "version": args.version_from or default_version_source(Format(args.format))}
    try:
        return ServersetSpec.from_config(raw, "serverset")
    except InputError as error:
        raise UsageError(str(error).replace("serverset.version", "--version-from")
                         .replace("serverset.path", "--path")) from None


def cmd_announce(args) -> int:
    from rollway.inputs import InputError
    from rollway.sources.member_formats import announcement

    if not 1 <= args.count <= MAX_ANNOUNCE:
        raise UsageError(f"--count {args.count}: announce from 1 to {MAX_ANNOUNCE} members")
    spec = _serverset_spec(args)
    try:
        members = [announcement(spec, args.host, args.port + i, args.version, args.weight) for i in range(args.count)]
    except InputError as error:     # what a control plane would skip is never announced
        raise UsageError(str(error)) from None
    store = _open_store(args.store, **_store_security(args, args.store))
    handles = [store.announce(m.path, m.data, m.name) for m in members]
    print(f"rollway: announced {args.count} {spec.format.value} member(s) of version {args.version} at "
          f"{members[0].path}; holding them until stopped", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    for handle in handles:
        handle.close()
    store.stop()
    return 0


def cmd_show(args) -> int:
    """What Rollway reads from a serverset: each member, or why it is skipped, and the
    capacity per version, exactly as the control plane's watcher counts them."""
    from rollway.sources.serverset import build_view, read_members, read_now

    spec = _serverset_spec(args)
    store = _open_store(args.store, **_store_security(args, args.store))
    try:
        children = read_now(store, spec)
    finally:
        store.stop()
    view = build_view(spec, children)
    rows = [{"name": r.name, "host": r.member.host, "port": r.member.port, "version": r.member.version,
             "weight": r.member.weight, "status": r.member.status} if r.member else {"name": r.name, "skipped": r.why}
            for r in read_members(spec, children)]
    doc = {"serverset": spec.to_json(), "members": rows, "alive": view.members, "skipped": view.skipped,
           "capacity": view.capacity}

    def human(d: dict) -> None:
        print(f"serverset {spec}: {d['alive']} ALIVE member(s), {d['skipped']} skipped")
        for row in d["members"]:
            name = _inert(row["name"])
            if "skipped" in row:
                print(f"  {name}: skipped: {_inert(row['skipped'])}")
            else:
                print(f"  {name}: {row['version']} at {row['host']}:{row['port']} weight {row['weight']:g} "
                      f"{row['status'] if row['status'] == 'ALIVE' else _inert(row['status'])}")
        for version, capacity in sorted(d["capacity"].items()):
            print(f"  capacity of {version}: {capacity:g}")
    return _print(args, doc, human)


def _wait_converged(args, service: str):
    """The deploy gate through the operator API: a function returning (converged, outstanding)."""
    from rollway.proto import routemap_pb2 as pb

    def wait() -> tuple[bool, list[str]]:
        request = pb.WaitConvergedRequest(service=service, timeout_seconds=args.timeout)
        result = _call(lambda: _stub(args).WaitConverged(request, timeout=args.timeout + 10))
        return result.converged, list(result.outstanding)
    return wait


class _Idle:
    """The drain's third step through the operator API: polls what every Envoy has open to
    the endpoints until nothing is, or ``deadline`` seconds pass. A zero is trusted only once
    every Envoy could have reported after the gate (two report intervals and a fleet-record
    write), and only with a fresh report from every Envoy in the quorum."""

    POLL = 0.5

    def __init__(self, args, service: str, endpoints: list[str], deadline: float):
        self.args, self.service, self.endpoints, self.deadline = args, service, endpoints, deadline
        self.open: dict[str, int] = {}         # what was still open when it gave up
        self.unreported: list[str] = []
        self.waited = 0.0

    def __call__(self) -> bool:
        from rollway.proto import routemap_pb2 as pb

        start = time.monotonic()
        trusted_from = None
        request = pb.OpenRequestsRequest(service=self.service, endpoints=self.endpoints)
        while True:
            answer = _call(lambda: _stub(self.args).OpenRequests(request, timeout=30))
            now = time.monotonic()
            if trusted_from is None:
                trusted_from = start + 2 * answer.report_interval_seconds + 1.0
            self.open = {e.endpoint: e.requests for e in answer.endpoints if e.requests}
            self.unreported = list(answer.unreported)
            self.waited = now - start
            if now >= trusted_from and not self.open and not self.unreported:
                return True
            if now - start >= self.deadline:
                return False
            time.sleep(self.POLL)


def _halted_versions(args, service: str) -> frozenset[str]:
    """The service's halted versions, from one status read."""
    from rollway.proto import routemap_pb2 as pb

    stream = _stub(args).WatchStatus(pb.WatchStatusRequest(service=service), timeout=args.timeout + 10)
    try:
        status = _call(lambda: next(iter(stream)))
    finally:
        stream.cancel()
    return frozenset(h.version for h in status.halts)


def cmd_drain(args) -> int:
    from rollway.inputs import InputError, check_ip, check_name, check_port, check_zk_path
    from rollway.tools.drain import DrainError, drain

    try:
        check_zk_path(args.path, "--path")
        check_ip(args.host, "--host")
        check_port(args.port, "--port")
        check_name(args.service, "--service")
    except InputError as error:
        raise UsageError(str(error)) from None
    if not 0 <= args.drain_timeout <= MAX_DRAIN_TIMEOUT:
        raise UsageError(f"--drain-timeout {args.drain_timeout:g}: from 0 (do not wait for open requests) to "
                         f"{MAX_DRAIN_TIMEOUT:g} seconds")
    halted = _halted_versions(args, args.service)
    idle = _Idle(args, args.service, [endpoint_text(args.host, args.port)], args.drain_timeout) \
        if args.drain_timeout > 0 else None
    store = _open_store(args.store, **_store_security(args, args.store))
    try:
        names = drain(store, args.path, [(args.host, args.port)], _wait_converged(args, args.service), halted,
                      args.force, idle)
    except DrainError as error:
        print(f"rollway: {error}", file=sys.stderr)
        return 1
    finally:
        store.stop()
    left = sum(idle.open.values()) if idle else 0
    doc = {"drained": names, "path": args.path, "host": args.host, "port": args.port,
           "open_at_removal": left, "unreported": idle.unreported if idle else [],
           "waited_seconds": round(idle.waited, 1) if idle else 0.0}

    def human(d: dict) -> None:
        if idle is not None and (left or idle.unreported):
            print(f"rollway: the drain deadline ({args.drain_timeout:g} s) passed with {left} request(s) still open"
                  + (f" and no load report from {', '.join(idle.unreported[:5])}" if idle.unreported else ""),
                  file=sys.stderr)
        print(f"rollway: drained {args.host}:{args.port} from {args.path} ({len(names)} member(s)); "
              f"no Envoy routes to it any more")
    return _print(args, doc, human)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The control plane's verbs: serve, routemap, status, deploy, serverset."""
    _add_serve(sub)
    _add_routemap(sub)
    status = sub.add_parser("status", help="capacity, direction and generation of a service (without one: "
                                           "every service, and the services each Envoy fronts)")
    status.add_argument("service", nargs="?")
    status.add_argument("--watch", action="store_true", help="keep printing as it changes")
    _client_flags(status)
    status.set_defaults(func=cmd_status)
    _add_deploy(sub)
    _add_serverset(sub)


def _client_flags(p: argparse.ArgumentParser) -> None:
    """What every command that talks to a server takes."""
    p.add_argument("--server", default=DEFAULT_SERVER, help="rollway serve's operator API HOST:PORT")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--tls-ca", metavar="FILE",
                   help="talk TLS, checking the server's certificate against this CA (else $ROLLWAY_TLS_CA)")
    p.add_argument("--tls-cert", metavar="FILE", help="a client certificate to present (with --tls-key)")
    p.add_argument("--tls-key", metavar="FILE")
    p.add_argument("--tls-server-name", metavar="NAME",
                   help="the name to check the server's certificate for, when --server is an address")


def _add_serve(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the control plane and its operator API")
    serve.add_argument("--store", required=True, help="zk://HOST:PORT[/chroot], zk+tls://... or file://DIR")
    _store_flags(serve)
    serve.add_argument("--api-port", type=int, default=7700)
    serve.add_argument("--api-host", default="127.0.0.1",
                       help="operator API bind address (default 127.0.0.1; off loopback, use TLS)")
    serve.add_argument("--xds-port", type=int, default=18000,
                       help="ADS port for Envoys (default 18000)")
    serve.add_argument("--xds-host", help="ADS bind address (default: --api-host); Envoys on other hosts need "
                                          "one they reach, e.g. 0.0.0.0, with --tls-client-ca")
    serve.add_argument("--http-port", type=int, default=7780,
                       help="dashboard (/) and Prometheus metrics (/metrics) port (default 7780)")
    serve.add_argument("--http-host", help="dashboard bind address (default: --api-host)")
    serve.add_argument("--tls-cert", metavar="FILE", help="serve the operator API, xDS and the dashboard over TLS "
                                                          "with this certificate chain (PEM)")
    serve.add_argument("--tls-key", metavar="FILE", help="its private key (PEM)")
    serve.add_argument("--tls-client-ca", metavar="FILE",
                       help="xDS clients must present a certificate signed by this CA (mTLS); others are refused")
    serve.add_argument("--token-file", help="operator token for writes (else $ROLLWAY_TOKEN; none: no writes)")
    serve.add_argument("--secrets-file", help="secrets file named in filter configs (read by each Envoy)")
    serve.add_argument("--debounce", type=float, default=0.05, help="seconds to batch serverset changes")
    serve.add_argument("--ack-timeout", type=float, default=30.0,
                       help="seconds an Envoy may go without ACKing what it was sent (or stay disconnected) "
                            "before it leaves the quorum (default 30)")
    serve.add_argument("--replica-id", help="this replica's name in the fleet records (default host-pid-random)")
    serve.add_argument("--session-timeout", type=float,
                       help="ZooKeeper session timeout / file-store lease, seconds (default 10): how long a dead "
                            "leader holds its lease before another replica takes over")
    serve.add_argument("--startup-grace", type=float, default=5.0,
                       help="seconds a freshly started replica releases no admission or second step, so that "
                            "Envoys connected before a restart are back first (default 5, at most --ack-timeout)")
    serve.add_argument("--empty-grace", type=float, default=30.0,
                       help="seconds to hold a serverset's last view when it suddenly looks empty")
    serve.set_defaults(func=cmd_serve)


def _add_routemap(sub: argparse._SubParsersAction) -> None:
    routemap = sub.add_parser("routemap", help="validate, push and inspect route maps")
    rsub = routemap.add_subparsers(dest="routemap_command", required=True)
    p = rsub.add_parser("validate", help="check a route map; with a server, a dry run of what would move")
    p.add_argument("file")
    p.add_argument("--local", action="store_true", help="only check the document, no server")
    p.add_argument("--sample", type=int, default=0, help="routing ids to sample (server default 20000)")
    _client_flags(p)
    p.set_defaults(func=cmd_validate)
    p = rsub.add_parser("push", help="store a new revision (compare-and-set on --expected-revision)")
    p.add_argument("file")
    p.add_argument("--expected-revision", type=int, required=True, help="the current revision (0: new service)")
    _write_flags(p)
    p.set_defaults(func=cmd_push)
    p = rsub.add_parser("get", help="show the current (or a given) revision")
    p.add_argument("service")
    p.add_argument("--revision", type=int, default=0)
    _client_flags(p)
    p.set_defaults(func=cmd_get)
    p = rsub.add_parser("history", help="every accepted revision")
    p.add_argument("service")
    _client_flags(p)
    p.set_defaults(func=cmd_history)
    p = rsub.add_parser("rollback", help="push an earlier revision again")
    p.add_argument("service")
    p.add_argument("--to", type=int, required=True)
    p.add_argument("--expected-revision", type=int, required=True)
    _write_flags(p)
    p.set_defaults(func=cmd_rollback)
    p = rsub.add_parser("diff", help="the current revision against a file")
    p.add_argument("file")
    _client_flags(p)
    p.set_defaults(func=cmd_diff)


def _write_flags(p: argparse.ArgumentParser) -> None:
    """What every write takes: who and why (recorded with it), the operator token, the server."""
    p.add_argument("--author", default=os.environ.get("USER", "unknown"))
    p.add_argument("--reason", default="")
    p.add_argument("--token-file")
    _client_flags(p)


def _add_deploy(sub: argparse._SubParsersAction) -> None:
    deploy = sub.add_parser("deploy", help="the deploy tool's side: wait for the fleet to converge; halt or resume a version")
    dsub = deploy.add_subparsers(dest="deploy_command", required=True)
    p = dsub.add_parser("wait", help="block until every Envoy holds the newest config and nothing waits "
                                     "for a second step; exit 1 naming what is outstanding on timeout")
    p.add_argument("service")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60, at most 3600)")
    p.add_argument("--allow-halted", action="store_true",
                   help="exit 0 on convergence even while a version is halted (the tool carrying out a rollback)")
    _client_flags(p)
    p.set_defaults(func=cmd_deploy_wait)
    for name, helptext, func in (
            ("halt", "stop giving a version new sessions in every stage (--rollback: turn the deploy back "
                     "and move its sessions back once); needs the operator token", cmd_deploy_halt),
            ("resume", "lift a version's halt; needs the operator token", cmd_deploy_resume)):
        p = dsub.add_parser(name, help=helptext)
        p.add_argument("service")
        p.add_argument("--version", required=True)
        if name == "halt":
            p.add_argument("--rollback", action="store_true")
        _write_flags(p)
        p.set_defaults(func=func)


def _serverset_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--path", required=True, help="the serverset's path (its versions' parent with version from path)")
    p.add_argument("--format", default="finagle", choices=("finagle", "party", "curator"),
                   help="how members are written: Finagle/Aurora JSON, kazoo (Shallow)Party host:port, Curator JSON")
    p.add_argument("--version-from", metavar="metadata:KEY|payload:KEY|path",
                   help="where a member's version is (default: metadata:version, path for party, "
                        "payload:version for curator)")


def _add_serverset(sub: argparse._SubParsersAction) -> None:
    serverset = sub.add_parser("serverset", help="serverset tools")
    ssub = serverset.add_subparsers(dest="serverset_command", required=True)
    p = ssub.add_parser("announce", help="register members and hold them until stopped (a host agent)")
    p.add_argument("--store", required=True)
    _store_flags(p)
    _serverset_flags(p)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--weight", type=float, default=1.0)
    p.add_argument("--count", type=int, default=1, help="members on consecutive ports from --port")
    p.set_defaults(func=cmd_announce)
    p = ssub.add_parser("show", help="what Rollway reads from a serverset: each member or why it is skipped, "
                                     "and the capacity per version")
    p.add_argument("--store", required=True)
    _store_flags(p)
    _serverset_flags(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_show)
    p = ssub.add_parser("drain", help="mark a host's member not-ALIVE, wait until no Envoy can route to it, "
                                      "then remove it (a STOP / termination lifecycle hook)")
    p.add_argument("--store", required=True)
    _store_flags(p)
    p.add_argument("--path", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--service", required=True, help="the service whose route map names this serverset")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the fleet (default 60)")
    p.add_argument("--drain-timeout", type=float, default=DEFAULT_DRAIN_TIMEOUT, metavar="S",
                   help="then wait up to S seconds until no Envoy has a request or a WebSocket/EventSource "
                        f"open to the host (default {DEFAULT_DRAIN_TIMEOUT:g}; 0: do not wait)")
    p.add_argument("--force", action="store_true",
                   help="drain even the last hosts of the versions that are not halted (their sessions stay put)")
    _client_flags(p)
    p.set_defaults(func=cmd_drain)
