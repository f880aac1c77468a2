"""``data_selector`` and ``total_path``: small dotted paths into a JSON body.

``None``, ``""`` and ``"$"`` select the body itself (an API that answers with a bare
array); ``"items"`` or ``"$.data.items"`` walk into objects; ``"entry[*].resource"``
maps over a list, which is how records sit in a FHIR search bundle.
"""

import re
from typing import Any

_TOKEN = re.compile(r"^[A-Za-z0-9_\-@]+(\[\*\])?$")

Selector = tuple[tuple[str, bool], ...]


class _Missing:
    pass


MISSING: Any = _Missing()


def parse_selector(text: str | None) -> Selector:
    """Split a path into ``(key, maps_over_list)`` steps; raise ``ValueError`` when malformed."""
    if text is None:
        return ()
    path = text.strip()
    if path in ("", "$"):
        return ()
    if path.startswith("$."):
        path = path[2:]
    steps: list[tuple[str, bool]] = []
    for token in path.split("."):
        if not _TOKEN.match(token):
            raise ValueError(f"{text!r} is not a dotted path such as 'items' or 'entry[*].resource'")
        steps.append((token.removesuffix("[*]"), token.endswith("[*]")))
    return tuple(steps)


def select(body: Any, selector: Selector) -> Any:
    """Follow ``selector`` into ``body``; return ``MISSING`` when a step is absent."""
    current = body
    for position, (key, each) in enumerate(selector):
        if not isinstance(current, dict) or key not in current:
            return MISSING
        current = current[key]
        if each:
            if not isinstance(current, list):
                return MISSING
            rest = selector[position + 1 :]
            out = [select(item, rest) for item in current]
            return [item for item in out if item is not MISSING]
    return current
