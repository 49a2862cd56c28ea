"""Flower's configuration file for FacePic, read by `celery -A workers flower` wherever it runs
(the Celery app names it in FLOWER_CONF unless that is set).

Flower listens on 127.0.0.1 unless told otherwise, and refuses any other address without a
login: its pages and API show every worker and task, and let anyone stop workers.
"""

from tornado.options import options as _given  # what the command line and FLOWER_* set so far

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}

address = _given.address or "127.0.0.1"
if address not in _LOOPBACK and not (_given.basic_auth or _given.auth or _given.auth_provider):
    raise SystemExit(
        f"error: Flower on {address} needs a login: set FLOWER_BASIC_AUTH=user:password "
        "(or --basic-auth=user:password), or listen on 127.0.0.1"
    )
