"""Unit tests for carrot.serialization: no sockets, no broker."""

from __future__ import annotations

import datetime
import doctest
import pickle
import sys
from collections.abc import Callable, Iterator

import pytest

import carrot.exceptions
from carrot import serialization
from carrot.exceptions import CarrotError, DecodeError, EncodeError
from carrot.serialization import SerializerNotInstalled, SerializerRegistry, registry

JSON = ("application/json", "utf-8")
PICKLE = ("application/x-python-serialize", "binary")
YAML = ("application/x-yaml", "utf-8")
MSGPACK = ("application/x-msgpack", "binary")

SERIALIZERS = {"json": JSON, "pickle": PICKLE, "yaml": YAML, "msgpack": MSGPACK}

NESTED = {
    "text": "smörgåsbord ☃ 𝄞 日本語",
    "list": [1, -2, 3.5, None, True, False, "", {"deep": [[], {}]}],
    "dict": {"a": {"b": {"c": {"d": "e"}}}},
    "big": 2**53,
}


@pytest.fixture
def saved_registry() -> Iterator[SerializerRegistry]:
    """The global registry, put back as it was after the test."""
    saved = (
        dict(registry._encoders),
        dict(registry._decoders),
        dict(registry._name_to_type),
        registry._default_name,
        registry._default_encode,
        registry._default_content_type,
        registry._default_content_encoding,
    )
    try:
        yield registry
    finally:
        registry._encoders.clear()
        registry._encoders.update(saved[0])
        registry._decoders.clear()
        registry._decoders.update(saved[1])
        registry._name_to_type.clear()
        registry._name_to_type.update(saved[2])
        (
            registry._default_name,
            registry._default_encode,
            registry._default_content_type,
            registry._default_content_encoding,
        ) = saved[3:]


# --- public API ---------------------------------------------------------------------------


def test_public_names() -> None:
    assert set(serialization.__all__) == {
        "RAW_CONTENT_TYPES",
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
    }
    for name in serialization.__all__:
        assert getattr(serialization, name) is not None, name
        assert getattr(serialization, name).__doc__, f"{name} has no docstring"


def test_serializer_not_installed_is_the_exceptions_class() -> None:
    assert serialization.SerializerNotInstalled is carrot.exceptions.SerializerNotInstalled
    assert issubclass(SerializerNotInstalled, CarrotError)


def test_module_encode_decode_are_bound_to_the_registry() -> None:
    assert serialization.encode.__self__ is registry
    assert serialization.decode.__self__ is registry
    assert isinstance(registry, SerializerRegistry)


def test_registry_has_the_four_serializers_with_exact_types_and_encodings() -> None:
    for name, (content_type, content_encoding) in SERIALIZERS.items():
        assert registry._encoders[name][:2] == (content_type, content_encoding)
        assert callable(registry._encoders[name][2])
        assert callable(registry._decoders[content_type])


def test_default_serializer_is_json() -> None:
    assert registry._default_content_type == "application/json"
    assert registry._default_content_encoding == "utf-8"
    assert registry._default_encode is registry._encoders["json"][2]
    assert serialization.encode({"x": 1})[:2] == JSON


def test_new_registry_starts_empty() -> None:
    reg = SerializerRegistry()
    assert reg._encoders == {}
    assert reg._decoders == {}
    assert reg._default_encode is None
    assert reg._default_content_type is None
    assert reg._default_content_encoding is None


def test_docstring_examples_run() -> None:
    result = doctest.testmod(serialization)
    assert result.attempted > 0
    assert result.failed == 0


# --- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SERIALIZERS))
def test_round_trip_nested_unicode(name: str) -> None:
    content_type, content_encoding, payload = serialization.encode(NESTED, serializer=name)
    assert (content_type, content_encoding) == SERIALIZERS[name]
    assert type(payload) is bytes
    assert serialization.decode(payload, content_type, content_encoding) == NESTED


