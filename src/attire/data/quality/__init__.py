"""`attire data check`: reject unusable images, unknown labels and (conflicting) duplicates.

Every rejected row gets one primary reason from `REASONS` (a fixed priority order), so
rows in = kept + the sum of the counts; other problems of that row go into its detail.
"""

from attire.data.quality.check import CheckError, check_manifest
from attire.data.quality.duplicates import DEFAULT_NEAR_COLOUR, DEFAULT_NEAR_DISTANCE
from attire.data.quality.report import REASONS, CheckResult

__all__ = [
    "DEFAULT_NEAR_COLOUR",
    "DEFAULT_NEAR_DISTANCE",
    "REASONS",
    "CheckError",
    "CheckResult",
    "check_manifest",
]
