"""Automatic recovery: reconnect, declare again, consume again, carry on.

Used when a :class:`~carrot.connection.BrokerConnection` is made with
``auto_recover=True``. It lives above the backends and relies only on what
each backend declares (``connection_errors``,
``recoverable_connection_errors``, ``create_backend()``), so every network
backend gets it.

How it works:

* :func:`install` (called by :class:`~carrot.messaging.Publisher`,
  :class:`~carrot.messaging.Consumer` and
  :class:`~carrot.messaging.ConsumerSet` when their connection has
  ``auto_recover``) wraps the calls that talk to the broker: ``send``;
  ``fetch``, ``consume``, ``iterconsume`` (and so ``wait``);
  ``ConsumerSet.consume``/``iterconsume``.
* When one of them raises a recoverable connection error, :func:`reconnect`
  drops the dead connection and connects again under the connection's
  ``retry_policy``, starting with the next broker of the list. Each failed
  attempt is logged at WARNING on the ``carrot.connection`` logger (the URL
  with its password masked, the attempt number, the next delay), success at
  INFO. When ``max_retries`` is spent, the last connection error is raised.
* Each reconnection starts a new *generation* of the connection. An object
  whose channel belongs to an older generation is *rebound* before its next
  call: a new backend (channel), the exchanges, queues and bindings it
  declared declared again (exclusive and auto-delete queues included), its
  ``qos`` applied again, its consumers registered again with the same
  consumer tags and callbacks; a publisher with ``confirm=True`` is put in
  confirm mode again and its unconfirmed messages published again. Then the
  call is made again (``send``, ``fetch``) or carries on (``iterconsume``,
  ``wait``).
* The old backend is retired: ``ack()``, ``reject()`` and ``requeue()`` of a
  message delivered on the lost connection do nothing (the broker has
  already put the message back; it comes again with ``redelivered=True``).

Threads: each connection has one recovery lock (reentrant), held while
reconnecting and while rebinding; a thread that finds another one already
reconnected (a newer generation) does not reconnect again, it only rebinds
its own objects. One Publisher, Consumer or ConsumerSet is still used by one
thread at a time, as without recovery. Closing the connection stops the
retries.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from carrot.exceptions import ConnectionClosedError, TLSVerificationError

__all__ = ["EXCLUSIVE_QUEUE_GRACE", "install", "intervals", "reconnect", "should_recover"]

logger = logging.getLogger("carrot.connection")

#: Seconds a queue declared ``exclusive`` may stay locked by the broker's
#: memory of the dead connection before recovery gives up declaring it.
EXCLUSIVE_QUEUE_GRACE = 10.0


def intervals(policy: dict[str, Any]) -> Iterator[float]:
    """The delays between reconnection attempts: start, start + step, ... up to max.

    >>> from itertools import islice
    >>> list(islice(intervals({"interval_start": 1, "interval_step": 2, "interval_max": 4}), 4))
    [1, 3, 4, 4]
    """
    interval = policy["interval_start"]
    while True:
        yield min(interval, policy["interval_max"])
        interval += policy["interval_step"]


def should_recover(connection: Any, exc: BaseException) -> bool:
    """Whether ``exc`` means the connection is lost and recovery may bring it back."""
    if not getattr(connection, "auto_recover", False) or connection._closed is True:
        return False
    if isinstance(exc, (ConnectionClosedError, TimeoutError)):
        return False  # closed by the application; a timeout the caller asked for
    return isinstance(exc, connection._recoverable_connection_errors()) and isinstance(
        exc, connection.connection_errors
    )


def reconnect(connection: Any, exc: BaseException, generation: int) -> None:
    """Replace the lost connection by a new one, under the connection's retry policy.

    :param connection: the :class:`~carrot.connection.BrokerConnection`.
    :param exc: the connection error that showed the loss.
    :param generation: the generation the error happened on; if the
        connection has moved on since (another thread reconnected), nothing
        is done.
    :raises: the last connection error once ``max_retries`` is spent.
    """
    with connection._recovery_lock:
        if connection._generation != generation:
            return
        from carrot.connection import DEFAULT_RETRY_POLICY

        policy = {**DEFAULT_RETRY_POLICY, **(connection.retry_policy or {})}
        max_retries = policy["max_retries"]
        lost = connection._masked_url()
        _drop(connection)
        if len(connection._brokers) > 1:
            connection._failover()  # the next broker, even if the first still answers
        logger.warning("connection to %s lost (%s); reconnecting", lost, _describe(exc))
        delays = intervals(policy)
        recoverable = connection._recoverable_connection_errors()
        started = time.monotonic()
        for attempt in itertools.count(1):
            if connection._closed is True:
                raise exc  # closed by another thread meanwhile: stop trying
            try:
                established = connection._establish()
            except recoverable as error:
                if isinstance(error, TLSVerificationError):
                    # The certificate will not change by waiting: an
                    # operator must act. (It is an OSError, so it looks
                    # recoverable.)
                    logger.warning(
                        "not reconnecting to %s: %s", connection._masked_url(), _describe(error)
                    )
                    raise
                if max_retries and attempt > max_retries:
                    logger.warning(
                        "giving up reconnecting to %s after %d attempts: %s",
                        connection._masked_url(),
                        attempt,
                        _describe(error),
                    )
                    raise
                delay = next(delays)
                logger.warning(
                    "reconnect attempt %d to %s failed (%s); next attempt in %.1f s",
                    attempt,
                    connection._masked_url(),
                    _describe(error),
                    delay,
                )
                time.sleep(delay)
            else:
                if connection._closed is True:  # closed while connecting: not ours to open
                    connection._close_quietly(established)
                    raise exc
                connection._connection = established
                connection._closed = False
                break
        connection._generation += 1
        logger.info(
            "recovered: connected to %s after %d attempt(s) in %.1f s",
            connection._masked_url(),
            attempt,
            time.monotonic() - started,
        )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _drop(connection: Any) -> None:
    """Forget the lost connection, releasing its socket without a close handshake."""
    old, connection._connection = connection._connection, None
    connection._backend = None
    if old is None:
        return
    collect = getattr(old, "collect", None)
    try:
        if collect is not None:
            collect()  # py-amqp and kombu: drop the socket, no handshake to hang on
        else:
            connection._close_quietly(old)
    except Exception:  # a dead connection's clean-up may fail any way; it is gone
        logger.debug("error dropping the lost connection", exc_info=True)


def _stale_settle(delivery_tag: Any) -> None:
    logger.debug("settling delivery %r ignored: it came on a lost connection", delivery_tag)


def _retire(backend: Any) -> None:
    """Make the acks of messages delivered through ``backend`` no-ops (its connection is gone)."""
    for name in ("ack", "reject", "requeue"):
        setattr(backend, name, _stale_settle)


def _generation_of(entity: Any) -> int:
    connection = entity.connection
    try:
        return int(connection._backend_generations.get(entity.backend, connection._generation))
    except TypeError:  # an unhashable backend
        return int(connection._generation)


# -- rebinding ------------------------------------------------------------------


def _new_backend(entity: Any) -> Any:
    old = entity.backend
    entity.backend = entity.connection.create_backend()
    _retire(old)
    return entity.backend


def _declare_again(consumer: Any) -> None:
    """Declare ``consumer``'s queue, exchange and binding on its (new) backend.

    A queue declared ``exclusive`` may still be locked for a moment by the
    broker's memory of the dead connection: its channel error is retried.
    """
    deadline = time.monotonic() + EXCLUSIVE_QUEUE_GRACE
    while True:
        try:
            type(consumer).declare(consumer)
            return
        except consumer.connection.channel_errors:
            if not consumer.exclusive or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _flag(entity: Any, name: str) -> Any:
    """What :func:`install` recorded on ``entity`` (``None``: not installed on it)."""
    return getattr(entity, name, None)


def _rebind_publisher(publisher: Any, resend: list[Any] | None = None) -> None:
    """A new channel for ``publisher``; with confirms, re-send what the old one left unconfirmed.

    :param resend: more messages to publish again (ones the broker nacked).
    """
    window = publisher._confirms
    left = window.reset() if window is not None else []
    old = publisher.backend
    backend = _new_backend(publisher)
    with contextlib.suppress(Exception):  # the old channel may be dead, or merely nacking
        old.close()
    if window is not None:
        backend.confirm_select(window)
    if publisher.exchange and (publisher.auto_declare or _flag(publisher, "_recovery_declared")):
        type(publisher).declare(publisher)
    if window is not None and (left or resend):
        # At-least-once: the broker may already hold some of these.
        publisher._republish(left + list(resend or ()))


def _rebind_consumer(consumer: Any) -> None:
    owner_ref = _flag(consumer, "_recovery_owner")
    owner = owner_ref() if owner_ref else None
    if owner is not None and consumer in owner.consumers:
        _rebind(owner)
        return
    backend = _new_backend(consumer)
    if consumer.auto_declare or _flag(consumer, "_recovery_declared"):
        _declare_again(consumer)
    qos = _flag(consumer, "_recovery_qos")
    if qos is not None:
        backend.qos(*qos)
    if consumer.channel_open:
        consumer.channel_open = False
        type(consumer).consume(consumer, no_ack=consumer._consuming_no_ack)


def _rebind_consumer_set(consumer_set: Any) -> None:
    backend = _new_backend(consumer_set)
    for consumer in consumer_set.consumers:
        if consumer.backend is not backend:
            old, consumer.backend = consumer.backend, backend
            _retire(old)
        consumer._recovery_owner = weakref.ref(consumer_set)
        if consumer.auto_declare or _flag(consumer, "_recovery_declared"):
            _declare_again(consumer)
    qos = _flag(consumer_set, "_recovery_qos")
    if qos is not None:
        backend.qos(*qos)
    registered = list(consumer_set._open_consumers.values())
    consumer_set._open_consumers = {}
    for consumer in registered:
        consumer.channel_open = False
        consumer_set._declare_consumer(consumer, nowait=True)


def _rebind(entity: Any) -> None:
    """Give ``entity`` a channel on the current connection and redo what it set up."""
    from carrot.messaging import Consumer, ConsumerSet

    # If the new connection is lost again while rebinding, the error
    # propagates to the guard, which recovers once more.
    connection = entity.connection
    with connection._recovery_lock:
        if isinstance(entity, ConsumerSet):
            _rebind_consumer_set(entity)
        elif isinstance(entity, Consumer):
            _rebind_consumer(entity)
        else:
            _rebind_publisher(entity)
    logger.info("recovered %r on %s", entity, connection._masked_url())


def _current(entity: Any) -> int:
    """Rebind ``entity`` if its channel is from an older connection; the generation now."""
    generation = int(entity.connection._generation)
    if _generation_of(entity) != generation:
        _rebind(entity)
    return generation


# -- wrappers ---------------------------------------------------------------------


def _guard(entity: Any, method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` made again after each recovery, until it returns or fails otherwise."""
    connection = entity.connection

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        while True:
            generation = _current(entity)
            try:
                return method(*args, **kwargs)
            except Exception as exc:
                if not should_recover(connection, exc):
                    raise
                reconnect(connection, exc, generation)

    return call


