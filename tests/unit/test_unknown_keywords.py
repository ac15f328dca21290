"""Unknown keyword arguments: still accepted, with one CarrotWarning at the caller's line."""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Iterator
from itertools import count
from types import SimpleNamespace

import pytest

from carrot._keywords import known_keywords
from carrot.backends import queue as memory
from carrot.connection import BrokerConnection, DjangoBrokerConnection
from carrot.exceptions import CarrotWarning
from carrot.messaging import Consumer, ConsumerSet, Messaging, Publisher

#: The keywords RELIABILITY.md adds (or adds soon): each class must know its own.
RELIABILITY_KEYWORDS = {
    BrokerConnection: (
        "heartbeat",
        "auto_recover",
        "retry_policy",
        "failover_strategy",
        "ssl",
        "max_body_size",
        "accept",
    ),
    Consumer: ("accept", "on_decode_error"),
    ConsumerSet: ("accept", "on_decode_error"),
    Publisher: ("confirm", "max_unconfirmed", "mandatory"),
}


@pytest.fixture
def conn() -> Iterator[BrokerConnection]:
    memory.reset()
    connection = BrokerConnection(backend_cls="memory")
    try:
        yield connection
    finally:
        connection.close()
        memory.reset()


def _only_warning(caught: list[warnings.WarningMessage]) -> warnings.WarningMessage:
    carrot = [w for w in caught if issubclass(w.category, CarrotWarning)]
    assert len(carrot) == 1, [str(w.message) for w in carrot]
    return carrot[0]


def test_carrot_warning_is_a_user_warning_not_an_error() -> None:
    from carrot.exceptions import CarrotError

    assert issubclass(CarrotWarning, UserWarning)
    assert not issubclass(CarrotWarning, CarrotError)


@pytest.mark.parametrize(
    "build",
    [
        lambda c: Consumer(c, queue="q", durible=True),
        lambda c: Publisher(c, exchange="x", durible=True),
        lambda c: ConsumerSet(c, durible=True),
        lambda c: Messaging(c, queue="q", exchange="x", durible=True),
        lambda c: BrokerConnection(backend_cls="memory", durible=True),
    ],
    ids=["Consumer", "Publisher", "ConsumerSet", "Messaging", "BrokerConnection"],
)
def test_unknown_keyword_warns_once_naming_it_at_the_callers_line(conn, build) -> None:
    line = inspect.getsourcelines(build)[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obj = build(conn)
    warning = _only_warning(caught)
    assert "'durible'" in str(warning.message)
    assert warning.filename == __file__
    assert warning.lineno == line
    # still accepted, as carrot 0.10 did: the object works and ignored it
    assert obj is not None


def test_consumer_warning_points_at_the_test_line(conn) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        consumer = Consumer(conn, queue="q", durible=False, auto_ak=True)
    warning = _only_warning(caught)
    assert (warning.filename, warning.lineno) == (__file__, line)
    text = str(warning.message)
    assert "Consumer()" in text
    assert "'auto_ak'" in text
    assert "'durible'" in text
    # carrot 0.10 behaviour kept: the unknown keyword changed nothing
    assert consumer.durable is True
    assert consumer.auto_ack is False


def test_consumer_set_from_dict_typo_points_at_the_callers_line(conn) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        ConsumerSet(conn, from_dict={"q": {"exchange": "x", "routing_key": "q", "durible": 1}})
    warning = _only_warning(caught)
    assert "'durible'" in str(warning.message)
    assert (warning.filename, warning.lineno) == (__file__, line)


def test_warning_from_a_subclass_points_at_its_super_call(conn) -> None:
    class Typo(Consumer):
        def __init__(self, connection: BrokerConnection) -> None:
            self.line = inspect.currentframe().f_lineno + 1
            super().__init__(connection, queue="q", auto_decalre=False)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        consumer = Typo(conn)
    warning = _only_warning(caught)
    assert (warning.filename, warning.lineno) == (__file__, consumer.line)


def test_an_error_filter_turns_it_into_an_exception(conn) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", CarrotWarning)
        with pytest.raises(CarrotWarning, match="'durible'"):
            Consumer(conn, queue="q", durible=True)


@pytest.mark.parametrize(("cls", "names"), list(RELIABILITY_KEYWORDS.items()))
def test_reliability_keywords_are_known(cls: type, names: tuple[str, ...]) -> None:
    assert set(names) <= known_keywords(cls)


@pytest.mark.parametrize("cls", [Consumer, Publisher])
def test_init_opts_and_signature_are_known(cls: type) -> None:
    known = known_keywords(cls)
    assert set(cls._init_opts) <= known
    assert {"connection", "exchange", "routing_key", "backend"} <= known


def test_known_keywords_do_not_warn(conn) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", CarrotWarning)
        consumer = Consumer(
            conn,
            queue="q",
            exchange="x",
            routing_key="q",
            durable=False,
            exclusive=False,
            auto_delete=True,
            exchange_type="direct",
            warn_if_exists=False,
            auto_ack=False,
            auto_declare=True,
            queue_arguments=None,
            no_ack=False,
            backend=None,
        )
        Publisher(
            conn,
            exchange="x",
            routing_key="q",
            exchange_type="direct",
            durable=False,
            auto_delete=True,
            serializer="json",
            delivery_mode="transient",
            auto_declare=True,
            backend=consumer.backend,
        )
        ConsumerSet(conn, from_dict={"q": {"binding_key": "q"}}, auto_ack=True)
        # Messaging passes the publisher's and the consumer's options to both.
        Messaging(conn, queue="q", exchange="x", routing_key="q", serializer="json", durable=True)
        BrokerConnection(
            *("h", "u", "p", "/", 1, None),
            insist=False,
            connect_timeout=1,
            ssl=False,
            transport="memory",
        )


def test_a_connections_info_and_copy_round_trip_without_warning(conn) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", CarrotWarning)
        assert BrokerConnection(**conn.info()).backend_cls == "memory"
        assert copy.copy(conn).backend_cls == "memory"


def test_django_connection_knows_settings() -> None:
    settings = SimpleNamespace(BROKER_HOST="h", CARROT_BACKEND="memory")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CarrotWarning)
        connection = DjangoBrokerConnection(settings=settings)
    assert connection.hostname == "h"
    with pytest.warns(CarrotWarning, match="'hostnam'"):
        DjangoBrokerConnection(settings=settings, hostnam="x")


