"""sim.report / `crossover report`: one self-contained, escaped HTML file that a headless
browser renders with every figure."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

import sim
from sim.cli.report import main
from sim.report import assumptions, load_run

EVIL = "<script>alert(1)</script>"
RATE = "workload.classes.chat.arrivals.rates_rps.0"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _scenario(name: str = "chat") -> sim.Scenario:
    s = sim.load_scenario("scenarios/chat-startup.yaml").with_overrides(
        {"horizon.duration_s": 300, "horizon.warmup_s": 30}
    )
    if name == "chat":
        return s
    data = s.model_dump(mode="python")
    data["workload"]["classes"][0]["name"] = name
    return sim.Scenario.model_validate(data)


@pytest.fixture(scope="module")
def evil_result() -> sim.RunResult:
    return sim.run(_scenario(EVIL), replications=2, seed=1)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    s = _scenario()
    res = sim.run(s, replications=2, seed=1)
    grid = sim.sweep(s, grid={RATE: [1.0, 40.0, 80.0]}, replications=2, executor="serial")
    cross = sim.crossover(grid, x=RATE)
    sens = pd.DataFrame(
        {
            "parameter": ["GPU price", "rate"],
            "low": [-900.0, -300.0],
            "high": [700.0, 200.0],
            "base": -100.0,
        }
    )
    out = tmp_path_factory.mktemp("full") / "report.html"
    return sim.report(res, out, sweep=grid, crossover=cross, sensitivity=sens)


def test_report_is_self_contained_with_every_section(full_report: Path) -> None:
    html = full_report.read_text()
    for section in (
        "verdict",
        "costs",
        "utilisation",
        "latency",
        "crossover",
        "sensitivity",
        "assumptions",
    ):
        assert f'<section id="{section}">' in html
    # verdict first
    assert html.index('id="verdict"') < html.index('id="costs"')
    figures = re.findall(r'<figure id="fig-(\w+)"', html)
    assert figures == [
        "cost_breakdown",
        "utilisation",
        "timeseries",
        "cdf_ttft_s",
        "cdf_tpot_s",
        "cdf_e2e_s",
        "crossover",
        "tornado",
    ]
    assert html.count("<svg") == len(figures)
    # nothing fetched: no scripts, no external URLs in src/href, no stylesheet links
    assert "<script" not in html
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    assert "<link" not in html
    files = full_report.parent / "report_files"
    for name in figures:
        assert (files / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    for table in (
        "summary",
        "compare",
        "side_by_side",
        "assumptions",
        "cost_breakdown",
        "crossover_points",
        "sensitivity",
        "scenario_inputs",
    ):
        assert not pd.read_csv(files / f"{table}.csv").empty


def test_assumptions_list_prices_specs_and_profile_with_sources() -> None:
    table = assumptions(_scenario())
    groups = set(table["group"])
    assert {"GPU price", "API price", "GPU spec", "model", "step time", "hidden costs"} <= groups
    gpu = table[table["group"] == "GPU price"].iloc[0]
    assert "4.29" in gpu["value"] and gpu["date"] == "2026-12-01" and gpu["source"]
    api = table[table["group"] == "API price"]
    assert api["source"].str.len().gt(0).all()
    assert (table[table["group"] == "step time"]["source"].str.contains("profile")).any()


def test_user_strings_are_escaped(evil_result: sim.RunResult, tmp_path: Path) -> None:
    html = sim.report(evil_result, tmp_path / "r.html").read_text()
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_report_from_a_run_directory_matches_memory(tmp_path: Path) -> None:
    s = _scenario()
    res = sim.run(s, replications=2, seed=1)
    d = tmp_path / "run"
    d.mkdir()
    (d / "scenario.resolved.yaml").write_text(sim.dump_scenario(s))
    res.summary().to_csv(d / "summary.csv", index=False)
    res.replications.to_csv(d / "replications.csv", index=False)
    res.first.requests.to_parquet(d / "requests.parquet", index=False)
    res.first.timeseries.to_csv(d / "timeseries.csv", index=False)
    res.first.replicas.to_csv(d / "replicas.csv", index=False)
    res.compare().to_csv(d / "compare.csv", index=False)
    back = load_run(d)
    pd.testing.assert_frame_equal(back.summary(), res.summary(), check_exact=False, rtol=1e-12)
    assert main([str(d), "-o", str(tmp_path / "out" / "r.html")]) == 0
    html = (tmp_path / "out" / "r.html").read_text()
    assert html.count("<svg") == 6 and "chat-startup" in html


def test_bad_input_is_one_line_and_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a directory" in err
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an output of crossover run, sweep, plan" in err
    assert "runs.parquet" in err and "plan.csv" in err and "tornado.csv" in err
    (tmp_path / "replications.csv").write_text("replication\n0\n")
    assert main([str(tmp_path)]) == 2
    assert "missing requests.parquet, scenario.resolved.yaml" in capsys.readouterr().err
    (tmp_path / "requests.parquet").write_text("x")
    (tmp_path / "scenario.resolved.yaml").write_text("name: [")
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("crossover report: ")
    assert main([]) == 2


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="headless Chromium is not installed (required when CI is set)",
)
def test_report_renders_in_headless_chromium(full_report: Path, tmp_path: Path) -> None:
    assert CHROMIUM is not None, "CI: chromium must be installed (see .ci/run)"
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = full_report.resolve().as_uri()
    dom = subprocess.run(
        [*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    html = full_report.read_text()
    assert "<title>crossover report: chat-startup</title>" in dom
    for name in re.findall(r'<figure id="fig-(\w+)"', html):
        block = re.search(rf'<figure id="fig-{name}">(.*?)</figure>', dom, re.S)
        assert block is not None, name
        assert "<svg" in block.group(1) and "</svg>" in block.group(1), name
    assert dom.count("<svg") == html.count("<svg")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,3000", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 10_000


def test_run_directory_records_the_seed_for_the_report(tmp_path: Path) -> None:
    from sim.cli import main as cli_main
    from sim.report import load_run

    out = tmp_path / "run"
    flagship = Path(__file__).resolve().parents[1] / "scenarios" / "chat-startup.yaml"
    args = [
        "run", str(flagship), "-n", "2", "--seed", "11", "-q", "--out", str(out),
        "--set", "horizon.duration_s=300", "--set", "horizon.warmup_s=0",
    ]  # fmt: skip
    assert cli_main(args) == 0
    assert load_run(out).seed == 11


def test_report_reads_in_words_with_one_number_format(tmp_path: Path) -> None:
    from sim.report.figures import cdf_groupings

    # an autoscaled fleet starts at replicas=2: the fleet line says its range, not the start
    s = sim.load_scenario("scenarios/diurnal-autoscaled-spot.yaml").with_overrides(
        {"horizon.duration_s": 300, "horizon.warmup_s": 30}
    )
    auto = s.fleet.autoscaler
    assert auto is not None
    html = sim.report(sim.run(s, replications=2, seed=1), tmp_path / "r.html").read_text()
    fleet = re.search(r'<p class="meta">fleet: ([^<]*)</p>', html)
    assert fleet is not None
    assert fleet.group(1).startswith(f"{auto.min_replicas}–{auto.max_replicas} (autoscaled) × ")
    # the flagship has one class, served on one route: one CDF panel, not two identical ones
    chat = sim.run(_scenario(), replications=2, seed=1)
    assert cdf_groupings(chat.first.requests) == ["class_name"]
    html = sim.report(chat, tmp_path / "chat.html").read_text()
    for name in ("cdf_ttft_s", "cdf_tpot_s", "cdf_e2e_s"):
        block = re.search(rf'<figure id="fig-{name}">(.*?)</figure>', html, re.S)
        assert block is not None
        assert 'id="axes_1"' in block.group(1) and 'id="axes_2"' not in block.group(1), name
        caption = block.group(1).split("<figcaption>")[1]
        assert "log scale" in caption and "by class" in caption and "by route" not in caption
        assert "API-only baseline" in caption and "p50, p90 and p99" in caption
    # titles in words, not column names
    assert "ttft_s by class_name" not in html and "Time to first token by class (s)" in html
    # money with thousands separators, plain numbers without scientific notation
    table = assumptions(_scenario()).set_index("input")
    assert table.loc["fte_usd_per_year", "value"] == "$220,000"
    assert table.loc["ops_fte", "value"] == "0.25"
    assert table.loc["monitoring_usd_per_month", "value"] == "$300"
    assert not table["value"].str.contains(r"\d\.?\d*e[+]").any()
    # the cost breakdown in money too, as the verdict prints it
    costs = re.search(r'<section id="costs">(.*?)</section>', html, re.S)
    assert costs is not None
    assert not re.search(r"\de[+]\d", costs.group(1)) and "$" in costs.group(1)
    # one format in it: whole dollars, an interval or the note saying why there is none
    cells = re.findall(r'<td class="num">(.*?)</td>', costs.group(1))
    assert cells and all(
        re.fullmatch(r"-?\$[\d,]+ \((-?\$[\d,]+ – -?\$[\d,]+|[a-z0-9% ]+)\)", c) for c in cells
    ), cells


def test_cdfs_of_two_classes_draw_both_panels(evil_result: sim.RunResult) -> None:
    from sim.report.figures import baseline_percentiles, cdf_groupings

    req = evil_result.first.requests.copy()
    req["route"] = "fleet"
    req.loc[req.index[::2], "route"] = "api"
    assert cdf_groupings(req) == ["class_name", "route"]
    marks = baseline_percentiles(evil_result.first.metrics, "ttft_s")
    assert sorted(marks) == [0.5, 0.9, 0.99]
    assert marks[0.5] == evil_result.first.metrics["api_only_ttft_p50_s"]
