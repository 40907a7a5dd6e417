"""Prices per million trained tokens, and cost estimates from them.

A price table maps a model name, or an ``fnmatch`` pattern of model names, to a price::

    [prices]
    "meta-llama/Llama-3.1-8B-Instruct" = { per_million_tokens = 0.40, currency = "USD" }
    "Qwen/*" = { per_million_tokens = 0.30, currency = "USD" }

Both fields are required: ``per_million_tokens`` a finite number >= 0, ``currency`` a
three-letter ISO 4217 code in capitals.

**Matching** is case-sensitive (``fnmatch.fnmatchcase``: ``*``, ``?``, ``[seq]``, ``[!seq]``):

1. a key without any of ``*?[`` is an exact name, and an exact name equal to the model wins;
2. otherwise, among the patterns that match, the one with the most *literal* characters
   wins: characters outside ``*``, ``?`` and bracket expressions (``"Qwen/Qwen2.5-*"``, 13
   literal characters, beats ``"Qwen/*"``, 5);
3. a tie goes to the key written first;
4. nothing matching means no price (``None``; ``<NA>`` in :func:`estimate_costs`).

A table may have a *fallback* (:meth:`PriceTable.with_fallback`): a model the table itself
cannot price, by these rules, is looked up in the fallback. A profile's own prices fall back
to the top-level table this way, so ``[profiles.X.prices] "*" = ...`` prices every model of
that profile, even those the top-level table names exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from ftlog.errors import UsageProblem

if TYPE_CHECKING:
    import pandas as pd

_WILDCARDS = re.compile(r"[*?\[]")
_NON_LITERAL = re.compile(r"\[!?\]?[^\]]*\]|[*?]")
_CURRENCY = re.compile(r"[A-Z]{3}")
_PRICE_KEYS = ("per_million_tokens", "currency")


@dataclass(frozen=True)
class Price:
    """What a million trained tokens cost."""

    per_million_tokens: float
    currency: str


def is_pattern(key: str) -> bool:
    """Whether ``key`` is an ``fnmatch`` pattern (holds ``*``, ``?`` or ``[``) or a name."""
    return _WILDCARDS.search(key) is not None


def literal_characters(pattern: str) -> int:
    """How many characters of ``pattern`` are literal: not ``*``, ``?`` or a ``[...]``."""
    return len(_NON_LITERAL.sub("", pattern))


@dataclass(frozen=True)
class PriceTable:
    """Prices by exact model name or ``fnmatch`` pattern; see the module docs for matching."""

    entries: Mapping[str, Price] = field(default_factory=dict)
    """Every key as written, in file order."""
    fallback: PriceTable | None = None

    def price_for(self, model: str) -> Price | None:
        """The price of ``model``, or None when neither this table nor its fallback has one."""
        exact = self.entries.get(model)
        if exact is not None and not is_pattern(model):
            return exact
        best: tuple[int, Price] | None = None
        for key, price in self.entries.items():
            if is_pattern(key) and fnmatchcase(model, key):
                score = literal_characters(key)
                if best is None or score > best[0]:
                    best = (score, price)
        if best is not None:
            return best[1]
        return self.fallback.price_for(model) if self.fallback is not None else None

    def with_fallback(self, fallback: PriceTable | None) -> PriceTable:
        """This table, consulted first, then ``fallback`` (and this table's own fallback)."""
        if fallback is None:
            return self
        chained = fallback if self.fallback is None else self.fallback.with_fallback(fallback)
        return PriceTable(self.entries, chained)

    def __len__(self) -> int:
        """The number of keys, fallback included."""
        return len(self.entries) + (len(self.fallback) if self.fallback is not None else 0)

    def __bool__(self) -> bool:
        return len(self) > 0

    @classmethod
    def from_toml(cls, data: Any, *, origin: str, key: str = "prices") -> PriceTable:
        """A table from the decoded TOML value at ``key``; one-line :class:`UsageProblem`s
        name ``origin`` (the file) and the key for anything malformed."""
        if not isinstance(data, dict):
            raise UsageProblem(f"{origin}: {key} must be a table, not {toml_kind(data)}")
        entries: dict[str, Price] = {}
        for model, value in data.items():
            where = f"{key}.{toml_key(model)}"
            if not model.strip():
                raise UsageProblem(f"{origin}: {key} has an empty model name")
            if not isinstance(value, dict):
                raise UsageProblem(
                    f"{origin}: {where} must be a table like "
                    '{ per_million_tokens = 0.40, currency = "USD" }, not ' + toml_kind(value)
                )
            entries[model] = _price(value, origin=origin, where=where)
        return cls(entries)


def estimate_costs(
    models: pd.Series[Any], trained_tokens: pd.Series[Any], table: PriceTable
) -> pd.DataFrame:
    """``estimated_cost`` (Float64) and ``currency`` (string) for each row.

    ``models`` and ``trained_tokens`` must share an index, which the result keeps.
    ``estimated_cost = trained_tokens / 1e6 * per_million_tokens``; it is ``<NA>`` where the
    model has no price or the token count is missing or negative, and ``currency`` is ``<NA>``
    where the model has no price. Each distinct model is priced once; the arithmetic is
    vectorized.
    """
    import pandas as pd

    if not models.index.equals(trained_tokens.index):
        raise ValueError("models and trained_tokens must have the same index")
    prices = {model: table.price_for(model) for model in models.dropna().unique()}
    rates = {model: price.per_million_tokens for model, price in prices.items() if price}
    currencies = {model: price.currency for model, price in prices.items() if price}
    rate = models.map(rates).astype("Float64")
    tokens = pd.to_numeric(trained_tokens, errors="coerce").astype("Float64")
    tokens = tokens.where(tokens >= 0)
    return pd.DataFrame(
        {
            "estimated_cost": tokens / 1_000_000 * rate,
            "currency": models.map(currencies).astype("string"),
        },
        index=models.index,
    )


def toml_key(key: str) -> str:
    """``key`` as written in TOML: bare when it can be, else quoted."""
    if re.fullmatch(r"[A-Za-z0-9_-]+", key):
        return key
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _price(value: dict[str, Any], *, origin: str, where: str) -> Price:
    for name in value:
        if name not in _PRICE_KEYS:
            raise UsageProblem(
                f"{origin}: unknown key {where}.{toml_key(name)} "
                f"(a price has {' and '.join(_PRICE_KEYS)})"
            )
    amount = value.get("per_million_tokens")
    if amount is None:
        raise UsageProblem(f"{origin}: {where} has no per_million_tokens")
    if (
        isinstance(amount, bool)
        or not isinstance(amount, int | float)
        or not math.isfinite(amount)
        or amount < 0
    ):
        raise UsageProblem(
            f"{origin}: {where}.per_million_tokens must be a number >= 0, not {amount!r}"
        )
    currency = value.get("currency")
    if currency is None:
        raise UsageProblem(f'{origin}: {where} has no currency (e.g. currency = "USD")')
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise UsageProblem(
            f"{origin}: {where}.currency must be a three-letter code such as USD or EUR, "
            f"not {currency!r}"
        )
    return Price(float(amount), currency)


def toml_kind(value: Any) -> str:
    """What a TOML value is, for error messages: ``a table``, ``a string``, ..."""
    names = {dict: "a table", list: "an array", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a date/time")