def test_a_keyword_a_subclass_declares_is_known(conn) -> None:
    class Explicit(Consumer):
        def __init__(self, connection: BrokerConnection, *, prefetch: int = 0, **kwargs) -> None:
            self.prefetch = prefetch
            super().__init__(connection, **kwargs)

    class Declared(Publisher):
        _keywords = ("region",)

    with warnings.catch_warnings():
        warnings.simplefilter("error", CarrotWarning)
        assert Explicit(conn, queue="q", prefetch=4, durable=False).prefetch == 4
        Declared(conn, exchange="x", region="eu", durable=False)
    # the base class still warns about it
    with pytest.warns(CarrotWarning, match="'region'"):
        Publisher(conn, exchange="x", region="eu")


def test_messaging_warns_once_for_a_keyword_neither_side_knows(conn) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        messaging = Messaging(conn, queue="q", exchange="x", routing_key="q", serialiser="json")
    warning = _only_warning(caught)
    assert "Messaging()" in str(warning.message)
    assert "did you mean 'serializer'?" in str(warning.message)
    assert messaging.publisher.serializer is None


# -- Messaging's class defaults and the consumer tag --------------------------


def test_messaging_class_defaults_are_empty_strings_as_in_carrot(conn) -> None:
    assert (Messaging.queue, Messaging.exchange, Messaging.routing_key) == ("", "", "")
    messaging = Messaging(conn)
    assert (messaging.queue, messaging.exchange, messaging.routing_key) == ("", "", "")
    assert messaging.consumer.queue == ""
    assert messaging.publisher.exchange == ""

    class Feed(Messaging):
        queue = exchange = routing_key = "feed"

    feed = Feed(conn)
    feed.send({"n": 1})
    assert feed.fetch().payload == {"n": 1}


def test_consumer_tag_uses_next_consumer_tag(conn) -> None:
    tag = Consumer(conn, queue="q").consumer_tag
    assert tag.startswith("carrot.messaging.Consumer")
    number = tag[len("carrot.messaging.Consumer") :].split(".")[0]
    assert number.isdigit()


def test_a_subclass_overrides_next_consumer_tag(conn) -> None:
    class Method(Consumer):
        def _next_consumer_tag(self) -> str:
            return "-worker-7"

    class Counter(Consumer):
        # carrot's own idiom: a counter's next as a class attribute
        _next_consumer_tag = count(100).__next__

    assert ".Method-worker-7." in Method(conn, queue="q").consumer_tag
    first = Counter(conn, queue="q").consumer_tag
    second = Counter(conn, queue="q").consumer_tag
    assert ".Counter100." in first
    assert ".Counter101." in second
