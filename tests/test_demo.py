"""`make demo` on a tiny catalogue (60 images at 32 px, one epoch of a test-sized network): it
trains once, through `attire compare`, tags with that run's checkpoint, and ends by naming the
comparison report (issue 6)."""

from __future__ import annotations

from attire.demo import run_demo
from attire.evaluation.compare import compare_experiments
from test_training import single_thread  # noqa: F401  (autouse fixture)


def test_demo_ends_with_the_comparison_report(tmp_path, capsys):
    out = tmp_path / "demo"
    report = run_demo(out, n=60, size=32, epochs=1, backbone="test_efficientnet")
    output = capsys.readouterr().out
    lines = output.strip().splitlines()

    assert report == out / "compare" / "report.html" and report.is_file()
    assert lines[-1] == f"comparison report: {report}"
    run = out / "compare" / "runs" / "test_efficientnet-32px"
    assert f"eval page: {run / 'eval' / 'index.html'}" in lines
    assert (run / "eval" / "index.html").is_file()
    assert f"checkpoint: {run / 'train' / 'model'}" in output  # what step 6 tags with
    html = report.read_text(encoding="utf-8")
    assert "<td>test_efficientnet-32px</td>" in html and 'src="pareto.png"' in html
    # the model was trained once, inside the comparison; no second training folder
    assert sorted(p.name for p in out.iterdir()) == [
        "check",
        "compare",
        "data",
        "experiments.yaml",
        "stats",
    ]

    # the experiments file it wrote reruns as is (its manifest path is relative to it), and
    # finds everything up to date
    again = compare_experiments(out / "experiments.yaml", out / "compare")
    assert [(r.status, r.stages_run) for r in again.runs] == [("done", [])]
