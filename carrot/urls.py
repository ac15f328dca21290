"""Broker URLs: parsing, password masking, formatting and broker lists.

:class:`~carrot.connection.BrokerConnection` (``hostname=URL``) and the
``carrot`` command line both use these functions.

The schemes:

* ``amqp://user:password@host:port/vhost``: RabbitMQ through py-amqp. A
  missing user id or password is ``guest`` and a missing port 5672, as in
  RabbitMQ's defaults; a missing host is ``localhost``. The virtual host is
  the URL-decoded path without its leading slash: an empty path,
  ``amqp://host/`` and ``amqp://host//`` all mean ``/``, as does
  ``amqp://host/%2F``. ``pyamqp://`` is the same scheme under kombu's name.
* ``amqps://...``: the same over TLS (``ssl=True``), default port 5671.
* ``pika://`` (``pikas://`` for TLS): RabbitMQ through pika
  (``backend_cls="pika"``), with the fields and defaults of ``amqp://``.
* ``stomp://`` (``stomp+ssl://`` for TLS, default port 61614): RabbitMQ's
  STOMP plugin through stomp.py (``backend_cls="stomp"``); default port
  61613, the virtual host is sent as STOMP's ``host`` header.
* ``redis://[user][:password@]host:port/db``: Redis through kombu
  (``backend_cls="redis"``). No user id or password unless given; the port
  defaults to 6379 and the database number (the path, passed as
  ``virtual_host``) to 0.
* ``memory://``: the in-process backend (:mod:`carrot.backends.queue`).
* ``kombu+memory://`` (or ``kombu://``): kombu's in-process memory
  transport (``backend_cls="kombu"``).

The network schemes take ``?connect_timeout=S``. A host given as an IPv6
literal is written in brackets (``amqp://[::1]:5672//``).

Several brokers (for failover) are written as one string separated by ``;``
(``"amqp://h1:5672//;amqp://h2:5673//"``) or given as a list; see
:func:`split_urls`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeGuard
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from carrot.exceptions import InvalidURLError

__all__ = [
    "IN_PROCESS_SCHEMES",
    "KNOWN_SCHEMES",
    "MASK",
    "NETWORK_SCHEMES",
    "InvalidURLError",
    "format_url",
    "is_url",
    "mask_url",
    "parse_url",
    "split_urls",
]

#: scheme -> (backend_cls, default port, ssl) of the network URL schemes.
NETWORK_SCHEMES: dict[str, tuple[str, int, bool]] = {
    "amqp": ("amqp", 5672, False),
    "amqps": ("amqp", 5671, True),
    "pyamqp": ("amqp", 5672, False),
    "pika": ("pika", 5672, False),
    "pikas": ("pika", 5671, True),
    "stomp": ("stomp", 61613, False),
    "stomp+ssl": ("stomp", 61614, True),
    "redis": ("redis", 6379, False),
}
#: Schemes of the in-process backends: scheme -> backend_cls.
IN_PROCESS_SCHEMES = {"memory": "memory", "kombu+memory": "kombu", "kombu": "kombu"}
#: Every scheme :func:`parse_url` knows, in the order error messages list them.
KNOWN_SCHEMES = (*NETWORK_SCHEMES, *IN_PROCESS_SCHEMES)
#: backend_cls -> the scheme :func:`format_url` writes (plain, TLS).
_FORMAT_SCHEMES = {
    "amqp": ("amqp", "amqps"),
    "pika": ("pika", "pikas"),
    "stomp": ("stomp", "stomp+ssl"),
    "redis": ("redis", "redis"),
}
#: What a masked password is shown as.
MASK = "***"


def is_url(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a string written as ``scheme://...``.

    >>> is_url("amqp://localhost//"), is_url("localhost")
    (True, False)
    """
    return isinstance(value, str) and "://" in value


