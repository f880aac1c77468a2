"""Keeps secrets out of logs, errors, metadata and ``run_context``.

Values that came from environment variables into headers or query parameters are secrets.
A :class:`Redactor` knows them and replaces them wherever text leaves the process; URLs
also lose their user-info part.
"""

import logging
import re
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
PARTIAL_MIN = 8
"""The shortest start of a secret masked on its own, where a message cut the secret short."""

_ESCAPE = r"\\{1,2}"
"""The backslash of an escape, doubled too: a message shows an excerpt as a repr, which
doubles the backslash of a JSON body's ``\\/``."""

# How a character may be written besides itself, other than by its code (see _char_pattern):
# a space in a form-encoded query, and the escapes of JSON, Python reprs and HTML.
_SPECIAL = {
    " ": [r"\+"],
    "/": [_ESCAPE + "/"],
    '"': [_ESCAPE + '"', "&quot;"],
    "'": [_ESCAPE + "'", "&apos;"],
    "\\": [r"(?:\\\\){1,2}"],
    "&": ["&amp;"],
    "<": ["&lt;"],
    ">": ["&gt;"],
}


def _char_pattern(char: str) -> str:
    """A regular expression for one character of a secret written any way text carries it:
    itself, percent-encoded (either case of hex), as a JSON ``\\uXXXX`` escape, a bytes
    repr's ``\\xNN``, an HTML character reference, or the escapes in :data:`_SPECIAL`.

    A secret travels through URLs, JSON bodies and reprs, and each re-encodes some of its
    characters and not others (httpx keeps ``+`` in a query and encodes ``/``; a JSON
    encoder may escape ``/``). Matching character by character masks every mix of them, not
    only the forms a list of whole encodings happened to hold."""
    data = char.encode("utf-8", "surrogatepass")
    code = ord(char)
    forms = [
        re.escape(char),
        "".join(f"%(?i:{byte:02x})" for byte in data),
        "".join(rf"{_ESCAPE}x(?i:{byte:02x})" for byte in data),
        f"&#0*{code};",
        f"&#(?i:x)0*(?i:{code:x});",
    ]
    if code < 0x10000:
        forms.append(rf"{_ESCAPE}u(?i:{code:04x})")
    else:
        high, low = divmod(code - 0x10000, 0x400)
        forms.append(rf"{_ESCAPE}u(?i:{0xD800 + high:04x}){_ESCAPE}u(?i:{0xDC00 + low:04x})")
    # The character itself last: "&amp;" must be read as one "&", not as "&" then "amp;".
    forms = forms[1:] + _SPECIAL.get(char, []) + forms[:1]
    return "(?:" + "|".join(forms) + ")"


class _Secret:
    """One secret as a pattern: its first :data:`PARTIAL_MIN` characters (all of a shorter
    secret), then each further character in turn, so that the longest start of the secret
    present in a text is found, however each of its characters is written."""

    def __init__(self, secret: str) -> None:
        head = secret[:PARTIAL_MIN]
        self.length = len(secret)
        self.head = re.compile("".join(_char_pattern(c) for c in head))
        self.rest = [re.compile(_char_pattern(c)) for c in secret[len(head):]]

    def spans(self, text: str) -> list[tuple[int, int]]:
        found: list[tuple[int, int]] = []
        position = 0
        while (match := self.head.search(text, position)) is not None:
            end = match.end()
            for char in self.rest:
                following = char.match(text, end)
                if following is None:
                    break
                end = following.end()
            found.append((match.start(), end))
            position = max(end, match.start() + 1)
        return found


class Redactor:
    """Replaces known secret values in text with ``***``."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        self._secrets: dict[str, _Secret] = {}
        for secret in secrets or []:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Register a secret, masked however its characters are written (see
        :func:`_char_pattern`); very short values are ignored to avoid masking common words.
        A secret longer than :data:`PARTIAL_MIN` is masked from its first
        :data:`PARTIAL_MIN` characters on, where a message cut it short."""
        if not secret or len(secret) < 4 or secret in self._secrets:
            return
        self._secrets[secret] = _Secret(secret)

    def __call__(self, text: str) -> str:
        spans = sorted(span for secret in self._secrets.values() for span in secret.spans(text))
        if not spans:
            return text
        parts: list[str] = []
        kept = 0
        for start, end in spans:
            if end <= kept:
                continue
            parts.append(text[kept:max(start, kept)])
            parts.append(MASK if start >= kept else "")
            kept = end
        parts.append(text[kept:])
        return "".join(parts)


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
