"""An operator's halt and resume (``rollway deploy halt|resume``) over the real gRPC API:
token-guarded, recorded in the deploy state with who, why and when, and applied by the
leader: the halted version gets no new sessions, and with ``rollback`` the deploy turns
back at once (capacity alone never turns a deploy back)."""

from __future__ import annotations

import json

import grpc
import pytest

from rollway.model.deploy_state import DeployState
from rollway.proto import routemap_pb2 as pb
from rollway.sources.serverset import member_json

from conftest import wait_for
from examples import ROUTEMAP
from harness import Replica

# Seconds each (servers, subprocesses, whole simulated deploys): not in `pytest -m unit`.
pytestmark = [pytest.mark.slow]

TOKEN = "operator-token-for-halts"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


@pytest.fixture
def api(store_url):
    replica = Replica(store_url, xds=False, token=TOKEN, dashboard=True)
    stub = replica.client()
    stub.store, stub.plane, stub.http_port = replica.store, replica.plane, replica.server.http_port
    stub.Push(pb.PushRequest(document=json.dumps(ROUTEMAP), expected_revision=0, author="t", reason="r"),
              metadata=AUTH)
    yield stub
    replica.close()


def status(stub) -> pb.Status:
    stream = stub.WatchStatus(pb.WatchStatusRequest(service="web"), timeout=10)
    message = next(iter(stream))
    stream.cancel()
    return message


def prod(stub) -> dict:
    message = status(stub)
    config = json.loads(message.filter_config) if message.filter_config else {"stages": []}
    return next((s for s in config["stages"] if s["name"] == "prod"), {})


def test_halt_and_resume_need_the_token_and_are_recorded(api):
    request = pb.HaltRequest(service="web", version="v2", rollback=True, author="alice", reason="5xx on checkout")
    for metadata, code in [((), grpc.StatusCode.UNAUTHENTICATED),
                           ((("authorization", "Bearer wrong"),), grpc.StatusCode.PERMISSION_DENIED)]:
        with pytest.raises(grpc.RpcError) as error:
            api.Halt(request, metadata=metadata)
        assert error.value.code() == code and TOKEN not in error.value.details()
    assert api.store.read_deploy_state("web")[0] is None or not DeployState.from_json(
        api.store.read_deploy_state("web")[0]).halts                      # nothing written
    halts = api.Halt(request, metadata=AUTH).halts
    assert [(h.version, h.rollback, h.author, h.reason) for h in halts] == [("v2", True, "alice", "5xx on checkout")]
    state = DeployState.from_json(api.store.read_deploy_state("web")[0])
    assert state.halts["v2"].who == "alice" and state.halts["v2"].at > 0
    assert [(e["event"], e["version"], e["who"]) for e in state.halt_log] == [("halt", "v2", "alice")]
    wait_for(lambda: [h.version for h in status(api).halts] == ["v2"], what="the status to list the halt")
    # Bad input changes nothing and says what is wrong.
    for bad, code, words in [(pb.HaltRequest(service="web", version="v 2"), grpc.StatusCode.INVALID_ARGUMENT, "version"),
                             (pb.HaltRequest(service="nosuch", version="v2"), grpc.StatusCode.NOT_FOUND, "nosuch"),
                             (pb.HaltRequest(service="web", version="v3", reason="x" * 5000),
                              grpc.StatusCode.INVALID_ARGUMENT, "reason")]:
        with pytest.raises(grpc.RpcError) as error:
            api.Halt(bad, metadata=AUTH)
        assert error.value.code() == code and words in error.value.details(), error.value.details()
    assert list(DeployState.from_json(api.store.read_deploy_state("web")[0]).halts) == ["v2"]
    with pytest.raises(grpc.RpcError) as error:
        api.Resume(pb.ResumeRequest(service="web", version="v2"))
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert not api.Resume(pb.ResumeRequest(service="web", version="v2", author="bob", reason="fixed"),
                          metadata=AUTH).halts
    with pytest.raises(grpc.RpcError) as error:
        api.Resume(pb.ResumeRequest(service="web", version="v2"), metadata=AUTH)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND and "not halted" in error.value.details()
    log = DeployState.from_json(api.store.read_deploy_state("web")[0]).halt_log
    assert [(e["event"], e["who"], e["why"]) for e in log] == [("halt", "alice", "5xx on checkout"),
                                                              ("resume", "bob", "fixed")]


