"""``${VAR}`` and ``${VAR:-default}`` references to environment variables in spec values.

Specs keep the template text; values are resolved only when a run starts, so a token is
never read at import time, never stored in ``run_context`` and a missing variable fails
the one extract that needs it rather than the whole code location.
"""

import re
from collections.abc import Mapping

from etl_assets.errors import SettingsError

REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
MALFORMED = re.compile(r"\$\{(?![A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\})")


def check_template(value: str) -> str | None:
    """Return why ``value`` is not a valid template, or None when it is."""
    if MALFORMED.search(value):
        return "has a '${' that is not a ${NAME} or ${NAME:-default} reference"
    return None


def references(value: str) -> list[str]:
    """Names of the environment variables ``value`` refers to."""
    return [m.group(1) for m in REFERENCE.finditer(value)]


def resolve(value: str, environ: Mapping[str, str], *, where: str) -> str:
    """Substitute every reference; an unset variable without a default is an error."""

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ and environ[name] != "":
            return environ[name]
        if default is not None:
            return default
        raise SettingsError(f"{where} refers to environment variable {name}, which is not set")

    return REFERENCE.sub(substitute, value)
