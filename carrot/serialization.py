"""Turning message bodies into bytes and back, chosen by content type.

A serializer has a name (``"json"``), an encoder (object -> bytes), a
decoder (text or bytes -> object), a content type and a content encoding
(the charset of the encoded bytes, or ``"binary"``). The publisher sends the
content type and encoding along with the body, so the consumer picks the
decoder by content type and never needs to know the name.

Registered at import, with json the default:

=========  ==================================  ==========
name       content type                        encoding
=========  ==================================  ==========
json       ``application/json``                utf-8
pickle     ``application/x-python-serialize``  binary
yaml       ``application/x-yaml``              utf-8
msgpack    ``application/x-msgpack``           binary
=========  ==================================  ==========

.. warning::
   Decoding follows the content type the *publisher* chose, and unpickling
   a body runs code the body names. Consumers that may receive messages from
   publishers they do not fully trust should refuse pickle:
   ``BrokerConnection(..., accept=["json"])`` does it for every consumer of
   the connection (see :doc:`/security`); :func:`decode` takes ``accept``
   too.

``raw`` is not a registered serializer but a special case of :func:`encode`
(see :func:`raw_encode`). yaml and msgpack need their libraries (PyYAML,
msgpack); without them the names stay registered and raise
:exc:`SerializerNotInstalled` naming the package to install.

>>> from carrot import serialization
>>> serialization.encode({"a": [1, 2]})
('application/json', 'utf-8', b'{"a":[1,2]}')
>>> serialization.decode(b'{"a":[1,2]}', "application/json", "utf-8")
{'a': [1, 2]}
>>> serialization.encode(b"\\x00\\x01")
('application/data', 'binary', b'\\x00\\x01')

Errors: an unknown serializer name raises :exc:`SerializerNotInstalled`; an
object the serializer cannot encode raises
:exc:`~carrot.exceptions.EncodeError` (also a ``TypeError`` and
``ValueError``); a body that cannot be decoded raises
:exc:`~carrot.exceptions.DecodeError` (also a ``ValueError``). Both are
chained from the serializer's own error.

.. versionchanged:: 0.11
   Encoding and decoding failures are raised as ``EncodeError`` and
   ``DecodeError`` (carrot 0.10 let the serializer's own exception through;
   as those were mostly ``TypeError``/``ValueError``, old ``except`` clauses
   still catch ours). msgpack is registered; ``unregister`` is new.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any, NoReturn

from carrot.exceptions import ContentDisallowed, DecodeError, EncodeError, SerializerNotInstalled

__all__ = [
    "RAW_CONTENT_TYPES",
    "SerializerNotInstalled",
    "SerializerRegistry",
    "decode",
    "encode",
    "raw_encode",
    "register_json",
    "register_msgpack",
    "register_pickle",
    "register_yaml",
    "registry",
]

#: Encoders take the message data and return the encoded body: bytes, or
#: str, which is then encoded with the serializer's content encoding.
Encoder = Callable[[Any], bytes | str]
#: Decoders take the (charset-decoded) body and return the message data.
Decoder = Callable[[Any], Any]

#: Content encodings that name no charset: bodies with these stay bytes.
#: compat: carrot 0.10 treated "ascii-8bit" (Ruby's name for binary) like "binary".
_BINARY_ENCODINGS = frozenset({"binary", "ascii-8bit"})

#: Content types that carrot gives back as they are (text or bytes) when no
#: decoder is registered for them: what :func:`encode` sends without a
#: serializer, and a message without a content type. ``accept`` always lets
#: them through, as nothing but a charset decoding runs on them.
RAW_CONTENT_TYPES = frozenset({"application/data", "text/plain", "", None})

#: Body types that are charset-decoded before the content type's decoder runs.
_BYTES_TYPES = (bytes, bytearray, memoryview)


def _encode_error(data: Any, name: str, exc: BaseException) -> EncodeError:
    return EncodeError(f"cannot serialize {type(data).__name__} object with {name}: {exc}")


def _decode_error(
    content_type: str | None, content_encoding: str | None, exc: BaseException
) -> DecodeError:
    return DecodeError(
        f"cannot decode message body with content type {content_type!r} "
        f"and content encoding {content_encoding!r}: {exc.__class__.__name__}: {exc}"
    )


class SerializerRegistry:
    """The serializers known by name (to encode) and by content type (to decode)."""

    def __init__(self) -> None:
        #: name -> (content_type, content_encoding, encoder)
        self._encoders: dict[str, tuple[str, str, Encoder]] = {}
        #: content_type -> decoder
        self._decoders: dict[str, Decoder] = {}
        #: name -> content_type, for :meth:`unregister`.
        self._name_to_type: dict[str, str] = {}
        #: The default serializer's name, encoder, content type and encoding
        #: (None until :meth:`_set_default_serializer` is called).
        self._default_name: str | None = None
        self._default_encode: Encoder | None = None
        self._default_content_type: str | None = None
        self._default_content_encoding: str | None = None

    def register(
        self,
        name: str,
        encoder: Encoder | None,
        decoder: Decoder | None,
        content_type: str,
        content_encoding: str = "utf-8",
    ) -> None:
        """Register a serializer, replacing any of the same name or content type.

        :param name: the name publishers pass as ``serializer=``.
        :param encoder: called with the message data, returns the body as
            ``bytes`` (a ``str`` result is encoded with ``content_encoding``).
            None registers a decoder only.
        :param decoder: called with the body (``str`` after charset decoding,
            or ``bytes`` when ``content_encoding`` is ``"binary"``), returns the
            message data. None registers an encoder only.
        :param content_type: the MIME type sent with each message.
        :param content_encoding: the charset of the encoded body, or
            ``"binary"`` when the body is not text.
        """
        if encoder:
            self._encoders[name] = (content_type, content_encoding, encoder)
        if decoder:
            self._decoders[content_type] = decoder
        self._name_to_type[name] = content_type

    def unregister(self, name: str) -> None:
        """Remove the serializer ``name``: its encoder and its content type's decoder.

        Messages of that content type are then decoded to their text (or
        bytes) only. If it was the default serializer, there is no default
        until :meth:`_set_default_serializer` is called again, and
        :meth:`encode` of anything but ``bytes``/``str`` without a serializer
        raises :exc:`SerializerNotInstalled`.

        :raises SerializerNotInstalled: no serializer of that name is registered.

        .. versionadded:: 0.11
        """
        content_type = self._name_to_type.pop(name, None)
        if content_type is None:
            # compat: code written for carrot filled ``_encoders`` directly.
            if name not in self._encoders:
                raise SerializerNotInstalled(f"no serializer registered as {name!r}")
            content_type = self._encoders[name][0]
        self._encoders.pop(name, None)
        self._decoders.pop(content_type, None)
        if name == self._default_name:
            self._default_name = None
            self._default_encode = None
            self._default_content_type = None
            self._default_content_encoding = None

    def _set_default_serializer(self, name: str) -> None:
        """Make ``name`` the serializer :meth:`encode` uses when given none.

        :raises SerializerNotInstalled: no encoder is registered as ``name``.
        """
        try:
            content_type, content_encoding, encoder = self._encoders[name]
        except KeyError:
            raise SerializerNotInstalled(f"no encoder installed for {name!r}") from None
        self._default_name = name
        self._default_content_type = content_type
        self._default_content_encoding = content_encoding
        self._default_encode = encoder

    def encode(self, data: Any, serializer: str | None = None) -> tuple[str, str, bytes]:
        """Serialize ``data`` into a message body.

        Without a serializer, ``bytes`` are sent as they are
        (``"application/data"``, ``"binary"``), ``str`` as UTF-8 text
        (``"text/plain"``, ``"utf-8"``) and anything else with the default
        serializer (json). ``serializer="raw"`` means :func:`raw_encode`.

        :param data: the message data.
        :keyword serializer: a registered serializer's name, ``"raw"``, or
            None for the rules above.
        :returns: ``(content_type, content_encoding, payload)``, the payload
            being ``bytes``.
        :raises SerializerNotInstalled: ``serializer`` is not registered, or
            its library is not installed.
        :raises carrot.exceptions.EncodeError: the serializer cannot encode
            ``data``.
        """
        # Hot path: called for every message published.
        if serializer:
            if serializer == "raw":
                return raw_encode(data)
            try:
                content_type, content_encoding, encoder = self._encoders[serializer]
            except KeyError:
                raise SerializerNotInstalled(f"no encoder installed for {serializer!r}") from None
        else:
            if isinstance(data, bytes):
                return "application/data", "binary", data
            if isinstance(data, str):
                try:
                    return "text/plain", "utf-8", data.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise _encode_error(data, "utf-8", exc) from exc
            default = self._default_encode
            default_type = self._default_content_type
            default_encoding = self._default_content_encoding
            if default is None or default_type is None or default_encoding is None:
                raise SerializerNotInstalled("no default serializer is set")
            encoder, content_type, content_encoding = default, default_type, default_encoding
            serializer = self._default_name
        try:
            payload = encoder(data)
        except SerializerNotInstalled:
            raise
        except Exception as exc:
            raise _encode_error(data, f"the {serializer} serializer", exc) from exc
        if isinstance(payload, str):
            payload = _text_payload(payload, serializer, content_encoding)
        return content_type, content_encoding, payload

    def accepted_content_types(self, accept: Any) -> frozenset[str] | None:
        """Resolve an ``accept`` list to the content types it allows.

        :param accept: serializer names (``"json"``) and content types
            (``"application/json"``), or None (everything is accepted).
        :returns: the content types, or None for None.
        :raises TypeError: ``accept`` is a single string, not a list of them.
        :raises SerializerNotInstalled: an entry is neither a registered
            serializer's name nor a content type (it has no ``/``).

        .. versionadded:: 0.11
        """
        if accept is None:
            return None
        if isinstance(accept, (str, bytes)):
            raise TypeError(
                f"accept must be a list of serializer names or content types, not {accept!r}"
            )
        types = set()
        for entry in accept:
            content_type = self._name_to_type.get(entry)
            if content_type is None and entry in self._encoders:
                content_type = self._encoders[entry][0]  # compat: filled in directly
            if content_type is None:
                if not isinstance(entry, str) or "/" not in entry:
                    names = ", ".join(sorted(self._name_to_type))
                    raise SerializerNotInstalled(
                        f"accept: {entry!r} is neither a registered serializer ({names}) "
                        "nor a content type"
                    )
                content_type = entry
            types.add(content_type)
        return frozenset(types)

    def is_accepted(self, content_type: str | None, accepted: frozenset[str] | None) -> bool:
        """Whether a body of ``content_type`` may be decoded under ``accepted``.

        :param accepted: content types from :meth:`accepted_content_types`;
            None accepts everything.

        :data:`RAW_CONTENT_TYPES` are accepted unless a decoder is registered
        for them.

        .. versionadded:: 0.11
        """
        # Hot path: once per delivery when the consumer has an accept list.
        return (
            accepted is None
            or content_type in accepted
            or (content_type in RAW_CONTENT_TYPES and content_type not in self._decoders)
        )

    def decode(
        self,
        data: Any,
        content_type: str | None,
        content_encoding: str | None,
        accept: Any = None,
    ) -> Any:
        """Deserialize a message body by its content type and encoding.

        Unless ``content_encoding`` is ``"binary"``, a ``bytes`` body is first
        decoded to ``str`` with that charset (utf-8 when it is empty); a
        ``str`` body is taken as already decoded. Then the decoder registered
        for ``content_type`` runs; without one, the (decoded) body is returned.

        :param data: the message body, ``bytes`` or ``str``.
        :param content_type: the message's content type.
        :param content_encoding: the message's content encoding (charset).
        :keyword accept: serializer names or content types allowed; a body
            of another content type is refused before any decoder sees it.
            None (the default) allows every content type.
        :returns: the message data.
        :raises SerializerNotInstalled: the decoder's library is not installed.
        :raises carrot.exceptions.ContentDisallowed: (a ``DecodeError``) the
            content type is not accepted.
        :raises carrot.exceptions.DecodeError: the body is not valid for its
            charset or content type, or the charset is unknown.

        .. versionchanged:: 0.11
           The ``accept`` keyword.
        """
        # Hot path: called for every message received.
        if accept is not None:
            accepted = self.accepted_content_types(accept)
            if not self.is_accepted(content_type, accepted):
                raise ContentDisallowed(content_type, accepted)
        try:
            if (
                isinstance(data, _BYTES_TYPES)
                and (content_encoding or "utf-8").lower() not in _BINARY_ENCODINGS
            ):
                data = str(data, content_encoding or "utf-8")
            # no content type finds no decoder
            decoder = self._decoders.get(content_type)  # type: ignore[arg-type]
            if decoder is None:
                return data
            return decoder(data)
        except SerializerNotInstalled:
            raise
        except Exception as exc:
            raise _decode_error(content_type, content_encoding, exc) from exc


def _text_payload(payload: str, serializer: str | None, content_encoding: str) -> bytes:
    """Encode a ``str`` returned by a (custom) encoder with its content encoding."""
    if content_encoding.lower() in _BINARY_ENCODINGS:
        raise EncodeError(
            f"the {serializer} serializer returned str but its content encoding is "
            f"{content_encoding!r}; a binary serializer must return bytes"
        )
    try:
        return payload.encode(content_encoding)
    except (UnicodeEncodeError, LookupError) as exc:
        raise EncodeError(
            f"cannot encode the {serializer} serializer's output as {content_encoding!r}: {exc}"
        ) from exc


def raw_encode(data: bytes | str) -> tuple[str, str, bytes]:
    """Send ``data`` as it is: ``bytes`` as binary, ``str`` as UTF-8 text.

    :returns: ``("application/data", "binary", data)`` for bytes (a
        ``bytearray`` or ``memoryview`` is copied to ``bytes``), or
        ``("text/plain", "utf-8", data.encode("utf-8"))`` for str.
    :raises carrot.exceptions.EncodeError: ``data`` is neither (or the str
        cannot be encoded as UTF-8).

    .. versionchanged:: 0.11
       ``str`` is sent as ``text/plain``, as :func:`encode` without a
       serializer does (carrot 0.10 said ``application/data``; consumers see
       the same text either way). Data that is neither bytes nor str raises
       ``EncodeError`` here instead of failing later in the transport.
    """
    if isinstance(data, bytes):
        return "application/data", "binary", data
    if isinstance(data, str):
        try:
            return "text/plain", "utf-8", data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _encode_error(data, "the raw serializer", exc) from exc
    if isinstance(data, (bytearray, memoryview)):
        return "application/data", "binary", bytes(data)
    raise EncodeError(
        f"cannot serialize {type(data).__name__} object with the raw serializer: "
        "it sends bytes or str only"
    )


#: The global registry that :func:`encode` and :func:`decode` use.
registry = SerializerRegistry()

#: Encode with the global :data:`registry` (see :meth:`SerializerRegistry.encode`).
encode = registry.encode

#: Decode with the global :data:`registry` (see :meth:`SerializerRegistry.decode`).
decode = registry.decode


#: Compact separators: smaller bodies. ensure_ascii keeps every str (even
#: lone surrogates) encodable, and the body pure ASCII.
_json_encoder = json.JSONEncoder(separators=(",", ":"))


def _json_dumps(obj: Any, _encode: Callable[[Any], str] = _json_encoder.encode) -> bytes:
    return _encode(obj).encode("ascii")


def register_json() -> None:
    """Register the ``json`` serializer (``application/json``, utf-8), from the standard library.

    .. versionchanged:: 0.11
       Uses the standard :mod:`json` module (carrot 0.10 used anyjson) with
       compact separators; the body is ASCII, non-ASCII text is escaped.
       ``bytes`` inside the data cannot be encoded (``EncodeError``).
    """
    registry.register("json", _json_dumps, json.loads, "application/json", "utf-8")


def _pickle_dumps(obj: Any, _dumps: Callable[..., bytes] = pickle.dumps) -> bytes:
    return _dumps(obj, pickle.DEFAULT_PROTOCOL)


def register_pickle() -> None:
    """Register the ``pickle`` serializer (``application/x-python-serialize``, binary).

    .. warning::
       Only for trusted publishers: unpickling a body runs whatever code the
       body names. Loading stays enabled, as in carrot 0.10; refuse it with
       ``accept=["json"]`` on the consumers, or on the
       :class:`~carrot.connection.BrokerConnection` for all of them (see
       :doc:`/security`).

    .. versionchanged:: 0.11
       Pickles with :data:`pickle.DEFAULT_PROTOCOL` of the running Python
       (carrot 0.10 used cPickle's default, protocol 0, which Python 2
       consumers could read; we do not serve those). Any Python 3 consumer
       whose default protocol is at least as new reads it.
    """
    registry.register(
        "pickle", _pickle_dumps, pickle.loads, "application/x-python-serialize", "binary"
    )


def _register_not_installed(name: str, package: str, content_type: str, encoding: str) -> None:
    """Register ``name`` so that using it raises SerializerNotInstalled naming ``package``."""

    def not_installed(*args: Any, **kwargs: Any) -> NoReturn:
        raise SerializerNotInstalled(
            f"the {name} serializer needs the {package!r} package: pip install {package}"
        )

    registry.register(name, not_installed, not_installed, content_type, encoding)


def register_yaml() -> None:
    """Register the ``yaml`` serializer (``application/x-yaml``, utf-8), from PyYAML.

    Without PyYAML the name is still registered: encoding or decoding YAML
    raises :exc:`SerializerNotInstalled` naming the package.

    .. versionchanged:: 0.11
       Always :func:`yaml.safe_dump`/:func:`yaml.safe_load`, an intended
       departure wherever a carrot release used ``yaml.load``: YAML tags
       naming Python objects are refused (``DecodeError``), never built.
       Without PyYAML, encoding raises ``SerializerNotInstalled`` naming the
       package too (carrot registered no encoder then, so the error named
       only the serializer).
    """
    try:
        import yaml
    except ImportError:
        _register_not_installed("yaml", "PyYAML", "application/x-yaml", "utf-8")
        return

    def yaml_dumps(obj: Any, _dump: Callable[..., bytes] = yaml.safe_dump) -> bytes:
        return _dump(obj, encoding="utf-8", allow_unicode=True)

    registry.register("yaml", yaml_dumps, yaml.safe_load, "application/x-yaml", "utf-8")


def register_msgpack() -> None:
    """Register the ``msgpack`` serializer (``application/x-msgpack``, binary).

    ``str`` and ``bytes`` stay distinct (``use_bin_type=True`` to encode,
    ``raw=False`` to decode); tuples come back as lists, and map keys must be
    ``str`` or ``bytes`` to decode (msgpack's ``strict_map_key``). Without
    msgpack the name is still registered: encoding or decoding raises
    :exc:`SerializerNotInstalled` naming the package.

    .. versionadded:: 0.11
    """
    try:
        import msgpack
    except ImportError:
        _register_not_installed("msgpack", "msgpack", "application/x-msgpack", "binary")
        return

    def msgpack_dumps(obj: Any, _packb: Callable[..., bytes] = msgpack.packb) -> bytes:
        return _packb(obj, use_bin_type=True)

    def msgpack_loads(data: bytes, _unpackb: Callable[..., Any] = msgpack.unpackb) -> Any:
        return _unpackb(data, raw=False)

    registry.register("msgpack", msgpack_dumps, msgpack_loads, "application/x-msgpack", "binary")


# Register the serializers; json is always available, so it is the default.
register_json()
register_pickle()
register_yaml()
register_msgpack()
registry._set_default_serializer("json")
