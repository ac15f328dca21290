"""The password never shows while connecting and failing, on the local brokers.

Root logging is captured at DEBUG (every library's records) while a
connection with a wrong, distinctive password fails; the records, the
exception and the CLI's output must not contain it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from carrot.connection import BrokerConnection

REPO = Path(__file__).resolve().parents[2]
SECRET = "Wr0ng-S3cr3t-live"

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("backend", "port"),
    [
        pytest.param("amqp", 5672, marks=pytest.mark.rabbitmq, id="amqp"),
        pytest.param("pika", 5672, marks=pytest.mark.rabbitmq, id="pika"),
        pytest.param("stomp", 61613, marks=pytest.mark.stomp, id="stomp"),
        pytest.param("redis", 6379, marks=pytest.mark.redis, id="redis"),
    ],
)
def test_wrong_password_leaves_no_trace(backend, port, caplog):
    conn = BrokerConnection(
        "127.0.0.1", "guest", SECRET, port=port, backend_cls=backend, connect_timeout=5
    )
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("carrot.tests").debug("capture works")
        try:
            conn.connect()
            conn.create_backend().close()  # redis answers only when used
        except Exception as exc:  # any failure: its text is what we check
            text = "".join(traceback.format_exception(exc))
        else:
            text = ""
        finally:
            conn.close()
    assert "capture works" in caplog.text
    assert SECRET not in caplog.text
    assert SECRET not in text
    assert SECRET not in repr(conn)


@pytest.mark.stomp
def test_stomp_connect_frame_passcode_is_masked_in_debug_logs(caplog):
    conn = BrokerConnection("127.0.0.1", "guest", "guest", port=61613, backend_cls="stomp")
    with caplog.at_level(logging.DEBUG):
        conn.connect()
        conn.close()
    assert "passcode:" in caplog.text  # stomp.py did log the frame
    assert "passcode:guest" not in caplog.text
    assert "passcode:***" in caplog.text


def carrot_cli(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "carrot", "--debug", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=60,
    )
    assert result.returncode != 0
    return result.stdout + result.stderr


@pytest.mark.rabbitmq
@pytest.mark.parametrize(
    "url",
    [
        f"amqp://guest:{SECRET}@127.0.0.1:5672//",  # refused login
        f"amqp://guest:{SECRET}@127.0.0.1:1//",  # refused connection
    ],
)
def test_cli_output_never_shows_the_password(url):
    output = carrot_cli("ping", url)
    assert "cannot connect" in output
    assert SECRET not in output
