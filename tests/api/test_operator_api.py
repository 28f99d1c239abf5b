"""The operator gRPC API over a real grpcio server and client on loopback."""

from __future__ import annotations

import json
import threading

import grpc
import pytest

from rollway.proto import routemap_pb2 as pb
from rollway.sources.serverset import member_json

from conftest import wait_for
from examples import ROUTEMAP
from harness import Replica

# Seconds each (servers, subprocesses, whole simulated deploys): not in `pytest -m unit`.
pytestmark = [pytest.mark.slow]

TOKEN = "operator-token-for-tests"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


@pytest.fixture
def api(store_url):
    replica = Replica(store_url, xds=False, token=TOKEN, sample_size=4000)
    stub = replica.client()
    stub.store, stub.plane, stub.servicer = replica.store, replica.plane, replica.api.rollway_servicer
    yield stub
    replica.close()


def push(stub, doc, expected, metadata=AUTH):
    return stub.Push(pb.PushRequest(document=json.dumps(doc), expected_revision=expected, author="t", reason="r"),
                     metadata=metadata)


def test_a_write_without_a_token_is_refused(api):
    for metadata, code in [((), grpc.StatusCode.UNAUTHENTICATED),
                           ((("authorization", "Bearer wrong"),), grpc.StatusCode.PERMISSION_DENIED),
                           ((("authorization", TOKEN),), grpc.StatusCode.UNAUTHENTICATED)]:
        with pytest.raises(grpc.RpcError) as error:
            push(api, ROUTEMAP, 0, metadata)
        assert error.value.code() == code
        assert TOKEN not in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        api.Get(pb.GetRequest(service="web"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND  # nothing was written


def test_push_get_history_rollback(api):
    first = push(api, ROUTEMAP, 0).revision
    assert first.revision == 1 and json.loads(first.document)["service"] == "web"
    changed = json.loads(json.dumps(ROUTEMAP))
    changed["stages"][0]["weight"] = 9
    push(api, changed, 1)
    assert json.loads(api.Get(pb.GetRequest(service="web")).document)["stages"][0]["weight"] == 9
    assert json.loads(api.Get(pb.GetRequest(service="web", revision=1)).document)["stages"][0]["weight"] == 1
    assert [r.revision for r in api.History(pb.HistoryRequest(service="web")).revisions] == [1, 2]
    back = api.Rollback(pb.RollbackRequest(service="web", to_revision=1, expected_revision=2, author="ops"),
                        metadata=AUTH).revision
    assert back.revision == 3 and json.loads(back.document)["stages"][0]["weight"] == 1


def test_errors_are_proper_status_codes_with_clear_messages(api):
    bad = json.loads(json.dumps(ROUTEMAP))
    bad["stages"][1]["weight"] = -2
    with pytest.raises(grpc.RpcError) as error:
        push(api, bad, 0)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "stages[1].weight: must be a number >= 0" in error.value.details()
    push(api, ROUTEMAP, 0)
    with pytest.raises(grpc.RpcError) as error:
        push(api, ROUTEMAP, 0)
    assert error.value.code() == grpc.StatusCode.ABORTED and "at revision 1, not 0" in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        api.Get(pb.GetRequest(service="web", revision=42))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as error:
        api.Rollback(pb.RollbackRequest(service="web", to_revision=9, expected_revision=1), metadata=AUTH)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_validate_reports_the_share_of_sessions_that_would_move(api):
    store = api.store
    hosts = [store.announce("/discovery/web/prod", member_json("10.0.0.1", 8000 + i, "v1")) for i in range(3)]
    hosts += [store.announce("/discovery/web/canary", member_json("10.0.0.2", 9000, "v1"))]
    push(api, ROUTEMAP, 0)   # canary 1%, prod 99%
    wait_for(lambda: all(s["versions"] for s in api.plane.filter_config("web").to_json()["stages"]), what="capacity")
    ramp = json.loads(json.dumps(ROUTEMAP))
    ramp["stages"][0]["weight"], ramp["stages"][1]["weight"] = 10, 90
    result = api.Validate(pb.ValidateRequest(document=json.dumps(ramp), sample_size=20000))
    by_stage = {s.stage: s for s in result.stages}
    assert abs(by_stage["prod"].stage_change_share - 0.09) < 0.01   # 9% of sessions leave prod
    assert by_stage["canary"].stage_change_share == 0
    assert abs(by_stage["canary"].proposed_share - 0.10) < 0.01
    assert abs(result.total_change_share - 0.09) < 0.01
    assert api.Get(pb.GetRequest(service="web")).revision == 1      # a dry run writes nothing
    for h in hosts:
        h.close()


def test_watch_status_streams_capacity_direction_and_generation(api):
    push(api, ROUTEMAP, 0)
    stream = api.WatchStatus(pb.WatchStatusRequest(service="web"), timeout=30)
    seen = []
    done = threading.Event()

    def reader():
        for status in stream:
            seen.append(status)
            prod = next(s for s in status.stages if s.name == "prod")
            if prod.direction == "forward" and prod.target == "v2":
                done.set()
                return

    threading.Thread(target=reader, daemon=True).start()
    wait_for(lambda: seen, what="the first status")
    store = api.store
    hosts = [store.announce("/discovery/web/prod", member_json("10.0.0.1", 8000 + i, "v1")) for i in range(4)]
    wait_for(lambda: any(v.capacity == 4 for s in seen[-1].stages for v in s.versions), what="capacity 4")
    hosts.pop().close()
    hosts.append(store.announce("/discovery/web/prod", member_json("10.0.0.9", 8100, "v2")))
    assert done.wait(15), [str(s) for s in seen[-2:]]
    assert seen[-1].generation > seen[0].generation and seen[-1].revision == 1
    assert json.loads(seen[-1].filter_config)["stages"][1]["direction"]["target"] == "v2"
    stream.cancel()
    for h in hosts:
        h.close()


def test_wait_converged_is_bounded_in_time_and_in_concurrent_callers(api, monkeypatch):
    """WaitConverged needs no token: its timeout is bounded, and so is how many may wait at
    once (half the server's workers), so waiting clients never starve Push."""
    push(api, ROUTEMAP, 0)
    state = api.plane.service("web")
    monkeypatch.setattr(state, "gate", lambda: (False, ["a test step that never ends"]))
    with pytest.raises(grpc.RpcError) as error:
        api.WaitConverged(pb.WaitConvergedRequest(service="web", timeout_seconds=7200))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "timeout_seconds" in error.value.details()
    # Long enough that none of the eight expires before the calls below meet the limit.
    waiting = [api.WaitConverged.future(pb.WaitConvergedRequest(service="web", timeout_seconds=15)) for _ in range(8)]
    # All eight admitted before the ninth is tried: otherwise a ninth call that arrives first
    # takes a slot and one of the eight is the one refused.
    wait_for(lambda: api.servicer.waiting == 8, what="eight waiting calls")
    with pytest.raises(grpc.RpcError) as error:
        for _ in range(3):        # the ninth is refused
            api.WaitConverged(pb.WaitConvergedRequest(service="web", timeout_seconds=0.2))
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    rev = api.Get(pb.GetRequest(service="web"))          # other calls still get a worker
    assert rev.revision == 1
    results = [w.result(timeout=30) for w in waiting]
    assert [r.converged for r in results] == [False] * 8 and results[0].outstanding == ["a test step that never ends"]
