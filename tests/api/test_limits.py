"""Every limit the README states for what needs no token ("What every input is checked for"
and the operator API section), each fed one call past it: refused, or made to wait, as the
README says. And the two token cases: a rollback without a token, and a server started
without one. The constants are asserted equal to the README's numbers; the mechanisms are
exercised with the real servers (timers shortened where the README's seconds would only
make the test slow)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time

import grpc
import pytest

from rollway.api import dashboard
from rollway.api.operator import MAX_SAMPLE, MAX_VALIDATING
from rollway.envoy.process import MAX_ADMIN_BODY, admin_counters
from rollway.proto import routemap_pb2 as pb
from rollway.xds.cache import MAX_LISTENERS
from rollway.xds.server import ADS_METHOD, MAX_REQUEST

from conftest import wait_for
from examples import ROUTEMAP
from harness import Replica

pytestmark = [pytest.mark.slow]

TOKEN = "operator-token-for-limits"
WRITE = (("authorization", f"Bearer {TOKEN}"),)


def test_the_constants_are_the_readmes_numbers():
    assert (dashboard.MAX_CONNECTIONS, dashboard.CONNECTION_TIMEOUT, dashboard.REQUEST_DEADLINE) == (32, 5.0, 10.0)
    assert MAX_ADMIN_BODY == 16 * 1024 * 1024 and MAX_REQUEST == 1024 * 1024
    assert (MAX_SAMPLE, MAX_VALIDATING, MAX_LISTENERS) == (1_000_000, 2, 256)   # listeners: tests/xds/test_cache.py


@pytest.fixture
def board(tmp_path):
    """A replica with its dashboard."""
    replica = Replica(f"file://{tmp_path}/store", api=False, xds=False, dashboard=True)
    yield replica
    replica.close()


@pytest.fixture
def short_timers(monkeypatch):
    """The dashboard's read timeout and request deadline shortened (the same mechanism,
    read by each new connection), so the tests wait fractions of the README's seconds."""
    monkeypatch.setattr(dashboard._BoundedHandler, "timeout", 0.5)
    monkeypatch.setattr(dashboard, "REQUEST_DEADLINE", 1.5)


def healthz(port: int, timeout: float) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return int(sock.recv(64).split()[1])


def test_the_dashboard_serves_32_connections_at_once_and_the_33rd_waits(board, monkeypatch):
    # The idle connections must outlive the time it takes to open them all on a loaded
    # machine: the read timeout is not what this test is about (the next two are).
    monkeypatch.setattr(dashboard._BoundedHandler, "timeout", 60)
    monkeypatch.setattr(dashboard, "REQUEST_DEADLINE", 60)
    port, slots = board.dashboard.port, board.dashboard.server.slots
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(dashboard.MAX_CONNECTIONS)]
    waiter = None
    try:
        # Every slot taken by a connection that sends nothing. Waited for, not slept on: past
        # the listen backlog the kernel may hand the server a later connection first.
        wait_for(lambda: slots._value == 0, timeout=30, what="all 32 slots taken")
        waiter = socket.create_connection(("127.0.0.1", port), timeout=0.3)
        waiter.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        with pytest.raises(TimeoutError):
            waiter.recv(64)                 # queued, not served: no slot
        waiter.settimeout(10)
        idle.pop().close()                  # a slot frees: the queued request is served
        assert int(waiter.recv(64).split()[1]) == 200
    finally:
        for sock in [*idle, *([waiter] if waiter else [])]:
            sock.close()


def test_a_silent_connection_is_closed_after_one_read_timeout(board, short_timers):
    with socket.create_connection(("127.0.0.1", board.dashboard.port), timeout=20) as sock:
        assert sock.recv(64) == b""         # the server hung up on a client that sent nothing
    assert healthz(board.dashboard.port, 5) == 200


def test_a_request_trickled_in_under_the_read_timeout_is_cut_at_the_deadline(board, short_timers):
    with socket.create_connection(("127.0.0.1", board.dashboard.port), timeout=20) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        closed = False
        for i in range(40):                 # one header line every 0.2 s: each read well in time
            time.sleep(0.2)
            try:
                sock.sendall(f"X-Slow-{i}: 1\r\n".encode())
            except OSError:
                closed = True
                break
        if not closed:
            sock.settimeout(5)
            closed = sock.recv(64) == b""
        assert closed, "8 s of trickling went on past a 1.5 s deadline"


