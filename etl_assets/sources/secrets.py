"""Keeps secrets out of logs, errors, metadata and ``run_context``.

Values that came from environment variables into headers or query parameters are secrets.
A :class:`Redactor` knows them and replaces them wherever text leaves the process; URLs
also lose their user-info part.
"""

import logging
import re
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

MASK = "***"
PARTIAL_MIN = 8
"""The shortest start of a secret masked on its own, where a message cut the secret short."""
_HEX_ESCAPE = re.compile(r"%[0-9A-F]{2}")


class Redactor:
    """Replaces known secret values in text with ``***``."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        self._secrets: list[str] = []
        for secret in secrets or []:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Register a secret, also as it appears percent-encoded in a URL (upper- or lower-case
        hex, as some servers write it) and in a bytes repr; very short values are ignored to
        avoid masking common words."""
        if not secret or len(secret) < 4:
            return
        encoded = {quote(secret, safe=""), quote_plus(secret, safe="")}
        lower_hex = {_HEX_ESCAPE.sub(lambda m: m.group(0).lower(), form) for form in encoded}
        forms = {secret, *encoded, *lower_hex, repr(secret.encode())[2:-1]}
        for form in forms:
            if form not in self._secrets:
                self._secrets.append(form)
        self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        # A message may have cut a secret short (an excerpt of a page, a long URL): the start
        # of a secret is masked too, once it is long enough not to be an ordinary word.
        for secret in self._secrets:
            if len(secret) > PARTIAL_MIN and secret[:PARTIAL_MIN] in text:
                for size in range(len(secret) - 1, PARTIAL_MIN - 1, -1):
                    if secret[:size] in text:
                        text = text.replace(secret[:size], MASK)
        return text


def strip_userinfo(url: str) -> str:
    """Drop ``user:password@`` from a URL so it can be shown."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"{MASK}@{host}", parts.path, parts.query, parts.fragment))


def userinfo_secrets(url: str) -> list[str]:
    """The ``user:password`` of a URL and its password, as written and decoded.

    They are secrets wherever the URL came from: httpx logs every request URL with its
    user-info, and a server may echo the password back. Parsed by hand, not with
    ``urlsplit``, so a URL too broken for it still has its password found."""
    authority = re.split(r"[/?#]", url.split("://", 1)[-1], maxsplit=1)[0]
    if "@" not in authority:
        return []
    userinfo = authority.rsplit("@", 1)[0]
    password = userinfo.partition(":")[2]
    return [form for form in (userinfo, unquote(userinfo), password, unquote(password)) if form]


class RedactingFilter(logging.Filter):
    """Masks secrets in records of third-party loggers (httpx logs every request URL, query
    string included, at INFO)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redact = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True
