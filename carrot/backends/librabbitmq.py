"""The ``librabbitmq`` backend name, served by py-amqp.

carrot 0.10 had a backend on librabbitmq, the C client for RabbitMQ.
librabbitmq has no release for Python 3.10 or newer, so this module keeps the
name working without it: :class:`Backend` *is* the py-amqp backend
(:class:`carrot.backends.pyamqplib.Backend`) under this name, whether or not
a ``librabbitmq`` package happens to be importable. Nothing is warned or
logged; the behaviour is exactly that of the default backend.

Features: those of :mod:`carrot.backends.pyamqplib`.

.. versionchanged:: 0.11
   ``backend_cls="librabbitmq"`` runs on py-amqp instead of librabbitmq.
"""

from __future__ import annotations

from carrot.backends import pyamqplib

__all__ = ["DEFAULT_PORT", "Backend", "Connection", "Message"]

#: The AMQP port.
DEFAULT_PORT = pyamqplib.DEFAULT_PORT

#: compat: the connection class carrot's librabbitmq module exported; here
#: py-amqp's (with ``drain_events``/``wait_multi``).
Connection = pyamqplib.Connection

#: compat: the message class carrot's librabbitmq module exported; here
#: py-amqp's.
Message = pyamqplib.Message


class Backend(pyamqplib.Backend):
    """The py-amqp backend, under carrot's ``librabbitmq`` name.

    :param connection: the :class:`~carrot.connection.BrokerConnection`.
    """
