"""`attire compare`'s report in headless Chromium: the table and the Pareto plot render without
errors, every file it links to exists, and nothing is fetched from the network."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from attire.cli.main import app
from browser import check_page
from test_training import single_thread  # noqa: F401  (autouse fixture)

TINY = Path(__file__).resolve().parents[1] / "configs" / "experiments" / "tiny.yaml"
SPEC = yaml.safe_load(TINY.read_text(encoding="utf-8"))
FIRST, *OTHERS = (e["name"] for e in SPEC["experiments"])


@pytest.fixture(scope="module")
def compare_page(tmp_path_factory) -> Path:
    """report.html of the shipped tiny comparison with only its first experiment run: the
    others are listed as not run yet, so both kinds of row are drawn."""
    out = tmp_path_factory.mktemp("browser_compare")
    res = CliRunner().invoke(app, ["compare", str(TINY), "--out", str(out), "--only", FIRST])
    assert res.exit_code == 0, res.output
    return out / "report.html"


def test_compare_report_renders_plot_table_and_links(compare_page, browser_page, tmp_path):
    seen = check_page(browser_page, compare_page, tmp_path / "compare.png")
    seen.assert_ok(headings=[SPEC["title"], "Not in the comparison yet"], min_tables=1)
    [plot] = seen.images
    assert plot["src"] == "pareto.png" and plot["width"] > 600
    hrefs = {link["href"] for link in seen.links}
    assert {"results.json", "report.md"} <= hrefs
    assert len([h for h in hrefs if h.startswith(f"runs/{FIRST}/")]) >= 3  # metrics, profile, ...
    rows = browser_page.locator("tbody tr").all_inner_texts()
    assert [r.split("\t")[0] for r in rows] == [FIRST, *(f"{n} (not run)" for n in OTHERS)]