@pytest.mark.parametrize("name", sorted(SERIALIZERS))
@pytest.mark.parametrize("value", ["", "plain", "ünïcödé ☃", 0, 1.5, None, [], {}])
def test_round_trip_scalars(name: str, value: object) -> None:
    ct, ce, payload = serialization.encode(value, serializer=name)
    decoded = serialization.decode(payload, ct, ce)
    assert decoded == value
    assert type(decoded) is type(value)


@pytest.mark.parametrize("name", sorted(SERIALIZERS))
def test_decode_accepts_the_body_as_str_or_bytes(name: str) -> None:
    ct, ce, payload = serialization.encode(NESTED, serializer=name)
    if ce == "utf-8":
        # What py-amqp hands over when it decoded the body with content_encoding.
        assert serialization.decode(payload.decode("utf-8"), ct, ce) == NESTED
    assert serialization.decode(bytearray(payload), ct, ce) == NESTED
    assert serialization.decode(memoryview(payload), ct, ce) == NESTED


def test_pickle_round_trips_python_types_with_the_default_protocol() -> None:
    value = {"when": datetime.datetime(2010, 1, 2, 3, 4, 5), "set": {1, 2}, "t": (1, b"\x00")}
    ct, ce, payload = serialization.encode(value, serializer="pickle")
    assert payload[0] == 0x80  # PROTO opcode
    assert payload[1] == pickle.DEFAULT_PROTOCOL
    assert serialization.decode(payload, ct, ce) == value


def test_msgpack_keeps_str_and_bytes_apart() -> None:
    value = {"s": "text ☃", "b": b"\x00\xffbytes"}
    ct, ce, payload = serialization.encode(value, serializer="msgpack")
    decoded = serialization.decode(payload, ct, ce)
    assert decoded == value
    assert type(decoded["s"]) is str
    assert type(decoded["b"]) is bytes


def test_yaml_round_trips_dates_and_bytes() -> None:
    value = {"day": datetime.date(2010, 5, 1), "blob": b"\x00\x01"}
    ct, ce, payload = serialization.encode(value, serializer="yaml")
    assert serialization.decode(payload, ct, ce) == value


def test_json_is_compact_and_escapes_non_ascii() -> None:
    payload = serialization.encode({"a": [1, 2], "k": "é"}, serializer="json")[2]
    assert payload == b'{"a":[1,2],"k":"\\u00e9"}'
    assert payload.isascii()


def test_json_decodes_unescaped_utf8_from_other_producers() -> None:
    body = '{"k":"é☃𝄞"}'.encode()
    assert serialization.decode(body, *JSON) == {"k": "é☃𝄞"}


def test_json_round_trips_lone_surrogates() -> None:
    value = {"k": "bad\udcff"}
    ct, ce, payload = serialization.encode(value)
    assert serialization.decode(payload, ct, ce) == value


# --- encode without a serializer, raw -------------------------------------------------------


def test_encode_bytes_is_sent_as_binary_unchanged() -> None:
    data = b"\x00\x01\xff"
    ct, ce, payload = serialization.encode(data)
    assert (ct, ce) == ("application/data", "binary")
    assert payload is data


def test_encode_str_is_sent_as_utf8_text() -> None:
    assert serialization.encode("ünï ☃") == ("text/plain", "utf-8", "ünï ☃".encode())


def test_encode_other_objects_use_the_default() -> None:
    assert serialization.encode([1, "a"]) == ("application/json", "utf-8", b'[1,"a"]')


def test_encode_with_empty_serializer_name_means_none() -> None:
    assert serialization.encode(b"x", serializer="") == ("application/data", "binary", b"x")
    assert serialization.encode({}, serializer="")[:2] == JSON


def test_encode_bytes_with_a_serializer_uses_the_serializer() -> None:
    ct, ce, payload = serialization.encode(b"\x00", serializer="pickle")
    assert (ct, ce) == PICKLE
    assert serialization.decode(payload, ct, ce) == b"\x00"


def test_encode_str_with_json_is_a_json_string() -> None:
    assert serialization.encode("hi", serializer="json") == ("application/json", "utf-8", b'"hi"')


