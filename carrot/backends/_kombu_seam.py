"""The one place carrot touches kombu's private channel internals, checked at import.

carrot's kombu backend (:mod:`carrot.backends.kombu_transport`) fixes
kombu's memory and Redis transports by subclassing their channels: a
headers exchange, one copy and delivery tag per routed queue, requeue to
the front of the queue a message came from, ``queue_delete`` that forgets
bindings, and (Redis) closing a channel from a message callback. Those
subclasses override and call names kombu does not document (``_put``,
``_restore``, ``_do_restore_message``, ...).

At import, :func:`missing_internals` checks every such name, and the
parameters of every method overridden or called, against the installed
kombu. When one is missing or changed, that transport runs as kombu made it
(without the fixes) and carrot says so once: a WARNING on the ``carrot``
logger and a :exc:`RuntimeWarning` naming the kombu version and the names.
Nothing else in carrot names a private kombu attribute.

:data:`TRANSPORTS` maps a transport name (``"memory"``, ``"redis"``) to the
transport class to use, patched or kombu's own.
"""

from __future__ import annotations

import inspect
import json
import logging
import warnings
from collections.abc import Iterable
from typing import Any

import kombu
from kombu.transport import memory as kombu_memory
from kombu.transport import virtual
from kombu.transport.virtual.exchange import STANDARD_EXCHANGE_TYPES, DirectExchange, ExchangeType
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps

try:
    import redis  # noqa: F401 -- imported only to learn whether the client is installed
except ImportError:
    # kombu's Redis module cannot even be imported without the client.
    kombu_redis: Any = None
else:
    from kombu.transport import redis as kombu_redis

__all__ = ["PATCHED", "TRANSPORTS", "missing_internals", "queue_size", "select_transport"]

logger = logging.getLogger("carrot.backends.kombu_transport")

# Key in a stored message naming the queue that copy belongs to, so requeue
# and restore put it back there instead of routing it again.
_QUEUE_KEY = "carrot_queue"


class _HeadersExchange(ExchangeType):
    # AMQP's headers exchange, which kombu's virtual transports lack. The
    # binding's arguments are kept, as JSON, where other types keep a pattern.

    # assignment: kombu declares ExchangeType.type = None; each type names itself.
    type = "headers"  # type: ignore[assignment]

    def prepare_bind(
        self, queue: str, exchange: str, routing_key: str, arguments: dict[str, Any] | None
    ) -> tuple[str, str, str]:
        return routing_key, json.dumps(arguments or {}, sort_keys=True), queue

    def lookup(self, table: Any, exchange: str, routing_key: str, default: Any) -> set[str]:
        # Routing needs the message's headers: see deliver().
        return set()

    def deliver(
        self, message: dict[str, Any], exchange: str, routing_key: str, **kwargs: Any
    ) -> None:
        headers = message.get("headers") or {}
        for queue in {
            q for _, args, q in self.channel.get_table(exchange) if _match(args, headers)
        }:
            self.channel._put(queue, message, **kwargs)


def _match(binding_json: str, headers: dict[str, Any]) -> bool:
    # RabbitMQ's rules: x-match "all" (default) or "any"; keys starting with
    # "x-" are not matched; a binding value of None asks only for the key.
    arguments = json.loads(binding_json) if binding_json else {}
    wanted = [(k, v) for k, v in arguments.items() if not k.startswith("x-")]
    found = (k in headers and (v is None or headers[k] == v) for k, v in wanted)
    if arguments.get("x-match") == "any":
        return any(found)
    return all(found)


_EXCHANGE_TYPES = {**STANDARD_EXCHANGE_TYPES, "headers": _HeadersExchange}


def _redelivered_copy(message: virtual.Message, queue: str) -> dict[str, Any]:
    # A stored copy of a received kombu message, marked redelivered.
    payload: dict[str, Any] = message.serializable()
    props = payload["properties"]
    payload["properties"] = {
        **props,
        "delivery_info": {**(props.get("delivery_info") or {}), "redelivered": True},
    }
    payload[_QUEUE_KEY] = queue
    return payload


