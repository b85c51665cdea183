"""Keep SQL parameters out of the logs, whatever LOG_LEVEL says.

At DEBUG Tortoise logs every statement with its parameters ("%s: %s" on `tortoise.db_client`), which
put whole PDFs, stroke data, link nonces and (encrypted or not) personal data into log files, and its
connection lines carry the database DSN with its password; aiosqlite logs each call with its
arguments. The statements themselves (placeholders only) stay useful and are kept.
"""

from __future__ import annotations

import logging

_DB_CLIENT = "tortoise.db_client"


class _DropParameters(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "%s: %s" and isinstance(record.args, tuple) and len(record.args) == 2:
            query, values = record.args
            count = len(values) if hasattr(values, "__len__") else "?"
            record.msg, record.args = "%s [%s parameters not logged]", (query, count)
        elif record.args:
            # Connection set-up and tear-down: the text before the first placeholder says what happened.
            record.msg, record.args = str(record.msg).split("%", 1)[0].strip() + " [details not logged]", ()
        return True


class _DropDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


_FILTERS: dict[str, logging.Filter] = {_DB_CLIENT: _DropParameters(), "aiosqlite": _DropDebug()}


def install() -> None:
    """Attach the filters (idempotent). They sit on the loggers that emit the records, so they hold
    for every handler, including ones a test or an operator adds later."""
    for name, flt in _FILTERS.items():
        logger = logging.getLogger(name)
        if flt not in logger.filters:
            logger.addFilter(flt)