def test_encode_raw() -> None:
    assert serialization.encode(b"\x00", serializer="raw") == (
        "application/data",
        "binary",
        b"\x00",
    )
    assert serialization.encode("é", serializer="raw") == ("text/plain", "utf-8", b"\xc3\xa9")


def test_raw_encode() -> None:
    data = b"\x00\xff"
    assert serialization.raw_encode(data) == ("application/data", "binary", data)
    assert serialization.raw_encode(data)[2] is data
    assert serialization.raw_encode("☃") == ("text/plain", "utf-8", "☃".encode())
    for view in (bytearray(data), memoryview(data)):
        ct, ce, payload = serialization.raw_encode(view)
        assert (ct, ce, payload) == ("application/data", "binary", data)
        assert type(payload) is bytes


def test_raw_encode_refuses_other_objects() -> None:
    with pytest.raises(EncodeError, match="dict"):
        serialization.raw_encode({"a": 1})
    with pytest.raises(EncodeError, match="int"):
        serialization.encode(5, serializer="raw")


def test_large_raw_body_round_trips_without_copies() -> None:
    data = bytes(64 * 1024 * 1024)
    for serializer in (None, "raw"):
        ct, ce, payload = serialization.encode(data, serializer=serializer)
        assert payload is data
        decoded = serialization.decode(payload, ct, ce)
        assert decoded is data


# --- decode rules -----------------------------------------------------------------------------


def test_decode_text_without_decoder_returns_str() -> None:
    assert serialization.decode("é☃".encode(), "text/plain", "utf-8") == "é☃"
    assert serialization.decode("é☃", "text/plain", "utf-8") == "é☃"


def test_decode_unknown_content_type_returns_the_data() -> None:
    assert serialization.decode(b"abc", "application/x-unknown", "utf-8") == "abc"
    data = b"\x00\xff"
    assert serialization.decode(data, "application/x-unknown", "binary") is data
    assert serialization.decode(data, "application/data", "binary") is data
    assert serialization.decode(data, None, "binary") is data


def test_decode_missing_encoding_means_utf8() -> None:
    for encoding in (None, ""):
        assert serialization.decode("é".encode(), None, encoding) == "é"
        assert serialization.decode(b'{"a":"\xc3\xa9"}', "application/json", encoding) == {"a": "é"}


def test_decode_uses_the_named_charset() -> None:
    body = "é".encode("latin-1")
    assert serialization.decode(body, "text/plain", "latin-1") == "é"
    assert serialization.decode(body, "text/plain", "ISO-8859-1") == "é"
    assert serialization.decode('"é"'.encode("utf-16"), "application/json", "utf-16") == "é"


@pytest.mark.parametrize("encoding", ["binary", "BINARY", "Binary", "ascii-8bit"])
def test_binary_bodies_are_not_charset_decoded(encoding: str) -> None:
    seen: list[object] = []
    reg = SerializerRegistry()
    reg.register("probe", None, lambda data: seen.append(data) or "ok", "application/x-probe")
    data = b"\xff\xfe\x00"
    assert reg.decode(data, "application/x-probe", encoding) == "ok"
    assert seen == [data]
    assert seen[0] is data


def test_text_bodies_reach_the_decoder_as_str() -> None:
    seen: list[object] = []
    reg = SerializerRegistry()
    reg.register("probe", None, lambda data: seen.append(data) or "ok", "application/x-probe")
    reg.decode(b"abc", "application/x-probe", "utf-8")
    reg.decode("abc", "application/x-probe", "utf-8")
    assert seen == ["abc", "abc"]
    assert all(type(s) is str for s in seen)


def test_pickle_and_msgpack_decoders_get_bytes() -> None:
    # Non-UTF-8 bytes would fail a charset decode: binary types skip it.
    ct, ce, payload = serialization.encode({"b": b"\xff" * 10}, serializer="msgpack")
    assert serialization.decode(payload, ct, ce) == {"b": b"\xff" * 10}
    ct, ce, payload = serialization.encode(b"\xff" * 10, serializer="pickle")
    assert serialization.decode(payload, ct, ce) == b"\xff" * 10


