"""Usage patterns of Celery 1.x-era services and Django projects, on the memory backend.

Each test is written the way legacy code wrote it (class attributes on
subclasses, ``from_dict`` consumer sets, ``while it.next()`` loops,
``DjangoBrokerConnection()`` from settings, a ghettoq-style backend named by
dotted path), translated to Python 3 only where the language requires it.
The same patterns against RabbitMQ are in tests/live/test_legacy_patterns_live.py.
"""

from __future__ import annotations

import itertools
import pickle
import socket
from collections import defaultdict, deque
from types import SimpleNamespace
from typing import Any

import pytest

from carrot.backends import queue as memory
from carrot.backends.base import BaseBackend, BaseMessage, MessageStateError
from carrot.connection import BrokerConnection, DjangoBrokerConnection
from carrot.exceptions import (
    BackendNotFound,
    EncodeError,
    SerializerNotInstalled,
    UnknownDeliveryModeError,
)
from carrot.messaging import Consumer, ConsumerSet, Messaging, Publisher


@pytest.fixture(autouse=True)
def _clean_memory() -> Any:
    memory.reset()
    yield
    memory.reset()


@pytest.fixture
def conn() -> Any:
    connection = BrokerConnection(backend_cls="memory")
    yield connection
    connection.close()


class TaskPublisher(Publisher):
    exchange = "celery"
    routing_key = "celery"
    serializer = "pickle"


class TaskConsumer(Consumer):
    queue = "celery"
    exchange = "celery"
    routing_key = "celery"
    exchange_type = "direct"


def test_celery_task_publisher_and_consumer_subclasses(conn) -> None:
    publisher = TaskPublisher(conn)
    consumer = TaskConsumer(conn)
    task = {"task": "tasks.add", "id": "1", "args": (2, 2), "kwargs": {}}
    publisher.send(task)
    message = consumer.fetch()
    assert message.content_type == "application/x-python-serialize"
    assert message.payload == task  # a tuple survives pickle
    assert message.delivery_info["routing_key"] == "celery"
    assert message.delivery_info["exchange"] == "celery"
    message.ack()
    assert consumer.fetch() is None
    publisher.close()
    consumer.close()


def test_send_with_serializer_pickle_overrides_the_class_default(conn) -> None:
    publisher = Publisher(conn, exchange="e", routing_key="r")
    consumer = Consumer(conn, queue="q", exchange="e", routing_key="r")
    publisher.send({"a": {1, 2}}, serializer="pickle")
    message = consumer.fetch()
    assert pickle.loads(message.body) == {"a": {1, 2}}
    assert message.payload == {"a": {1, 2}}


def test_consumer_set_from_dict_iterconsume_next_loop(conn) -> None:
    received = []
    cset = ConsumerSet(
        conn,
        from_dict={
            "celery": {"exchange": "celery", "binding_key": "celery", "exchange_type": "direct"}
        },
    )
    assert [c.routing_key for c in cset.consumers] == ["celery"]

    def on_message(message_data, message):
        received.append(message_data)
        message.ack()

    cset.register_callback(on_message)
    publisher = TaskPublisher(conn)
    for i in range(3):
        publisher.send({"n": i})
    it = cset.iterconsume()
    for _ in range(3):  # Celery 1.0: ``while True: it.next()``
        assert next(it)
    assert received == [{"n": 0}, {"n": 1}, {"n": 2}]
    cset.close()
    # A closed channel ends the iterator (the loop's way out).
    assert list(itertools.islice(it, 1)) == []


def test_consumer_set_drained_through_the_connection(conn) -> None:
    received = []
    cset = ConsumerSet(conn, from_dict={"celery": {"exchange": "celery", "binding_key": "celery"}})
    cset.register_callback(lambda data, message: (received.append(data), message.ack()))
    cset.consume()
    TaskPublisher(conn).send("hello")
    for _ in range(10):  # Celery 1.x's listener loop, bounded
        try:
            conn.drain_events(timeout=0.5)
        except TimeoutError:
            break
    assert received == ["hello"]
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.05)
    cset.close()


def test_message_payload_and_double_ack(conn) -> None:
    Publisher(conn, exchange="e").send({"x": 1})
    message = Consumer(conn, queue="q", exchange="e").fetch()
    assert message.payload == {"x": 1}
    assert message.payload is message.payload
    message.ack()
    assert message.acknowledged
    with pytest.raises(MessageStateError):
        message.ack()
    # carrot code caught it through the message's own attribute too.
    with pytest.raises(message.MessageStateError):
        message.reject()


