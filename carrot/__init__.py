"""AMQP messaging for code written against carrot 0.10, on Python 3.

carrot keeps the public API of carrot 0.10 (module paths, names, parameters
and defaults) and runs it on py-amqp, with kombu transports and an embedded
in-memory backend beside it.
"""

VERSION = (0, 11, 0)
__version__ = ".".join(map(str, VERSION))
__author__ = "The carrot developers"
__contact__ = "carrot-developers@lists.invalid"
__homepage__ = "https://pypi.org/project/carrot/"
__docformat__ = "restructuredtext"
