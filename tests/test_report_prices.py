"""The report flags stale and weak prices: a "check these prices" list near the assumptions
and a marker on each flagged row (sim.report.tables.assumptions, price_flags)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

import sim
from sim.report import assumptions

AS_OF = dt.date(2026, 12, 1)  # the day of the catalogue refresh


def _scenario(**overrides: object) -> sim.Scenario:
    return sim.load_scenario("scenarios/chat-startup.yaml").with_overrides(
        {"horizon.duration_s": 120, "horizon.warmup_s": 0, **overrides}
    )


def _gpu_row(table: pd.DataFrame) -> pd.Series:
    return table[table["group"] == "GPU price"].iloc[0]


def _api_rows(table: pd.DataFrame) -> pd.DataFrame:
    # the per-token prices (input, output, cached input) of every provider
    return table[(table["group"] == "API price") & table["value"].str.endswith("per 1M tokens")]


def test_a_current_price_is_not_flagged() -> None:
    table = assumptions(_scenario(), as_of=AS_OF)
    assert list(table.columns) == ["group", "input", "value", "source", "date", "flag"]
    gpu = _gpu_row(table)
    assert (gpu["value"], gpu["date"], gpu["flag"]) == ("$4.29 per GPU-hour", "2026-12-01", "")
    # only price rows can carry a flag
    assert (table[~table["group"].isin(["GPU price", "API price"])]["flag"] == "").all()


def test_an_old_price_date_is_flagged() -> None:
    table = assumptions(_scenario(**{"fleet.pricing.price_date": "2025-11"}), as_of=AS_OF)
    assert _gpu_row(table)["flag"] == "quoted 2025-11, more than 6 months before 2026-12-01"
    undated = assumptions(_scenario(**{"fleet.pricing.price_date": ""}), as_of=AS_OF)
    assert _gpu_row(undated)["flag"] == "no quote date"
    # the same price judged later goes stale
    later = assumptions(_scenario(), as_of=dt.date(2027, 6, 2))
    assert _gpu_row(later)["flag"].startswith("quoted 2026-12-01, more than 6 months")


def test_catalogue_prices_carry_their_confidence() -> None:
    # the flagship's API model is past its deprecation date: low-medium in the catalogue
    api = _api_rows(assumptions(_scenario(), as_of=AS_OF))
    assert list(api["flag"]) == ["low-medium confidence"] * 3
    # a high-confidence catalogue price, current: no flag
    opus_scenario = _scenario(**{"api.model": "anthropic/claude-opus-4-5"})
    opus = _api_rows(assumptions(opus_scenario, as_of=AS_OF))
    assert len(opus) == 3 and (opus["flag"] == "").all()
    # a price the scenario gives itself is not held to the catalogue's confidence
    own = assumptions(_scenario(**{"api.usd_per_1m_output": 0.2}), as_of=AS_OF)
    assert list(_api_rows(own)["flag"]) == ["low-medium confidence", "", "low-medium confidence"]
    # the catalogue's default GPU quote (high confidence, read 2026-12-01)
    default = assumptions(_scenario(**{"fleet.pricing": None}), as_of=AS_OF)
    assert _gpu_row(default)["value"] == "$2.95 per GPU-hour" and _gpu_row(default)["flag"] == ""


def test_report_lists_and_marks_the_prices_to_check(tmp_path: Path) -> None:
    s = _scenario(**{"fleet.pricing.price_date": "2024-01"})
    html = sim.report(sim.run(s, replications=2, seed=1), tmp_path / "r.html").read_text()
    section = html[html.index('<section id="assumptions">') :]
    box = section[section.index('<div id="check-prices"') : section.index("</div>")]
    assert "Check these prices" in box
    assert "h100-sxm, on_demand: $4.29 per GPU-hour (2024-01): quoted 2024-01, more than" in box
    assert "low-medium confidence" in box  # the API model
    assert section.count('<tr class="flagged"') == 4  # the GPU price and three API prices
    flagged = pd.read_csv(tmp_path / "r_files" / "assumptions.csv").fillna("")
    assert (flagged["flag"] != "").sum() == 4


def test_report_without_flags_has_no_check_list(tmp_path: Path) -> None:
    # the report judges prices on the day it is built; far past the refresh that the
    # scenario and the catalogue quote, the price is rightly stale and this test says so
    if dt.date.today() > dt.date(2027, 6, 1):
        pytest.skip("the shipped prices are stale by now: refresh the catalogue")
    s = _scenario(**{"api.model": "anthropic/claude-opus-4-5"})
    html = sim.report(sim.run(s, replications=2, seed=1), tmp_path / "r.html").read_text()
    assert 'id="check-prices"' not in html and '<tr class="flagged"' not in html
