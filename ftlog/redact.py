"""Keeping secrets out of everything ftlog stores, prints, exports or sends.

An API may echo the bearer token back inside job data (an error message quoting the failed
request, say). Every text that comes from the API passes through :func:`scrub` before it is
parsed, so the token never reaches a typed column, a raw payload, an export or a webhook.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "<redacted>"
"""What a secret is replaced with, wherever it appears."""


def scrub_text(text: str, secrets: Sequence[str]) -> str:
    return _replace(text, secret_forms(secrets))


def scrub(value: Any, secrets: Sequence[str]) -> Any:
    """``value`` (decoded JSON) with every occurrence of each secret, in keys and texts,
    replaced by :data:`REDACTED`; the same object when there is nothing to replace."""
    wanted = secret_forms(secrets)
    if not wanted:
        return value
    return _scrub(value, wanted)


def secret_forms(secrets: Sequence[str]) -> list[str]:
    """Each secret as it is and as it reads inside a URL (an API quoting a failed request's
    URL percent-encodes a token holding ``+``, ``/`` or ``=``)."""
    forms = (form for s in secrets if s for form in (s, quote(s, safe=""), quote_plus(s)))
    return list(dict.fromkeys(forms))


def _scrub(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        return _replace(value, secrets)
    if isinstance(value, dict):
        return {_replace(k, secrets): _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(item, secrets) for item in value]
    return value


def _replace(text: str, forms: Sequence[str]) -> str:
    for form in forms:
        if form in text:
            text = text.replace(form, REDACTED)
    return text