def test_how_many_versions_may_be_halted_at_once_is_bounded(api):
    """Each halt is kept in the service's deploy state record: one past the bound is refused
    naming it, and nothing is stored; halting an already halted version again still fits."""
    api.plane.MAX_HALTS = 3
    for version in ("v1", "v2", "v3"):
        api.Halt(pb.HaltRequest(service="web", version=version), metadata=AUTH)
    with pytest.raises(grpc.RpcError) as error:
        api.Halt(pb.HaltRequest(service="web", version="v4"), metadata=AUTH)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "3 halted versions" in error.value.details()
    assert sorted(DeployState.from_json(api.store.read_deploy_state("web")[0]).halts) == ["v1", "v2", "v3"]
    assert len(api.Halt(pb.HaltRequest(service="web", version="v3", reason="again"), metadata=AUTH).halts) == 3


def test_an_operators_rollback_turns_the_deploy_back_and_the_version_gets_no_new_sessions(api):
    store = api.store
    hosts = [store.announce("/discovery/web/prod", member_json("10.0.0.1", 8000 + i, "v1")) for i in range(8)]
    wait_for(lambda: [v["capacity"] for v in prod(api).get("versions", [])] == [8], what="v1 served")
    hosts.pop().close()
    hosts.append(store.announce("/discovery/web/prod", member_json("10.0.0.2", 9000, "v2")))
    wait_for(lambda: prod(api).get("direction") == {"state": "forward", "target": "v2"}, what="forward to v2")
    # v1 regains hosts while v2 loses one (a rollback done by hand, or noise): not a turn.
    hosts.append(store.announce("/discovery/web/prod", member_json("10.0.0.1", 8100, "v1")))
    hosts.append(store.announce("/discovery/web/prod", member_json("10.0.0.1", 8101, "v1")))
    wait_for(lambda: [v["capacity"] for v in prod(api)["versions"]] == [9, 1], what="v1 regained hosts")
    assert prod(api)["direction"]["state"] != "rollback"
    assert not api.WaitConverged(pb.WaitConvergedRequest(service="web", timeout_seconds=5)).halts
    api.Halt(pb.HaltRequest(service="web", version="v2", rollback=True, author="ops", reason="bad build"),
             metadata=AUTH)
    wait_for(lambda: prod(api)["direction"] == {"state": "rollback", "target": "v1"}, what="the rollback")
    v2 = next(v for v in prod(api)["versions"] if v["name"] == "v2")
    assert v2.get("admitted") is False                    # no new sessions; its own stay until moved back
    waited = api.WaitConverged(pb.WaitConvergedRequest(service="web", timeout_seconds=5))
    assert [h.version for h in waited.halts] == ["v2"]
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{api.http_port}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert 'rollway_version_halted{reason="operator rollback",service="web",stage="prod",version="v2"} 1.0' \
        in metrics, [line for line in metrics.splitlines() if "halted" in line]
    assert 'version="v1"' not in "".join(line for line in metrics.splitlines() if "rollway_version_halted{" in line)
    # The dashboard's state marks the halted version (its page shows it on the stage).
    with urllib.request.urlopen(f"http://127.0.0.1:{api.http_port}/api/state", timeout=10) as response:
        state = json.loads(response.read())
    halted = {v["name"]: v["halted"] for svc in state["services"] if svc["service"] == "web"
              for stage in svc["stages"] if stage["name"] == "prod" for v in stage["versions"]}
    assert halted["v2"]["reason"] == "bad build" and halted["v2"]["rollback"] and halted["v1"] is None
    for h in hosts:
        h.close()


def test_draining_the_baselines_last_host_while_the_new_version_is_halted_is_refused(tmp_path):
    """`serverset drain` of the last hosts of the versions that are not halted would leave a
    halted version's sessions nowhere to go back: refused, nothing changed, unless forced."""
    from rollway.sources.store import open_store
    from rollway.tools.drain import DrainError, drain

    store = open_store(f"file://{tmp_path}/store")
    store.start()
    handles = [store.announce("/d/web", member_json("10.0.0.1", port, version))
               for port, version in ((8000, "v1"), (8001, "v1"), (9000, "v2"))]
    converged = lambda: (True, [])   # noqa: E731
    try:
        assert len(drain(store, "/d/web", [("10.0.0.1", 8000)], converged, halted={"v2"})) == 1
        before = store.read_members("/d/web")
        with pytest.raises(DrainError, match=r"would leave only the halted v2 at /d/web.*nothing changed"):
            drain(store, "/d/web", [("10.0.0.1", 8001)], converged, halted={"v2"})
        assert store.read_members("/d/web") == before                 # still ALIVE
        assert len(drain(store, "/d/web", [("10.0.0.1", 8001)], converged)) == 1         # no halt: drains
        handles.append(store.announce("/d/web", member_json("10.0.0.1", 8002, "v1")))
        assert len(drain(store, "/d/web", [("10.0.0.1", 8002)], converged, halted={"v2"}, force=True)) == 1
    finally:
        for handle in handles:
            handle.close()
        store.stop()
