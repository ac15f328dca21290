"""carrot.urls: broker URLs parsed, masked, formatted and split into broker lists."""

from __future__ import annotations

import pytest

from carrot import cli, urls
from carrot.exceptions import CarrotError, InvalidURLError
from carrot.urls import format_url, mask_url, parse_url, split_urls


def test_the_cli_uses_the_library_code():
    assert cli.parse_url is parse_url
    assert cli.format_url is format_url
    assert cli.mask_url is mask_url
    assert cli.InvalidURLError is InvalidURLError


@pytest.mark.parametrize(
    "scheme, backend_cls, port, ssl",
    [
        ("amqp", "amqp", 5672, False),
        ("amqps", "amqp", 5671, True),
        ("pyamqp", "amqp", 5672, False),
        ("pika", "pika", 5672, False),
        ("pikas", "pika", 5671, True),
        ("stomp", "stomp", 61613, False),
        ("stomp+ssl", "stomp", 61614, True),
        ("redis", "redis", 6379, False),
    ],
)
def test_every_network_scheme(scheme, backend_cls, port, ssl):
    params = parse_url(f"{scheme}://u:p@h")
    assert (params["backend_cls"], params["port"], params["ssl"]) == (backend_cls, port, ssl)
    assert (params["hostname"], params["password"]) == ("h", "p")


@pytest.mark.parametrize(
    "url, backend_cls",
    [("memory://", "memory"), ("kombu+memory://", "kombu"), ("kombu://", "kombu")],
)
def test_in_process_schemes(url, backend_cls):
    assert parse_url(url) == {"backend_cls": backend_cls}


@pytest.mark.parametrize(
    "url, vhost",
    [
        ("amqp://h", "/"),
        ("amqp://h/", "/"),
        ("amqp://h//", "/"),
        ("amqp://h/%2F", "/"),
        ("amqp://h/%2f", "/"),
        ("amqp://h/%2Fprod", "/prod"),
        ("amqp://h/prod", "prod"),
        ("amqp://h/a%20b", "a b"),
    ],
)
def test_virtual_host_encodings(url, vhost):
    assert parse_url(url)["virtual_host"] == vhost


def test_percent_encoded_user_and_password():
    params = parse_url("amqp://us%3Aer:p%40ss%2Fw%3Ard@h:5673/v")
    assert (params["userid"], params["password"]) == ("us:er", "p@ss/w:rd")
    shown = format_url(params)
    assert shown == "amqp://us%3Aer:***@h:5673/v"
    assert "p@ss" not in shown


def test_ipv6_literal():
    params = parse_url("amqp://guest:pw@[::1]:5673//")
    assert (params["hostname"], params["port"]) == ("[::1]", 5673)  # py-amqp's "host:port"
    assert format_url(params) == "amqp://guest:***@[::1]:5673//"
    assert parse_url("redis://[fe80::1]/1")["hostname"] == "fe80::1"
    assert format_url(parse_url("redis://[fe80::1]/1")) == "redis://[fe80::1]:6379/1"


@pytest.mark.parametrize(
    "url, reason",
    [
        ("amqp://user:s3cret@h:abc//", "Port"),
        ("amqp://user:s3cret@h:0//", "port 0"),
        ("ftp://user:s3cret@h//", "unknown scheme 'ftp'"),
        ("amqp://user:s3cret@h//?heartbeat=1", "unknown option 'heartbeat'"),
        ("amqp://user:s3cret@[::1//", "IPv6"),
        ("amqp://user:s3cret@h//#x", "fragment"),
        ("amqp://user:s3 cret@h//", "whitespace"),
    ],
)
def test_bad_urls_name_the_value_with_the_password_masked(url, reason):
    with pytest.raises(InvalidURLError) as excinfo:
        parse_url(url)
    text = str(excinfo.value)
    assert reason in text
    assert "s3cret" not in text and "s3 cret" not in text
    assert "user:***@" in text
    assert isinstance(excinfo.value, ValueError)
    assert isinstance(excinfo.value, CarrotError)


def test_not_a_url():
    with pytest.raises(InvalidURLError, match="expected scheme://"):
        parse_url("localhost")
    with pytest.raises(InvalidURLError, match="expected scheme://"):
        parse_url(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url, masked",
    [
        ("amqp://guest:secret@localhost:5672//", "amqp://guest:***@localhost:5672//"),
        ("amqp://u:p@ss@h/", "amqp://u:***@h/"),
        ("amqp://user@h//", "amqp://user@h//"),
        ("amqp://a:pw1@h1//;amqp://b:pw2@h2//", "amqp://a:***@h1//;amqp://b:***@h2//"),
        ("h1;h2", "h1;h2"),
    ],
)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_format_url_round_trips():
    for url in ("amqp://u:p@h:1/v", "amqps://u:p@h:5671//", "stomp://u:p@h:61613/v"):
        params = parse_url(url)
        assert parse_url(format_url(params).replace(urls.MASK, "p")) == params


def test_format_url_leaves_out_a_missing_login():
    assert format_url({"hostname": "h", "port": 5672}) == "amqp://h:5672//"
    assert format_url({"hostname": "h", "port": 1, "userid": "u"}) == "amqp://u@h:1//"
    assert format_url({"hostname": "h", "backend_cls": object}) == "amqp://h//"


@pytest.mark.parametrize(
    "value, brokers",
    [
        ("amqp://h1:5672//;amqp://h2:5673//", ["amqp://h1:5672//", "amqp://h2:5673//"]),
        (" amqp://h1// ; amqp://h2// ", ["amqp://h1//", "amqp://h2//"]),
        (["amqp://h1//", "h2"], ["amqp://h1//", "h2"]),
        (("h1",), ["h1"]),
        ("localhost", ["localhost"]),
    ],
)
def test_split_urls(value, brokers):
    assert split_urls(value) == brokers


@pytest.mark.parametrize(
    "value, reason",
    [
        ([], "the broker list is empty"),
        ("amqp://u:s3cret@h1//;;amqp://h2//", "broker 2 of the list is empty"),
        (["amqp://u:s3cret@h1//", 5], "broker 2 is 5, not a string"),
        (42, "expected a URL, a host name or a list"),
    ],
)
def test_split_urls_rejects(value, reason):
    with pytest.raises(InvalidURLError) as excinfo:
        split_urls(value)
    assert reason in str(excinfo.value)
    assert "s3cret" not in str(excinfo.value)


def test_is_url():
    assert urls.is_url("memory://")
    assert not urls.is_url("rabbit.example")
    assert not urls.is_url(["amqp://h//"])
