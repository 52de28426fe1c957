"""Words for people: counts with the right noun form ("1 track", "2 tracks").

>>> plural(1, "track"), plural(2, "track"), plural(0, "analysis", "analyses")
('1 track', '2 tracks', '0 analyses')
"""

from __future__ import annotations


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``count`` and ``noun``, the noun in the plural unless ``count`` is 1."""
    return f"{count} {noun if count == 1 else plural_form or noun + 's'}"
