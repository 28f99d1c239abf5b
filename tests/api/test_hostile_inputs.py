"""Nothing an operator, a member or a client sends can stop the fleet (issue 24).

One regression test per finding, each against the real parts the finding involved: a
control plane on the file store (or ``rollway serve`` as a process), its operator API over
gRPC, its xDS server with a stock Envoy, the dashboard over HTTP, and the CLI."""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import yaml

from rollway.api import dashboard as dashboard_module
from rollway.api.dashboard import DashboardServer
from rollway.api.operator import serve_operator_api
from rollway.cli.controlplane import _print_status
from rollway.envoy import bootstrap as ec
from rollway.inputs import InputError, check_node_id, printable
from rollway.model.routemap import RouteMapError
from rollway.model.validation import check_routemap
from rollway.plane.control_plane import ControlPlane
from rollway.proto import routemap_pb2 as pb
from rollway.proto import routemap_pb2_grpc as pb_grpc
from rollway.sources.serverset import build_view, member_json, parse_member
from rollway.sources.store import RouteMapRecord, open_store
from rollway.xds import cache as cache_module

from ads_client import AdsClient
from conftest import wait_for
from envoy_harness import Backends, EnvoyProcess, free_port
from harness import Replica

pytestmark = [pytest.mark.envoy]

TOKEN = "hostile-inputs-token"
WEB = {"service": "web", "stages": [
    {"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/discovery/web/prod"}]}
API = {"service": "api", "stages": [
    {"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/discovery/api/prod"}]}
UNSAFE = {"service": "evil", "stages": [
    {"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/../../etc"}]}


def rollway(*args, timeout=60, stdin=None):
    return subprocess.run([sys.executable, "-m", "rollway.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=stdin)


class Stack(Replica):
    """A control plane on the file store with its operator API and xDS server."""

    def __init__(self, tmp_path: Path, xds: bool = True):
        super().__init__(f"file://{tmp_path}/store", xds=xds, token=TOKEN)
        self.stub = self.client()


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path)
    yield s
    s.close()


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value


WRITE = (("authorization", f"Bearer {TOKEN}"),)


# -- 1. an unsafe serverset path --------------------------------------------------------------------

def test_an_unsafe_serverset_path_is_refused_everywhere_and_nothing_is_stored(stack, tmp_path):
    for path in ("/../../etc", "/a/./b", "/a//b", "relative", "/a/.."):
        with pytest.raises(RouteMapError, match=r"stages\[0\]\.serverset"):
            check_routemap({**UNSAFE, "stages": [{**UNSAFE["stages"][0], "serverset": path}]})
    doc = tmp_path / "evil.yaml"
    doc.write_text(yaml.safe_dump(UNSAFE))
    local = rollway("routemap", "validate", str(doc), "--local")
    assert local.returncode == 1 and "stages[0].serverset" in local.stderr
    error = refused(lambda: stack.stub.Push(pb.PushRequest(document=json.dumps(UNSAFE)), metadata=WRITE))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "stages[0].serverset" in error.details()
    assert stack.store.history("evil") == [] and "evil" not in stack.store.services()


def test_rollback_to_a_revision_todays_rules_refuse_stores_nothing(stack):
    stack.stub.Push(pb.PushRequest(document=json.dumps(WEB)), metadata=WRITE)
    # A revision stored before the rule was tightened (written straight into the store).
    old = RouteMapRecord("web", 2, {**WEB, "stages": [{**WEB["stages"][0], "serverset": "/../../etc"}]},
                         "mallory", "", time.time())
    stack.store.write_routemap(old, 1)
    stack.stub.Push(pb.PushRequest(document=json.dumps(WEB), expected_revision=2), metadata=WRITE)
    error = refused(lambda: stack.stub.Rollback(pb.RollbackRequest(service="web", to_revision=2,
                                                                   expected_revision=3), metadata=WRITE))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "serverset" in error.details()
    assert [r.revision for r in stack.store.history("web")] == [1, 2, 3]


def test_a_broken_record_in_the_store_is_skipped_and_reported_and_the_rest_serve(tmp_path):
    """``rollway serve`` over a store holding an unservable record (the state issue 24 left
    behind) and a record that is not even JSON: it starts, serves web, and names both."""
    store = open_store(f"file://{tmp_path}/store")
    store.start()
    store.write_routemap(RouteMapRecord("web", 1, WEB, "alice", "", time.time()), 0)
    store.write_routemap(RouteMapRecord("evil", 1, UNSAFE, "mallory", "", time.time()), 0)
    garbled = tmp_path / "store" / "rollway" / "junk"
    garbled.mkdir(parents=True)
    (garbled / "routemap.json").write_text("{not json")
    member = store.announce("/discovery/web/prod", member_json("127.0.0.1", 9000, "v1"))
    api, http = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rollway.cli.main", "serve", "--store", store.url,
                             "--api-port", str(api), "--xds-port", "0", "--http-port", str(http)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        server = f"127.0.0.1:{api}"
        def web_capacity():
            result = rollway("status", "web", "--server", server, "--json")
            return result.returncode == 0 and json.loads(result.stdout)["stages"][0]["versions"]

        assert wait_for(web_capacity, timeout=30, what="web served") == [
            {"name": "v1", "capacity": 1.0, "members": 1, "halted": None}]
        evil = rollway("status", "evil", "--server", server)
        assert evil.returncode == 1 and "FAILED_PRECONDITION" in evil.stderr and "serverset" in evil.stderr
        junk = rollway("status", "junk", "--server", server)
        assert junk.returncode == 1 and "FAILED_PRECONDITION" in junk.stderr and "unreadable" in junk.stderr
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=10) as response:
            body = response.read().decode()
        assert response.status == 200 and "not served: evil" in body and "not served: junk" in body
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert 'rollway_routemap_broken{service="evil"} 1.0' in metrics
        assert 'rollway_routemap_broken{service="junk"} 1.0' in metrics
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
        member.close()
        store.stop()
    assert proc.returncode == 0, output
    assert "Traceback" not in output
    assert output.count("evil: stored route map") == 1      # logged once, not at every refresh
    assert output.count("junk: stored route map") == 1


