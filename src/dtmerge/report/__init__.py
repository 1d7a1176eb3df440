"""Stage 6: the alignment-tax report, A/B comparison and the live view of a run.

Only files are read (eval/*.json, manifest.json, models/*/monitor.jsonl), so a report can be
rebuilt anywhere the run directory is copied. Heavy imports (matplotlib) happen on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dtmerge.report.stage import report_stage, write_report

__all__ = ["report_stage", "write_report"]


def __getattr__(name: str):
    # Lazy, so `import dtmerge.evaluate.stats` does not pull in matplotlib.
    if name in __all__:
        from dtmerge.report import stage

        return getattr(stage, name)
    raise AttributeError(name)
