"""`attire compare`: finished runs are reused, only what changed reruns, reports are written, a
bad experiments file names its field, and the Pareto front is right.

The comparison runs the shipped configs/experiments/tiny.yaml (three test-sized networks on 60
generated 32 px images, one epoch).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from attire.cli.main import app
from attire.evaluation.compare import (
    COLUMNS,
    CompareError,
    ExperimentsFile,
    compare_experiments,
    pareto_front,
    write_reports,
)
from test_training import single_thread  # noqa: F401  (autouse fixture)

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "experiments" / "tiny.yaml"
NAMES = ["drn-c-tiny", "drn-d-tiny", "effnet-test"]
ALL_STAGES = ["train", "eval", "profile"]


def tiny_spec() -> dict:
    return yaml.safe_load(TINY.read_text())


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """The tiny comparison run once from scratch, and its reports as first written (later tests
    rerun into the same folder)."""
    out = tmp_path_factory.mktemp("compare") / "out"
    comparison = compare_experiments(TINY, out)
    paths = write_reports(comparison)
    return comparison, {k: p.read_bytes() for k, p in paths.items()}


def stages(comparison) -> dict[str, list[str]]:
    return {r.name: r.stages_run for r in comparison.runs}


def run_records(out: Path) -> dict[str, str]:
    return {n: (out / "runs" / n / "run.json").read_text() for n in NAMES}


# -- reuse ------------------------------------------------------------------------------------


def test_first_run_trains_scores_and_profiles_every_experiment(first):
    comparison, _ = first
    assert stages(comparison) == {n: ALL_STAGES for n in NAMES}
    for r in comparison.runs:
        assert r.status == "done", r.error
        assert 0.0 <= r.score("accuracy") <= 1.0
        assert r.profile["input_size"] == r.image_size
        assert (comparison.out / r.run_dir / "train/model/weights.safetensors").is_file()
        # Lightning's resume state is dropped once the export exists
        assert not (comparison.out / r.run_dir / "train/checkpoints").exists()
    sizes = {r.name: r.image_size for r in comparison.runs}
    assert sizes == {"drn-c-tiny": 32, "drn-d-tiny": 32, "effnet-test": 48}


def test_rerun_reuses_and_a_change_reruns_only_what_it_touches(first, tmp_path):
    comparison, _ = first
    out = comparison.out
    before = run_records(out)

    # 1. the same file again, through the CLI: nothing runs, nothing is rewritten
    result = CliRunner().invoke(app, ["compare", str(TINY), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.count("up to date, reused") == 3
    assert f"report: {out / 'report.html'}" in result.output
    assert run_records(out) == before

    # 2. one experiment changed (its image size): only that one reruns, every stage
    spec = tiny_spec()
    spec["experiments"][2]["image_size"] = 40
    changed = compare_experiments(write_spec(tmp_path / "changed.yaml", spec), out)
    assert stages(changed) == {"drn-c-tiny": [], "drn-d-tiny": [], "effnet-test": ALL_STAGES}
    assert changed.runs[2].profile["input_size"] == 40
    after = run_records(out)
    assert {n for n in NAMES if after[n] != before[n]} == {"effnet-test"}

    # 3. profiling settings changed, one experiment selected: only its profile is redone; the
    #    others' profiles are out of date, so they are reported as not run
    spec["profile"]["max_seconds"] = 0.4
    profiled = compare_experiments(
        write_spec(tmp_path / "profile.yaml", spec), out, only=["drn-d-tiny"]
    )
    assert stages(profiled) == {"drn-c-tiny": [], "drn-d-tiny": ["profile"], "effnet-test": []}
    assert [r.status for r in profiled.runs] == ["not run", "done", "not run"]
    assert run_records(out)["drn-c-tiny"] == before["drn-c-tiny"]


def test_a_failing_experiment_is_reported_and_the_others_still_count(first, tmp_path):
    """Runs after the reuse test: drn-c-tiny is still up to date for the original file."""
    comparison, _ = first
    spec = tiny_spec()
    spec["experiments"].append(
        {"name": "broken", "backbone": "drn_c_tiny", "pretrained": "missing.safetensors"}
    )
    path = write_spec(tmp_path / "broken.yaml", spec)
    result = CliRunner().invoke(
        app, ["compare", str(path), "--out", str(comparison.out), "--only", "broken"]
    )
    assert result.exit_code == 1
    assert "failed:" in result.output and "missing.safetensors" in result.output
    md = (comparison.out / "report.md").read_text()
    assert "| broken (failed) |" in md
    assert "weights file not found" in md
    assert (comparison.out / "runs/broken/error.txt").is_file()
    assert "| drn-c-tiny |" in md  # finished, up to date, so still in the table


# -- reports ----------------------------------------------------------------------------------


def test_markdown_html_and_json_reports(first):
    comparison, written = first
    md = written["markdown"].decode()
    assert "| " + " | ".join(COLUMNS) + " |" in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split(" | ")[0].removeprefix("| ") for r in rows[1:]] == NAMES
    acc = comparison.runs[0].score("accuracy")
    assert f"| {100 * acc:.1f} |" in rows[1]
    assert "1 epoch;" in md and "60 images at 32 px" in md

    html = written["html"].decode()
    assert 'src="pareto.png"' in html
    assert written["plot"][:8] == b"\x89PNG\r\n\x1a\n"
    for name in NAMES:
        assert f"<td>{name}</td>" in html
        assert f'href="runs/{name}/profile.json"' in html

    results = json.loads(written["results"])
    assert [r["name"] for r in results["runs"]] == NAMES
    scores = [r["eval"]["averages"]["accuracy"] for r in results["runs"]]
    for cost, key in (("gflops", "gflops"), ("latency", "latency_b1_p50_ms")):
        costs = [r["profile"][key] for r in results["runs"]]
        assert [r["pareto"][cost] for r in results["runs"]] == pareto_front(costs, scores)


# -- Pareto front -----------------------------------------------------------------------------


def brute_force_front(costs, scores) -> list[bool]:
    points = list(zip(costs, scores, strict=True))

    def dominates(q, p) -> bool:
        return q[0] <= p[0] and q[1] >= p[1] and (q[0] < p[0] or q[1] > p[1])

    return [
        c is not None
        and s is not None
        and not any(dominates(q, (c, s)) for q in points if None not in q)
        for c, s in points
    ]


def test_pareto_front_on_hand_made_points():
    costs = [1.0, 2.0, 2.0, 3.0, 0.5, 4.0, None, 3.0]
    scores = [0.5, 0.7, 0.6, 0.7, 0.2, 0.9, 0.99, None]
    # 0.5 cost: cheapest; 1.0: better; 2.0/0.7 beats 2.0/0.6 at the same cost; 3.0/0.7 is
    # matched by a cheaper point; 4.0 is the best; points without a number are never on it
    assert pareto_front(costs, scores) == [True, True, False, False, True, True, False, False]
    assert pareto_front([1.0, 1.0], [0.5, 0.5]) == [True, True]  # equal points: both stay
    assert pareto_front([], []) == []


@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(0, 6).map(float)),
            st.one_of(st.none(), st.integers(0, 6).map(float)),
        ),
        max_size=14,
    )
)
def test_pareto_front_matches_brute_force(points):
    costs = [c for c, _ in points]
    scores = [s for _, s in points]
    assert pareto_front(costs, scores) == brute_force_front(costs, scores)


def test_pareto_front_on_random_floats():
    rng = np.random.default_rng(0)
    for n in range(1, 30):
        costs, scores = rng.random(n).tolist(), rng.random(n).tolist()
        front = pareto_front(costs, scores)
        assert front == brute_force_front(costs, scores)
        # the front sorted by cost rises strictly
        ordered = sorted((c, s) for c, s, f in zip(costs, scores, front, strict=True) if f)
        assert all(a[1] < b[1] for a, b in itertools.pairwise(ordered))


# -- a bad experiments file -------------------------------------------------------------------


def _edit(spec: dict, change: str) -> dict:
    if change == "no budget":
        del spec["base"]["budget"]
    elif change == "two sources":
        spec["base"]["data"]["manifest"] = "data.parquet"
    elif change == "tiny image":
        spec["experiments"][1]["image_size"] = 8
    elif change == "epochs in train":
        spec["experiments"][0]["train"] = {"epochs": 9}
    elif change == "duplicate":
        spec["experiments"][1]["name"] = spec["experiments"][0]["name"]
    elif change == "unknown field":
        spec["base"]["sead"] = 1
    elif change == "bad name":
        spec["experiments"][0]["name"] = "../up"
    elif change == "unknown backbone":
        spec["experiments"][2]["backbone"] = "resnet_9000"
    elif change == "bad optimiser field":
        spec["base"]["train"]["optim"]["lr"] = -1
    return spec


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("no budget", "field 'base.budget': Field required"),
        ("two sources", "field 'base.data': give exactly one of 'manifest' and 'synth'"),
        ("tiny image", "field 'experiments.1.image_size': Input should be greater than"),
        ("epochs in train", "field 'experiments.0.train': 'epochs' is set by the experiments "),
        ("duplicate", "experiment name 'drn-c-tiny' is used twice"),
        ("unknown field", "field 'base.sead': Extra inputs are not permitted"),
        ("bad name", "field 'experiments.0.name': String should match pattern"),
        ("unknown backbone", "experiment 'effnet-test' (experiments.2)"),
        ("bad optimiser field", "field 'optim.lr': Input should be greater than 0"),
    ],
)
def test_bad_experiments_file_names_the_field(tmp_path, change, expected):
    path = write_spec(tmp_path / "bad.yaml", _edit(tiny_spec(), change))
    result = CliRunner().invoke(app, ["compare", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output
    assert expected in " ".join(result.output.split()), result.output
    assert not (tmp_path / "out" / "runs").exists()  # nothing trained


def test_unknown_backbone_error_names_the_value(tmp_path):
    spec = _edit(tiny_spec(), "unknown backbone")
    with pytest.raises(
        CompareError, match=r"field 'model\.backbone': unknown backbone 'resnet_9000'"
    ):
        compare_experiments(write_spec(tmp_path / "bad.yaml", spec), tmp_path / "out")


def test_only_must_name_experiments_of_the_file(tmp_path):
    with pytest.raises(CompareError, match=r"--only nope: no such experiment"):
        compare_experiments(TINY, tmp_path / "out", only=["nope"])


def test_missing_file_and_relative_paths(tmp_path):
    with pytest.raises(CompareError, match="experiments file not found"):
        ExperimentsFile.load(tmp_path / "none.yaml")
    spec = tiny_spec()
    spec["base"]["data"] = {"manifest": "data/m.parquet"}
    spec["experiments"][0]["pretrained"] = "w/weights.safetensors"
    loaded = ExperimentsFile.load(write_spec(tmp_path / "rel.yaml", spec))
    assert loaded.base.data.manifest == tmp_path / "data" / "m.parquet"
    assert loaded.experiments[0].pretrained == str(tmp_path / "w" / "weights.safetensors")
    with pytest.raises(CompareError, match=r"field 'base\.data\.manifest'.*not found"):
        compare_experiments(tmp_path / "rel.yaml", tmp_path / "out")
