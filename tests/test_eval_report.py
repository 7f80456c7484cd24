"""`attire eval`: a checkpoint scored over a manifest split, the HTML report, the CLI.

The checkpoint is a tiny untrained drn_c_tiny: the pipeline (row alignment, preprocessing,
skipped images, unknown labels, shot groups, thresholds) is what is tested, not accuracy.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from attire.cli.main import app
from attire.data.manifest import Manifest
from attire.evaluation.evaluate import EvalError, evaluate_arrays, evaluate_checkpoint
from attire.evaluation.report import write_report
from attire.evaluation.thresholds import UNREACHABLE
from attire.inference.predictor import Predictor
from attire.models.checkpoint import (
    CheckpointMeta,
    Preprocessing,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from attire.models.multitask import ModelConfig, MultiTaskModel
from attire.taxonomy import Taxonomy

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "black": (0,) * 3}
SHAPES = ["square", "circle", "triangle"]
TAGS = [["dot"], [], ["stripe", "frame"], None]
TASKS = [
    {"name": "colour", "classes": [{"id": c} for c in COLOURS]},
    {"name": "shape", "classes": [{"id": c} for c in SHAPES]},
    {
        "name": "tags",
        "type": "multilabel",
        "classes": [{"id": c} for c in ("dot", "stripe", "frame")],
    },
]
DATA_TAXONOMY = Taxonomy.from_dict({"name": "toy", "tasks": TASKS})
# the checkpoint also has a task that the manifest has no column for
MODEL_TAXONOMY = Taxonomy.from_dict(
    {
        "name": "toy",
        "tasks": [*TASKS, {"name": "fit", "classes": [{"id": "slim"}, {"id": "loose"}]}],
    }
)
SPLITS = ["train", "train", "val", "test"]


def _rows(root: Path) -> list[dict]:
    """48 rows in splits by i % 4; colour by i % 4 except in test where it cycles slower."""
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(48):
        split = SPLITS[i % 4]
        colour = list(COLOURS)[(i // 4) % 4 if split == "test" else i % 4]
        Image.new("RGB", (40, 28), COLOURS[colour]).save(root / f"img/{i}.png")
        rows.append(
            {
                "image_id": f"i{i}",
                "path": f"img/{i}.png",
                "colour": colour,
                "shape": SHAPES[i % 3] if i % 5 else None,
                "tags": TAGS[(i // 4) % 4],
                "split": split,
            }
        )
    (root / "img/broken.png").write_bytes(b"not an image")
    rows[3]["path"] = "img/broken.png"  # a test row whose image cannot be read
    rows[7]["colour"] = "purple"  # a label the checkpoint does not know
    rows[11].update(colour=None, shape=None, tags=None)  # a test row without any label
    return rows


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    manifest = Manifest.from_records(_rows(root / "data"), DATA_TAXONOMY, root / "data")
    manifest.write(root / "data" / "manifest.parquet")
    cfg = ModelConfig(backbone="drn_c_tiny")
    meta = CheckpointMeta(
        model=cfg.model_dump(),
        preprocessing=Preprocessing(input_size=32, cache_size=32, mean=(0.5,) * 3, std=(0.5,) * 3),
    )
    ckpt = save_checkpoint(root / "model", MultiTaskModel(MODEL_TAXONOMY, cfg), meta)
    return ckpt, root / "data" / "manifest.parquet"


def test_evaluate_checkpoint_scores_the_labelled_readable_rows_of_the_split(tiny):
    ckpt, manifest_path = tiny
    result = evaluate_checkpoint(
        ckpt, manifest_path, split="test", batch_size=4, thresholds_split="val",
        target_precision=0.5, many=10, few=5,
    )  # fmt: skip
    test_ids = [f"i{i}" for i in range(3, 48, 4)]
    assert result.rows_in_split == len(test_ids)
    assert result.image_ids == [i for i in test_ids if i not in ("i3", "i11")]
    assert [s["image_id"] for s in result.skipped] == ["i3"]
    assert "cannot identify image file" in result.skipped[0]["reason"]
    assert any("'purple'" in p and "i7" in p for p in result.label_problems)
    assert any("['fit']" in n for n in result.notes)
    assert any("1 rows of 'test' carry no label" in n for n in result.notes)

    # probabilities: exactly what the checkpoint's predictor gives for those files
    manifest = Manifest.read(manifest_path)
    by_id = dict(zip(manifest.df["image_id"], manifest.image_paths(), strict=True))
    preds, failed = Predictor(ckpt).predict_paths([by_id[i] for i in result.image_ids])
    assert not failed
    for task in ("colour", "shape", "tags", "fit"):
        expected = np.stack([p.probs[task] for p in preds])
        np.testing.assert_allclose(result.probs[task], expected, atol=1e-5)

    # labels: encoded with the checkpoint's taxonomy, the unknown 'purple' left out
    rows = manifest.df.set_index("image_id").loc[result.image_ids]
    colour = [-1 if c in (None, "purple") else list(COLOURS).index(c) for c in rows["colour"]]
    assert result.y_true["colour"].tolist() == colour
    assert (result.y_true["fit"] == -1).all() and result.metrics["fit"]["n"] == 0
    assert result.y_true["tags"].shape == (len(result.image_ids), 3)
    known = result.y_true["colour"] >= 0
    accuracy = (result.probs["colour"][known].argmax(1) == result.y_true["colour"][known]).mean()
    assert result.metrics["colour"]["accuracy"] == pytest.approx(accuracy)

    # shot groups from the TRAIN split (i % 4 in 0, 1): red and green 12 images, blue and black 0
    assert result.train_counts["colour"].tolist() == [12, 12, 0, 0]
    counts = {r["id"]: r["train_count"] for r in result.metrics["colour"]["per_class"]}
    assert counts == {"red": 12, "green": 12, "blue": 0, "black": 0}
    groups = [r["shot_group"] for r in result.metrics["colour"]["per_class"]]
    assert groups == ["many", "many", "few", "few"]  # many > 10, few < 5

    # thresholds fitted on val, applied to test
    th = result.thresholds["colour"]
    assert th["source"].startswith("fitted on val") and th["fit"]["total"] == 12
    conf = result.probs["colour"][known].max(1)
    assert th["answered"] == int((conf >= th["threshold"]).sum())
    assert th["coverage"] == pytest.approx(th["answered"] / known.sum())
    assert json.loads(result.to_json())["rows_scored"] == len(result.image_ids)


def test_clean_labels_score_against_the_true_column(tiny, tmp_path):
    ckpt, manifest_path = tiny
    m = Manifest.read(manifest_path)
    m.df["colour__true"] = ["black"] * len(m.df)  # the "noisy" labels were all wrong
    m.write(tmp_path / "noisy.parquet")
    clean = evaluate_checkpoint(ckpt, tmp_path / "noisy.parquet", clean_labels=True)
    assert set(clean.y_true["colour"].tolist()) == {3}
    plain = evaluate_checkpoint(ckpt, tmp_path / "noisy.parquet")
    assert set(plain.y_true["colour"].tolist()) == {-1, 0, 1, 2, 3}


def test_missing_split_and_unreadable_split_are_user_errors(tiny, tmp_path):
    ckpt, manifest_path = tiny
    with pytest.raises(EvalError, match=r"no 'holdout' rows \(splits found: \['test', 'train'"):
        evaluate_checkpoint(ckpt, manifest_path, split="holdout")
    m = Manifest.read(manifest_path)
    m.df["path"] = "img/broken.png"
    m.write(tmp_path / "broken.parquet")
    with pytest.raises(EvalError, match="no labelled row was read"):
        evaluate_checkpoint(ckpt, tmp_path / "broken.parquet")


def _random_result():
    rng = np.random.default_rng(0)
    n = 80
    y = {"colour": rng.integers(0, 3, n), "shape": rng.integers(0, 3, n)}  # black never in test
    probs = {t: rng.dirichlet(np.ones(len(DATA_TAXONOMY.task(t).classes)), n) for t in y}
    y["tags"] = rng.integers(-1, 2, (n, 3))
    probs["tags"] = rng.random((n, 3))
    counts = {"colour": np.array([300, 50, 5, 0]), "shape": np.array([120, 40, 10])}
    counts["tags"] = np.array([200, 30, 2])
    return evaluate_arrays(
        DATA_TAXONOMY,
        y,
        probs,
        counts,
        thresholds={"colour": 0.5, "shape": UNREACHABLE},
        checkpoint="model",
        split="test",
        image_ids=[str(i) for i in range(n)],
        rows_in_split=n,
    )


def test_report_page_has_every_task_and_only_local_pngs(tmp_path):
    result = _random_result()
    page = write_report(result, tmp_path / "report")
    html = page.read_text(encoding="utf-8")
    for task in DATA_TAXONOMY.task_names:
        assert f'id="{task}"' in html
        for kind in ("confusion", "recall", "reliability"):
            assert f'src="{kind}_{task}.png"' in html
    sources = re.findall(r'src="([^"]+)"', html)
    assert len(sources) == 9
    for src in sources:
        png = page.parent / src
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "<style>" in html and 'rel="stylesheet"' not in html
    assert "unreachable" in html  # shape's threshold
    metrics = json.loads((page.parent / "metrics.json").read_text(), parse_constant=float)
    assert list(metrics["tasks"]) == DATA_TAXONOMY.task_names
    assert metrics["tasks"]["colour"]["classes_without_test_rows"] == 1
    assert metrics["averages"]["map"]["tasks"] == 1


def test_cli_writes_metrics_page_and_saves_thresholds(tiny, tmp_path):
    ckpt = Path(shutil.copytree(tiny[0], tmp_path / "model"))  # other tests keep theirs as is
    manifest_path = tiny[1]
    out = tmp_path / "out"
    args = ["eval", str(ckpt), "--data", str(manifest_path), "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--save-thresholds", "--target-precision", "0.5"])
    assert res.exit_code == 0, res.output
    assert "attire eval: test split" in res.output and "thresholds saved" in res.output
    assert (out / "index.html").exists() and (out / "confusion_colour.png").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["thresholds_split"] == "val"
    meta, _ = read_meta(ckpt)
    assert set(meta.thresholds) == {"colour", "shape", "tags", "fit"}
    assert meta.thresholds["fit"] == UNREACHABLE  # no val labels for 'fit': always reviewed
    assert meta.extra["thresholds"]["colour"]["fitted_on"] == "val"
    bad = CliRunner().invoke(app, [*args, "--split", "holdout"])
    assert bad.exit_code == 2 and "no 'holdout' rows" in bad.output

    # without a val split the saved thresholds are what gets applied to the test rows
    m = Manifest.read(manifest_path)
    m.df["split"] = m.df["split"].replace("val", "train")
    m.write(tmp_path / "no_val.parquet")
    res = CliRunner().invoke(app, ["eval", str(ckpt), "--data", str(tmp_path / "no_val.parquet")])
    assert res.exit_code == 0, res.output
    metrics = json.loads((ckpt.parent / "eval-test" / "metrics.json").read_text())
    assert metrics["settings"]["thresholds_split"] is None
    applied = {t: th["threshold"] for t, th in metrics["thresholds"].items()}
    assert applied == pytest.approx(meta.thresholds)
    assert {th["source"] for th in metrics["thresholds"].values()} == {"checkpoint"}


def test_cli_tta_is_recorded_and_never_fits_saved_thresholds(tiny, tmp_path):
    ckpt, manifest_path = tiny
    args = ["eval", "--data", str(manifest_path), "--tta"]
    refused = CliRunner().invoke(app, [args[0], str(ckpt), *args[1:]])
    assert refused.exit_code == 2 and "not trained on mirrored ones" in refused.output
    model, _ = load_checkpoint(ckpt)
    meta, _ = read_meta(ckpt)
    meta.preprocessing.hflip = True
    mirrored = save_checkpoint(tmp_path / "model", model, meta)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, [args[0], str(mirrored), *args[1:], "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "metrics.json").read_text())["settings"]["tta"] is True
    assert "averaged with its mirror image" in (out / "index.html").read_text()
    both = CliRunner().invoke(app, [args[0], str(mirrored), *args[1:], "--save-thresholds"])
    assert both.exit_code == 2 and "drop --tta or --save-thresholds" in both.output
