"""The kombu backend's connection and channel: which transport, opening it, asking it, closing.

:class:`ConnectionBackend` is the base of
:class:`carrot.backends.kombu_transport.Backend`: it picks the kombu
transport (a URL as the host name, else :attr:`~ConnectionBackend.kombu_transport`),
opens the kombu connection with one attempt, answers ``in_process``,
``server_description`` and ``round_trip`` for it, and keeps the one kombu
channel the backend works on. Declaring, consuming and publishing are the
backend's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kombu.connection import Connection as KombuConnection
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str

from carrot.backends._kombu_errors import AMQP_TRANSPORTS, UnsupportedTransportError
from carrot.backends._kombu_seam import TRANSPORTS, kombu_redis
from carrot.backends.base import (
    BaseBackend,
    ChannelDeclareMixin,
    ChannelSettleMixin,
    FlowByCancelMixin,
)
from carrot.exceptions import ClientNotInstalled

if TYPE_CHECKING:
    from carrot.connection import BrokerConnection

__all__ = ["ConnectionBackend"]


class ConnectionBackend(ChannelDeclareMixin, FlowByCancelMixin, ChannelSettleMixin, BaseBackend):
    """The connection side of the kombu backend (see the module docstring)."""

    #: The kombu transport used when the host name is not a URL.
    kombu_transport = "memory"
    #: kombu ``transport_options``; a ``transport_options`` attribute on the
    #: connection is merged over these.
    transport_options: dict[str, Any] = {}
    #: Port used when the connection names none (the memory transport needs none).
    default_port: int | None = None

    def __init__(self, connection: BrokerConnection, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.default_port = kwargs.get("default_port", self.default_port)
        self._channel: virtual.Channel | None = None

    def _transport_name(self) -> str:
        hostname = self.connection.hostname
        if hostname and "://" in hostname:
            return urlsplit(hostname).scheme
        return self.kombu_transport

    @property
    def in_process(self) -> bool:
        """True on kombu's memory transport: the exchanges and queues live in this process."""
        return self._transport_name() == "memory"

    def server_description(self) -> str | None:
        """``"kombu memory transport"``, ``"Redis 7.2.4"`` (None if Redis will not say)."""
        name = self._transport_name()
        if name == "memory":
            return "kombu memory transport"
        if name in ("redis", "rediss"):
            try:
                version = self._redis_client().info("server")["redis_version"]
            except Exception:  # the version is a nicety; "connected" is enough
                return None
            return f"Redis {bytes_to_str(version)}"
        return super().server_description()

    def round_trip(self) -> tuple[str, Callable[[], object]]:
        """Redis: a ``PING`` command; other transports: a channel opened and closed."""
        if self._transport_name() in ("redis", "rediss"):
            return "PING", self._redis_client().ping
        return super().round_trip()

    def _redis_client(self) -> Any:
        # The redis-py client under the kombu connection's default channel.
        return self._established().default_channel.client

    # -- connection --------------------------------------------------------

    def establish_connection(self) -> KombuConnection:
        """Open a kombu connection with the settings of :attr:`connection`.

        :raises carrot.exceptions.ClientNotInstalled: the transport's client
            library (e.g. ``redis``) is missing.
        :raises carrot.exceptions.MissingConnectionSetting: (a ``KeyError``)
            a network transport and no host name.
        :raises UnsupportedTransportError: (a ``ValueError``) a URL of one of
            kombu's AMQP transports (``amqp://``): use the default backend.
        """
        conninfo = self.connection
        hostname = conninfo.hostname
        options = dict(self.transport_options)
        options.update(getattr(conninfo, "transport_options", None) or {})
        name = self._transport_name()
        if name in AMQP_TRANSPORTS:
            raise UnsupportedTransportError(name)
        if name != "memory":
            self.check_settings("hostname", kind=name)
        if name in ("redis", "rediss"):
            if kombu_redis is None:
                raise ClientNotInstalled("redis", "redis")
            options.setdefault("socket_connect_timeout", conninfo.connect_timeout)
        connection = KombuConnection(
            hostname=hostname,
            userid=conninfo.userid,
            password=conninfo.password,
            virtual_host=conninfo.virtual_host,
            port=conninfo.port or self.default_port,
            ssl=conninfo.ssl or False,
            transport=TRANSPORTS.get(name, name),
            connect_timeout=conninfo.connect_timeout,
            transport_options=options,
        )
        # One attempt, raising the transport's own error (kombu's connect()
        # sleeps two seconds and tries again).
        connection.ensure_connection(max_retries=0, reraise_as_library_errors=False)
        return connection

    def close_connection(self, connection: KombuConnection) -> None:
        """Close a connection opened by :meth:`establish_connection`."""
        connection.close()

    # -- channel -----------------------------------------------------------

    @property
    def channel(self) -> Any:
        """The kombu channel, opened on first use (and after a close)."""
        channel = self._channel
        if channel is None or channel.closed or channel.connection is None:
            channel = self._channel = self._established().channel()
        return channel

    def close(self) -> None:
        """Close the channel; unacknowledged messages go back to their queues."""
        channel, self._channel = self._channel, None
        self.forget_consumers()
        if channel is not None and not channel.closed:
            try:
                channel.close()
            except (*self.connection_errors, *self.channel_errors):
                pass