class _MemoryChannel(kombu_memory.Channel):
    # kombu's memory channel drops unacknowledged messages on close; restoring
    # them is safe here because _restore puts them back where they came from.
    do_restore = True
    exchange_types = _EXCHANGE_TYPES

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        # kombu puts one dict into every matching queue: give each its own
        # copy and delivery tag, as a broker would.
        props = message["properties"]
        self._queue_for(queue).put(
            {
                **message,
                "properties": {
                    **props,
                    "delivery_tag": self._next_delivery_tag(),
                    "delivery_info": dict(props.get("delivery_info") or {}),
                },
                _QUEUE_KEY: queue,
            }
        )

    def _put_fanout(
        self, exchange: str, message: dict[str, Any], routing_key: Any = None, **kwargs: Any
    ) -> None:
        for queue in self._lookup(exchange, routing_key):
            self._put(queue, message)

    def _restore(self, message: virtual.Message) -> None:
        queue = message._raw.get(_QUEUE_KEY)
        if queue is None:
            super()._restore(message)
            return None
        payload = _redelivered_copy(message, queue)
        payload["properties"]["delivery_tag"] = self._next_delivery_tag()
        fifo = self._queue_for(queue)
        # The front of the queue: Queue.get pops from the left.
        with fifo.mutex:
            fifo.queue.appendleft(payload)
            fifo.not_empty.notify()
        return None

    def _restore_at_beginning(self, message: virtual.Message) -> None:
        return self._restore(message)

    def queue_delete(
        self, queue: str, if_unused: bool = False, if_empty: bool = False, **kwargs: Any
    ) -> None:
        if if_empty and self._size(queue):
            return
        # kombu leaves the bindings in the exchanges' routing tables (so the
        # next message routed there recreates the queue), and forgets the
        # queue only when it had bindings.
        for exchange, routing_key, arguments in list(self.state.queue_bindings(queue)):
            self.queue_unbind(queue, exchange, routing_key, arguments)
        super().queue_delete(queue, if_unused=if_unused, if_empty=if_empty, **kwargs)
        self.queues.pop(queue, None)


class _MemoryTransport(kombu_memory.Transport):
    Channel = _MemoryChannel
    # Seconds between polls of idle queues (kombu's default is a whole second).
    polling_interval = 0.01


# Without the client the Redis classes still exist (unusable: RedisBackend
# raises ClientNotInstalled first), so this module always imports.
_RedisChannelBase: Any = kombu_redis.Channel if kombu_redis is not None else virtual.Channel
_RedisTransportBase: Any = kombu_redis.Transport if kombu_redis is not None else virtual.Transport


# misc: the base is kombu's Redis channel when the redis client is installed,
# the virtual one otherwise, so mypy sees Any.
class _RedisChannel(_RedisChannelBase):  # type: ignore[misc]
    exchange_types = _EXCHANGE_TYPES

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        # Each queue's copy gets its own delivery tag: tags key the shared
        # "unacked" hash, where two copies under one tag would overwrite each
        # other (and an ack of one would forget the other).
        props = message["properties"]
        message = {
            **message,
            "properties": {**props, "delivery_tag": self._next_delivery_tag()},
            _QUEUE_KEY: queue,
        }
        super()._put(queue, message, **kwargs)

    def _deliver_fanout_message(self, message: dict[str, Any], exchange: str) -> Any:
        # Every subscriber receives the same tag: give this copy its own.
        message["properties"]["delivery_tag"] = self._next_delivery_tag()
        message[_QUEUE_KEY] = self._fanout_to_queue[exchange]
        return super()._deliver_fanout_message(message, exchange)

    def _do_restore_message(
        self,
        payload: dict[str, Any],
        exchange: str,
        routing_key: str,
        pipe: Any,
        leftmost: bool = False,
    ) -> None:
        queue = payload.get(_QUEUE_KEY)
        if queue is None:
            super()._do_restore_message(payload, exchange, routing_key, pipe, leftmost)
            return None
        props = payload.setdefault("properties", {})
        props["delivery_tag"] = self._next_delivery_tag()
        props.setdefault("delivery_info", {})["redelivered"] = True
        priority = self._get_message_priority(payload)
        # LPUSH publishes and RPOP consumes, so RPUSH is the front of the queue.
        pipe.rpush(self._q_for_pri(queue, priority), dumps(payload))
        return None

    def queue_delete(
        self, queue: str, if_unused: bool = False, if_empty: bool = False, **kwargs: Any
    ) -> None:
        if if_empty and self._size(queue):
            return
        super().queue_delete(queue, if_unused=if_unused, if_empty=if_empty, **kwargs)
        # kombu removes only the bindings this connection made; those made by
        # other connections (or processes) live in Redis alone.
        table_prefix = self.keyprefix_queue % ""
        with self.conn_or_acquire() as client:
            for key in client.scan_iter(match=table_prefix + "*"):
                exchange = bytes_to_str(key)[len(table_prefix) :]
                for member in client.smembers(key):
                    if bytes_to_str(member).rsplit(self.sep, 1)[-1] == queue:
                        client.srem(key, member)
                        client.srem(self.keyprefix_binding_permanent % (exchange,), member)

    def close(self) -> None:
        cycle = getattr(self.connection, "cycle", None)
        if cycle is not None and not self.closed and getattr(cycle, "_in_protected_read", False):
            # Closed from a message callback: kombu would wait for the reply
            # of a read it is still handling, for ever. Close once it is done.
            cycle.after_read.add(self.close)
            return
        super().close()


class _RedisTransport(_RedisTransportBase):  # type: ignore[misc]  # misc: as _RedisChannel
    Channel = _RedisChannel


