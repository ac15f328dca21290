"""The py-amqp backend's machinery, one module per layer.

* :mod:`~carrot.backends._amqp.seam`: the only module touching py-amqp's
  private names; checks them at import and turns the fast path off if
  they changed.
* :mod:`~carrot.backends._amqp.framing`: frames as bytes (no I/O).
* :mod:`~carrot.backends._amqp.acks`: which acks are held back, and when
  they are written.
* :mod:`~carrot.backends._amqp.reader`: the socket read buffer and frame loop.
* :mod:`~carrot.backends._amqp.inbound`: deliveries and confirms assembled
  in place from the frames read.
* :mod:`~carrot.backends._amqp.channel` and
  :mod:`~carrot.backends._amqp.connection`: the py-amqp channel and
  connection with the fast publish, deliver and ack paths.

* :mod:`~carrot.backends._amqp.backend_channel` and
  :mod:`~carrot.backends._amqp.message`: the backend's channel (returns,
  confirms) and the message it hands consumers.

:mod:`carrot.backends.pyamqplib` builds the public backend on them.
"""