def test_a_newer_revision_that_does_not_validate_leaves_the_one_before_serving(stack):
    stack.stub.Push(pb.PushRequest(document=json.dumps(WEB)), metadata=WRITE)
    stack.announce("/discovery/web/prod", member_json("127.0.0.1", 9000, "v1"))
    wait_for(lambda: stack.plane.service("web").config is not None, what="web's config")
    stack.store.write_routemap(RouteMapRecord("web", 2, {**WEB, "stages": [
        {**WEB["stages"][0], "serverset": "/x/../y"}]}, "mallory", "", time.time()), 1)
    wait_for(lambda: "web" in stack.plane.broken, what="revision 2 reported")
    assert stack.plane.service("web").record.revision == 1
    status = stack.stub.WatchStatus(pb.WatchStatusRequest(service="web"))
    first = next(iter(status))
    status.cancel()
    assert any("revision 2 cannot be served" in p for p in first.problems)


# -- 2 and 3. members Envoy would refuse ------------------------------------------------------------

BAD_MEMBERS = [
    (member_json("127.0.0.1", 9001, "v1", 1e300), "metadata.weight"),
    (member_json("127.0.0.1", 9002, "v1", 4294967296), "metadata.weight"),
    (member_json("127.0.0.1", 9003, "v1", float("nan")), "metadata.weight"),
    (member_json("127.0.0.1", 9004, "v1", -1), "metadata.weight"),
    (member_json("localhost", 9005, "v1"), "serviceEndpoint.host"),
    (member_json("a" * 300, 9006, "v1"), "serviceEndpoint.host"),
    (member_json("127.0.0.1 evil", 9007, "v1"), "serviceEndpoint.host"),
    (member_json("::1%lo0", 9007, "v1"), "serviceEndpoint.host"),      # found by the property
    (member_json("", 9008, "v1"), "serviceEndpoint.host"),
    (member_json("127.0.0.1", 0, "v1"), "serviceEndpoint.port"),
    (member_json("127.0.0.1", 65536, "v1"), "serviceEndpoint.port"),
    (member_json("127.0.0.1", 9009, "v1/evil"), "metadata.version"),
    (member_json("127.0.0.1", 9010, "v" * 129), "metadata.version"),
]


