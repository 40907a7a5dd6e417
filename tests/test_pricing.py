"""Price tables: which key prices a model, and vectorized cost estimates."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ftlog.config import load_prices
from ftlog.errors import UsageProblem
from ftlog.pricing import Price, PriceTable, estimate_costs, literal_characters


def make(entries: dict[str, float], currency: str = "USD") -> PriceTable:
    return PriceTable({key: Price(value, currency) for key, value in entries.items()})


def rate(t: PriceTable, model: str) -> float | None:
    price = t.price_for(model)
    return None if price is None else price.per_million_tokens


def test_exact_name_beats_any_pattern_wherever_it_is_written() -> None:
    t = make({"Qwen/*": 0.30, "*": 9.0, "Qwen/Qwen2.5-7B": 0.50})
    assert rate(t, "Qwen/Qwen2.5-7B") == 0.50
    assert rate(t, "Qwen/Qwen2.5-14B") == 0.30


def test_the_pattern_with_most_literal_characters_wins() -> None:
    t = make({"*": 1.0, "Qwen/*": 0.30, "Qwen/Qwen2.5-*": 0.20, "*-Instruct": 0.7})
    assert rate(t, "Qwen/Qwen2.5-7B") == 0.20  # 13 literal characters beat 5 and 0
    assert rate(t, "Qwen/Qwen3-8B") == 0.30
    assert rate(t, "mistralai/Mistral-7B") == 1.0
    # "Qwen/Qwen2.5-*" (13) beats "*-Instruct" (9), though both match.
    assert rate(t, "Qwen/Qwen2.5-7B-Instruct") == 0.20


def test_a_tie_goes_to_the_key_written_first() -> None:
    assert rate(make({"Q*n": 1.0, "*en": 2.0}), "Qwen") == 1.0
    assert rate(make({"*en": 2.0, "Q*n": 1.0}), "Qwen") == 2.0


def test_literal_characters_ignore_wildcards_and_bracket_expressions() -> None:
    assert literal_characters("Qwen/*") == 5
    assert literal_characters("[Qq]wen-?B*") == 5
    assert literal_characters("a[!xy]b") == 2
    assert literal_characters("exact") == 5


def test_matching_is_case_sensitive_and_no_match_is_none() -> None:
    t = make({"qwen/*": 0.3, "meta-llama/Llama-3.1-8B-Instruct": 0.4})
    assert t.price_for("Qwen/Qwen2.5-7B") is None
    assert t.price_for("meta-llama/llama-3.1-8b-instruct") is None
    assert t.price_for("other") is None
    assert PriceTable().price_for("anything") is None


def test_a_table_falls_back_only_for_models_it_cannot_price() -> None:
    top = make({"Qwen/Qwen2.5-7B": 0.50, "meta-llama/*": 0.40})
    own = make({"Qwen/*": 0.25}).with_fallback(top)
    assert rate(own, "Qwen/Qwen2.5-7B") == 0.25  # the profile's pattern beats top's exact name
    assert rate(own, "meta-llama/Llama-3.1-8B-Instruct") == 0.40
    assert own.price_for("mistralai/Mistral-7B") is None
    assert len(own) == 3


def test_estimate_costs_against_a_hand_computed_table() -> None:
    t = PriceTable(
        {
            "meta-llama/Llama-3.1-8B-Instruct": Price(0.40, "USD"),
            "Qwen/*": Price(0.30, "EUR"),
        }
    )
    index = pd.Index([10, 20, 30, 40, 50, 60, 70], name="job_pk")
    models = pd.Series(
        [
            "meta-llama/Llama-3.1-8B-Instruct",
            "Qwen/Qwen2.5-7B",
            "mistralai/Mistral-7B",  # no price
            "meta-llama/Llama-3.1-8B-Instruct",  # no tokens
            None,  # no model
            "Qwen/Qwen3-8B",
            "Qwen/Qwen3-8B",  # negative tokens: nonsense, not a cost
        ],
        index=index,
        dtype="string",
    )
    tokens = pd.Series(
        [2_500_000, 1_000_000, 5_000_000, None, 1_000_000, 0, -5], index=index, dtype="Int64"
    )

    out = estimate_costs(models, tokens, t)

    assert list(out.columns) == ["estimated_cost", "currency"]
    assert out.index.equals(index)
    assert str(out["estimated_cost"].dtype) == "Float64"
    assert str(out["currency"].dtype).startswith("string")
    costs = out["estimated_cost"]
    assert costs[10] == pytest.approx(1.00)
    assert costs[20] == pytest.approx(0.30)
    assert costs[60] == 0.0
    assert costs.isna().tolist() == [False, False, True, True, True, False, True]
    assert out["currency"].tolist() == ["USD", "EUR", pd.NA, "USD", pd.NA, "EUR", "EUR"]


def test_estimate_costs_prices_each_distinct_model_once() -> None:
    calls: list[str] = []

    class CountingTable(PriceTable):
        def price_for(self, model: str) -> Price | None:
            calls.append(model)
            return super().price_for(model)

    models = pd.Series(["a", "b", "a", "a", "b"] * 200, dtype="string")
    tokens = pd.Series([1_000_000] * len(models), dtype="Int64")
    out = estimate_costs(models, tokens, CountingTable({"a": Price(2.0, "USD")}))
    assert sorted(calls) == ["a", "b"]
    assert out["estimated_cost"].sum() == pytest.approx(2.0 * 600)


def test_estimate_costs_refuses_misaligned_series() -> None:
    with pytest.raises(ValueError, match="same index"):
        estimate_costs(pd.Series(["a"], index=[1]), pd.Series([1], index=[2]), PriceTable())


def test_estimate_costs_on_empty_series() -> None:
    out = estimate_costs(pd.Series([], dtype="string"), pd.Series([], dtype="Int64"), PriceTable())
    assert out.empty
    assert str(out["estimated_cost"].dtype) == "Float64"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{ per_million_tokens = 0.4 }", "has no currency"),
        ('{ currency = "USD" }', "has no per_million_tokens"),
        ('{ per_million_tokens = -1, currency = "USD" }', "must be a number >= 0"),
        ('{ per_million_tokens = nan, currency = "USD" }', "must be a number >= 0"),
        ('{ per_million_tokens = "0.4", currency = "USD" }', "must be a number >= 0"),
        ('{ per_million_tokens = 0.4, currency = "usd" }', "three-letter code"),
        ('{ per_million_tokens = 0.4, currency = "USD", per_token = 1 }', "unknown key"),
        ("0.4", "must be a table"),
    ],
)
def test_malformed_prices_are_one_line_errors(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(f'[prices]\n"Qwen/*" = {entry}\n')
    with pytest.raises(UsageProblem, match=message) as caught:
        load_prices(path)
    text = str(caught.value)
    assert "\n" not in text
    assert str(path) in text
    assert 'prices."Qwen/*"' in text


def test_load_prices_reads_a_prices_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        "[prices]\n"
        '"meta-llama/Llama-3.1-8B-Instruct" = { per_million_tokens = 0.40, currency = "USD" }\n'
        '"Qwen/*" = { per_million_tokens = 1, currency = "EUR" }\n'
    )
    t = load_prices(path)
    assert t.price_for("meta-llama/Llama-3.1-8B-Instruct") == Price(0.40, "USD")
    assert t.price_for("Qwen/Qwen2.5-7B") == Price(1.0, "EUR")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[profiles.x]\n", "unknown key profiles"),
        ("title = 'x'\n", "unknown key title"),
        ("", "no \\[prices\\] table"),
        ("[prices\n", "invalid TOML"),
    ],
)
def test_load_prices_refuses_other_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(content)
    with pytest.raises(UsageProblem, match=message):
        load_prices(path)


def test_load_prices_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageProblem, match="does not exist"):
        load_prices(tmp_path / "nope.toml")