# --- custom serializers ------------------------------------------------------------------


def _upper_encode(data: str) -> bytes:
    return data.upper().encode("utf-8")


def test_custom_serializer_register_and_default(saved_registry: SerializerRegistry) -> None:
    saved_registry.register("upper", _upper_encode, str.lower, "application/x-upper", "utf-8")
    assert saved_registry._encoders["upper"] == ("application/x-upper", "utf-8", _upper_encode)
    assert saved_registry._decoders["application/x-upper"] is str.lower
    assert serialization.encode("abc", serializer="upper") == (
        "application/x-upper",
        "utf-8",
        b"ABC",
    )
    assert serialization.decode(b"ABC", "application/x-upper", "utf-8") == "abc"

    saved_registry._set_default_serializer("upper")
    assert saved_registry._default_content_type == "application/x-upper"
    assert saved_registry._default_content_encoding == "utf-8"
    assert saved_registry._default_encode is _upper_encode
    # bytes and str keep their own rules; other objects go to the default.
    assert serialization.encode("abc")[:2] == ("text/plain", "utf-8")
    assert serialization.encode(b"abc")[:2] == ("application/data", "binary")
    with pytest.raises(EncodeError, match="upper serializer"):
        serialization.encode(["abc"])  # the default now: lists have no .upper()


def test_str_and_bytes_subclasses_follow_the_str_and_bytes_rules() -> None:
    class Text(str):
        pass

    class Blob(bytes):
        pass

    assert serialization.encode(Text("é")) == ("text/plain", "utf-8", b"\xc3\xa9")
    assert serialization.encode(Blob(b"\x00"))[:2] == ("application/data", "binary")


def test_register_with_no_encoder_registers_a_decoder_only() -> None:
    reg = SerializerRegistry()
    reg.register("dec", None, str.upper, "text/x-dec")
    assert "dec" not in reg._encoders
    assert reg._decoders["text/x-dec"] is str.upper
    with pytest.raises(SerializerNotInstalled, match="dec"):
        reg.encode("a", serializer="dec")


def test_custom_default_serializer_encodes_other_objects() -> None:
    reg = SerializerRegistry()
    reg.register("repr", lambda d: repr(d).encode(), None, "text/x-repr", "utf-8")
    reg._set_default_serializer("repr")
    assert reg.encode([1, 2]) == ("text/x-repr", "utf-8", b"[1, 2]")


def test_register_default_content_encoding_is_utf8() -> None:
    reg = SerializerRegistry()
    reg.register("x", _upper_encode, None, "application/x")
    assert reg._encoders["x"][1] == "utf-8"


def test_encoder_returning_str_is_encoded_with_its_content_encoding() -> None:
    reg = SerializerRegistry()
    reg.register("latin", lambda d: d, None, "text/x-latin", "latin-1")
    assert reg.encode("é", serializer="latin") == ("text/x-latin", "latin-1", b"\xe9")
    with pytest.raises(EncodeError, match="latin-1"):
        reg.encode("☃", serializer="latin")


def test_binary_encoder_returning_str_is_an_encode_error() -> None:
    reg = SerializerRegistry()
    reg.register("bad", lambda d: "text", None, "application/x-bad", "binary")
    with pytest.raises(EncodeError, match="binary"):
        reg.encode(1, serializer="bad")


def test_set_default_serializer_unknown_names_it() -> None:
    reg = SerializerRegistry()
    with pytest.raises(SerializerNotInstalled, match="nosuch-serializer"):
        reg._set_default_serializer("nosuch-serializer")


def test_new_registry_without_default_refuses_objects_but_sends_bytes_and_str() -> None:
    reg = SerializerRegistry()
    assert reg.encode(b"x") == ("application/data", "binary", b"x")
    assert reg.encode("x") == ("text/plain", "utf-8", b"x")
    with pytest.raises(SerializerNotInstalled, match="default"):
        reg.encode({"a": 1})


# --- unregister ------------------------------------------------------------------------------