def test_members_envoy_would_refuse_are_skipped_and_counted():
    for data, field in BAD_MEMBERS:
        member, why = parse_member(data)
        assert member is None and why is not None and why.startswith(field), (data, why)
    view = build_view("/s", {f"member_{i:03d}": d for i, (d, _) in enumerate(BAD_MEMBERS)} |
                      {"member_999": member_json("127.0.0.1", 9000, "v1", 10_000)})
    assert view.skipped == len(BAD_MEMBERS) and view.capacity == {"v1": 10_000.0}


def test_a_hostile_member_never_reaches_an_envoy_and_the_service_keeps_updating(stack, tmp_path):
    backends = Backends(["v1#0", "v2#0"])
    envoy = None
    try:
        stack.stub.Push(pb.PushRequest(document=json.dumps(WEB)), metadata=WRITE)
        stack.stub.Push(pb.PushRequest(document=json.dumps(API)), metadata=WRITE)
        stack.announce("/discovery/web/prod", member_json(*backends.address("v1#0"), "v1"))
        stack.announce("/discovery/api/prod", member_json(*backends.address("v1#0"), "v1"))
        listen, admin = free_port(), free_port()
        envoy = EnvoyProcess(ec.ads_bootstrap(xds_host="127.0.0.1", xds_port=stack.xds.port, node_id="envoy-h",
                                              listen_port=listen, admin_port=admin, service="web"),
                             tmp_path, listen, admin).start()
        assert envoy.get("/").json["backend"] == "v1#0"
        for data, _ in BAD_MEMBERS:
            stack.announce("/discovery/web/prod", data)
        # A later, good change still reaches the Envoy: v2 arrives and is routed to.
        stack.announce("/discovery/web/prod", member_json(*backends.address("v2#0"), "v2"))
        wait_for(lambda: "web.prod.v2" in envoy.admin("/clusters")[1], timeout=30, what="v2's cluster in Envoy")
        status = next(iter(stack.stub.WatchStatus(pb.WatchStatusRequest(service="web"))))
        assert status.stages[0].skipped_members == len(BAD_MEMBERS)
        assert {v.name: v.capacity for v in status.stages[0].versions} == {"v1": 1.0, "v2": 1.0}
        stats = envoy.stats()
        assert sum(v for k, v in stats.items() if k.endswith("update_rejected")) == 0
        assert stack.xds.xds.cache.nack_total == 0
    finally:
        if envoy is not None:
            envoy.stop()
        backends.close()