def test_discard_all_returns_the_counts(conn) -> None:
    publisher = Publisher(conn, exchange="e")
    consumer = Consumer(conn, queue="q", exchange="e")
    for i in range(5):
        publisher.send(i)
    assert consumer.discard_all(filterfunc=lambda m: m.payload % 2 == 0) == 3
    assert consumer.discard_all() == 2
    assert consumer.discard_all() == 0
    assert consumer.fetch() is None


def test_no_ack_consumer_iterconsume(conn) -> None:
    received = []
    consumer = Consumer(conn, queue="q", exchange="e", no_ack=True)
    consumer.register_callback(lambda data, message: received.append(data))
    publisher = Publisher(conn, exchange="e")
    publisher.send("a")
    publisher.send("b")
    assert list(consumer.iterconsume(limit=2)) == [True, True]
    assert received == ["a", "b"]
    consumer.close()


def test_with_broker_connection_block_closes() -> None:
    with BrokerConnection(backend_cls="memory") as conn:
        publisher = Publisher(conn, exchange="e")
        publisher.send("x")
        assert conn.connection is not None
        assert Consumer(conn, queue="q", exchange="e").fetch().payload == "x"
    assert conn._closed is True
    assert conn.connection is None


def test_django_broker_connection_from_settings() -> None:
    settings = SimpleNamespace(
        BROKER_HOST="rabbit.example.com",
        BROKER_PORT=5673,
        BROKER_USER="celery",
        BROKER_PASSWORD="secret",
        BROKER_VHOST="/celery",
        CARROT_BACKEND="memory",
    )
    conn = DjangoBrokerConnection(settings=settings)
    assert conn.info()["hostname"] == "rabbit.example.com"
    assert (conn.port, conn.userid, conn.password) == (5673, "celery", "secret")
    assert conn.virtual_host == "/celery"
    assert conn.get_backend_cls() is memory.Backend
    # Explicit arguments win over settings.
    assert DjangoBrokerConnection(hostname="other", settings=settings).hostname == "other"
    # It works end to end like any connection.
    Publisher(conn, exchange="e").send({"django": True})
    assert Consumer(conn, queue="q", exchange="e").fetch().payload == {"django": True}
    conn.close()


# -- a ghettoq-style backend named by dotted path ----------------------------

#: queue name -> waiting messages, the "database" of the backend below.
_GHETTO_QUEUES: defaultdict[str, deque[dict[str, Any]]] = defaultdict(deque)


class GhettoMessage(BaseMessage):
    """ghettoq built its message from the stored payload dict."""

    def __init__(self, backend: Any, payload: dict[str, Any], **kwargs: Any) -> None:
        kwargs["body"] = payload["body"]
        kwargs["content_type"] = payload["content-type"]
        kwargs["content_encoding"] = payload["content-encoding"]
        kwargs["delivery_tag"] = payload["delivery_tag"]
        super().__init__(backend, **kwargs)


class GhettoBackend(BaseBackend):
    """Routes by exchange name to a queue of the same name, as ghettoq's simple setups."""

    Message = GhettoMessage
    _tags = itertools.count(1)

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.acked: list[Any] = []
        self.declared_exchanges: list[str] = []
        self._consumers: dict[str, tuple[str, Any]] = {}

    def exchange_declare(self, exchange, type, durable, auto_delete):  # noqa: A002 -- carrot's name
        self.declared_exchanges.append(exchange)

    def get(self, queue: str, **kwargs: Any) -> GhettoMessage | None:
        try:
            payload = _GHETTO_QUEUES[queue].popleft()
        except IndexError:
            return None
        return self.Message(backend=self, payload=payload)

    def prepare_message(
        self, message_data, delivery_mode, priority=0, content_type=None, content_encoding=None
    ):
        return {
            "body": message_data,
            "priority": priority,
            "content-type": content_type,
            "content-encoding": content_encoding,
        }

    def publish(self, message, exchange, routing_key, **kwargs):
        _GHETTO_QUEUES[exchange].append({**message, "delivery_tag": next(self._tags)})

    def queue_purge(self, queue, **kwargs):
        count = len(_GHETTO_QUEUES[queue])
        _GHETTO_QUEUES[queue].clear()
        return count

    def ack(self, delivery_tag):
        self.acked.append(delivery_tag)

    def declare_consumer(self, queue, no_ack, callback, consumer_tag, **kwargs):
        self._consumers[consumer_tag] = (queue, callback)

    def consume(self, limit=None):
        for delivered in itertools.count():
            if limit and delivered >= limit:
                return
            for queue, callback in list(self._consumers.values()):
                message = self.get(queue)
                if message is not None:
                    callback(message)
                    break
            else:
                return
            yield True