def test_unregister_removes_encoder_and_decoder(saved_registry: SerializerRegistry) -> None:
    ct, ce, payload = serialization.encode({"a": 1}, serializer="pickle")
    saved_registry.unregister("pickle")
    assert "pickle" not in saved_registry._encoders
    assert ct not in saved_registry._decoders
    with pytest.raises(SerializerNotInstalled, match="pickle"):
        serialization.encode({"a": 1}, serializer="pickle")
    # No decoder any more: the body comes back as it is, not unpickled.
    assert serialization.decode(payload, ct, ce) is payload
    # Others are untouched.
    assert serialization.encode({"a": 1})[:2] == JSON


def test_unregister_then_register_again(saved_registry: SerializerRegistry) -> None:
    saved_registry.unregister("pickle")
    serialization.register_pickle()
    ct, ce, payload = serialization.encode([1], serializer="pickle")
    assert serialization.decode(payload, ct, ce) == [1]


def test_unregister_unknown_names_it() -> None:
    reg = SerializerRegistry()
    with pytest.raises(SerializerNotInstalled, match="nosuch-serializer"):
        reg.unregister("nosuch-serializer")


def test_unregister_serializer_added_to_encoders_directly() -> None:
    reg = SerializerRegistry()
    reg._encoders["direct"] = ("text/x-direct", "utf-8", _upper_encode)
    reg._decoders["text/x-direct"] = str.lower
    reg.unregister("direct")
    assert reg._encoders == {}
    assert reg._decoders == {}


def test_unregister_decoder_only_serializer() -> None:
    reg = SerializerRegistry()
    reg.register("dec", None, str.upper, "text/x-dec")
    assert reg.decode(b"a", "text/x-dec", "utf-8") == "A"
    reg.unregister("dec")
    assert reg.decode(b"a", "text/x-dec", "utf-8") == "a"


def test_unregister_the_default_leaves_no_default() -> None:
    reg = SerializerRegistry()
    reg.register("repr", lambda d: repr(d).encode(), None, "text/x-repr")
    reg._set_default_serializer("repr")
    reg.unregister("repr")
    assert reg._default_encode is None
    assert reg._default_content_type is None
    with pytest.raises(SerializerNotInstalled, match="default"):
        reg.encode([1])
    assert reg.encode(b"x")[2] == b"x"


# --- errors ------------------------------------------------------------------------------------


def test_error_classes() -> None:
    assert issubclass(EncodeError, TypeError)
    assert issubclass(EncodeError, ValueError)
    assert issubclass(DecodeError, ValueError)
    assert issubclass(EncodeError, CarrotError)
    assert issubclass(DecodeError, CarrotError)


def test_unknown_serializer_names_it() -> None:
    with pytest.raises(SerializerNotInstalled, match="nosuch-serializer"):
        serialization.encode({"a": 1}, serializer="nosuch-serializer")


def test_bytes_inside_json_is_an_encode_error() -> None:
    with pytest.raises(EncodeError) as info:
        serialization.encode({"a": b"\x00"})
    assert "dict" in str(info.value)
    assert "bytes" in str(info.value)
    assert isinstance(info.value.__cause__, TypeError)
    # Old code caught the builtin carrot let through.
    with pytest.raises(TypeError):
        serialization.encode({"a": b"\x00"})
    with pytest.raises(ValueError):
        serialization.encode({"a": b"\x00"})


def test_circular_json_is_an_encode_error() -> None:
    data: list[object] = []
    data.append(data)
    with pytest.raises(EncodeError, match="list") as info:
        serialization.encode(data)
    assert info.value.__cause__ is not None


@pytest.mark.parametrize(
    ("serializer", "data", "type_name"),
    [
        ("json", object(), "object"),
        ("yaml", object(), "object"),
        ("msgpack", object(), "object"),
        ("msgpack", {1, 2}, "set"),
        ("pickle", lambda: None, "function"),
    ],
)
def test_unencodable_objects(serializer: str, data: object, type_name: str) -> None:
    with pytest.raises(EncodeError, match=type_name) as info:
        serialization.encode(data, serializer=serializer)
    assert serializer in str(info.value)
    assert info.value.__cause__ is not None