def test_a_snapshot_that_fails_to_build_keeps_the_last_good_one_and_is_shown(stack, tmp_path, monkeypatch):
    """Defence in depth: whatever makes building raise (here a fault injected into the
    builder), the stream is not ended, the last good snapshot is served, and the failure is
    counted and shown in status and /metrics."""
    backends = Backends(["v1#0"])
    envoy = None
    try:
        stack.stub.Push(pb.PushRequest(document=json.dumps(WEB)), metadata=WRITE)
        stack.announce("/discovery/web/prod", member_json(*backends.address("v1#0"), "v1"))
        listen, admin = free_port(), free_port()
        envoy = EnvoyProcess(ec.ads_bootstrap(xds_host="127.0.0.1", xds_port=stack.xds.port, node_id="envoy-f",
                                              listen_port=listen, admin_port=admin, service="web"),
                             tmp_path, listen, admin).start()
        real = cache_module.build_resources

        def failing(config, endpoints, listener, cache=None, draining=None):
            if any(e for eps in endpoints.values() for e in eps if e[1] == 9999):
                raise ValueError("injected: this snapshot cannot be built")
            return real(config, endpoints, listener, cache=cache, draining=draining)

        monkeypatch.setattr(cache_module, "build_resources", failing)
        stack.announce("/discovery/web/prod", member_json("127.0.0.1", 9999, "v1"))
        wait_for(lambda: stack.plane.problems("web"), what="the failure reported")
        assert "injected" in stack.plane.problems("web")[0]
        assert envoy.get("/").json["backend"] == "v1#0"                # still served, still connected
        assert stack.xds.xds.cache.build_failures["web"] >= 1
        assert [s["node_id"] for s in stack.xds.xds.cache.envoy_status("web") if s["connected"]] == ["envoy-f"]
        from rollway.api.dashboard import prometheus_text

        assert 'rollway_xds_snapshot_build_failures_total{service="web"}' in \
            prometheus_text(stack.plane, stack.xds.xds.cache)
        monkeypatch.setattr(cache_module, "build_resources", real)
        stack.announce("/discovery/web/prod", member_json("127.0.0.1", 9998, "v1"))
        wait_for(lambda: not stack.plane.problems("web"), what="snapshots building again")
    finally:
        if envoy is not None:
            envoy.stop()
        backends.close()


# -- 4. deep documents --------------------------------------------------------------------------------

def test_a_deeply_nested_document_is_refused_by_depth_without_a_traceback(stack, caplog):
    caplog.set_level(logging.DEBUG)
    for deep in ("[" * 5000 + "]" * 5000, "a:\n" + "".join(" " * i + "- \n" for i in range(1, 300)),
                 "- " * 5000 + "x", '{"service": ' + '{"a": ' * 5000 + "1" + "}" * 5001):
        error = refused(lambda deep=deep: stack.stub.Validate(pb.ValidateRequest(document=deep), timeout=30))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert "nested more than" in error.details()
    assert not any(r.exc_info for r in caplog.records)
    assert sum(len(r.getMessage()) for r in caplog.records) < 10_000


