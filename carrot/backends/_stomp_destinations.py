"""How carrot's exchange, queue and routing-key names become STOMP destinations.

For RabbitMQ's STOMP plugin (used by :mod:`carrot.backends.pystomp`):

* publish to exchange ``E`` with routing key ``K``: ``/exchange/E/K``,
  routed by the exchange as AMQP would;
* publish with no exchange, routing key ``K``: ``/amq/queue/K``, the default
  exchange as AMQP has it (no queue is declared; if there is no ``K`` the
  message is dropped);
* consume or ``get`` a queue ``Q`` this backend declared or bound:
  ``/amq/queue/Q`` (it exists, so nothing is declared);
* consume or ``get`` any other queue: ``/queue/Q``, which RabbitMQ declares
  on demand (durable, unless :meth:`Backend.queue_declare` said otherwise);
* a queue, exchange or routing key starting with ``/`` is a destination
  already and is used as it is (carrot 0.10 on stompy took names so).

A ``/`` inside an exchange, queue or routing key is sent as ``%2F``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "KnownQueues",
    "consume_destination",
    "destination_info",
    "publish_destination",
    "queue_headers",
]


def _bool_header(value: bool) -> str:
    return "true" if value else "false"


def _quote(name: str) -> str:
    # RabbitMQ decodes %XX in destination names; "/" separates their parts.
    return name.replace("%", "%25").replace("/", "%2F")


def _unquote(name: str) -> str:
    return name.replace("%2F", "/").replace("%2f", "/").replace("%25", "%")


def publish_destination(exchange: str | None, routing_key: Any) -> str:
    """The destination a message published to ``exchange`` with ``routing_key`` is sent to.

    >>> publish_destination("tasks", "task.add")
    '/exchange/tasks/task.add'
    >>> publish_destination("", "celery")
    '/amq/queue/celery'
    >>> publish_destination("/topic/news", "ignored")
    '/topic/news'
    """
    # compat: carrot 0.10 (stompy) sent to the exchange as a destination.
    if exchange and exchange.startswith("/"):
        return exchange
    key = routing_key if isinstance(routing_key, str) else ""
    if exchange:
        return (
            f"/exchange/{_quote(exchange)}/{_quote(key)}"
            if key
            else f"/exchange/{_quote(exchange)}"
        )
    if key.startswith("/"):
        return key
    # /amq/queue/ is the default exchange as AMQP has it: it declares
    # nothing (/queue/ would declare a durable queue, and the broker refuses
    # that for a queue declared otherwise), and a missing queue drops it.
    return f"/amq/queue/{_quote(key)}"


def consume_destination(queue: str, exists: bool = False) -> str:
    """The destination a consumer (or ``get``) of ``queue`` subscribes to.

    :param exists: the queue is known to exist (declared or bound by this
        backend, or over AMQP): subscribe to it without declaring it.

    >>> consume_destination("celery")
    '/queue/celery'
    >>> consume_destination("celery", exists=True)
    '/amq/queue/celery'
    """
    if queue.startswith("/"):
        return queue  # compat: a STOMP destination, as carrot 0.10 took it
    return f"/amq/queue/{_quote(queue)}" if exists else f"/queue/{_quote(queue)}"


def destination_info(destination: str | None) -> tuple[str, str]:
    """``(exchange, routing_key)`` of a MESSAGE frame's ``destination`` header.

    >>> destination_info("/exchange/tasks/task.add")
    ('tasks', 'task.add')
    >>> destination_info("/queue/celery")
    ('', 'celery')
    >>> destination_info("/topic/news.uk")
    ('amq.topic', 'news.uk')
    """
    if not destination:
        return "", ""
    parts = destination.split("/")
    if len(parts) >= 3 and parts[1] == "exchange":
        return _unquote(parts[2]), _unquote("/".join(parts[3:]))
    if len(parts) >= 3 and parts[1] == "topic":
        return "amq.topic", _unquote("/".join(parts[2:]))
    if len(parts) >= 4 and parts[1] == "amq" and parts[2] == "queue":
        return "", _unquote("/".join(parts[3:]))
    if len(parts) >= 3 and parts[1] == "queue":
        return "", _unquote("/".join(parts[2:]))
    return "", destination


def queue_headers(props: dict[str, Any]) -> dict[str, str]:
    """SUBSCRIBE headers that declare a queue with carrot's properties."""
    exclusive = bool(props.get("exclusive"))
    headers = {
        "durable": _bool_header(props.get("durable", True)),
        "auto-delete": _bool_header(props.get("auto_delete", False) or exclusive),
        # Always sent: RabbitMQ makes a non-durable queue exclusive unless told not to.
        "exclusive": _bool_header(exclusive),
    }
    for key, value in (props.get("arguments") or {}).items():
        if key.startswith("x-"):  # RabbitMQ takes only x- arguments as headers
            headers[key] = str(value)
    return headers


class KnownQueues:
    """What one stomp backend knows of its queues, and so where it subscribes to each.

    STOMP cannot ask the broker whether a queue exists: a queue declared or
    bound by this backend is known to exist (consumed as ``/amq/queue/Q``,
    declaring nothing); an exclusive or auto-delete queue is created, and
    bound, only when first consumed (a short subscription would delete it).
    """

    def __init__(self) -> None:
        #: queue -> properties from queue_declare.
        self.properties: dict[str, dict[str, Any]] = {}
        #: Queues known to exist on the broker.
        self.existing: set[str] = set()
        #: queue -> (exchange, routing_key) to subscribe to when consumed.
        self.pending_bindings: dict[str, tuple[str, str]] = {}

    def declare(self, queue: str, props: dict[str, Any]) -> tuple[str, dict[str, str]] | None:
        """Record ``queue``; the ``(destination, headers)`` that creates it now, or None.

        None: nothing to send (a destination name, an exclusive or
        auto-delete queue, or one known already). Call :meth:`created` once
        the subscription went through.
        """
        self.properties[queue] = props
        if (
            queue.startswith("/")
            or props.get("exclusive")
            or props.get("auto_delete")
            or queue in self.existing
        ):
            return None
        return consume_destination(queue), queue_headers(props)

    def bind(
        self, queue: str, exchange: str, routing_key: Any
    ) -> tuple[str, dict[str, str]] | None:
        """The ``(destination, headers)`` that binds ``queue`` now, or None (later, or never).

        Call :meth:`created` once the subscription went through.
        """
        if not exchange or queue.startswith("/") or exchange.startswith("/"):
            return None
        key = routing_key if isinstance(routing_key, str) else ""
        props = self.properties.get(queue, {})
        if props.get("exclusive") or props.get("auto_delete"):
            self.pending_bindings.setdefault(queue, (exchange, key))
            return None
        return publish_destination(exchange, key), {**queue_headers(props), "x-queue-name": queue}

    def created(self, queue: str) -> None:
        """``queue`` exists on the broker now."""
        self.existing.add(queue)

    def forget(self, queue: str) -> None:
        """Forget everything about ``queue``."""
        self.properties.pop(queue, None)
        self.existing.discard(queue)
        self.pending_bindings.pop(queue, None)

    def destination(self, queue: str) -> tuple[str, dict[str, str]]:
        """Where to subscribe to consume ``queue``, and the headers for it."""
        binding = self.pending_bindings.get(queue)
        props = self.properties.get(queue)
        if binding is not None:
            headers = {**queue_headers(props or {}), "x-queue-name": queue}
            return publish_destination(*binding), headers
        if queue in self.existing:
            return consume_destination(queue, exists=True), {}
        return consume_destination(queue), queue_headers(props) if props else {}
