"""``data_selector`` and ``total_path``: small dotted paths into a JSON body.

``None``, ``""`` and ``"$"`` select the body itself (an API that answers with a bare
array); ``"items"`` or ``"$.data.items"`` walk into objects; ``"entry[*].resource"``
maps over a list, which is how records sit in a FHIR search bundle.
"""

import re
from typing import Any

_TOKEN = re.compile(r"^([A-Za-z0-9_\-@]+)(\[\*\]|\[([A-Za-z0-9_\-@]+)=([^\]]*)\])?$")

Step = tuple[str, bool, tuple[str, str] | None]
"""``(key, maps_over_list, (field, value) filter or None)``."""
Selector = tuple[Step, ...]


class _Missing:
    pass


MISSING: Any = _Missing()


def parse_selector(text: str | None) -> Selector:
    """Split a path into steps; raise ``ValueError`` when malformed.

    ``key[*]`` maps over a list; ``key[field=value]`` takes the first object of a list whose
    ``field`` equals ``value`` as text (a FHIR Bundle's next link: ``link[relation=next].url``).
    """
    if text is None:
        return ()
    path = text.strip()
    if path in ("", "$"):
        return ()
    if path.startswith("$."):
        path = path[2:]
    steps: list[Step] = []
    for token in path.split("."):
        match = _TOKEN.match(token)
        if not match:
            raise ValueError(
                f"{text!r} is not a dotted path such as 'items', 'entry[*].resource' or 'link[relation=next].url'"
            )
        key, suffix, field, value = match.groups()
        steps.append((key, suffix == "[*]", (field, value) if field is not None else None))
    return tuple(steps)


def select(body: Any, selector: Selector) -> Any:
    """Follow ``selector`` into ``body``; return ``MISSING`` when a step is absent."""
    current = body
    for position, (key, each, where) in enumerate(selector):
        if not isinstance(current, dict) or key not in current:
            return MISSING
        current = current[key]
        if where is not None:
            if not isinstance(current, list):
                return MISSING
            field, value = where
            current = next(
                (item for item in current if isinstance(item, dict) and _text(item.get(field)) == value), MISSING
            )
            if current is MISSING:
                return MISSING
        if each:
            if not isinstance(current, list):
                return MISSING
            rest = selector[position + 1 :]
            out = [select(item, rest) for item in current]
            return [item for item in out if item is not MISSING]
    return current


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    return value if isinstance(value, str) else str(value)
