"""``--log-format json``: one JSON object a line for log shippers, with the same keys as the
consumer's (``ts``, ``level``, ``target``, ``message``, ``pid``) plus any ``extra=`` fields."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os

#: Attributes every LogRecord has; anything else was passed with ``extra=`` and is a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (exceptions go into ``exception``)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
            "level": record.levelname,
            "target": record.name,
            "message": record.getMessage(),
            "pid": os.getpid(),
        }
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if fields:
            out["fields"] = {k: v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)
                             for k, v in fields.items()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def formatter(fmt: str) -> logging.Formatter:
    """The formatter for ``--log-format`` ``text`` or ``json``."""
    if fmt == "json":
        return JsonFormatter()
    return logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