#: (owner, name, parameter names or None) of each private kombu name the
#: memory transport's fixes rely on; None checks presence only.
MEMORY_INTERNALS: tuple[tuple[type, str, tuple[str, ...] | None], ...] = (
    (kombu_memory.Channel, "_put", ("queue", "message", "kwargs")),
    (kombu_memory.Channel, "_put_fanout", ("exchange", "message", "routing_key", "kwargs")),
    (kombu_memory.Channel, "_restore", ("message",)),
    (kombu_memory.Channel, "_restore_at_beginning", ("message",)),
    (kombu_memory.Channel, "_queue_for", ("queue",)),
    (kombu_memory.Channel, "_next_delivery_tag", ()),
    (kombu_memory.Channel, "_lookup", ("exchange", "routing_key", "default")),
    (kombu_memory.Channel, "_size", ("queue",)),
    (kombu_memory.Channel, "do_restore", None),
    (kombu_memory.Channel, "exchange_types", None),
    (kombu_memory.Channel, "get_table", ("exchange",)),
    (kombu_memory.Channel, "queue_unbind", None),
    (virtual.BrokerState, "queue_bindings", ("queue",)),
    (DirectExchange, "deliver", ("message", "exchange", "routing_key", "kwargs")),
    (ExchangeType, "prepare_bind", ("queue", "exchange", "routing_key", "arguments")),
    (ExchangeType, "lookup", ("table", "exchange", "routing_key", "default")),
)

#: The same for the Redis transport's fixes (empty without the redis client).
REDIS_INTERNALS: tuple[tuple[type, str, tuple[str, ...] | None], ...] = (
    ()
    if kombu_redis is None
    else (
        (kombu_redis.Channel, "_put", ("queue", "message", "kwargs")),
        (kombu_redis.Channel, "_deliver_fanout_message", ("message", "exchange")),
        (
            kombu_redis.Channel,
            "_do_restore_message",
            ("payload", "exchange", "routing_key", "pipe", "leftmost"),
        ),
        (kombu_redis.Channel, "_get_message_priority", ("message", "reverse")),
        (kombu_redis.Channel, "_q_for_pri", ("queue", "pri")),
        (kombu_redis.Channel, "_next_delivery_tag", ()),
        (kombu_redis.Channel, "_size", ("queue",)),
        (kombu_redis.Channel, "keyprefix_queue", None),
        (kombu_redis.Channel, "keyprefix_binding_permanent", None),
        (kombu_redis.Channel, "sep", None),
        (kombu_redis.Channel, "conn_or_acquire", ("client",)),
        (kombu_redis.MultiChannelPoller, "_in_protected_read", None),
        (kombu_redis.MultiChannelPoller, "after_read", None),
    )
)


def missing_internals(
    internals: Iterable[tuple[type, str, tuple[str, ...] | None]],
) -> list[str]:
    """What of ``internals`` the installed kombu lacks, one line each (empty: all there)."""
    problems = []
    for owner, name, params in internals:
        where = f"{owner.__module__}.{owner.__qualname__}.{name}"
        attr = inspect.getattr_static(owner, name, _MISSING)
        if attr is _MISSING:
            problems.append(f"{where} is missing")
            continue
        if params is None:
            continue
        try:
            found = tuple(inspect.signature(getattr(owner, name)).parameters)[1:]  # minus self
        except (TypeError, ValueError):
            found = None
        if found != params:
            problems.append(f"{where} takes {found}, carrot expects {params}")
    return problems


_MISSING = object()


def select_transport(
    name: str,
    patched: type,
    plain: type,
    internals: Iterable[tuple[type, str, tuple[str, ...] | None]],
) -> type:
    """``patched`` when every one of ``internals`` is there, else ``plain``, said loudly.

    The fallback is logged (WARNING, ``carrot`` logger) and warned
    (:exc:`RuntimeWarning`) once, naming the kombu version and what is missing.
    """
    problems = missing_internals(internals)
    if not problems:
        return patched
    message = (
        f"kombu {kombu.__version__}: carrot's fixes to the {name} transport are off, "
        f"it runs as kombu made it ({'; '.join(problems)})"
    )
    logger.warning("%s", message)
    warnings.warn(message, RuntimeWarning, stacklevel=2)
    return plain


#: Transport name -> the transport class carrot uses for it.
TRANSPORTS: dict[str, type] = {
    "memory": select_transport(
        "memory", _MemoryTransport, kombu_memory.Transport, MEMORY_INTERNALS
    ),
    "redis": (
        _RedisTransport
        if kombu_redis is None  # unusable anyway: RedisBackend raises ClientNotInstalled
        else select_transport("redis", _RedisTransport, kombu_redis.Transport, REDIS_INTERNALS)
    ),
}
#: Transport name -> whether carrot's fixes are on.
PATCHED = {name: cls in (_MemoryTransport, _RedisTransport) for name, cls in TRANSPORTS.items()}


def queue_size(channel: virtual.Channel, queue: str) -> int:
    """How many messages wait in ``queue`` (kombu's ``Channel._size``)."""
    size: int = channel._size(queue)
    return size
