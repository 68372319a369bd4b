"""A real Ray cluster of two nodes on this machine, for the tests and scripts/bench_cluster.py.

Two `ray start --block` processes, a head and a second node (1 CPU each unless told), each with
its own temp dir under `base`, token authentication on with a fresh token given through the
environment (nothing is written to the home folder), usage stats off. Ray turns
`--node-ip-address=127.0.0.1` into this machine's own address, so traffic stays on this machine.
Stopped by pid: SIGTERM to `ray start --block` stops its node's processes.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from cifar_core.testing.procs import free_port


def cluster_env() -> dict:
    """The environment of the nodes and of the drivers that join them: token auth on."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("RAY_ADDRESS", None)
    return env


class Cluster:
    def __init__(self, base: Path, env: dict, cpus: int = 1, nodes: int = 2):
        self.base, self.env, self.cpus = Path(base), env, cpus
        self.base.mkdir(parents=True, exist_ok=True)
        self.ray = str(Path(sys.executable).parent / "ray")
        self.port = free_port()
        from ray._private.services import get_node_ip_address

        self.address = f"{get_node_ip_address()}:{self.port}"  # what 127.0.0.1 becomes
        self.head = self._start("head", "--head", f"--port={self.port}", f"--ray-client-server-port={free_port()}",
                                "--include-dashboard=false")
        self.nodes = [self._start(f"node{i}", f"--address={self.address}") for i in range(1, nodes)]
        self.node = self.nodes[0] if self.nodes else None

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.base / f"{name}.log", "ab")
        return subprocess.Popen(
            [self.ray, "start", "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={self.cpus}",
             "--disable-usage-stats", f"--dashboard-agent-listen-port={free_port()}",
             f"--temp-dir={self.base / name}", *args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def alive_nodes(self) -> int:
        out = subprocess.run([self.ray, "status", f"--address={self.address}"], env=self.env, capture_output=True,
                             text=True, timeout=60).stdout
        active = out.split("Active:")[1].split("Pending:")[0] if "Active:" in out else ""
        return active.count("node_")

    def node_ids(self) -> list[str]:
        """The hex ids of the cluster's live nodes."""
        import re

        out = subprocess.run([self.ray, "status", f"--address={self.address}"], env=self.env, capture_output=True,
                             text=True, timeout=60).stdout
        return re.findall(r"node_([0-9a-f]+)", out)

    def stop_node(self) -> None:
        """Pull the second node out as a machine that dies would: SIGKILL to its whole process
        group (raylet, its workers and the `ray start` process), at once. (SIGTERM lets it wind
        down for seconds while it goes on training.)"""
        try:
            os.killpg(self.node.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.node.wait(timeout=30)

    def restart_node(self) -> None:
        """Start the second node again after `stop_node` (a new node to Ray, in a new temp dir)."""
        self._restarts = getattr(self, "_restarts", 0) + 1
        self.nodes[0] = self.node = self._start(f"node1-{self._restarts}", f"--address={self.address}")

    def trainer_pids(self) -> list[int]:
        """The live warm Trainer processes on this cluster's nodes (Ray names them `ray::Trainer`)."""
        ours = set(self.pids())
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmdline = (stat.parent / "cmdline").read_bytes()
            except (OSError, IndexError):
                continue
            # a Ray worker runs in its node's `ray start` session: its session id is that pid
            if cmdline.startswith(b"ray::Trainer") and fields[0] != "Z" and int(fields[3]) in ours:
                found.append(int(stat.parent.name))
        return sorted(found)

    def stop(self) -> None:
        for proc in (*self.nodes, self.head):
            stop(proc)

    def pids(self) -> list[int]:
        return [p.pid for p in (self.head, *self.nodes)]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