def test_an_envoy_admin_answer_over_16_mib_is_not_read(monkeypatch):
    """The dashboard reads each Envoy's admin counters at the port the Envoy names (not
    authenticated): an answer past the bound is refused, not buffered."""
    monkeypatch.setattr("rollway.envoy.process.MAX_ADMIN_BODY", 1024)   # same code path, smaller
    body = json.dumps({"stats": [{"name": "x" * 2000, "value": 1}]}).encode()

    class Huge(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Huge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(OSError, match="more than 1024 bytes"):
            admin_counters("127.0.0.1", server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def api(tmp_path):
    replica = Replica(f"file://{tmp_path}/store", xds=True, token=TOKEN, sample_size=4000)
    yield replica
    replica.close()


def test_an_xds_request_over_1_mib_ends_that_stream_only(api):
    channel = grpc.insecure_channel(f"127.0.0.1:{api.xds.port}")
    call = channel.stream_stream(ADS_METHOD, request_serializer=bytes, response_deserializer=bytes)
    big = b"\x0a" + _varint(MAX_REQUEST + 10) + b"v" * (MAX_REQUEST + 10)   # version_info, 1 MiB + 10
    with pytest.raises(grpc.RpcError) as error:
        list(call(iter([big]), timeout=10))
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    channel.close()
    stub = api.client()
    stub.Push(pb.PushRequest(document=json.dumps(ROUTEMAP), author="t", reason="r"), metadata=WRITE)
    assert stub.Get(pb.GetRequest(service="web")).revision == 1        # the server serves on


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_a_third_validate_at_once_is_refused(api, monkeypatch):
    stub = api.client()
    release, entered = threading.Event(), threading.Semaphore(0)
    real = api.plane.validate

    def slow(*args, **kwargs):
        entered.release()
        release.wait(20)
        return real(*args, **kwargs)

    monkeypatch.setattr(api.plane, "validate", slow)
    request = pb.ValidateRequest(document=json.dumps(ROUTEMAP), sample_size=100)
    running = [stub.Validate.future(request, timeout=30) for _ in range(MAX_VALIDATING)]
    for _ in range(MAX_VALIDATING):
        assert entered.acquire(timeout=10)
    with pytest.raises(grpc.RpcError) as error:
        stub.Validate(request, timeout=10)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    release.set()
    assert all(f.result().sample_size == 100 for f in running)
    assert stub.Validate(request, timeout=30).sample_size == 100        # a place is free again
    with pytest.raises(grpc.RpcError) as error:
        stub.Validate(pb.ValidateRequest(document=json.dumps(ROUTEMAP), sample_size=MAX_SAMPLE + 1))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "sample_size" in error.value.details()


def test_a_rollback_without_a_token_is_refused_and_changes_nothing(api):
    stub = api.client()
    stub.Push(pb.PushRequest(document=json.dumps(ROUTEMAP), author="t", reason="r"), metadata=WRITE)
    changed = {**ROUTEMAP, "stages": [{**ROUTEMAP["stages"][0], "weight": 7}, ROUTEMAP["stages"][1]]}
    stub.Push(pb.PushRequest(document=json.dumps(changed), expected_revision=1, author="t", reason="r"),
              metadata=WRITE)
    for metadata, code in [((), grpc.StatusCode.UNAUTHENTICATED),
                           ((("authorization", "Bearer wrong"),), grpc.StatusCode.PERMISSION_DENIED)]:
        with pytest.raises(grpc.RpcError) as error:
            stub.Rollback(pb.RollbackRequest(service="web", to_revision=1, expected_revision=2), metadata=metadata)
        assert error.value.code() == code
    assert stub.Get(pb.GetRequest(service="web")).revision == 2 and len(api.store.history("web")) == 2


def test_a_server_started_without_a_token_refuses_every_write(tmp_path):
    replica = Replica(f"file://{tmp_path}/store", xds=False, token=None)
    try:
        stub = replica.client()
        calls = [lambda md: stub.Push(pb.PushRequest(document=json.dumps(ROUTEMAP)), metadata=md),
                 lambda md: stub.Rollback(pb.RollbackRequest(service="web", to_revision=1), metadata=md)]
        for call in calls:
            for metadata in [(), (("authorization", "Bearer anything"),)]:
                with pytest.raises(grpc.RpcError) as error:
                    call(metadata)
                assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert "no operator token configured" in error.value.details()
        assert replica.store.services() == []
        assert stub.Validate(pb.ValidateRequest(document=json.dumps(ROUTEMAP), sample_size=100)).sample_size == 100
    finally:
        replica.close()