def mask_url(url: str) -> str:
    """Return ``url`` with its password, if any, replaced by ``***``.

    Works on malformed URLs too: everything between the user id's colon and
    the last ``@`` is masked, so a password containing ``/`` or ``@`` never
    shows. Each URL of a ``;``-separated broker list is masked.

    >>> mask_url("amqp://guest:secret@localhost:5672//")
    'amqp://guest:***@localhost:5672//'
    >>> mask_url("amqp://localhost//")
    'amqp://localhost//'
    >>> mask_url("amqp://a:pw1@h1//;amqp://b:pw2@h2//")
    'amqp://a:***@h1//;amqp://b:***@h2//'
    """
    if ";" in url:
        return ";".join(mask_url(part) for part in url.split(";"))
    _, sep, _ = url.partition("://")
    start = url.index("://") + 3 if sep else 0
    at = url.rfind("@", start)
    if at == -1:
        return url
    userinfo = url[start:at]
    if ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{url[:start]}{user}:{MASK}{url[at:]}"


def split_urls(value: str | Sequence[str]) -> list[str]:
    """The brokers of a broker list: a ``;``-separated string or a sequence.

    Each item is a URL or a plain host name; white space around items is
    dropped.

    >>> split_urls("amqp://h1:5672//; amqp://h2:5673//")
    ['amqp://h1:5672//', 'amqp://h2:5673//']
    >>> split_urls(["h1", "h2"])
    ['h1', 'h2']

    :raises InvalidURLError: (a ``ValueError``) an empty list, an empty item
        or an item that is not a string; the message masks passwords.
    """
    if isinstance(value, str):
        items: list[Any] = value.split(";")
    elif isinstance(value, Sequence):
        items = list(value)
    else:
        raise InvalidURLError(repr(value), "expected a URL, a host name or a list of them")
    shown = value if isinstance(value, str) else ";".join(map(str, items))
    if not items:
        raise InvalidURLError(shown, "the broker list is empty")
    brokers = []
    for position, item in enumerate(items, 1):
        if not isinstance(item, str):
            raise InvalidURLError(shown, f"broker {position} is {item!r}, not a string")
        item = item.strip()
        if not item:
            raise InvalidURLError(shown, f"broker {position} of the list is empty")
        brokers.append(item)
    return brokers


