"""A throwaway RabbitMQ node with a TLS listener, for carrot's TLS tests.

:func:`tls_node` starts a node ``tls1@localhost`` that is not the machine's
RabbitMQ: AMQP on 127.0.0.1:5690, AMQP over TLS on 127.0.0.1:5691, Erlang
distribution on 127.0.0.1:25690. Its data, logs, config, enabled-plugins
file, pid file, HOME and Erlang cookie live in one temporary directory, with
certificates made at start by :mod:`trustme`:

* a CA (``ca.pem``) that signed the server certificate, issued for
  ``localhost`` only (so ``127.0.0.1`` is "another host name");
* a client certificate of that CA (``client.pem``) for mutual TLS: the node
  verifies a client certificate when one is presented
  (``verify_peer``) but does not demand one (``fail_if_no_peer_cert``
  false), so one node serves every test;
* a second, untrusted CA (``other-ca.pem``) and a client certificate from it.

The node runs as the ``rabbitmq`` user from the package's own
``rabbitmq-server`` script (beside its ``rabbitmqctl``, not the wrapper on
PATH). It is stopped by the pid in its pid file, never by name, and its
directory is removed. Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NODE_NAME = "tls1@localhost"
HOST = "127.0.0.1"
AMQP_PORT = 5690
TLS_PORT = 5691
DIST_PORT = 25690
BOOT_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
RMQ_USER = "rabbitmq"


class TLSNodeError(RuntimeError):
    """The TLS node could not be set up or did not start."""


@dataclass
class TLSNode:
    """A running node and the files a test needs."""

    base: Path
    pid: int
    env: dict[str, str]

    def ctl(self, *args: str) -> str:
        """Run ``rabbitmqctl ARGS`` against this node (our user, HOME and cookie)."""
        command = [
            "runuser", "-u", RMQ_USER, "--", "env", "-i",
            *(f"{k}={v}" for k, v in self.env.items()),
            str(_sbin_dir() / "rabbitmqctl"), "-q", "-n", NODE_NAME, *args,
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise TLSNodeError(f"rabbitmqctl {args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def add_user(self, userid: str, password: str) -> None:
        """Add a user with every permission on ``/``."""
        self.ctl("add_user", userid, password)
        self.ctl("set_permissions", "-p", "/", userid, ".*", ".*", ".*")

    @property
    def ca(self) -> str:
        """The CA that signed the server certificate."""
        return str(self.base / "certs" / "ca.pem")

    @property
    def other_ca(self) -> str:
        """A CA that signed nothing the node uses."""
        return str(self.base / "certs" / "other-ca.pem")

    @property
    def client_cert(self) -> str:
        """A client certificate and key (one PEM file) the node trusts."""
        return str(self.base / "certs" / "client.pem")

    @property
    def untrusted_client_cert(self) -> str:
        """A client certificate and key from :attr:`other_ca`."""
        return str(self.base / "certs" / "other-client.pem")


def _port_answers(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except OSError:
        return False
    return True


def _sbin_dir() -> Path:
    try:
        listing = subprocess.run(
            ["dpkg", "-L", "rabbitmq-server"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TLSNodeError(f"cannot list the rabbitmq-server package: {exc}") from exc
    for line in listing.splitlines():
        if "/lib/" in line and line.endswith("/sbin/rabbitmq-server"):
            return Path(line).parent
    raise TLSNodeError("the rabbitmq-server package is not installed")


def unavailable_reason() -> str | None:
    """Why the node cannot run here, or None."""
    if os.geteuid() != 0:
        return "starting a RabbitMQ node as the rabbitmq user needs root"
    try:
        pwd.getpwnam(RMQ_USER)
    except KeyError:
        return f"no {RMQ_USER} user"
    try:
        import trustme  # noqa: F401 -- only checking it is installed
    except ImportError:
        return "trustme is not installed (pip install trustme)"
    try:
        _sbin_dir()
    except TLSNodeError as exc:
        return str(exc)
    for port in (AMQP_PORT, TLS_PORT, DIST_PORT):
        if _port_answers(port):
            return f"port {HOST}:{port} is already in use"
    return None


def _write_certs(certs: Path) -> None:
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(certs / "ca.pem"))
    server = ca.issue_cert("localhost")
    server.cert_chain_pems[0].write_to_path(str(certs / "server.pem"))
    server.private_key_pem.write_to_path(str(certs / "server.key"))
    ca.issue_cert("carrot-client").private_key_and_cert_chain_pem.write_to_path(
        str(certs / "client.pem")
    )
    other = trustme.CA()
    other.cert_pem.write_to_path(str(certs / "other-ca.pem"))
    other.issue_cert("carrot-client").private_key_and_cert_chain_pem.write_to_path(
        str(certs / "other-client.pem")
    )


def _prepare(base: Path) -> dict[str, str]:
    for sub in ("home", "data", "log", "certs"):
        (base / sub).mkdir()
    _write_certs(base / "certs")
    certs = base / "certs"
    (base / "rabbitmq.conf").write_text(
        f"listeners.tcp.local = {HOST}:{AMQP_PORT}\n"
        f"listeners.ssl.default = {HOST}:{TLS_PORT}\n"
        f"ssl_options.cacertfile = {certs / 'ca.pem'}\n"
        f"ssl_options.certfile = {certs / 'server.pem'}\n"
        f"ssl_options.keyfile = {certs / 'server.key'}\n"
        "ssl_options.verify = verify_peer\n"
        "ssl_options.fail_if_no_peer_cert = false\n"
        "loopback_users = none\n"
    )
    (base / "enabled_plugins").write_text("[].\n")
    # Not /etc/rabbitmq/rabbitmq-env.conf: it names the machine's node.
    (base / "rabbitmq-env.conf").write_text(
        "ERL_EPMD_ADDRESS=127.0.0.1\n"
        'export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"\n'
    )
    # A cookie of our own: nothing of ours can talk to the machine's node.
    cookie = base / "home" / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(16).upper())
    user = pwd.getpwnam(RMQ_USER)
    for path in [base, *base.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    base.chmod(0o755)
    cookie.chmod(0o400)
    return {
        "HOME": str(base / "home"),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_NODENAME": NODE_NAME,
        "RABBITMQ_NODE_IP_ADDRESS": HOST,
        "RABBITMQ_NODE_PORT": str(AMQP_PORT),
        "RABBITMQ_DIST_PORT": str(DIST_PORT),
        "RABBITMQ_MNESIA_BASE": str(base / "data"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
        "ERL_CRASH_DUMP": str(base / "log" / "erl_crash.dump"),
    }


def _read_pid(base: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((base / "rabbitmq.pid").read_text().strip())
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie or a reused pid is not our beam.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip() == "beam.smp"
    return False


def _stop(base: Path) -> None:
    pid = _read_pid(base)
    if pid is None or not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)


@contextlib.contextmanager
def tls_node() -> Iterator[TLSNode]:
    """Start the node, yield it, and always stop it and remove its directory."""
    reason = unavailable_reason()
    if reason:
        raise TLSNodeError(reason)
    base = Path(tempfile.mkdtemp(prefix="carrot-tls-"))
    try:
        env = _prepare(base)
        server = _sbin_dir() / "rabbitmq-server"
        subprocess.run(
            [
                "runuser",
                "-u",
                RMQ_USER,
                "--",
                "env",
                "-i",
                *(f"{k}={v}" for k, v in env.items()),
                str(server),
                "-detached",
            ],
            check=True,
            timeout=60,
            capture_output=True,
        )
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not (_port_answers(TLS_PORT) and _port_answers(AMQP_PORT)):
            if time.monotonic() > deadline:
                raise TLSNodeError(f"the TLS node did not open its ports (log: {base}/log)")
            pid = _read_pid(base)
            if pid is not None and not _alive(pid):
                raise TLSNodeError(f"the TLS node died while booting (log: {base}/log)")
            time.sleep(0.2)
        pid = _read_pid(base)
        if pid is None:
            raise TLSNodeError("the TLS node wrote no pid file")
        yield TLSNode(base, pid, env)
    except subprocess.SubprocessError as exc:
        raise TLSNodeError(f"rabbitmq-server failed to start: {exc}") from exc
    finally:
        _stop(base)
        shutil.rmtree(base, ignore_errors=True)
