"""Stable import path for report's library API: `from nodecli.summary import load_runs,
summarize` (notebooks and scripts written against nodecli before the report package)."""

from nodecli.report.aggregate import summarize
from nodecli.report.load import load_runs

__all__ = ["load_runs", "summarize"]