def parse_url(url: str) -> dict[str, Any]:
    """Turn a broker URL into :class:`~carrot.connection.BrokerConnection` keyword arguments.

    >>> parse_url("amqp://user:p%40ss@rabbit:5673/prod")["virtual_host"]
    'prod'
    >>> parse_url("amqps://rabbit")["port"], parse_url("amqps://rabbit")["ssl"]
    (5671, True)
    >>> parse_url("memory://")
    {'backend_cls': 'memory'}
    >>> parse_url("stomp://rabbit")["port"], parse_url("stomp://rabbit")["backend_cls"]
    (61613, 'stomp')
    >>> params = parse_url("redis://:s3cret@cache:6380/2")
    >>> params["password"], params["virtual_host"], params["backend_cls"]
    ('s3cret', '2', 'redis')

    :param url: one of :data:`KNOWN_SCHEMES` (see the module docstring for
        each scheme's fields and defaults).
    :returns: hostname, userid, password, virtual_host, port, ssl and
        backend_cls (and connect_timeout when the URL sets it); only
        backend_cls for the in-process schemes (``memory://``,
        ``kombu+memory://``).
    :raises InvalidURLError: (a ``ValueError``) the URL is malformed or its
        scheme unknown; the message masks the password.
    """
    if not isinstance(url, str) or "://" not in url:
        raise InvalidURLError(
            str(url), "expected scheme://..., e.g. amqp://guest:guest@localhost:5672//"
        )
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise InvalidURLError(url, "contains whitespace or control characters")
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme in IN_PROCESS_SCHEMES:
        if rest.strip("/"):
            raise InvalidURLError(url, f"{scheme}:// takes no host, path or options")
        return {"backend_cls": IN_PROCESS_SCHEMES[scheme]}
    if scheme not in NETWORK_SCHEMES:
        known = ", ".join(f"{name}://" for name in KNOWN_SCHEMES)
        raise InvalidURLError(url, f"unknown scheme {scheme!r} (known: {known})")
    backend_cls, default_port, ssl = NETWORK_SCHEMES[scheme]
    try:
        parts = urlsplit(url)
        port = parts.port
        hostname = parts.hostname
    except ValueError as exc:
        raise InvalidURLError(url, str(exc).replace(url, mask_url(url))) from None
    if parts.fragment:
        raise InvalidURLError(url, "a broker URL has no #fragment")
    if port == 0:
        raise InvalidURLError(url, "port 0 is not a port")
    hostname = unquote(hostname) if hostname else "localhost"
    if ":" in hostname and backend_cls == "amqp":
        hostname = f"[{hostname}]"  # IPv6, as py-amqp expects it in "host:port"
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    path = parts.path
    if backend_cls == "redis":
        # Redis has no login by default: no user id or password unless given
        # (a user id is a Redis 6 ACL user). The path is the database number.
        db = path[1:] or "0"
        if not db.isdigit() or not db.isascii():
            raise InvalidURLError(url, f"the path is the Redis database number, not {db!r}")
        userid, virtual_host = username or None, str(int(db))
    else:
        userid = username if username is not None else "guest"
        password = password if password is not None else "guest"
        virtual_host = unquote(path[1:]) if len(path) > 1 else "/"
    params: dict[str, Any] = {
        "hostname": hostname,
        "userid": userid,
        "password": password,
        "virtual_host": virtual_host,
        "port": port or default_port,
        "ssl": ssl,
        "backend_cls": backend_cls,
    }
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key != "connect_timeout":
            raise InvalidURLError(url, f"unknown option {key!r} (known: connect_timeout)")
        try:
            timeout = float(value)
        except ValueError:
            timeout = -1.0
        if not timeout > 0:
            raise InvalidURLError(url, f"connect_timeout must be a positive number, not {value!r}")
        params["connect_timeout"] = timeout
    return params


def format_url(params: dict[str, Any]) -> str:
    """The URL for :func:`parse_url`'s result, with the password masked.

    A user id or password that is ``None`` is left out.

    >>> format_url(parse_url("amqp://guest:guest@127.0.0.1:1"))
    'amqp://guest:***@127.0.0.1:1//'
    >>> format_url(parse_url("redis://:secret@127.0.0.1/3"))
    'redis://:***@127.0.0.1:6379/3'
    >>> format_url({"hostname": "::1", "port": 5672, "virtual_host": "/"})
    'amqp://[::1]:5672//'
    """
    backend_cls = params.get("backend_cls")
    if backend_cls == "memory":
        return "memory://"
    if backend_cls == "kombu":
        return "kombu+memory://"
    if not isinstance(backend_cls, str) or backend_cls not in _FORMAT_SCHEMES:
        backend_cls = "amqp"  # a backend class or dotted path: shown as AMQP
    plain, secure = _FORMAT_SCHEMES[backend_cls]
    scheme = secure if params.get("ssl") else plain
    hostname = str(params.get("hostname") or "localhost")
    if ":" in hostname and not hostname.startswith("["):
        hostname = f"[{hostname}]"
    userid, password = params.get("userid"), params.get("password")
    user = quote(userid or "", safe="")
    login = f"{user}:{MASK}@" if password is not None else (f"{user}@" if user else "")
    port = params.get("port")
    address = f"{hostname}:{port}" if port else hostname
    if backend_cls == "redis":
        return f"{scheme}://{login}{address}/{params.get('virtual_host') or 0}"
    vhost = params.get("virtual_host") or "/"
    path = "/" if vhost == "/" else quote(vhost, safe="")
    return f"{scheme}://{login}{address}/{path}"
