"""Figures and the self-contained HTML report of the reproduction suite."""

from forgetlab.report.build import build_report

__all__ = ["build_report"]