# -- 5. ports are ours alone ------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["--api-port", "--xds-port", "--http-port"])
def test_a_second_serve_on_a_taken_port_refuses_to_start(tmp_path, which):
    ports = {"--api-port": free_port(), "--xds-port": free_port(), "--http-port": free_port()}
    args = [f"{k}={v}" for k, v in ports.items()]
    first = subprocess.Popen([sys.executable, "-m", "rollway.cli.main", "serve", "--store",
                              f"file://{tmp_path}/one", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        assert first.stdout is not None
        for _ in range(50):      # log lines come first (stderr is merged)
            if "rollway: control plane on" in first.stdout.readline():
                break
        else:
            raise AssertionError("the first rollway serve did not start")
        others = {k: (v if k == which else free_port()) for k, v in ports.items()}
        second = rollway("serve", "--store", f"file://{tmp_path}/two", *[f"{k}={v}" for k, v in others.items()],
                         timeout=60)
        assert second.returncode == 2, second.stderr
        assert f":{ports[which]}" in second.stderr and "in use" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.terminate()
        first.communicate(timeout=20)


# -- 6. text from the network is inert -------------------------------------------------------------

def test_a_node_id_with_control_characters_is_refused_with_the_reason(stack, caplog):
    forged = "envoy-1\n2026-12-04 INFO rollway: all good\x1b[2J"
    with pytest.raises(InputError):
        check_node_id(forged)
    client = AdsClient(f"127.0.0.1:{stack.xds.port}", forged).start()
    try:
        wait_for(lambda: client.task.done(), timeout=15, what="the stream to end")
        error = client.task.exception()
        assert isinstance(error, grpc.aio.AioRpcError)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "node.id" in error.details()
    finally:
        client.stop()
    for record in caplog.records:
        assert "\x1b" not in record.getMessage() and "\n2026" not in record.getMessage()
    assert stack.xds.xds.cache.envoy_status("web") == []


def test_status_tables_escape_control_characters(capsys):
    status = {"service": "web", "revision": 1, "generation": 1, "store_state": "connected",
              "leader": "r\x1b[31m", "duplicate_node_ids": ["d\nforged"], "problems": [],
              "envoys": [{"node_id": "e\x1b]0;pwned\x07", "acked": {}, "nacks": 1, "last_nack": "bad\r\nline",
                          "replica": "r1", "connected": True, "generation": 1, "stale": None, "stale_since": None}],
              "stages": []}
    _print_status(status)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "\\x1b" in out and "d\\nforged" in out
    assert printable("a\u2028b") == "a\\u2028b"


# -- 7 and 8. what the CLI reads, and what the API refuses ------------------------------------------

def test_push_of_an_endless_or_non_utf8_file_is_refused_at_the_bound(tmp_path):
    env = {**os.environ, "ROLLWAY_TOKEN": "x"}
    (tmp_path / "latin1.yaml").write_bytes("service: caf\xe9\n".encode("latin-1"))
    for command in (["validate", "--local"], ["push", "--expected-revision", "0", "--server", "127.0.0.1:1"]):
        for path, message in (("/dev/urandom", "larger than 65536 bytes"), (tmp_path / "latin1.yaml", "not UTF-8")):
            result = subprocess.run([sys.executable, "-m", "rollway.cli.main", "routemap", command[0], str(path),
                                     *command[1:]], capture_output=True, text=True, timeout=60, env=env)
            assert result.returncode == 1 and message in result.stderr, result.stderr
            assert "Traceback" not in result.stderr


def test_duplicate_keys_are_refused():
    with pytest.raises(RouteMapError, match="service: appears twice"):
        check_routemap("service: probe\nservice: web\nstages: []\n")
    with pytest.raises(RouteMapError, match="name: appears twice"):
        check_routemap('{"service": "web", "stages": [{"name": "a", "name": "b", "weight": 1, "mode": "rolling",'
                       ' "serverset": "/s"}]}')


@pytest.mark.parametrize("name", ["..", ".", "a\x00b", "x" * 10_000, "a/b", ""])
def test_every_service_name_is_checked_once_by_every_method(stack, name):
    calls = [lambda: stack.stub.Get(pb.GetRequest(service=name)),
             lambda: stack.stub.History(pb.HistoryRequest(service=name)),
             lambda: next(iter(stack.stub.WatchStatus(pb.WatchStatusRequest(service=name)))),
             lambda: stack.stub.WaitConverged(pb.WaitConvergedRequest(service=name, timeout_seconds=1)),
             lambda: stack.stub.Validate(pb.ValidateRequest(document=json.dumps({**WEB, "service": name}))),
             lambda: stack.stub.Push(pb.PushRequest(document=json.dumps({**WEB, "service": name})),
                                     metadata=WRITE)]
    for call in calls:
        error = refused(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert "service" in error.details()


def test_rollback_to_zero_and_bad_revisions_are_refused(stack):
    stack.stub.Push(pb.PushRequest(document=json.dumps(WEB)), metadata=WRITE)
    for to in (0, -1):
        error = refused(lambda to=to: stack.stub.Rollback(
            pb.RollbackRequest(service="web", to_revision=to, expected_revision=1), metadata=WRITE))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "to_revision" in error.details()
    error = refused(lambda: stack.stub.Rollback(
        pb.RollbackRequest(service="web", to_revision=7, expected_revision=1), metadata=WRITE))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = refused(lambda: stack.stub.Push(pb.PushRequest(document=json.dumps(WEB), expected_revision=1,
                                                           reason="a\x1b[2Jb"), metadata=WRITE))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "reason" in error.details()
    assert [r.revision for r in stack.store.history("web")] == [1]


def test_a_request_that_does_not_decode_is_invalid_argument_not_internal(stack):
    channel = grpc.insecure_channel(f"127.0.0.1:{stack.api.rollway_port}")
    get = channel.unary_unary("/rollway.v1.RouteMapService/Get", request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)
    error = refused(lambda: get(b"\x0a\x02\xff\xfe", timeout=10))    # field 1 (service): not UTF-8
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "UTF-8" in error.details()
    status = channel.unary_stream("/rollway.v1.RouteMapService/WatchStatus", request_serializer=lambda b: b,
                                  response_deserializer=lambda b: b)
    error = refused(lambda: next(iter(status(b"\x0a\x01\xff", timeout=10))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- 9. the announcer refuses what the reader would skip ---------------------------------------------

@pytest.mark.parametrize("override, message", [
    (["--port", "0"], "port"), (["--port", "65536"], "port"), (["--port", "-1"], "port"),
    (["--host", ""], "host"), (["--host", "localhost"], "host"), (["--version", "v1/evil"], "version"),
    (["--version", "v" * 1000], "version"), (["--weight", "nan"], "weight"), (["--weight", "-1"], "weight"),
    (["--weight", "1e300"], "weight"), (["--count", "-3"], "--count"), (["--count", "100000000"], "--count"),
    (["--path", "relative/path"], "--path"), (["--path", "/../../tmp/x"], "--path"),
])
def test_the_announcer_refuses_what_the_reader_would_skip(tmp_path, override, message):
    args = {"--store": f"file://{tmp_path}/store", "--path": "/discovery/web/prod", "--host": "127.0.0.1",
            "--port": "9000", "--version": "v1"}
    extra = dict(zip(override[::2], override[1::2]))
    merged = [f"{k}={v}" for k, v in {**args, **extra}.items()]
    result = rollway("serverset", "announce", *merged, timeout=30)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("member_*"))


def test_serve_with_a_store_url_that_names_no_store_exits_2():
    result = rollway("serve", "--store", "bogus://x", "--api-port", "0", "--xds-port", "0", "--http-port", "0")
    assert result.returncode == 2 and "--store" in result.stderr and "Traceback" not in result.stderr


# -- 10. the dashboard ------------------------------------------------------------------------------

@pytest.fixture
def dashboard(tmp_path):
    store = open_store(f"file://{tmp_path}/store")
    store.start()
    plane = ControlPlane(store)
    server = DashboardServer(plane, None, port=0)
    yield server
    server.stop()
    plane.stop()
    store.stop()


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def test_head_works_where_get_does(dashboard):
    for path in ("/healthz", "/readyz", "/metrics", "/", "/api/state", "/nosuch"):
        get = _raw(dashboard.port, f"GET {path} HTTP/1.0\r\n\r\n".encode())
        head = _raw(dashboard.port, f"HEAD {path} HTTP/1.0\r\n\r\n".encode())
        assert head.split(b"\r\n")[0] == get.split(b"\r\n")[0], path
        assert head.endswith(b"\r\n\r\n") and b"content-length" in head.lower()
    assert _raw(dashboard.port, b"HEAD /healthz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200")


def test_a_trickling_client_is_cut_at_the_whole_request_deadline(dashboard, monkeypatch):
    """Each header line arrives within the per-read timeout, but the request never ends:
    the deadline closes it. The deadline is shortened for the test; the trickle would go
    on for 20 deadlines if the server let it."""
    monkeypatch.setattr(dashboard_module, "REQUEST_DEADLINE", 0.5)
    closed = False
    with socket.create_connection(("127.0.0.1", dashboard.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n")
        for _ in range(200):     # 10 s of trickle, 20 times the deadline
            time.sleep(0.05)
            try:
                sock.sendall(b"X-Trickle: 1\r\n")
                readable, _, _ = select.select([sock], [], [], 0)
                if readable and sock.recv(4096) == b"":
                    closed = True
            except OSError:      # reset by the server
                closed = True
            if closed:
                break
    assert closed, "the server kept reading a request that never ended"


def test_a_client_that_hangs_up_is_no_error(dashboard, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", dashboard.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        sock.close()     # RST before the answer is read
    sock = socket.create_connection(("127.0.0.1", dashboard.port))
    sock.sendall(b"GET /healthz HTTP/1.0\r\n")
    sock.close()         # mid-request
    assert _raw(dashboard.port, b"GET /healthz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200")
    time.sleep(0.5)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert "Traceback" not in capfd.readouterr().err


# -- 11. xDS refusals say why -------------------------------------------------------------------------

def test_node_metadata_of_the_wrong_type_is_refused_with_the_reason(stack):
    client = AdsClient(f"127.0.0.1:{stack.xds.port}", "envoy-typed", listen_port="10000").start()
    try:
        wait_for(lambda: client.task.done(), timeout=15, what="the stream to end")
    finally:
        client.stop()
    error = client.task.exception()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "listen_port" in error.details()


def test_envoy_config_refuses_a_node_id_the_server_would_refuse():
    for node_id in ("x" * 300, "a\nb", ""):
        result = rollway("envoy-config", "--ads", "--xds", "127.0.0.1:18000", "--node-id", node_id)
        assert result.returncode == 2 and "--node-id" in result.stderr, result.stderr
    assert rollway("envoy-config", "--ads", "--xds", "127.0.0.1:18000", "--node-id", "x" * 128).returncode == 0


# -- the store's own trouble: UNAVAILABLE, never UNKNOWN ---------------------------------------------

@pytest.mark.zookeeper
def test_a_push_or_read_while_zookeeper_is_down_is_unavailable_not_unknown(tmp_path):
    """The ZooKeeper route-map methods translate connection trouble like every other store
    method (they skipped it: a ConnectionLoss during a push reached the client as UNKNOWN)."""
    from zk_harness import ZooKeeperServer

    server = ZooKeeperServer(tmp_path / "zk").start()
    store = open_store(f"zk://{server.hosts}/down", session_timeout=30)
    store.start()
    plane = ControlPlane(store, debounce=0.02)
    api = serve_operator_api(plane, port=0, token=TOKEN)
    stub = pb_grpc.RouteMapServiceStub(grpc.insecure_channel(f"127.0.0.1:{api.rollway_port}"))
    try:
        stub.Push(pb.PushRequest(document=json.dumps(WEB)), metadata=WRITE, timeout=30)
        server.stop()
        wait_for(lambda: store.state != "connected", timeout=15, what="the store to see ZooKeeper gone")
        calls = [lambda: stub.Push(pb.PushRequest(document=json.dumps(WEB), expected_revision=1), metadata=WRITE,
                                   timeout=60),
                 lambda: stub.Get(pb.GetRequest(service="web"), timeout=60),
                 lambda: stub.History(pb.HistoryRequest(service="web"), timeout=60)]
        for call in calls:
            error = refused(call)
            assert error.code() == grpc.StatusCode.UNAVAILABLE, (error.code(), error.details())
            assert "ZooKeeper" in error.details()
    finally:
        api.stop(0)
        plane.stop()
        store.stop()
        server.stop()


def test_drain_refuses_what_names_no_member(tmp_path):
    for flag, value in (("--path", "/../x"), ("--host", "localhost"), ("--port", "0"), ("--service", "..")):
        args = {"--store": f"file://{tmp_path}/store", "--path": "/discovery/web/prod", "--host": "127.0.0.1",
                "--port": "9000", "--service": "web", flag: value}
        result = rollway("serverset", "drain", *[f"{k}={v}" for k, v in args.items()], timeout=30)
        assert result.returncode == 2 and flag in result.stderr and "Traceback" not in result.stderr