@pytest.fixture
def ghetto_conn() -> Any:
    _GHETTO_QUEUES.clear()
    conn = BrokerConnection(backend_cls=f"{__name__}.GhettoBackend")
    yield conn
    conn.close()
    _GHETTO_QUEUES.clear()


def test_ghettoq_style_backend_publish_fetch_discard(ghetto_conn) -> None:
    assert ghetto_conn.get_backend_cls() is GhettoBackend
    publisher = Publisher(ghetto_conn, exchange="tasks", routing_key="tasks")
    consumer = Consumer(ghetto_conn, queue="tasks", exchange="tasks", routing_key="tasks")
    publisher.send({"n": 1})
    publisher.send({"n": 2}, serializer="pickle")
    message = consumer.fetch()
    assert message.payload == {"n": 1}
    message.ack()
    assert consumer.backend.acked == [message.delivery_tag]
    with pytest.raises(MessageStateError):
        message.ack()
    assert consumer.discard_all() == 1
    assert consumer.fetch() is None


def test_publisher_declare_on_the_default_exchange_declares_nothing(ghetto_conn) -> None:
    # Code sending straight to a queue (exchange "", routing key = queue)
    # still calls declare(); RabbitMQ refuses to declare the default exchange.
    publisher = Publisher(ghetto_conn, exchange="", routing_key="tasks")
    publisher.declare()
    assert publisher.backend.declared_exchanges == []
    named = Publisher(ghetto_conn, exchange="tasks")
    assert named.backend.declared_exchanges == ["tasks"]


def test_ghettoq_style_backend_consumes_with_callbacks(ghetto_conn) -> None:
    publisher = Publisher(ghetto_conn, exchange="tasks")
    consumer = Consumer(ghetto_conn, queue="tasks", exchange="tasks")
    received = []
    consumer.register_callback(lambda data, message: received.append(data))
    publisher.send("one")
    publisher.send("two")
    assert list(consumer.iterconsume(limit=5)) == [True, True]
    assert received == ["one", "two"]


# -- bad input: a clear error, nothing sent or lost ---------------------------


def test_unencodable_body_sends_nothing(conn) -> None:
    publisher = Publisher(conn, exchange="e")
    with pytest.raises(EncodeError, match="object"):
        publisher.send({"when": object()})
    with pytest.raises(TypeError):  # carrot callers caught the json error as TypeError
        publisher.send({"when": object()})
    assert memory.mqueue.qsize() == 0


def test_unknown_serializer_names_it_and_sends_nothing(conn) -> None:
    publisher = Publisher(conn, exchange="e")
    with pytest.raises(SerializerNotInstalled, match="'bson'"):
        publisher.send({"a": 1}, serializer="bson")
    assert memory.mqueue.qsize() == 0


def test_unknown_backend_alias_names_it() -> None:
    with pytest.raises(BackendNotFound, match="'rabbitmqq'"):
        BrokerConnection(backend_cls="rabbitmqq").create_backend()
    with pytest.raises(ImportError):  # what carrot 0.10 raised
        BrokerConnection(backend_cls="no.such.module.Backend").create_backend()


@pytest.mark.parametrize("mode", ["bogus", "2", 3, -1, 2.5, b"persistent", [2]])
def test_bad_delivery_mode_names_it_and_sends_nothing(conn, mode) -> None:
    with pytest.raises(UnknownDeliveryModeError, match=repr(mode).replace("[", r"\[")):
        Publisher(conn, exchange="e", delivery_mode=mode)
    publisher = Publisher(conn, exchange="e")
    with pytest.raises(ValueError, match="delivery mode"):
        publisher.send("x", delivery_mode=mode)
    assert memory.mqueue.qsize() == 0


def test_delivery_mode_zero(conn) -> None:
    with pytest.raises(UnknownDeliveryModeError, match="0"):
        Publisher(conn, exchange="e", delivery_mode=0)
    # compat: carrot used ``delivery_mode or self.delivery_mode`` per message.
    Publisher(conn, exchange="e", delivery_mode=1).send("x", delivery_mode=0)
    assert Consumer(conn, queue="q", exchange="e").fetch().properties["delivery_mode"] == 1