def _guard_iter(entity: Any, method: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """``iterconsume(limit)`` that carries on over recoveries, counting toward ``limit``."""
    connection = entity.connection

    def begin(
        limit: int | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Iterator[Any], int]:
        # Registers the consumers now, as iterconsume() always did.
        while True:
            generation = _current(entity)
            try:
                return method(limit, *args, **kwargs), generation
            except Exception as exc:
                if not should_recover(connection, exc):
                    raise
                reconnect(connection, exc, generation)

    def run(
        iterator: Iterator[Any],
        generation: int,
        limit: int | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Iterator[Any]:
        done = 0
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                return
            except Exception as exc:
                if not should_recover(connection, exc):
                    raise
                reconnect(connection, exc, generation)
                iterator, generation = begin(limit - done if limit else limit, args, kwargs)
                continue
            done += 1
            yield item

    @functools.wraps(method)
    def iterconsume(limit: int | None = None, *args: Any, **kwargs: Any) -> Iterator[Any]:
        iterator, generation = begin(limit, args, kwargs)
        return run(iterator, generation, limit, args, kwargs)

    return iterconsume


def _recording(entity: Any, method: Callable[..., Any], attribute: str) -> Callable[..., Any]:
    """``method`` that also remembers its arguments (``qos``) or that it ran (``declare``)."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        if attribute == "_recovery_qos":
            names = ("prefetch_size", "prefetch_count", "apply_global")
            values = dict(zip(names, (0, 0, False), strict=True))
            values.update(zip(names, args, strict=False))
            values.update(kwargs)
            entity._recovery_qos = tuple(values[name] for name in names)
        else:
            setattr(entity, attribute, True)
        return result

    return call


def install(entity: Any) -> None:
    """Make ``entity`` (a Publisher, Consumer or ConsumerSet) recover on its own.

    Its broker calls become instance attributes that wrap the class's
    methods (a subclass's overrides included); an object whose connection
    has ``auto_recover=False`` is never touched, so its calls cost nothing
    more.
    """
    from carrot.messaging import Consumer, ConsumerSet

    connection = entity.connection
    if not getattr(connection, "auto_recover", False) or not hasattr(connection, "_generation"):
        return
    entity._recovery_declared = False
    entity._recovery_qos = None
    # Tested through ``kind``, so ``entity`` stays Any: its methods are replaced.
    kind = ConsumerSet if isinstance(entity, ConsumerSet) else type(entity)
    if kind is ConsumerSet:
        for consumer in entity.consumers:
            consumer._recovery_owner = weakref.ref(entity)
        entity.consume = _guard(entity, entity.consume)
        entity.iterconsume = _guard_iter(entity, entity.iterconsume)
        entity.qos = _recording(entity, entity.qos, "_recovery_qos")
        entity.add_consumer_from_dict = _owning(entity, entity.add_consumer_from_dict)
        entity.add_consumer = _owning(entity, entity.add_consumer)
    elif issubclass(kind, Consumer):
        entity._recovery_owner = None
        entity.fetch = _guard(entity, entity.fetch)
        entity.consume = _guard(entity, entity.consume)
        entity.iterconsume = _guard_iter(entity, entity.iterconsume)
        entity.declare = _recording(entity, entity.declare, "_recovery_declared")
        entity.qos = _recording(entity, entity.qos, "_recovery_qos")
    elif entity._confirms is not None:
        entity.send = _guard_confirmed_send(entity, entity.send)
        entity.wait_for_confirms = _guard_confirmed(entity, entity.wait_for_confirms)
        entity.declare = _recording(entity, entity.declare, "_recovery_declared")
    else:
        entity.send = _guard(entity, entity.send)
        entity.declare = _recording(entity, entity.declare, "_recovery_declared")


def _guard_confirmed(
    publisher: Any, method: Callable[..., Any], send: bool = False
) -> Callable[..., Any]:
    """A confirmed ``send`` or ``wait_for_confirms`` that rides through recoveries and nacks.

    A lost connection: reconnect, and the rebind re-sends every message the
    lost channel left unconfirmed. A nack: after the retry policy's next
    delay, a fresh channel re-sends the nacked messages (a quorum queue
    whose leader just died nacks until a new one is elected, and an early
    nacked channel may go on nacking); :exc:`~carrot.exceptions.MessageNacked`
    is raised once ``max_retries`` re-sends were nacked too. A ``send``
    whose message was already written then only waits for its confirm.
    """
    from carrot.connection import DEFAULT_RETRY_POLICY
    from carrot.exceptions import MessageNacked

    connection = publisher.connection

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        policy = {**DEFAULT_RETRY_POLICY, **(connection.retry_policy or {})}
        delays = intervals(policy)
        nacks = 0
        resume = False  # the send's own message is in the window: only wait
        resend: list[Any] | None = None  # nacked messages for a fresh channel
        while True:
            generation = connection._generation
            batch = None
            try:
                # Inside the try: a rebind (which re-sends) may lose the new
                # connection too, and is then recovered like any other call.
                _current(publisher)
                if resend is not None:
                    batch, resend = resend, None
                    with connection._recovery_lock:
                        _rebind_publisher(publisher, resend=batch)
                    batch = None
                if resume:
                    return publisher._finish_confirmed()
                publisher._taken = False
                return method(*args, **kwargs)
            except MessageNacked as exc:
                nacks += 1
                if policy["max_retries"] and nacks > policy["max_retries"]:
                    raise
                resume = resume or (send and publisher._taken)
                delay = next(delays)
                logger.warning(
                    "%d message(s) nacked by %s; re-sending on a fresh channel in %.1f s",
                    len(exc.messages),
                    connection._masked_url(),
                    delay,
                )
                time.sleep(delay)
                resend = exc.messages
            except Exception as exc:
                if not should_recover(connection, exc):
                    raise
                resume = resume or (send and publisher._taken)
                # A batch cut off mid-way goes again whole (at-least-once).
                resend = batch
                reconnect(connection, exc, generation)

    return call


def _guard_confirmed_send(publisher: Any, method: Callable[..., Any]) -> Callable[..., Any]:
    return _guard_confirmed(publisher, method, send=True)


def _owning(consumer_set: Any, method: Callable[..., Any]) -> Callable[..., Any]:
    """``add_consumer``/``add_consumer_from_dict`` that also note the set owns the consumer."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        for consumer in consumer_set.consumers:
            consumer._recovery_owner = weakref.ref(consumer_set)
        return result

    return call
