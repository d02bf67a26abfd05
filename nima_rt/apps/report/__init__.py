"""The ``nima-rt report`` page: photos ranked per listing, with thumbnails, scores and distributions.

    from nima_rt.apps.report import ReportConfig, build_report
    with Scorer() as scorer:
        build_report(scorer.score_paths(["photos/"]), scorer.columns, "report.html", ReportConfig())
"""

from nima_rt.apps.report.build import ReportConfig, ReportError, ReportSummary, build_report, thumbnails_dir_for
from nima_rt.io.scores.reader import read_score_file

__all__ = ["ReportConfig", "ReportError", "ReportSummary", "build_report", "read_score_file", "thumbnails_dir_for"]