@pytest.mark.parametrize("mode", ["transient", "persistent", "non-persistent", 1, 2])
def test_good_delivery_modes_are_sent(conn, mode) -> None:
    Publisher(conn, exchange="e", delivery_mode=mode).send("x")
    Publisher(conn, exchange="e").send("y", delivery_mode=mode)
    consumer = Consumer(conn, queue="q", exchange="e")
    expected = Publisher.DELIVERY_MODES.get(mode, mode)
    modes = [consumer.fetch().properties["delivery_mode"] for _ in range(2)]
    assert modes == [expected, expected]


def test_consumer_set_keeps_going_after_an_undecodable_body(conn) -> None:
    errors = []
    received = []
    cset = ConsumerSet(
        conn,
        from_dict={"celery": {"exchange": "celery", "binding_key": "celery"}},
        on_decode_error=lambda message, exc: (errors.append(message.body), message.ack()),
    )
    cset.register_callback(lambda data, message: (received.append(data), message.ack()))
    publisher = Publisher(conn, exchange="celery", routing_key="celery")
    publisher.send(b"{not json", content_type="application/json", content_encoding="utf-8")
    publisher.send({"ok": 1})
    it = cset.iterconsume(limit=2)
    assert list(it) == [True, True]
    assert errors == [b"{not json"]
    assert received == [{"ok": 1}]
    cset.close()


# -- auto_ack never acks a delivery the broker sent with no_ack ----------------


def test_auto_ack_consumer_with_no_ack_does_not_ack(ghetto_conn) -> None:
    # RabbitMQ closes the channel on an ack for a no_ack delivery (unknown
    # delivery tag), dropping the deliveries still in flight.
    consumer = Consumer(ghetto_conn, queue="tasks", exchange="tasks", no_ack=True, auto_ack=True)
    received = []
    consumer.register_callback(lambda data, message: received.append(data))
    Publisher(ghetto_conn, exchange="tasks").send("a")
    assert list(consumer.iterconsume(limit=1)) == [True]
    assert received == ["a"]
    assert consumer.backend.acked == []


def test_auto_ack_consumer_consuming_with_no_ack_argument(ghetto_conn) -> None:
    consumer = Consumer(ghetto_conn, queue="tasks", exchange="tasks", auto_ack=True)
    consumer.register_callback(lambda data, message: None)
    Publisher(ghetto_conn, exchange="tasks").send("a")
    assert list(consumer.iterconsume(limit=1, no_ack=True)) == [True]
    assert consumer.backend.acked == []


def test_auto_ack_consumer_without_no_ack_still_acks(ghetto_conn) -> None:
    consumer = Consumer(ghetto_conn, queue="tasks", exchange="tasks", auto_ack=True)
    consumer.register_callback(lambda data, message: None)
    Publisher(ghetto_conn, exchange="tasks").send("a")
    assert list(consumer.iterconsume(limit=1)) == [True]
    assert len(consumer.backend.acked) == 1


def test_auto_ack_consumer_set_skips_no_ack_children(conn, monkeypatch) -> None:
    acked = []
    monkeypatch.setattr(memory.Backend, "ack", lambda self, tag: acked.append(tag))
    cset = ConsumerSet(conn, auto_ack=True)
    cset.add_consumer_from_dict("q1", exchange="e1", no_ack=True)
    cset.register_callback(lambda data, message: None)
    Publisher(conn, exchange="e1").send("a")
    assert list(cset.iterconsume(limit=1)) == [True]
    assert acked == []
    cset.cancel()
    cset.add_consumer_from_dict("q2", exchange="e2")
    cset.cancel_by_queue("q1")
    Publisher(conn, exchange="e2").send("b")
    assert list(cset.iterconsume(limit=1)) == [True]
    assert len(acked) == 1
    cset.close()


def test_message_subclass_that_skips_base_init() -> None:
    # Some third-party backends set the attributes themselves.
    class BareMessage(BaseMessage):
        def __init__(self, backend, body, content_type, content_encoding):
            self.backend = backend
            self.body = body
            self.content_type = content_type
            self.content_encoding = content_encoding
            self.delivery_tag = 7
            self.delivery_info = {}

    backend = GhettoBackend(connection=None)
    message = BareMessage(backend, b'{"a":1}', "application/json", "utf-8")
    assert message.payload == {"a": 1}
    assert not message.acknowledged
    message.ack()
    assert backend.acked == [7]
    with pytest.raises(MessageStateError):
        message.ack()


