"""Installs carrot: ``pip install .`` (extras: django, yaml, msgpack, pika, stomp, kombu, redis, docs, bench, test, test-core)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r"^VERSION = \((\d+), (\d+), (\d+)\)", (HERE / "carrot" / "__init__.py").read_text(), re.M
).groups()

# The kombu and redis backends: carrot's fixes to kombu's transports are
# checked against kombu 5.7's private names (carrot.backends._kombu_seam).
# kombu 5.7 needs amqp>=5.4.2, so it is an extra: without it carrot runs on
# every amqp install_requires allows.
KOMBU = "kombu>=5.7,<5.8"

EXTRAS = {
    "django": ["django>=3.2"],
    "yaml": ["PyYAML>=5.1"],
    "msgpack": ["msgpack>=1.0"],
    "pika": ["pika>=1.3,<2"],
    "stomp": ["stomp.py>=8.1"],
    "kombu": [KOMBU],
    "redis": [KOMBU, "redis>=4.5"],
    "docs": ["sphinx>=7"],
    # benchmarks/: the clients compared and the chart
    "bench": ["pika>=1.3,<2", KOMBU, "matplotlib>=3.5"],
}
# Everything the tests use but kombu: what tox's amqp52/amqp53 environments
# install (kombu 5.7 cannot sit beside amqp 5.2/5.3); kombu's tests skip there.
EXTRAS["test-core"] = sorted(
    {
        "pytest>=7",
        # tox.ini's [pytest] gives every test a timeout: a hang fails fast
        "pytest-timeout>=2.1",
        # tests/unit/test_typing.py runs mypy with pyproject.toml's config
        "mypy>=1.11",
        # the TLS tests make their own certificates
        "cryptography>=41",
        "trustme>=1.0",
        # property tests of the STOMP frame reader
        "hypothesis>=6",
        *EXTRAS["django"],
        *EXTRAS["yaml"],
        *EXTRAS["msgpack"],
        *EXTRAS["pika"],
        *EXTRAS["stomp"],
        "redis>=4.5",
        *EXTRAS["docs"],
        # tests/unit/test_fastpath.py draws the benchmark chart
        "matplotlib>=3.5",
    }
)

EXTRAS["test"] = sorted({*EXTRAS["test-core"], *EXTRAS["redis"]})

setup(
    name="carrot",
    version=".".join(VERSION),
    description="AMQP messaging for code written against carrot 0.10, on Python 3 and py-amqp",
    long_description=(HERE / "README.rst").read_text(),
    long_description_content_type="text/x-rst",
    author="The carrot developers",
    license="BSD-3-Clause",
    license_files=["LICENSE"],
    packages=find_packages(include=["carrot", "carrot.*"]),
    # PEP 561: carrot's annotations are for its users' type checkers too
    package_data={"carrot": ["py.typed"]},
    python_requires=">=3.10",
    install_requires=["amqp>=5.2,<5.5"],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["carrot = carrot.cli:main"]},
    classifiers=[
        "Development Status :: 4 - Beta",
        "Intended Audience :: Developers",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: System :: Networking",
    ],
)
