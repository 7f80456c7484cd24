"""The synthetic catalogue: procedural product photos of women's tops with known labels.

It is attire's embedded default data (the demo, most test fixtures, benchmarks): every attribute
of the default 13-task taxonomy is drawn visibly, labels follow realistic correlations and a
controllable long tail, and the output is an ordinary manifest. See docs/SYNTH.md.
"""

from attire.data.synth.generate import clean_labels, generate_catalogue
from attire.data.synth.labels import LabelError, LabelModel, label_model
from attire.data.synth.preview import contact_sheet, write_previews
from attire.data.synth.scene import render

__all__ = [
    "LabelError",
    "LabelModel",
    "clean_labels",
    "contact_sheet",
    "generate_catalogue",
    "label_model",
    "render",
    "write_previews",
]