def test_unencodable_str_is_an_encode_error() -> None:
    with pytest.raises(EncodeError) as info:
        serialization.encode("lone \udcff surrogate")
    assert isinstance(info.value.__cause__, UnicodeEncodeError)
    with pytest.raises(EncodeError):
        serialization.raw_encode("lone \udcff surrogate")


@pytest.mark.parametrize(
    ("body", "content_type", "content_encoding", "cause"),
    [
        (b'{"a": ', "application/json", "utf-8", ValueError),
        (b"", "application/json", "utf-8", ValueError),
        (b'"\xff\xfe"', "application/json", "utf-8", UnicodeDecodeError),
        (b"caf\xe9", "text/plain", "utf-8", UnicodeDecodeError),
        (b"abc", "text/plain", "no-such-charset", LookupError),
        (b"abc", "text/plain", "zlib", LookupError),
        (b"cno_such_module_xyz\nThing\n.", "application/x-python-serialize", "binary", ImportError),
        (b"cbuiltins\nNoSuchThing\n.", "application/x-python-serialize", "binary", AttributeError),
        (b"\x80\x05\x95", "application/x-python-serialize", "binary", Exception),
        (b"\x92\x01", "application/x-msgpack", "binary", ValueError),
        (b"\xc1", "application/x-msgpack", "binary", Exception),
        (b"a: [1, 2", "application/x-yaml", "utf-8", Exception),
        (b"!!python/object/apply:os.getcwd []", "application/x-yaml", "utf-8", Exception),
    ],
)
def test_undecodable_bodies(
    body: bytes, content_type: str, content_encoding: str, cause: type[BaseException]
) -> None:
    with pytest.raises(DecodeError) as info:
        serialization.decode(body, content_type, content_encoding)
    assert isinstance(info.value, ValueError)
    assert content_type in str(info.value)
    assert content_encoding in str(info.value)
    assert isinstance(info.value.__cause__, cause)


def test_unsafe_yaml_is_not_constructed() -> None:
    import yaml

    with pytest.raises(DecodeError) as info:
        serialization.decode(b"!!python/object/apply:os.getcwd []", *YAML)
    assert isinstance(info.value.__cause__, yaml.YAMLError)


# --- missing optional libraries ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "module", "package", "register"),
    [
        ("yaml", "yaml", "PyYAML", serialization.register_yaml),
        ("msgpack", "msgpack", "msgpack", serialization.register_msgpack),
    ],
)
def test_missing_library_raises_serializer_not_installed(
    saved_registry: SerializerRegistry,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    module: str,
    package: str,
    register: Callable[[], None],
) -> None:
    content_type, content_encoding = SERIALIZERS[name]
    ok_body = serialization.encode({"a": 1}, serializer=name)[2]
    monkeypatch.setitem(sys.modules, module, None)  # `import <module>` now raises ImportError
    register()

    assert saved_registry._encoders[name][:2] == (content_type, content_encoding)
    assert content_type in saved_registry._decoders
    with pytest.raises(SerializerNotInstalled, match=package) as info:
        serialization.decode(ok_body, content_type, content_encoding)
    assert not isinstance(info.value, DecodeError)
    with pytest.raises(SerializerNotInstalled, match=package) as info:
        serialization.encode({"a": 1}, serializer=name)
    assert not isinstance(info.value, EncodeError)
    # The rest keeps working.
    assert serialization.decode(b"[1]", *JSON) == [1]


@pytest.mark.parametrize(
    ("name", "register"),
    [("yaml", serialization.register_yaml), ("msgpack", serialization.register_msgpack)],
)
def test_registering_again_with_the_library_restores_it(
    saved_registry: SerializerRegistry,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    register: Callable[[], None],
) -> None:
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, name, None)
        register()
    register()
    ct, ce, payload = serialization.encode({"a": [1]}, serializer=name)
    assert serialization.decode(payload, ct, ce) == {"a": [1]}
