"""The HTML reports in headless Chromium: they render, every plot loads and shows, no console
errors, no request leaves the machine; and the checker itself catches each of those defects."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from attire.cli.main import app
from attire.data.manifest import Manifest
from attire.taxonomy import Taxonomy
from attire.training.config import TrainConfig
from attire.training.fit import fit
from browser import blank, check_page
from test_predict import MARKS
from test_training import (
    TOY_TAXONOMY,
    single_thread,  # noqa: F401  (autouse fixture)
    toy_config,
    toy_data,
)

TASKS = [t["name"] for t in TOY_TAXONOMY["tasks"]] + [MARKS["name"]]
PLOTS = ("confusion", "recall", "reliability")  # heatmap, long tail, calibration
TITLE = "attire eval: val split"


@pytest.fixture(scope="module")
def eval_page(tmp_path_factory) -> Path:
    """index.html of `attire eval` on a model trained for one epoch (three multiclass tasks and
    a multilabel one, so both heatmap kinds are drawn)."""
    root = tmp_path_factory.mktemp("browser_eval")
    data = toy_data(root / "data", n_train=32, n_val=16)
    manifest = Manifest.read(data)
    manifest.df[MARKS["name"]] = [[], ["dot"], ["line"], ["dot", "line"]] * (len(manifest.df) // 4)
    taxonomy = Taxonomy.from_dict({**TOY_TAXONOMY, "tasks": [*TOY_TAXONOMY["tasks"], MARKS]})
    Manifest(manifest.df, taxonomy, manifest.root).write(data)
    model = fit(TrainConfig.from_dict(toy_config(data, root / "run"))).export_dir
    out = root / "report"
    args = ["eval", str(model), "--data", str(data), "--split", "val", "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--many", "10", "--few", "5", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    return out / "index.html"


def test_eval_report_renders_every_plot_without_errors(eval_page, browser_page, tmp_path):
    seen = check_page(browser_page, eval_page, tmp_path / "eval.png")
    seen.assert_ok(headings=[TITLE, *TASKS], min_tables=1 + len(TASKS))
    assert seen.title == TITLE
    assert {link["href"] for link in seen.links} >= {"metrics.json", *(f"#{t}" for t in TASKS)}
    assert len(seen.images) == len(TASKS) * len(PLOTS)
    for task in TASKS:
        for kind in PLOTS:
            [img] = seen.image(rf"^{kind}_{task}\.png$")
            with Image.open(eval_page.parent / img["src"]) as png:
                assert (img["natural_width"], img["natural_height"]) == png.size
    with Image.open(seen.screenshot) as shot:
        assert shot.width == 1280 and shot.height > 900  # the whole page, not the viewport
    bottom = max(i["y"] + i["height"] for i in seen.images)
    assert bottom <= shot.height


def _copy(page: Path, to: Path) -> tuple[Path, str]:
    folder = Path(shutil.copytree(page.parent, to))
    return folder / page.name, (folder / page.name).read_text(encoding="utf-8")


def _swap(html: str, old: str, new: str) -> str:
    assert html.count(old) == 1, old
    return html.replace(old, new)


def test_checker_reports_each_defect_injected_into_a_copy(eval_page, browser_page, tmp_path):
    page, html = _copy(eval_page, tmp_path / "broken")
    html = _swap(html, 'src="reliability_colour.png"', 'src="reliability_color.png"')
    html = _swap(html, '<h2 id="size">size</h2>', "<h2>sizes</h2>")  # its #size link dangles
    (page.parent / "metrics.json").unlink()
    script = "<script>console.error('drawn wrong'); window.notAFunction();</script>"
    external = '<img src="https://cdn.example.com/logo.png" alt="logo">'
    html = _swap(html, "</body>", f"{script}{external}</body>")
    page.write_text(html, encoding="utf-8")
    # a chart whose pixels are all white: the file loads, the reader sees nothing
    recall = page.parent / "recall_colour.png"
    with Image.open(recall) as png:
        Image.new("RGB", png.size, "white").save(recall)

    problems = check_page(browser_page, page, tmp_path / "broken.png").problems(
        headings=[TITLE, *TASKS]
    )
    expected = [
        r"^broken image reliability_color\.png: not loaded$",
        r"^console error: .*ERR_FILE_NOT_FOUND",
        r"^console error: drawn wrong$",
        r"^page error: .*notAFunction is not a function",
        r"^external request \(the page must work offline\): https://cdn\.example\.com/logo\.png",
        r"^broken image https://cdn\.example\.com/logo\.png: not loaded$",
        r"^blank in the screenshot: recall_colour\.png: grey-level std \d",
        r"^missing heading: 'size'$",
        r"^broken link #size: no element with that id$",
        r"^broken link metrics\.json: .*metrics\.json does not exist$",
    ]
    for pattern in expected:
        assert any(re.search(pattern, p) for p in problems), (pattern, problems)
    assert not any("reliability_size" in p or "confusion_" in p for p in problems), problems


def test_checker_reports_a_blank_page_hidden_and_tiny_images(eval_page, browser_page, tmp_path):
    chart = (eval_page.parent / "confusion_colour.png").as_uri()
    page = tmp_path / "blank.html"
    page.write_text(
        f'<!doctype html><title>t</title><body><img src="{chart}" width="20">'
        f'<img src="{chart}" style="display: none"></body>',
        encoding="utf-8",
    )
    problems = check_page(browser_page, page, tmp_path / "blank.png").problems(min_tables=1)
    assert problems[:2] == [
        f"unreadable image {chart}: shown at 20x16 px",
        f"unreadable image {chart}: hidden at 0x0 px",
    ]
    assert problems[2].startswith("blank in the screenshot: whole page: ")
    assert problems[3:] == ["0 tables, expected at least 1"]


def test_blank_means_flat_or_almost_no_ink(eval_page):
    assert blank(Image.new("RGB", (80, 50), (200, 180, 220))) == "grey-level std 0.0 < 8.0"
    hairline = np.full((1000, 1000, 3), 255, np.uint8)
    hairline[500:502] = 0  # high contrast, but 0.2% of the pixels
    assert blank(Image.fromarray(hairline)) == "0.20% non-white pixels < 1%"
    with Image.open(eval_page.parent / "reliability_colour.png") as chart:
        assert blank(chart) is None
