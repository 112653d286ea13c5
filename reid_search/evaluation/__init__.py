"""How well does it work? Re-ID protocols (which gallery items count for a query), metrics
(CMC, mAP, mINP), the evaluation of a dataset folder or a built gallery, its report files and
rank-list pictures.

Usage::

    from reid_search.evaluation import evaluate, write_report
    report = evaluate("../shared/data/cuhk03-mars")      # auto protocol, default model
    print(report.summary.rank1, report.summary.mAP)
    write_report(report, "reports/cuhk03")

A new protocol is one ``PROTOCOLS.register(...)`` in :mod:`reid_search.evaluation.kinds`.
"""

from .kinds import PROTOCOLS
from .report import format_summary, write_report
from .run import EvaluationReport, evaluate

__all__ = ["PROTOCOLS", "EvaluationReport", "evaluate", "format_summary", "write_report"]
