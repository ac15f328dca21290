"""Drive ``cluster.sh`` from Python: the test fixture and the benchmark share this.

One process at a time owns the cluster (the ports are fixed): :func:`owned_cluster`
takes an exclusive lock on a file beside the script's state file for as long as
the cluster runs, stops whatever an earlier run that died left behind, starts
the cluster, and stops it on the way out, whatever happened. The lock dies with
its process, so a killed run never blocks the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT = Path(__file__).resolve().with_name("cluster.sh")
#: AMQP port of node N is PORTS[N - 1].
PORTS = (5681, 5682, 5683)
NODES = (1, 2, 3)
#: Queue arguments of a quorum queue.
QUORUM = {"x-queue-type": "quorum"}
#: The script's state file (its default), and our lock beside it.
STATE_FILE = Path(
    os.environ.get("CARROT_CLUSTER_STATE", f"{tempfile.gettempdir()}/carrot-cluster-5681.state")
)
LOCK_FILE = STATE_FILE.with_suffix(".lock")

#: Upper bounds (seconds) on the script's subcommands.
START_TIMEOUT = 150.0
STOP_TIMEOUT = 60.0
KILL_TIMEOUT = 40.0
REVIVE_TIMEOUT = 90.0
CTL_TIMEOUT = 60.0
LOCK_TIMEOUT = 180.0


class ClusterError(RuntimeError):
    """A ``cluster.sh`` subcommand failed or the cluster is unusable."""


def port_answers(port: int, timeout: float = 1.0) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def cluster_available() -> str | None:
    """Why the cluster cannot run on this machine, or ``None`` when it can."""
    if shutil.which("dpkg") is None or shutil.which("runuser") is None:
        return "dpkg and runuser are needed to find and run the rabbitmq-server package"
    found = subprocess.run(
        ["dpkg", "-L", "rabbitmq-server"], capture_output=True, text=True, timeout=30
    )
    if found.returncode != 0:
        return "the rabbitmq-server package is not installed"
    if os.geteuid() != 0:
        return "cluster.sh runs the nodes as the rabbitmq user, which needs root"
    return None


@dataclass
class Cluster:
    """A running cluster of ours: its base directory and the script's subcommands."""

    base_dir: Path
    #: Nodes killed and not yet revived.
    down: set[int] = field(default_factory=set)

    @staticmethod
    def run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(
                [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"cluster.sh {' '.join(args)} took over {timeout:.0f} s") from exc
        if done.returncode != 0:
            raise ClusterError(
                f"cluster.sh {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
            )
        return done

    @property
    def ports(self) -> tuple[int, ...]:
        return PORTS

    @property
    def urls(self) -> list[str]:
        return [f"amqp://guest:guest@127.0.0.1:{port}//" for port in PORTS]

    def port(self, node: int) -> int:
        return PORTS[node - 1]

    def up(self) -> list[int]:
        """The nodes not killed, in order."""
        return [n for n in NODES if n not in self.down]

    def kill(self, node: int) -> None:
        """``kill -9`` node ``node``; returns once its process is gone."""
        self.run("kill", str(node), timeout=KILL_TIMEOUT)
        self.down.add(node)

    def revive(self, node: int) -> None:
        """Restart node ``node`` on its old data; returns once it serves AMQP."""
        self.run("revive", str(node), timeout=REVIVE_TIMEOUT)
        self.down.discard(node)

    def revive_all(self) -> None:
        for node in sorted(self.down):
            self.revive(node)

    def ctl(self, node: int, *args: str) -> str:
        """``rabbitmqctl -n cN@localhost ARGS`` on our cluster; its stdout."""
        return self.run("ctl", str(node), *args, timeout=CTL_TIMEOUT).stdout

    def leader(self, queue: str) -> int:
        """The node number that leads quorum queue ``queue`` (asked of a live node)."""
        out = self.ctl(self.up()[0], "list_queues", "name", "leader", "--formatter", "json")
        for row in json.loads(out):
            if row["name"] == queue:
                return int(row["leader"].split("@")[0].removeprefix("c"))
        raise ClusterError(f"no queue {queue!r} on the cluster")


def leftovers(base_dir: Path) -> list[str]:
    """What a stopped cluster left behind: beam processes, the directory, open ports."""
    found = []
    home = f"HOME={base_dir}/home".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "beam.smp":
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if home in environ:
            found.append(f"beam.smp pid {proc.name} of {base_dir}")
    if base_dir.exists():
        found.append(f"directory {base_dir}")
    found.extend(f"port {port} still answers" for port in PORTS if port_answers(port, 0.5))
    return found


@contextlib.contextmanager
def _locked(timeout: float) -> Iterator[None]:
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "a") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ClusterError(
                        f"another run has held {LOCK_FILE} (the cluster) for over {timeout:.0f} s"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def owned_cluster(lock_timeout: float = LOCK_TIMEOUT) -> Iterator[Cluster]:
    """Start the cluster for this process; always stop it and check nothing is left.

    :raises ClusterError: the cluster did not start (it is stopped again), or
        something of it outlived ``cluster.sh stop``.
    """
    with _locked(lock_timeout):
        # A run that died (SIGKILL, os._exit) may have left its cluster behind.
        Cluster.run("stop", timeout=STOP_TIMEOUT)
        base_dir = Path(tempfile.mkdtemp(prefix="carrot-cluster."))
        env_dir = os.environ.get("CARROT_CLUSTER_DIR")
        os.environ["CARROT_CLUSTER_DIR"] = str(base_dir)
        try:
            try:
                Cluster.run("start", timeout=START_TIMEOUT)
            finally:
                if env_dir is None:
                    del os.environ["CARROT_CLUSTER_DIR"]
                else:
                    os.environ["CARROT_CLUSTER_DIR"] = env_dir
            yield Cluster(base_dir)
        finally:
            try:
                Cluster.run("stop", timeout=STOP_TIMEOUT)
            finally:
                with contextlib.suppress(OSError):
                    base_dir.rmdir()  # still empty: start failed before using it
        left = leftovers(base_dir)
        if left:
            raise ClusterError("cluster.sh stop left behind: " + "; ".join(left))
