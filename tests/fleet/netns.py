"""Hosts for the fleet test: Linux network namespaces joined by a bridge.

Each host is a namespace with its own address on 10.77.0.0/24 and an
``/etc/netns/<ns>/hosts`` naming every host (``ip netns exec`` mounts it over
/etc/hosts), so parts reach each other by name. The bridge lives in a namespace of its
own: nothing the test makes touches the machine's own network. Everything is removed by
``close()``; if namespaces cannot be made (not root, no ``ip``), ``Network`` raises with
the reason, so the test fails loudly rather than skipping.

    net = Network(["zk1", "cp1", "env1"])
    proc = net.spawn("cp1", ["rollway", "serve", ...], log_path)
    net.close()
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

SUBNET = "10.77.0"


def _run(*args: str) -> str:
    result = subprocess.run(list(args), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


class Network:
    def __init__(self, hosts: list[str], tag: str | None = None):
        if os.geteuid() != 0:
            raise RuntimeError("the fleet test makes network namespaces and needs root (CI runs as root)")
        if shutil.which("ip") is None:
            raise RuntimeError("the fleet test needs iproute2's `ip` (apt-get install iproute2)")
        self.tag = tag or f"rwf{os.getpid() % 100000}"
        self.hosts = list(hosts)
        self.address = {name: f"{SUBNET}.{i + 10}" for i, name in enumerate(self.hosts)}
        self.processes: list[subprocess.Popen] = []
        self.switch = f"{self.tag}-sw"
        self.made: list[str] = []
        try:
            self._build()
        except Exception:
            self.close()
            raise

    def ns(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def _build(self) -> None:
        _run("ip", "netns", "add", self.switch)
        self.made.append(self.switch)
        _run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.switch, "link", "set", "br0", "up")
        hosts_file = "127.0.0.1 localhost\n" + "".join(f"{a} {h}\n" for h, a in self.address.items())
        for i, host in enumerate(self.hosts):
            ns = self.ns(host)
            _run("ip", "netns", "add", ns)
            self.made.append(ns)
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts_file)
            inner, outer = f"{self.tag[-6:]}h{i}", f"{self.tag[-6:]}s{i}"
            _run("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
            _run("ip", "link", "set", inner, "netns", ns)
            _run("ip", "link", "set", outer, "netns", self.switch)
            _run("ip", "-n", ns, "link", "set", inner, "name", "eth0")
            _run("ip", "-n", ns, "addr", "add", f"{self.address[host]}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", self.switch, "link", "set", outer, "master", "br0")
            _run("ip", "-n", self.switch, "link", "set", outer, "up")

    def spawn(self, host: str, argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
        """Runs ``argv`` on ``host`` (``ip netns exec`` execs it: the pid is the program's)."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns(host), *argv], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True)
        self.processes.append(proc)
        return proc

    def run(self, host: str, argv: list[str], timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns(host), *argv], capture_output=True, text=True,
                              timeout=timeout, env=env)

    def cut(self, host: str, peers: list[str]) -> None:
        """Silently drops everything ``host`` sends to ``peers`` (a link cut, not a refusal)."""
        for peer in peers:
            _run("ip", "-n", self.ns(host), "route", "add", "blackhole", f"{self.address[peer]}/32")

    def restore(self, host: str, peers: list[str]) -> None:
        for peer in peers:
            _run("ip", "-n", self.ns(host), "route", "del", "blackhole", f"{self.address[peer]}/32")

    def unplug(self, host: str) -> None:
        """The host vanishes from the network (a spot loss): its link goes down."""
        _run("ip", "-n", self.ns(host), "link", "set", "eth0", "down")

    def pids(self, host: str) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.ns(host)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def running(self) -> dict[str, list[int]]:
        """Every process still running in a namespace the test made, by host."""
        return {h: pids for h in self.hosts if self.made and (pids := self.pids(h))}

    def stop_all(self) -> None:
        """SIGTERM to every process the test started (SIGKILL after 10 s), and wait."""
        for proc in self.processes:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for proc in self.processes:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def close(self) -> list[str]:
        """Stops every process, removes the namespaces; returns the hosts where something was
        still running after SIGKILL (should be none)."""
        self.stop_all()
        leftovers = []
        for ns in self.made:
            host = ns[len(self.tag) + 1:]
            pids = self.pids(host) if ns != self.switch else []
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if pids:
                time.sleep(0.2)
                if self.pids(host):
                    leftovers.append(host)
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        self.made = []
        return leftovers
