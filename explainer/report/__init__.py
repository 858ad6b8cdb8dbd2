"""The HTML report: one self-contained page from the folders that ``explain``, ``evaluate`` and ``audit`` write."""
from explainer.report.html import build_report, input_files, render
from explainer.report.results import read_section

__all__ = ["build_report", "input_files", "read_section", "render"]
