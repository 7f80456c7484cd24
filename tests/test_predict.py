"""`attire predict`: top-k per task from the exported checkpoint folder alone."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from typer.testing import CliRunner

from attire.cli.main import app
from attire.cli.predict import CSV_COLUMNS
from attire.data.manifest import Manifest
from attire.errors import AttireError
from attire.inference.predictor import Predictor
from attire.taxonomy import Taxonomy
from attire.training.config import TrainConfig
from attire.training.fit import fit
from test_training import (
    TOY_TAXONOMY,
    single_thread,  # noqa: F401  (autouse fixture)
    toy_config,
    toy_data,
)

TASKS = ["colour", "size", "background", "marks"]
MARKS = {"name": "marks", "type": "multilabel", "classes": [{"id": "dot"}, {"id": "line"}]}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """A model trained in a run folder, copied elsewhere; the run, data and cache then deleted."""
    tmp = tmp_path_factory.mktemp("predict")
    data = toy_data(tmp / "data", n_train=24, n_val=8)
    manifest = Manifest.read(data)
    taxonomy = Taxonomy.from_dict({**TOY_TAXONOMY, "tasks": [*TOY_TAXONOMY["tasks"], MARKS]})
    df = manifest.df
    df["marks"] = [[], ["dot"], ["line"], ["dot", "line"]] * (len(df) // 4)
    Manifest(df, taxonomy, manifest.root).write(data)
    result = fit(TrainConfig.from_dict(toy_config(data, tmp / "run")))

    images = tmp / "images"
    images.mkdir()
    paths = [shutil.copy(tmp / f"data/img/{i}.png", images) for i in (0, 1, 2)]
    original = Predictor(result.export_dir).predict_paths(paths)[0]
    model = shutil.copytree(result.export_dir, tmp / "elsewhere/model")
    shutil.rmtree(tmp / "run")
    shutil.rmtree(tmp / "data")
    return {"model": Path(model), "images": [Path(p) for p in paths], "original": original}


def _invoke(*args: str):
    return CliRunner().invoke(app, ["predict", *args])


def test_json_top_k_from_the_folder_alone_and_unreadable_files_skipped(exported, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a JPEG")
    missing = tmp_path / "missing.png"
    images = [str(p) for p in exported["images"][:2]]
    res = _invoke(str(exported["model"]), *images, str(broken), str(missing), "--top-k", "2")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["image"] for r in rows] == images
    for row in rows:
        assert list(row["tasks"]) == TASKS
        for task, ranked in row["tasks"].items():
            assert len(ranked) == 2
            probs = [r["prob"] for r in ranked]
            assert probs == sorted(probs, reverse=True)
            assert all(0 <= p <= 1 for p in probs)
            assert ("present" in ranked[0]) == (task == "marks")
        assert sum(r["prob"] for r in row["tasks"]["colour"]) <= 1.0001  # softmax over 3
        assert {r["class"] for r in row["tasks"]["size"]} == {"small", "big"}
    assert f"skipped {broken}" in res.stderr
    assert f"skipped {missing}" in res.stderr and "No such file" in res.stderr
    assert "2 images tagged, 2 skipped" in res.stderr


def test_predictions_equal_those_of_the_original_run_folder(exported):
    again, failed = Predictor(exported["model"]).predict_paths(exported["images"])
    assert failed == []
    for a, b in zip(exported["original"], again, strict=True):
        assert a.image == b.image
        for task in TASKS:
            np.testing.assert_array_equal(a.probs[task], b.probs[task])


def test_in_memory_images_get_the_same_scores_as_files(exported):
    predictor = Predictor(exported["model"])
    paths = exported["images"]
    from_files, _ = predictor.predict_paths(paths, batch_size=2)
    images = [Image.open(p) for p in paths]
    in_memory = predictor.predict_images(images, [str(p) for p in paths])
    for a, b in zip(from_files, in_memory, strict=True):
        for task in TASKS:
            np.testing.assert_allclose(a.probs[task], b.probs[task], atol=1e-6)


def test_csv_output_to_a_file(exported, tmp_path):
    out = tmp_path / "tags.csv"
    images = [str(p) for p in exported["images"]]
    res = _invoke(str(exported["model"]), *images, "--format", "csv", "-k", "1", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == CSV_COLUMNS
    body = rows[1:]
    assert len(body) == len(images) * len(TASKS)
    assert {(r[0], r[1]) for r in body} == {(i, t) for i in images for t in TASKS}
    assert all(r[2] == "1" for r in body)
    assert {r[6] for r in body if r[1] == "marks"} <= {"True", "False"}
    assert {r[6] for r in body if r[1] != "marks"} == {""}


def test_nothing_readable_is_an_error(exported, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    res = _invoke(str(exported["model"]), str(bad))
    assert res.exit_code == 2
    assert "none of the 1 images could be read" in res.stderr


def test_a_folder_that_is_not_a_checkpoint_is_named(exported, tmp_path):
    res = _invoke(str(tmp_path), str(exported["images"][0]))
    assert res.exit_code == 2
    assert "not an attire checkpoint folder (missing weights.safetensors)" in res.stderr


def test_tta_averages_each_image_with_its_mirror_image(exported, tmp_path):
    plain = Predictor(exported["model"])
    assert plain.meta.preprocessing.hflip  # the toy tasks are symmetric: trained with flips
    mirrors = []
    for p in exported["images"]:
        mirrors.append(tmp_path / p.name)
        ImageOps.mirror(Image.open(p).convert("RGB")).save(mirrors[-1])
    ahead, _ = plain.predict_paths(exported["images"])
    behind, _ = plain.predict_paths(mirrors)
    tta, _ = Predictor(exported["model"], tta=True).predict_paths(exported["images"])
    for a, b, t in zip(ahead, behind, tta, strict=True):
        for task in TASKS:
            np.testing.assert_allclose(
                t.probs[task], (a.probs[task] + b.probs[task]) / 2, atol=1e-5
            )
            assert not np.allclose(t.probs[task], a.probs[task], atol=1e-7)
    res = _invoke(str(exported["model"]), *map(str, exported["images"]), "--tta", "-k", "1")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["tasks"]["colour"][0]["prob"] == pytest.approx(
        float(tta[0].probs["colour"].max()), abs=1e-4
    )


def test_tta_is_refused_for_a_model_not_trained_on_mirror_images(exported, tmp_path):
    model = Path(shutil.copytree(exported["model"], tmp_path / "model"))
    meta = json.loads((model / "attire.json").read_text())
    meta["preprocessing"].pop("hflip")  # as written before attire recorded it
    (model / "attire.json").write_text(json.dumps(meta))
    with pytest.raises(AttireError, match="not trained on mirrored ones"):
        Predictor(model, tta=True)
    res = _invoke(str(model), str(exported["images"][0]), "--tta")
    assert res.exit_code == 2 and "predict without tta" in res.stderr
