"""Faults the simulated API injects: their SPEC grammar and which request gets which."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

FAULT_KINDS = ("429", "500", "502", "503", "slow", "malformed", "reset", "missing")
_FAULT_ARGS = {"429": 1.0, "slow": 2.0}  # kinds that take an ARG, and its default


@dataclass(frozen=True)
class FaultRule:
    """One fault kind and when it strikes: the first ``first`` requests, every ``every``-th
    request, or with ``probability``. ``arg``: Retry-After seconds (429) or delay (slow)."""

    kind: str
    probability: float = 0.0
    first: int = 0
    every: int = 0
    arg: float = 0.0


def parse_faults(spec: str) -> tuple[FaultRule, ...]:
    """Parse ``KIND:WHEN[:ARG],...``, e.g. ``429:0.1,500:every=4,slow:first=1:3``.

    KIND is 429, 500, 502, 503, slow (answer after ARG seconds, default 2), malformed (a 200
    whose JSON body is cut in half), reset (close the connection without answering) or missing
    (job objects lack ``status``). For 429, ARG is the Retry-After header (seconds, default 1).
    WHEN is a probability per request (0..1; the probabilities must sum to at most 1),
    ``first=N`` (the first N requests) or ``every=N`` (requests N, 2N, ...). Requests are
    counted from 1 among those that pass authentication; deterministic rules win over random
    ones, and earlier rules over later ones. Raises ValueError with a one-line message.
    """
    rules = tuple(_parse_fault(item.strip(), spec) for item in spec.split(",") if spec.strip())
    if sum(rule.probability for rule in rules) > 1:
        raise ValueError(f"fault probabilities in {spec!r} add up to more than 1")
    return rules


def _parse_fault(item: str, spec: str) -> FaultRule:
    kind, _, rest = item.partition(":")
    when, _, arg = rest.partition(":")
    if kind not in FAULT_KINDS:
        raise ValueError(
            f"unknown fault kind {kind!r} in {spec!r}; expected one of {', '.join(FAULT_KINDS)}"
        )
    if arg and kind not in _FAULT_ARGS:
        raise ValueError(f"fault {kind!r} takes no argument (in {spec!r})")
    try:
        return _fault_rule(kind, when, float(arg) if arg else _FAULT_ARGS.get(kind, 0.0))
    except ValueError:
        raise ValueError(
            f"bad fault {item!r} in {spec!r}: expected KIND:WHEN[:ARG] with WHEN a probability "
            "(0..1), first=N or every=N, and ARG a number of seconds"
        ) from None


def _fault_rule(kind: str, when: str, arg: float) -> FaultRule:
    """Raises ValueError for a bad WHEN or ARG."""
    if not 0 <= arg < math.inf:
        raise ValueError(arg)
    name, equals, count = when.partition("=")
    if equals:
        if name not in ("first", "every") or int(count) < 1:
            raise ValueError(when)
        return FaultRule(kind, arg=arg, **{name: int(count)})
    probability = float(when)
    if not 0 <= probability <= 1:
        raise ValueError(when)
    return FaultRule(kind, probability=probability, arg=arg)


def pick_fault(rules: Sequence[FaultRule], n: int, draw: float) -> FaultRule | None:
    """The fault for request number ``n`` (from 1), given a uniform ``draw`` in [0, 1)."""
    for rule in rules:
        if (rule.first and n <= rule.first) or (rule.every and n % rule.every == 0):
            return rule
    edge = 0.0
    for rule in rules:
        edge += rule.probability
        if draw < edge:
            return rule
    return None
