"""Secrets never reach a log line: a logging filter on the gateway's own handlers.

botocore at DEBUG logs each request's headers (the ``Authorization`` header with the access key
id and the signature, ``X-Amz-Security-Token``), the canonical request and the string to sign;
a library may put a password in an exception's text. The filter sits on the handlers, not on
the loggers, so it sees every record that is written, whichever library logged it.

Two nets, because neither alone is enough:

- values the gateway knows are secret (the broker passwords it reads, the AWS keys in its
  environment, the temporary keys the credentials provider hands out) are replaced wherever
  they appear, whatever the format around them;
- patterns catch what the gateway never saw: access key ids (``AKIA``/``ASIA`` + 16), and the
  value after a secret-looking name (``SecretAccessKey``, ``sessionToken``,
  ``X-Amz-Security-Token``, ``Signature=``, ``password``).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Final

MASK: Final = "[redacted]"

# Shorter values are not registered: replacing every "a" in a log line helps nobody.
_MIN_SECRET_CHARS: Final = 6

_ACCESS_KEY_ID: Final = re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{16}\b")
# name, then a separator (": ", "=", "': '", '": "'), then the value up to a quote, comma,
# space, brace or ampersand. Case-insensitive: botocore writes both X-Amz-Security-Token and
# x-amz-security-token, the credentials provider sessionToken, boto3 aws_secret_access_key.
_NAMED_SECRET: Final = re.compile(
    r"(?i)((?:aws_)?secret_?access_?key|session_?token|security[-_]?token|x-amz-security-token"
    r"|signature|password|passwd|secret)"
    r"(['\"]?\s*[:=]\s*['\"]?)"
    r"([^'\"\s,;&}\]]{4,})"
)

# Environment variables whose values are secrets wherever they show up.
_SECRET_ENV: Final = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")

_lock = threading.Lock()
_known: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every later log line (a password read, temporary keys received)."""
    if value and len(value) >= _MIN_SECRET_CHARS:
        with _lock:
            _known.add(value)


def redact(text: str) -> str:
    """``text`` with every known secret and every secret-looking value masked (pure but for
    the registered values)."""
    with _lock:
        known = sorted(_known, key=len, reverse=True)  # longest first: one may contain another
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    text = _ACCESS_KEY_ID.sub(lambda m: m.group(0)[:4] + MASK, text)
    return _NAMED_SECRET.sub(lambda m: m.group(1) + m.group(2) + MASK, text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and traceback text) with :func:`redact`; drops none."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # Format the traceback now, so the handler prints our cleaned text.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of ``logger`` (the root by default), and register the
    AWS secrets of this process's environment."""
    for name in _SECRET_ENV:
        register_secret(os.environ.get(name))
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
