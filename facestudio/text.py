"""Small text helpers every layer shares: folder-safe names and durations for people to read."""

from __future__ import annotations

import re


def slugify(name: str, max_length: int | None = None) -> str:
    """Lower-case letters, digits and single dashes from `name` ("" when nothing is left): a name that can never
    leave the folder it is used in (no dots, no slashes)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.strip().lower()).strip("-")
    if max_length is not None:
        slug = slug[:max_length].strip("-")
    return slug


def format_duration(seconds: float) -> str:
    """`1h02m` or `3m05s`: how long something takes, for progress lines and tables."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
