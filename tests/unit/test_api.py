"""Pin the public API of the foundation modules against SPEC.md.

Every name SPEC lists must import from its legacy home, and every public
callable must keep its parameter names, order, kinds and defaults. Annotations
are ours and are not compared.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

#: module -> names SPEC lists for it.
PUBLIC_NAMES = {
    "carrot": [
        "VERSION",
        "__version__",
        "__author__",
        "__contact__",
        "__homepage__",
        "__docformat__",
    ],
    "carrot.connection": [
        "DEFAULT_CONNECT_TIMEOUT",
        "SETTING_PREFIX",
        "COMPAT_SETTING_PREFIX",
        "ARG_TO_DJANGO_SETTING",
        "SETTING_DEPRECATED_FMT",
        "BrokerConnection",
        "AMQPConnection",
        "ConnectionLimitExceeded",
        "ConnectionPool",
        "get_django_conninfo",
        "DjangoBrokerConnection",
        "DjangoAMQPConnection",
    ],
    "carrot.utils": [
        "gen_unique_id",
        "partition",
        "rpartition",
        "repeatlast",
        "retry_over_time",
    ],
    "carrot.backends": [
        "DEFAULT_BACKEND",
        "BACKEND_ALIASES",
        "resolve_backend",
        "get_backend_cls",
        "DefaultBackend",
    ],
    "carrot.backends.base": [
        "ACKNOWLEDGED_STATES",
        "MessageStateError",
        "BaseMessage",
        "BaseBackend",
    ],
    "carrot.backends.pyamqplib": [
        "DEFAULT_PORT",
        "Connection",
        "Message",
        "Backend",
        "QueueAlreadyExistsWarning",
    ],
}

#: dotted name -> SPEC's parameter list (``self`` left out for methods).
SIGNATURES = {
    # carrot.connection
    "carrot.connection.BrokerConnection": (
        "hostname=None, userid=None, password=None, virtual_host=None, port=None, pool=None,"
        " **kwargs"
    ),
    "carrot.connection.BrokerConnection.connect": "",
    "carrot.connection.BrokerConnection.close": "",
    "carrot.connection.BrokerConnection.create_backend": "",
    "carrot.connection.BrokerConnection.get_backend_cls": "",
    "carrot.connection.BrokerConnection.get_channel": "",
    "carrot.connection.BrokerConnection.channel": "",
    "carrot.connection.BrokerConnection.drain_events": "**kwargs",
    "carrot.connection.BrokerConnection.ensure_connection": (
        "errback=None, max_retries=None, interval_start=2, interval_step=2, interval_max=30"
    ),
    "carrot.connection.BrokerConnection.info": "",
    "carrot.connection.BrokerConnection.release": "",
    "carrot.connection.BrokerConnection.__copy__": "",
    "carrot.connection.ConnectionPool": "source_connection, min=2, max=None, preload=True",
    "carrot.connection.ConnectionPool.acquire": "block=False, timeout=None, connect_timeout=None",
    "carrot.connection.ConnectionPool.release": "connection",
    "carrot.connection.get_django_conninfo": "settings=None",
    "carrot.connection.DjangoBrokerConnection": "*args, **kwargs",
    # carrot.utils
    "carrot.utils.gen_unique_id": "",
    "carrot.utils.partition": "S, sep",
    "carrot.utils.rpartition": "S, sep",
    "carrot.utils.repeatlast": "it",
    "carrot.utils.retry_over_time": (
        "fun, catch, args=[], kwargs={}, errback=None, max_retries=None, interval_start=2,"
        " interval_step=2, interval_max=30"
    ),
    # carrot.backends
    "carrot.backends.resolve_backend": "backend=None",
    "carrot.backends.get_backend_cls": "backend=None",
    # carrot.backends.base
    "carrot.backends.base.BaseMessage": "backend, **kwargs",
    "carrot.backends.base.BaseMessage.decode": "",
    "carrot.backends.base.BaseMessage.ack": "",
    "carrot.backends.base.BaseMessage.reject": "",
    "carrot.backends.base.BaseMessage.requeue": "",
    "carrot.backends.base.BaseBackend": "connection, **kwargs",
    "carrot.backends.base.BaseBackend.flow": "active",
    "carrot.backends.base.BaseBackend.qos": "prefetch_size, prefetch_count, apply_global=False",
    "carrot.backends.base.BaseBackend.establish_connection": "",
    "carrot.backends.base.BaseBackend.close": "",
    # carrot.backends.pyamqplib
    "carrot.backends.pyamqplib.Message": "backend, amqp_message, **kwargs",
    "carrot.backends.pyamqplib.Backend": "connection, **kwargs",
    "carrot.backends.pyamqplib.Backend.queue_exists": "queue",
    "carrot.backends.pyamqplib.Backend.queue_delete": "queue, if_unused=False, if_empty=False",
    "carrot.backends.pyamqplib.Backend.queue_purge": "queue, **kwargs",
    "carrot.backends.pyamqplib.Backend.queue_declare": (
        "queue, durable, exclusive, auto_delete, warn_if_exists=False, arguments=None"
    ),
    "carrot.backends.pyamqplib.Backend.exchange_declare": "exchange, type, durable, auto_delete",
    "carrot.backends.pyamqplib.Backend.queue_bind": (
        "queue, exchange, routing_key, arguments=None"
    ),
    "carrot.backends.pyamqplib.Backend.get": "queue, no_ack=False",
    "carrot.backends.pyamqplib.Backend.declare_consumer": (
        "queue, no_ack, callback, consumer_tag, nowait=False"
    ),
    "carrot.backends.pyamqplib.Backend.consume": "limit=None",
    "carrot.backends.pyamqplib.Backend.cancel": "consumer_tag",
    "carrot.backends.pyamqplib.Backend.close": "",
    "carrot.backends.pyamqplib.Backend.ack": "delivery_tag",
    "carrot.backends.pyamqplib.Backend.reject": "delivery_tag",
    "carrot.backends.pyamqplib.Backend.requeue": "delivery_tag",
    "carrot.backends.pyamqplib.Backend.prepare_message": (
        "message_data, delivery_mode, priority=None, content_type=None, content_encoding=None"
    ),
    "carrot.backends.pyamqplib.Backend.publish": (
        "message, exchange, routing_key, mandatory=None, immediate=None, headers=None"
    ),
    "carrot.backends.pyamqplib.Backend.qos": "prefetch_size, prefetch_count, apply_global=False",
    "carrot.backends.pyamqplib.Backend.flow": "active",
    "carrot.backends.pyamqplib.Backend.establish_connection": "",
    "carrot.backends.pyamqplib.Backend.close_connection": "connection",
    "carrot.backends.pyamqplib.Connection.drain_events": "allowed_methods=None, timeout=None",
    "carrot.backends.pyamqplib.Connection.wait_multi": (
        "channels, allowed_methods=None, timeout=None"
    ),
}

#: Methods every backend has (SPEC, carrot.backends.base).
BASE_BACKEND_METHODS = [
    "queue_declare",
    "queue_delete",
    "exchange_declare",
    "queue_bind",
    "get",
    "declare_consumer",
    "consume",
    "cancel",
    "ack",
    "queue_purge",
    "reject",
    "requeue",
    "purge",
    "message_to_python",
    "prepare_message",
    "publish",
    "close",
    "establish_connection",
    "close_connection",
    "flow",
    "qos",
]


def _resolve(dotted: str):
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _shape(sig: inspect.Signature) -> list[tuple[str, str, object]]:
    return [
        (p.name, p.kind.name, p.default if p.default is not p.empty else "<required>")
        for p in sig.parameters.values()
    ]


def _expected(params: str) -> list[tuple[str, str, object]]:
    namespace: dict[str, object] = {}
    exec(f"def f({params}): pass", namespace)  # our own literal table, not input
    return _shape(inspect.signature(namespace["f"]))


def _actual(dotted: str) -> list[tuple[str, str, object]]:
    obj = _resolve(dotted)
    sig = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
    shape = _shape(sig)
    # Methods and __init__ looked up on the class still carry ``self``.
    if shape and shape[0][0] == "self":
        shape = shape[1:]
    return shape


@pytest.mark.parametrize(
    ("module", "name"),
    [(module, name) for module, names in PUBLIC_NAMES.items() for name in names],
)
def test_public_name_importable(module: str, name: str) -> None:
    mod = importlib.import_module(module)
    assert getattr(mod, name) is not None
    ns: dict[str, object] = {}
    exec(f"from {module} import {name}", ns)  # the form legacy code uses
    assert name in ns


@pytest.mark.parametrize("dotted", sorted(SIGNATURES))
def test_signature_matches_spec(dotted: str) -> None:
    assert _actual(dotted) == _expected(SIGNATURES[dotted])


@pytest.mark.parametrize("method", BASE_BACKEND_METHODS)
def test_base_backend_has_contract_method(method: str) -> None:
    from carrot.backends.base import BaseBackend
    from carrot.backends.pyamqplib import Backend

    assert callable(getattr(BaseBackend, method))
    assert callable(getattr(Backend, method))


def test_version_metadata() -> None:
    import carrot

    assert isinstance(carrot.VERSION, tuple)
    assert carrot.VERSION >= (0, 11, 0)
    assert carrot.__version__ == ".".join(map(str, carrot.VERSION))
    assert carrot.__docformat__ == "restructuredtext"
    for attr in ("__author__", "__contact__", "__homepage__"):
        assert isinstance(getattr(carrot, attr), str)
        assert getattr(carrot, attr)


def test_connection_constants() -> None:
    from carrot import connection

    assert connection.DEFAULT_CONNECT_TIMEOUT == 5
    assert connection.SETTING_PREFIX == "BROKER"
    assert connection.COMPAT_SETTING_PREFIX == "AMQP"
    assert connection.ARG_TO_DJANGO_SETTING == {
        "hostname": "HOST",
        "userid": "USER",
        "password": "PASSWORD",
        "virtual_host": "VHOST",
        "port": "PORT",
    }
    assert connection.SETTING_DEPRECATED_FMT % ("AMQP_HOST", "BROKER_HOST")
    assert connection.AMQPConnection is connection.BrokerConnection
    assert connection.DjangoAMQPConnection is connection.DjangoBrokerConnection


def test_broker_connection_class_attributes() -> None:
    from carrot.backends.pyamqplib import Backend
    from carrot.connection import DEFAULT_CONNECT_TIMEOUT, BrokerConnection

    assert BrokerConnection.virtual_host == "/"
    assert BrokerConnection.port is None
    assert BrokerConnection.insist is False
    assert BrokerConnection.connect_timeout == DEFAULT_CONNECT_TIMEOUT
    assert BrokerConnection.ssl is False
    assert BrokerConnection.backend_cls is None
    assert BrokerConnection._closed is True
    assert issubclass(BrokerConnection.ConnectionException, Exception)
    assert BrokerConnection.ConnectionException in Backend.connection_errors


def test_host_and_connection_are_properties() -> None:
    from carrot.connection import BrokerConnection

    for name in ("host", "connection", "connection_errors", "channel_errors"):
        assert isinstance(inspect.getattr_static(BrokerConnection, name), property), name


def test_backend_channel_is_a_property() -> None:
    from carrot.backends.pyamqplib import Backend

    assert isinstance(inspect.getattr_static(Backend, "channel"), property)


def test_base_constants() -> None:
    from carrot.backends import base
    from carrot.exceptions import MessageStateError

    assert frozenset(["ACK", "REJECTED", "REQUEUED"]) == base.ACKNOWLEDGED_STATES
    assert isinstance(base.ACKNOWLEDGED_STATES, frozenset)
    assert base.MessageStateError is MessageStateError
    assert base.BaseMessage.MessageStateError is MessageStateError
    assert base.BaseBackend.connection_errors == ()
    assert base.BaseBackend.channel_errors == ()
    assert hasattr(base.BaseBackend, "default_port")
    assert hasattr(base.BaseBackend, "extra_options")


def test_pyamqplib_constants() -> None:
    import amqp

    from carrot.backends import pyamqplib
    from carrot.backends.base import BaseBackend, BaseMessage

    assert pyamqplib.DEFAULT_PORT == 5672
    assert pyamqplib.Backend.default_port == 5672
    assert issubclass(pyamqplib.Connection, amqp.Connection)
    assert issubclass(pyamqplib.QueueAlreadyExistsWarning, Warning)
    assert issubclass(pyamqplib.Message, BaseMessage)
    assert issubclass(pyamqplib.Backend, BaseBackend)


def test_exceptions_are_the_same_objects_at_every_home() -> None:
    from carrot import connection, exceptions
    from carrot.backends import base

    assert connection.ConnectionLimitExceeded is exceptions.ConnectionLimitExceeded
    assert base.MessageStateError is exceptions.MessageStateError


# -- carrot.messaging, carrot.serialization, carrot.backends.queue ----------

MESSAGING_NAMES = {
    "carrot.messaging": ["Consumer", "Publisher", "Messaging", "ConsumerSet"],
    "carrot.serialization": [
        "SerializerNotInstalled",
        "SerializerRegistry",
        "registry",
        "encode",
        "decode",
        "raw_encode",
        "register_json",
        "register_yaml",
        "register_pickle",
        "register_msgpack",
    ],
    "carrot.backends.queue": ["Backend", "Message", "mqueue"],
}

#: dotted name -> SPEC's parameter list, for the messaging layer and serialization.
MESSAGING_SIGNATURES = {
    "carrot.messaging.Consumer": (
        "connection, queue=None, exchange=None, routing_key=None, **kwargs"
    ),
    "carrot.messaging.Consumer.declare": "",
    "carrot.messaging.Consumer.fetch": "no_ack=None, auto_ack=None, enable_callbacks=False",
    "carrot.messaging.Consumer.process_next": "",
    "carrot.messaging.Consumer.receive": "message_data, message",
    "carrot.messaging.Consumer.register_callback": "callback",
    "carrot.messaging.Consumer.purge": "",
    "carrot.messaging.Consumer.discard_all": "filterfunc=None",
    "carrot.messaging.Consumer.iterconsume": "limit=None, no_ack=None",
    "carrot.messaging.Consumer.consume": "no_ack=None",
    "carrot.messaging.Consumer.wait": "limit=None",
    "carrot.messaging.Consumer.iterqueue": "limit=None, infinite=False",
    "carrot.messaging.Consumer.cancel": "",
    "carrot.messaging.Consumer.close": "",
    "carrot.messaging.Consumer.flow": "active",
    "carrot.messaging.Consumer.qos": "prefetch_size=0, prefetch_count=0, apply_global=False",
    "carrot.messaging.Consumer._receive_callback": "raw_message",
    "carrot.messaging.Publisher": "connection, exchange=None, routing_key=None, **kwargs",
    "carrot.messaging.Publisher.declare": "",
    "carrot.messaging.Publisher.create_message": (
        "message_data, delivery_mode=None, priority=None, content_type=None,"
        " content_encoding=None, serializer=None"
    ),
    "carrot.messaging.Publisher.send": (
        "message_data, routing_key=None, delivery_mode=None, mandatory=False, immediate=False,"
        " priority=0, content_type=None, content_encoding=None, serializer=None, exchange=None"
    ),
    "carrot.messaging.Publisher.close": "",
    "carrot.messaging.Messaging": "connection, **kwargs",
    "carrot.messaging.Messaging.register_callback": "callback",
    "carrot.messaging.Messaging.receive": "message_data, message",
    "carrot.messaging.Messaging.send": "message_data, delivery_mode=None",
    "carrot.messaging.Messaging.fetch": "**kwargs",
    "carrot.messaging.Messaging.close": "",
    "carrot.messaging.ConsumerSet": (
        "connection, from_dict=None, consumers=None, callbacks=None, **options"
    ),
    "carrot.messaging.ConsumerSet.add_consumer": "consumer",
    "carrot.messaging.ConsumerSet.add_consumer_from_dict": "queue, **options",
    "carrot.messaging.ConsumerSet.register_callback": "callback",
    "carrot.messaging.ConsumerSet.receive": "message_data, message",
    "carrot.messaging.ConsumerSet.consume": "",
    "carrot.messaging.ConsumerSet.iterconsume": "limit=None",
    "carrot.messaging.ConsumerSet.discard_all": "",
    "carrot.messaging.ConsumerSet.flow": "active",
    "carrot.messaging.ConsumerSet.qos": "prefetch_size=0, prefetch_count=0, apply_global=False",
    "carrot.messaging.ConsumerSet.cancel": "",
    "carrot.messaging.ConsumerSet.cancel_by_queue": "queue",
    "carrot.messaging.ConsumerSet.close": "",
    "carrot.messaging.ConsumerSet._receive_callback": "raw_message",
    # carrot.serialization
    "carrot.serialization.SerializerRegistry.register": (
        "name, encoder, decoder, content_type, content_encoding='utf-8'"
    ),
    "carrot.serialization.SerializerRegistry._set_default_serializer": "name",
    "carrot.serialization.SerializerRegistry.encode": "data, serializer=None",
    "carrot.serialization.SerializerRegistry.decode": (
        "data, content_type, content_encoding, accept=None"
    ),
    "carrot.serialization.encode": "data, serializer=None",
    "carrot.serialization.decode": "data, content_type, content_encoding, accept=None",
    "carrot.serialization.raw_encode": "data",
    "carrot.serialization.register_json": "",
    "carrot.serialization.register_yaml": "",
    "carrot.serialization.register_pickle": "",
    "carrot.serialization.register_msgpack": "",
    # carrot.backends.queue: the calls carrot's messaging layer (and old code) makes
    "carrot.backends.queue.Backend": "connection, **kwargs",
    "carrot.backends.queue.Message": "backend, **kwargs",
    "carrot.backends.queue.Backend.declare_consumer": (
        "queue, no_ack, callback, consumer_tag, nowait=False"
    ),
    "carrot.backends.queue.Backend.consume": "limit=None",
    "carrot.backends.queue.Backend.cancel": "consumer_tag",
    "carrot.backends.queue.Backend.ack": "delivery_tag",
    "carrot.backends.queue.Backend.reject": "delivery_tag",
    "carrot.backends.queue.Backend.requeue": "delivery_tag",
    "carrot.backends.queue.Backend.qos": "prefetch_size, prefetch_count, apply_global=False",
    "carrot.backends.queue.Backend.flow": "active",
    "carrot.backends.queue.Backend.publish": (
        "message, exchange, routing_key, mandatory=None, immediate=None, headers=None, **kwargs"
    ),
    # issue 13: carrot 0.10's positions and extra arguments.
    "carrot.backends.queue.Backend.get": "*args, **kwargs",
    "carrot.backends.queue.Backend.prepare_message": (
        "message_data, delivery_mode, content_type=None, content_encoding=None, **kwargs"
    ),
    "carrot.backends.pikachu.Message": "backend, amqp_message, **kwargs",
    "carrot.backends.pikachu.SyncBackend.queue_bind": (
        "queue, exchange, routing_key, arguments={}"
    ),
    "carrot.backends.pystomp.Backend.ack": "frame",
    "carrot.backends.pystomp.Backend.queue_declare": "queue, *args, **kwargs",
    "carrot.backends.pystomp.Backend.declare_consumer": (
        "queue, no_ack, callback, consumer_tag, nowait=False, **kwargs"
    ),
    "carrot.backends.pystomp.Backend.publish": (
        "message, exchange, routing_key, mandatory=None, immediate=None, headers=None, **kwargs"
    ),
    "carrot.backends.pystomp.Backend.prepare_message": (
        "message_data, delivery_mode, priority=0, content_type=None, content_encoding=None"
    ),
}


def test_backend_class_attributes_carrot_had() -> None:
    import pika
    import stomp

    from carrot.backends import base, pikachu, pystomp

    assert base.BaseMessage._state is None  # "RECEIVED" once __init__ ran
    assert pikachu.SyncBackend._connection_cls is pika.BlockingConnection
    assert pikachu.AsyncoreBackend._connection_cls is pika.BlockingConnection
    assert pystomp.Backend.Stomp is stomp.Connection12


@pytest.mark.parametrize(
    ("module", "name"),
    [(module, name) for module, names in MESSAGING_NAMES.items() for name in names],
)
def test_messaging_public_name_importable(module: str, name: str) -> None:
    ns: dict[str, object] = {}
    exec(f"from {module} import {name}", ns)  # the form legacy code uses
    assert ns[name] is not None


@pytest.mark.parametrize("dotted", sorted(MESSAGING_SIGNATURES))
def test_messaging_signature_matches_spec(dotted: str) -> None:
    assert _actual(dotted) == _expected(MESSAGING_SIGNATURES[dotted])


def test_queue_backend_takes_carrots_positional_calls() -> None:
    # carrot's messaging layer and old code call these by position.
    for dotted, prefix in {
        "carrot.backends.queue.Backend.queue_purge": ["queue"],
        "carrot.backends.queue.Backend.prepare_message": ["message_data", "delivery_mode"],
        "carrot.backends.queue.Backend.queue_declare": ["queue"],
        "carrot.backends.queue.Backend.exchange_declare": ["exchange", "type"],
        "carrot.backends.queue.Backend.queue_bind": ["queue", "exchange", "routing_key"],
    }.items():
        names = [name for name, _, _ in _actual(dotted)]
        assert names[: len(prefix)] == prefix, dotted


def test_consumer_class_attributes() -> None:
    from carrot.messaging import Consumer

    assert {
        "queue": Consumer.queue,
        "exchange": Consumer.exchange,
        "routing_key": Consumer.routing_key,
        "durable": Consumer.durable,
        "exclusive": Consumer.exclusive,
        "auto_delete": Consumer.auto_delete,
        "exchange_type": Consumer.exchange_type,
        "channel_open": Consumer.channel_open,
        "warn_if_exists": Consumer.warn_if_exists,
        "auto_declare": Consumer.auto_declare,
        "auto_ack": Consumer.auto_ack,
        "queue_arguments": Consumer.queue_arguments,
        "no_ack": Consumer.no_ack,
        "_closed": Consumer._closed,
    } == {
        "queue": "",
        "exchange": "",
        "routing_key": "",
        "durable": True,
        "exclusive": False,
        "auto_delete": False,
        "exchange_type": "direct",
        "channel_open": False,
        "warn_if_exists": False,
        "auto_declare": True,
        "auto_ack": False,
        "queue_arguments": None,
        "no_ack": False,
        "_closed": True,
    }


def test_publisher_class_attributes() -> None:
    from carrot.messaging import Publisher

    assert Publisher.DELIVERY_MODES == {"transient": 1, "persistent": 2, "non-persistent": 1}
    assert Publisher.TRANSIENT_DELIVERY_MODE == 1
    assert Publisher.NONE_PERSISTENT_DELIVERY_MODE == 1
    assert Publisher.PERSISTENT_DELIVERY_MODE == 2
    assert (Publisher.exchange, Publisher.routing_key) == ("", "")
    assert Publisher.delivery_mode == 2
    assert Publisher.exchange_type == "direct"
    assert (Publisher.durable, Publisher.auto_delete, Publisher.auto_declare) == (True, False, True)
    assert Publisher.serializer is None
    assert Publisher._closed is True


def test_messaging_and_consumer_set_class_attributes() -> None:
    from carrot.messaging import Consumer, ConsumerSet, Messaging, Publisher

    assert (Messaging.queue, Messaging.exchange, Messaging.routing_key) == ("", "", "")
    assert Messaging.publisher_cls is Publisher
    assert Messaging.consumer_cls is Consumer
    assert Messaging._closed is True
    assert ConsumerSet.auto_ack is False


def test_serialization_content_types() -> None:
    from carrot import exceptions, serialization

    encoders = serialization.registry._encoders
    assert {name: encoders[name][:2] for name in ("json", "pickle", "yaml", "msgpack")} == {
        "json": ("application/json", "utf-8"),
        "pickle": ("application/x-python-serialize", "binary"),
        "yaml": ("application/x-yaml", "utf-8"),
        "msgpack": ("application/x-msgpack", "binary"),
    }
    assert serialization.SerializerNotInstalled is exceptions.SerializerNotInstalled
    assert serialization.encode(b"x")[:2] == ("application/data", "binary")
    assert serialization.encode("x")[:2] == ("text/plain", "utf-8")
    assert serialization.encode({"x": 1})[:2] == ("application/json", "utf-8")


def test_base_message_payload_is_a_property() -> None:
    from carrot.backends.base import BaseMessage

    assert isinstance(inspect.getattr_static(BaseMessage, "payload"), property)
    assert isinstance(inspect.getattr_static(BaseMessage, "acknowledged"), property)


def test_exceptions_all_lists_every_error_class() -> None:
    from carrot import exceptions

    defined = {
        name
        for name, obj in vars(exceptions).items()
        if isinstance(obj, type)
        and issubclass(obj, (exceptions.CarrotError, exceptions.CarrotWarning))
    }
    assert set(exceptions.__all__) == defined
