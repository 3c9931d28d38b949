"""Credentials never reach a crawl's log: every log record is scrubbed of them as it is made.

The crawl process holds the archive's credentials (boto3 reads ``AWS_*`` from the
environment) and, at ``NEWSARCHIVE_LOG_LEVEL=DEBUG``, botocore logs every request it
signs, ``Authorization: ... Credential=<access key id>/...`` included. Rather than silence
those logs, which are what one needs to debug a storage problem, each record is scrubbed:

- the values of credential variables in the environment (``AWS_SECRET_ACCESS_KEY``,
  ``AWS_ACCESS_KEY_ID``, ``AWS_SESSION_TOKEN``, and any variable whose name says secret,
  token, password or key), wherever they appear;
- and, for credentials from elsewhere (profiles, instance roles), what follows
  ``Credential=`` and the session-token header, whatever its value.

It is a log record factory, not a handler filter, so that it holds for every logger and
handler of the process, including those Scrapy installs or replaces after it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping

MASK = "***"
"""What a credential is replaced with."""

_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|ACCESS_KEY|API_KEY|PRIVATE_KEY|CREDENTIAL")
# Shorter values are not credentials, and masking them would garble ordinary text.
_MIN_SECRET_LENGTH = 8
_PATTERNS = (
    # SigV4 Authorization header and presigned URLs: Credential=<access key id>/<date>/...
    re.compile(r"(?<=Credential=)[^/\s,'\"&]+"),
    # The session token of temporary credentials, as a header or a query parameter.
    re.compile(r"(?i)(?<=x-amz-security-token)(['\"]?\s*[:=]\s*b?['\"]?)[^'\"\s,&]+"),
)


def secrets_in(environ: Mapping[str, str]) -> list[str]:
    """The credential values of an environment, longest first."""
    values = {value for name, value in environ.items()
              if _SECRET_NAME.search(name.upper()) and len(value) >= _MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets``, and anything shaped like a signed request's
    credential, replaced by :data:`MASK`."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _PATTERNS[0].sub(MASK, text)
    return _PATTERNS[1].sub(lambda m: m.group(1) + MASK, text)


class _RedactingFactory:
    """Wraps the process's log record factory; records come out scrubbed."""

    def __init__(self, wrapped, secrets: list[str]) -> None:
        self.wrapped = wrapped
        self.secrets = secrets

    def __call__(self, *args, **kwargs) -> logging.LogRecord:
        record = self.wrapped(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's to report
            return record
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # Formatters use exc_text when it is set: scrub the traceback once, here.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info),
                                     self.secrets)
        return record


def install(environ: Mapping[str, str] | None = None) -> None:
    """Scrub every log record of this process from now on (idempotent)."""
    current = logging.getLogRecordFactory()
    if isinstance(current, _RedactingFactory):
        return
    logging.setLogRecordFactory(
        _RedactingFactory(current, secrets_in(os.environ if environ is None else environ)))


class RedactSecretsExtension:
    """Scrapy extension that installs the scrubbing for the crawl process. Scrapy builds
    extensions before the engine, so before the archive is first written to."""

    @classmethod
    def from_crawler(cls, crawler) -> RedactSecretsExtension:
        install()
        return cls()
