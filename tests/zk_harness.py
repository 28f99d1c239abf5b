"""A real ZooKeeper server (Debian's `zookeeper` package) for tests, on a loopback port.

Started with plain `java` and the packaged jars; `stop()`/`start()` keep the data
directory, so a restart is the same ensemble coming back. If the server cannot start, the
test fails with ZooKeeper's own log.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from kazoo.client import KazooClient

from envoy_harness import free_port, stop_process

CLASSPATH = ":".join([
    "/etc/zookeeper/conf", "/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-api.jar",
    "/usr/share/java/log4j-1.2.jar",
    # Netty for TLS clients (secureClientPort): zookeeper.jar's manifest names some of its
    # jars, not these.
    "/usr/share/java/netty-codec.jar", "/usr/share/java/netty-resolver.jar",
    "/usr/share/java/netty-transport-native-unix-common.jar",
])


def tls_config(cert: str, key: str, ca: str, keystore: Path) -> str:
    """zoo.cfg lines for clients over TLS only (``secureClientPort``), with Netty, PEM key and
    trust stores, and client certificates required."""
    keystore.write_text(Path(key).read_text() + Path(cert).read_text())
    return ("serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n"
            f"ssl.keyStore.location={keystore}\nssl.keyStore.type=PEM\n"
            f"ssl.trustStore.location={ca}\nssl.trustStore.type=PEM\n"
            "ssl.clientAuth=need\nssl.clientHostnameVerification=false\n")


class ZooKeeperServer:
    """``tls`` (server certificate, its key, the CA): clients over TLS only, on
    ``secure_port``; the plaintext port then answers nothing but ``ruok`` (readiness)."""

    def __init__(self, workdir: Path, tls: tuple[str, str, str] | None = None):
        self.workdir = workdir
        self.port = free_port()
        self.secure_port = free_port() if tls else None
        self.data = workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "zoo.cfg"
        self.config.write_text(
            f"tickTime=200\ndataDir={self.data}\nclientPort={self.port}\nclientPortAddress=127.0.0.1\n"
            "admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\n"
            "minSessionTimeout=400\nmaxSessionTimeout=30000\n"
            + (f"secureClientPort={self.secure_port}\n" + tls_config(*tls, workdir / "keystore.pem") if tls else ""))
        self.process: subprocess.Popen | None = None
        self.log = workdir / "zookeeper.log"

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _ruok(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"ruok")
                return sock.recv(4) == b"imok"
        except OSError:
            return False

    def start(self, timeout: float = 30.0) -> ZooKeeperServer:
        from tiers import require_tier

        require_tier("zookeeper", "ZooKeeper")
        java = shutil.which("java")
        if java is None or not Path("/usr/share/java/zookeeper.jar").exists():
            raise RuntimeError("ZooKeeper needs Debian's zookeeper package (make setup installs it)")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [java, "-Xmx256m", "-cp", CLASSPATH, f"-Dzookeeper.log.dir={self.workdir}",
                 "org.apache.zookeeper.server.ZooKeeperServerMain", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ZooKeeper exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            if self._ruok():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"ZooKeeper did not start in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


def expire_session(client: KazooClient, hosts: str) -> None:
    """Expires `client`'s session for real: a second connection with the same session id
    closes it, exactly what the server does when a session times out."""
    session_id, password = client.client_id
    other = KazooClient(hosts=hosts, client_id=(session_id, password))
    other.start()
    other.stop()
    other.close()
