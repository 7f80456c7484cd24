"""`attire compare`: several experiments trained under one budget, scored and costed side by side.

An experiments file (``spec``) names a shared base (data, split, seed, image size, budget,
training settings) and a list of experiments that override parts of it (backbone, weights,
recipe, image size, any training field). Every experiment is trained with ``fit``, scored on the
test split with ``evaluate_checkpoint`` and costed with ``profile_checkpoint``, reusing finished
stages whose fingerprints match (``runner``); the answer is one table and an accuracy-vs-cost
plot with the Pareto front (``pareto``), as Markdown and HTML (``report``). See docs/COMPARE.md.
"""

from attire.evaluation.compare.pareto import pareto_front
from attire.evaluation.compare.report import (
    COLUMNS,
    markdown_report,
    plot_pareto,
    table_rows,
    write_reports,
)
from attire.evaluation.compare.runner import Comparison, RunOutcome, compare_experiments
from attire.evaluation.compare.spec import CompareError, ExperimentsFile

__all__ = [
    "COLUMNS",
    "CompareError",
    "Comparison",
    "ExperimentsFile",
    "RunOutcome",
    "compare_experiments",
    "markdown_report",
    "pareto_front",
    "plot_pareto",
    "table_rows",
    "write_reports",
]
