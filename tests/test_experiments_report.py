"""``datawinnow report``: report.md, a self-contained report.html checked in headless Chromium (figures
rendered, every table number equal to the statistics recomputed from results.json), and the CLI."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from datawinnow.backends.embedder import Embedder
from datawinnow.cli import main
from datawinnow.data import load
from datawinnow.experiments.report import build_report
from datawinnow.experiments.stats import compute_stats, load_results
from synthetic_results import make_results

N_BOOT = 300


class HashEmbedder:
    """A stand-in sentence-transformers model: deterministic unit vectors from the text's bytes."""

    def get_sentence_embedding_dimension(self) -> int:
        return 16

    def encode(self, texts, **_):
        out = np.array([np.random.default_rng(list(t.encode("utf-8"))[:64] or [0]).normal(size=16) for t in texts],
                       dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _run_dir(root: Path) -> Path:
    run = root / "run"
    run.mkdir()
    pool = run / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": f"p{i:03d}", "instruction": f"Write {i} words about topic {i % 7}.",
                                        "input": "", "output": "word " * (i % 9 + 1)}) + "\n" for i in range(60)))
    res = make_results(effects={"good": 0.08, "same": 0.0}, method_seeds={"same": [0, 1, 2]}, seed=11)
    res["pool"].update(source=str(pool), fingerprint=load(str(pool)).fingerprint())
    res["config"]["pool"] = {"source": str(pool), "tasks": None, "exclude_tasks": None, "per_task": None,
                             "slice": None}
    (run / "results.json").write_text(json.dumps(res))
    return run


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    run = _run_dir(root)
    rep = build_report(run, root / "out", n_boot=N_BOOT, seed=3, embedder=Embedder(HashEmbedder(), "hash-embedder"),
                       reducer="pca", progress=False, command="datawinnow report run --out out")
    return run, rep


def test_markdown_has_header_tables_and_figures(report):
    run, rep = report
    md = rep.markdown.read_text()
    for fact in ("run date", "machine", "synthetic CPU", "datawinnow run-experiment synthetic.yaml", "package version",
                 "model", "tiny@0|fp32", "pool", "60 records"):
        assert fact in md
    assert "## Summary" in md and "good: better than random" in md
    for section in ("Verdict per method", "Per method and budget, all suites", "arc_easy: acc (120 items)",
                    "generation: rougeL (120 items)", "Cost per cell"):
        assert section in md
    for fig in re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", md):
        assert (rep.out_dir / fig).stat().st_size > 1000
    assert len(rep.figures) == 5  # aggregate + 2 suites, cost, map
    stats = json.loads(rep.stats.read_text())
    assert stats == json.loads(json.dumps(compute_stats(load_results(run), n_boot=N_BOOT, seed=3)))


def test_html_is_self_contained(report):
    page = report[1].html.read_text()
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert page.count('src="data:image/png;base64,') == 5


def _chromium():
    """(chromium binary, chromedriver) or a skip with the reason."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
    if not binary or not driver:
        pytest.skip("headless Chromium is not available: install the Debian packages chromium and chromium-driver "
                    "('make test' tries apt-get when they are missing)")
    return webdriver, binary, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver, binary, driver = _chromium()
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    b = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    yield b
    b.quit()


def _lookup(stats: dict, table: str, cell: str) -> dict:
    method, budget, suite = cell.split("|")
    rows = stats["costs"]["groups"] if table == "costs" else stats[table]
    for r in rows:
        if r["method"] != method:
            continue
        if budget and not math.isclose(r["budget"], float(budget)):
            continue
        if suite and r.get("suite") != suite:
            continue
        return r
    raise AssertionError(f"no {table} row for {cell}")


def test_html_renders_in_chromium_with_the_recomputed_numbers(report, browser):
    run, rep = report
    browser.get(rep.html.resolve().as_uri())
    browser.execute_script("return document.readyState")
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, "
        "i.getAttribute('data-figure')])")
    assert len(images) == 5
    for complete, width, height, name in images:
        assert complete and width > 100 and height > 100, name
    cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('td[data-metric]')).map(e => [e.dataset.table, e.dataset.cell, "
        "e.dataset.metric, e.dataset.value === undefined ? null : e.dataset.value, e.textContent])")
    stats = compute_stats(load_results(run), n_boot=N_BOOT, seed=3)  # recomputed independently of the report
    seen = set()
    for table, cell, metric, value, text in cells:
        expected = _lookup(stats, table, cell)[metric]
        if expected is None:
            assert value is None and text == "-"
            continue
        assert float(value) == expected, (table, cell, metric)
        shown = float(text)
        assert math.isclose(shown, expected, rel_tol=5e-3, abs_tol=0.05 if metric.endswith("seconds") else 1e-9)
        seen.add((table, cell, metric))
    # every comparison, aggregate and method verdict number is in the page
    for c in stats["comparisons"]:
        for m in ("diff", "ci_low", "ci_high"):
            assert ("comparisons", f"{c['method']}|{c['budget']!r}|{c['suite']}", m) in seen
    for a in stats["aggregate"]:
        assert ("aggregate", f"{a['method']}|{a['budget']!r}|", "diff") in seen
    for m in stats["methods"]:
        assert ("methods", f"{m['method']}||", "diff") in seen
    verdicts = browser.execute_script("return Array.from(document.querySelectorAll('td.better, td.worse, td.same'))"
                                      ".map(e => e.textContent)")
    assert "better than random" in verdicts


def test_missing_pool_leaves_the_map_out_with_a_note(tmp_path):
    run = _run_dir(tmp_path)
    (run / "pool.jsonl").unlink()
    rep = build_report(run, n_boot=200, embedder=Embedder(HashEmbedder(), "hash"), reducer="pca", progress=False)
    assert any("embedding map left out" in n for n in rep.notes)
    assert "embedding map left out" in rep.html.read_text()
    assert len(rep.figures) == 4


def test_cli_report(tmp_path, capsys):
    run = _run_dir(tmp_path)
    assert main(["report", str(run), "--out", str(tmp_path / "rep"), "--no-map", "--n-boot", "200", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "good: better than random" in out and "report.html" in out
    assert (tmp_path / "rep" / "report.md").exists() and (tmp_path / "rep" / "stats.json").exists()
    bad = json.loads((run / "results.json").read_text())
    bad["cells"][1]["suites"]["generation"]["items"][0]["score"] = "x"
    (run / "results.json").write_text(json.dumps(bad))
    assert main(["report", str(run), "--no-map"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("datawinnow: error: ") and "cells[1].suites.generation.items[0].score" in err


def test_header_names_a_partial_run():
    from datawinnow.experiments.report import _cells_line

    res = {"cells": [{"key": "zero_shot"}, {"key": "random/b=0.1/s=0"}]}
    assert _cells_line(res) == "2 finished"
    res["planned_cells"] = ["zero_shot", "random/b=0.1/s=0"]
    assert _cells_line(res) == "2 of 2 planned, all finished"
    res["planned_cells"] += ["ifd/b=0.1/s=0", "full"]
    line = _cells_line(res)
    assert "2 of 4 planned finished: a partial run" in line and line.endswith("not yet run: ifd/b=0.1/s=0, full")
