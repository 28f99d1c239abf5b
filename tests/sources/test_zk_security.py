"""A locked-down ZooKeeper (issue 29): a real server taking clients over TLS (client
certificates required) beside a plaintext port, Rollway's identities from credential files,
and what a client without them can and cannot do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from rollway.sources.member_formats import ServersetSpec, announcement
from rollway.sources.store import open_store
from rollway.sources.zk_security import ZkCredentials, ZkTls, acl_problems, read_credentials

from conftest import wait_for
from envoy_harness import free_port
from harness import Replica
from pki import CA
from zk_harness import ZooKeeperServer

pytestmark = [pytest.mark.zookeeper]
CP = ZkCredentials("rollway-cp", "cp-secret-8f1e2d")
ANNOUNCER = ZkCredentials("web-hosts", "hosts-secret-77a0c3")
ROUTEMAP = {"service": "web", "stages": [{"name": "prod", "weight": 1, "mode": "rolling",
                                          "serverset": "/discovery/web/prod"}]}


@pytest.fixture(scope="module")
def secure_zk(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("zk-tls")
    ca = CA(workdir / "pki")
    server = ca.issue("zookeeper", ips=("127.0.0.1",))
    client = ca.issue("rollway", client=True)
    zk = ZooKeeperServer(workdir / "zk", tls=(server.cert, server.key, ca.cert)).start()
    yield zk, ZkTls(ca.cert, client.cert, client.key)
    zk.stop()


def auth_file(directory, credentials: ZkCredentials) -> str:
    path = directory / f"{credentials.user}.auth"
    path.write_text(f"{credentials.user}:{credentials.password}\n")
    path.chmod(0o600)
    return str(path)


def stranger(zk: ZooKeeperServer, chroot: str, credentials: ZkCredentials | None = None) -> KazooClient:
    """A kazoo client on the plaintext port, with no credentials (or someone else's)."""
    client = KazooClient(hosts=f"127.0.0.1:{zk.port}{chroot}",
                         auth_data=credentials.auth_data() if credentials else None)
    client.start(timeout=15)
    return client


def test_credentials_come_from_a_file_and_are_checked_without_being_quoted(tmp_path):
    good = auth_file(tmp_path, CP)
    assert read_credentials(good) == (CP, None)
    assert CP.password not in repr(CP)
    loose = tmp_path / "loose.auth"
    loose.write_text("rollway-cp:cp-secret-8f1e2d\n")
    loose.chmod(0o644)
    assert "chmod 600" in (read_credentials(str(loose))[1] or "")
    for bad in ("no-colon-secretXYZ", "user with space:secretXYZ", "user:", "a:secretXYZ\nc:d"):
        broken = tmp_path / "bad.auth"
        broken.write_text(bad)
        with pytest.raises(ValueError) as error:
            read_credentials(str(broken))
        assert "user:password" in str(error.value) and "secretXYZ" not in str(error.value)
    with pytest.raises(ValueError, match="cannot read"):
        read_credentials(str(tmp_path / "missing.auth"))


def test_nobody_but_the_control_plane_writes_rollway_and_nobody_but_the_announcers_their_serverset(secure_zk):
    zk, tls = secure_zk
    chroot = f"/t-{uuid.uuid4().hex[:8]}"
    url = f"zk+tls://127.0.0.1:{zk.secure_port}{chroot}"
    announcers = open_store(url, credentials=ANNOUNCER, tls=tls)
    announcers.start()
    replica = Replica(url, store_options={"credentials": CP, "tls": tls})
    try:
        replica.plane.push(json.dumps(ROUTEMAP), 0, "alice", "locked down")
        made = announcement(ServersetSpec("/discovery/web/prod"), "10.0.0.1", 8080, "v1")
        replica.handles.append(announcers.announce(made.path, made.data, made.name))
        wait_for(lambda: (config := replica.plane.filter_config("web")) is not None and
                 [v.name for s in config.rolling_stages() for v in s.versions] == ["v1"],
                 timeout=20, what="the announcer's member read by the control plane")
        wait_for(lambda: replica.store.read_deploy_state("web")[0] is not None, what="the deploy state written")
        assert replica.store.security_problems(["web"]) == []
        member = next(iter(replica.store.read_members("/discovery/web/prod")))

        anyone = stranger(zk, chroot)
        control_plane = stranger(zk, chroot, CP)
        try:
            assert anyone.get("/rollway/web/routemap")[0]                      # anyone reads
            attempts = [
                lambda c: c.set("/rollway/web/routemap", b"{}"),
                lambda c: c.set("/rollway/web/deploy", b"{}"),
                lambda c: c.create("/rollway/web/history/0000000099", b"{}"),
                lambda c: c.delete("/rollway/web/leader"),
                lambda c: c.create("/rollway/evil", b""),
            ]
            for attempt in attempts:
                with pytest.raises(NoAuthError):
                    attempt(anyone)
            for client in (anyone, control_plane):                            # another's serverset
                with pytest.raises(NoAuthError):
                    client.create("/discovery/web/prod/member_9999999999", made.data)
                with pytest.raises(NoAuthError):
                    client.set(f"/discovery/web/prod/{member}", b"{}")
                with pytest.raises(NoAuthError):
                    client.delete(f"/discovery/web/prod/{member}")
        finally:
            for client in (anyone, control_plane):
                client.stop()
                client.close()
    finally:
        replica.close()
        announcers.stop()


def test_a_plaintext_client_cannot_reach_the_tls_port(secure_zk):
    zk, _ = secure_zk
    client = KazooClient(hosts=f"127.0.0.1:{zk.secure_port}", connection_retry={"max_tries": 2})
    try:
        with pytest.raises(Exception, match="[Tt]ime"):
            client.start(timeout=3)
    finally:
        client.stop()
        client.close()


def test_a_store_without_the_expected_acls_is_reported_at_start(secure_zk, caplog):
    zk, tls = secure_zk
    chroot = f"/t-{uuid.uuid4().hex[:8]}"
    old = Replica(f"zk://127.0.0.1:{zk.port}{chroot}")          # before the lock-down: no credentials
    old.plane.push(json.dumps(ROUTEMAP), 0, "alice", "open")
    old.close()
    assert any("no credentials" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    caplog.clear()
    locked = Replica(f"zk+tls://127.0.0.1:{zk.secure_port}{chroot}", store_options={"credentials": CP, "tls": tls})
    try:
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "store:" in r.getMessage()]
        assert any("/rollway/web/routemap: anyone may" in w for w in warned), warned
        assert any("identity 'rollway-cp' may not change it" in w for w in warned), warned
        assert all(CP.password not in r.getMessage() for r in caplog.records)
    finally:
        locked.close()
    assert acl_problems("/x", [], CP) == ["/x: the control plane's identity 'rollway-cp' may not change it"]


def rollway(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rollway.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_serve_and_the_cli_work_over_tls_with_credentials_that_never_reach_a_log(secure_zk, tmp_path):
    zk, tls = secure_zk
    url = f"zk+tls://127.0.0.1:{zk.secure_port}/t-{uuid.uuid4().hex[:8]}"
    security = ["--zk-tls-ca", tls.ca, "--zk-tls-cert", tls.cert, "--zk-tls-key", tls.key]
    token = tmp_path / "token"
    token.write_text("an-operator-token\n")
    api = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "rollway.cli.main", "serve", "--store", url, "--zk-auth-file",
                              auth_file(tmp_path, CP), *security, "--api-port", str(api), "--xds-port", "0",
                              "--http-port", "0", "--token-file", str(token)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    announce = subprocess.Popen([sys.executable, "-m", "rollway.cli.main", "serverset", "announce", "--store", url,
                                 "--zk-auth-file", auth_file(tmp_path, ANNOUNCER), *security,
                                 "--path", "/discovery/web/prod", "--host", "10.0.0.1", "--port", "8080",
                                 "--version", "v1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs = []
    try:
        server = f"127.0.0.1:{api}"
        wait_for(lambda: rollway("routemap", "history", "web", "--server", server).stderr.startswith(
            "rollway: NOT_FOUND"), timeout=30, what="rollway serve over TLS to ZooKeeper")
        doc = tmp_path / "web.json"
        doc.write_text(json.dumps(ROUTEMAP))
        pushed = rollway("routemap", "push", str(doc), "--expected-revision", "0", "--server", server,
                         "--token-file", str(token))
        assert pushed.returncode == 0, pushed.stderr

        def capacity():
            out = rollway("status", "web", "--server", server, "--json")
            return json.loads(out.stdout)["stages"][0]["versions"] if out.returncode == 0 else None
        assert wait_for(lambda: capacity() == [{"name": "v1", "capacity": 1.0, "members": 1, "halted": None}],
                        timeout=30, what="the announcer's member through status")
        shown = rollway("serverset", "show", "--store", url, "--path", "/discovery/web/prod", *security, "--json")
        assert shown.returncode == 0 and json.loads(shown.stdout)["alive"] == 1, shown.stderr
        outputs += [pushed.stdout + pushed.stderr, shown.stdout + shown.stderr]
        without = rollway("serverset", "show", "--store", url, "--path", "/discovery/web/prod", "--json")
        assert without.returncode != 0                    # TLS without the CA and a client certificate: no
    finally:
        for proc in (announce, serve):
            proc.terminate()
            out, _ = proc.communicate(timeout=30)
            outputs.append(out)
    log = "\n".join(outputs) + (zk.log.read_text(errors="replace") if zk.log.exists() else "")
    assert "TLS" in outputs[-1] or "control plane on" in outputs[-1]
    for secret in (CP.password, ANNOUNCER.password):
        assert secret not in log, "a ZooKeeper password reached a log"
    assert os.stat(auth_file(tmp_path, CP)).st_mode & 0o077 == 0
