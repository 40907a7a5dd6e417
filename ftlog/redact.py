"""Keeping secrets out of everything ftlog stores, prints, exports or sends.

An API may echo the bearer token back inside job data (an error message quoting the failed
request, say). Every text that comes from the API passes through :func:`scrub` before it is
parsed, so the token never reaches a typed column, a raw payload, an export or a webhook.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

REDACTED = "<redacted>"
"""What a secret is replaced with, wherever it appears."""


def scrub_text(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def scrub(value: Any, secrets: Sequence[str]) -> Any:
    """``value`` (decoded JSON) with every occurrence of each secret, in keys and texts,
    replaced by :data:`REDACTED`; the same object when there is nothing to replace."""
    wanted = [secret for secret in secrets if secret]
    if not wanted:
        return value
    return _scrub(value, wanted)


def _scrub(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        return scrub_text(value, secrets)
    if isinstance(value, dict):
        return {scrub_text(k, secrets): _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(item, secrets) for item in value]
    return value