def test_messaging_passes_options_to_publisher_and_consumer(conn) -> None:
    messaging = Messaging(
        conn, queue="m", exchange="m", routing_key="m", serializer="pickle", durable=False
    )
    assert messaging.publisher.serializer == "pickle"
    assert (messaging.publisher.durable, messaging.consumer.durable) == (False, False)
    received = []
    messaging.register_callback(lambda data, message: received.append(data))
    messaging.send({"a": (1, 2)})
    message = messaging.fetch(enable_callbacks=True)
    assert message.content_type == "application/x-python-serialize"
    assert received == [{"a": (1, 2)}]
    messaging.close()


def test_consumer_set_of_consumers_with_on_decode_error_attribute(conn) -> None:
    # Celery 1.0: ConsumerSet(conn, consumers=[...]) and the handler assigned
    # as an attribute after construction.
    errors, received = [], []
    task_consumer = TaskConsumer(conn)
    cset = ConsumerSet(conn, consumers=[task_consumer])
    assert task_consumer.backend is cset.backend
    cset.on_decode_error = lambda message, exc: errors.append(type(exc).__name__)
    cset.register_callback(lambda data, message: received.append(data))
    publisher = TaskPublisher(conn)
    publisher.send(b"\x80 not a pickle", content_type="application/x-python-serialize")
    publisher.send({"ok": True})
    assert list(cset.iterconsume(limit=2)) == [True, True]
    assert errors == ["DecodeError"]
    assert received == [{"ok": True}]
    cset.close()


def test_discard_all_with_a_filter_keeps_the_order_of_the_rest(conn) -> None:
    publisher = Publisher(conn, exchange="e")
    consumer = Consumer(conn, queue="q", exchange="e")
    for i in range(6):
        publisher.send(i)
    assert consumer.discard_all(filterfunc=lambda m: m.payload % 2 == 0) == 3
    assert [m.payload for m in consumer.iterqueue(limit=10)] == [1, 3, 5]


def test_consumer_tag_keeps_carrots_prefix(conn) -> None:
    first, second = TaskConsumer(conn), TaskConsumer(conn)
    prefix = f"{__name__}.TaskConsumer"
    assert first.consumer_tag.startswith(prefix)
    assert second.consumer_tag.startswith(prefix)
    assert first.consumer_tag != second.consumer_tag


def test_empty_consumer_set_consume_does_nothing(conn) -> None:
    cset = ConsumerSet(conn)
    cset.consume()
    assert cset.backend.consumers == {}
    cset.close()


def test_a_child_with_callbacks_of_its_own_gets_its_messages_alone(conn, monkeypatch) -> None:
    # carrot 0.10 handed such a child's messages to the child only, as if it
    # consumed alone (its callbacks, its auto_ack): a task handler on the set
    # never saw the control messages of a broadcast consumer added to it.
    acked = []
    monkeypatch.setattr(memory.Backend, "ack", lambda self, tag: acked.append(tag))
    tasks, control = [], []

    def handle(message_data, message):
        control.append(message_data)
        message.ack()

    broadcast = Consumer(conn, queue="control", exchange="control", exchange_type="fanout")
    broadcast.register_callback(handle)
    cset = ConsumerSet(conn, consumers=[broadcast], auto_ack=True)
    cset.register_callback(lambda data, message: tasks.append(data))
    cset.add_consumer_from_dict("celery", exchange="celery", binding_key="celery")
    Publisher(conn, exchange="control", exchange_type="fanout").send("shutdown")
    assert list(cset.iterconsume(limit=1)) == [True]
    assert (tasks, control) == ([], ["shutdown"])
    assert len(acked) == 1  # by the child's callback; the set's auto_ack left it alone
    cset.cancel_by_queue("control")
    Publisher(conn, exchange="celery").send("task")
    assert list(cset.iterconsume(limit=1)) == [True]
    assert (tasks, control) == (["task"], ["shutdown"])
    assert len(acked) == 2  # the set's auto_ack
    cset.close()


def test_a_callback_on_both_the_set_and_its_consumer_runs_once(conn) -> None:
    handled = []

    def handle(message_data, message):
        handled.append(message_data)
        message.ack()

    consumer = TaskConsumer(conn)
    consumer.register_callback(handle)
    cset = ConsumerSet(conn, consumers=[consumer])
    cset.register_callback(handle)
    TaskPublisher(conn).send("once")
    assert list(cset.iterconsume(limit=1)) == [True]
    assert handled == ["once"]
    cset.close()


@pytest.mark.parametrize("priority", [300, -1, "high", 2.5, [1]])
def test_bad_priority_names_it_and_sends_nothing(conn, priority) -> None:
    publisher = Publisher(conn, exchange="e")
    with pytest.raises(EncodeError, match="priority") as excinfo:
        publisher.send("x", priority=priority)
    assert repr(priority) in str(excinfo.value)
    assert memory.mqueue.qsize() == 0


@pytest.mark.parametrize("priority", [None, 0, 9, 255, True])
def test_good_priorities_are_sent(conn, priority) -> None:
    Publisher(conn, exchange="e").send("x", priority=priority)
    message = Consumer(conn, queue="q", exchange="e").fetch()
    assert message.properties["priority"] == priority


def test_consumer_set_on_a_backend_whose_messages_skip_base_init(ghetto_conn) -> None:
    class BareMessage(BaseMessage):
        def __init__(self, backend, payload):
            self.backend = backend
            self.body = payload["body"]
            self.content_type = payload["content-type"]
            self.content_encoding = payload["content-encoding"]
            self.delivery_tag = payload["delivery_tag"]

    class BareBackend(GhettoBackend):
        Message = BareMessage

    received = []
    cset = ConsumerSet(ghetto_conn, auto_ack=True)
    cset.backend = BareBackend(ghetto_conn)
    cset.add_consumer_from_dict("tasks", exchange="tasks")
    cset.register_callback(lambda data, message: received.append(data))
    Publisher(ghetto_conn, exchange="tasks").send({"n": 1})
    assert list(cset.iterconsume(limit=1)) == [True]
    assert received == [{"n": 1}]
    assert len(cset.backend.acked) == 1


def test_wait_iterqueue_and_process_next(conn) -> None:
    publisher = TaskPublisher(conn)
    consumer = TaskConsumer(conn)
    received = []
    consumer.register_callback(lambda data, message: (received.append(data), message.ack()))
    for i in range(5):
        publisher.send(i)
    assert consumer.wait(limit=2) == [True, True]
    consumer.cancel()
    with pytest.warns(DeprecationWarning, match="fetch"):
        assert consumer.process_next().payload == 2
    assert [m.payload for m in consumer.iterqueue(limit=1)] == [3]
    message = next(iter(consumer))  # __iter__: iterqueue(infinite=True)
    assert message.payload == 4
    assert next(iter(consumer)) is None
    assert received == [0, 1, 2]


def test_message_to_python_override_point(conn) -> None:
    # Real code wrapped the backend's messages in its own class.
    class Tagged(memory.Message):
        tagged = True

    consumer = TaskConsumer(conn)
    original = consumer.backend.message_to_python

    def message_to_python(raw_message):
        message = original(raw_message)
        message.__class__ = Tagged
        return message

    consumer.backend.message_to_python = message_to_python
    seen = []
    consumer.register_callback(lambda data, message: seen.append(message.tagged))
    TaskPublisher(conn).send("x")
    assert consumer.wait(limit=1) == [True]
    assert seen == [True]
    consumer.close()


def test_celery_1_0_mainloop_on_the_raw_connection(conn) -> None:
    # Celery 1.0's listener: if the backend's connection has drain_events,
    # start consuming with iterconsume() (the iterator is dropped) and drain
    # the raw connection; a broadcast consumer on its own channel too.
    tasks, control = [], []
    cset = ConsumerSet(conn, from_dict={"celery": {"exchange": "celery", "binding_key": "celery"}})
    cset.register_callback(lambda data, message: (tasks.append(data), message.ack()))
    cset.qos(prefetch_count=4)
    broadcast = Consumer(conn, queue="celeryctl.host", exchange="celeryctl", exchange_type="fanout")
    broadcast.register_callback(lambda data, message: (control.append(data), message.ack()))
    assert hasattr(conn.connection, "drain_events")
    cset.iterconsume()
    broadcast.consume()
    TaskPublisher(conn).send("task")
    Publisher(conn, exchange="celeryctl", exchange_type="fanout").send("ping")
    for _ in range(10):
        if len(tasks) + len(control) == 2:
            break
        conn.connection.drain_events(timeout=1)
    # No routing on the memory backend: each went to one of the two consumers.
    assert sorted(tasks + control) == ["ping", "task"]
    cset.close()
    broadcast.close()
