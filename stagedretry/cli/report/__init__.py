"""``stagedretry report``: a picture of a run, from its output file or its journal.

It writes the plan's Mermaid diagram with the traffic of every transition, and a
self-contained HTML page that draws it, with tables and a timeline (see
``docs/how-to/report.md``).
"""

from ._mermaid_js import MERMAID_SHA256, MERMAID_VERSION, mermaid_js
from ._report import Report, ReportIOError, default_path, make_report, render, write_report
from ._source import ReportError, Source, load_source, run_record
from ._traffic import StageTraffic, Traffic, Transition, traffic

__all__ = [
    "MERMAID_SHA256",
    "MERMAID_VERSION",
    "Report",
    "ReportError",
    "ReportIOError",
    "Source",
    "StageTraffic",
    "Traffic",
    "Transition",
    "default_path",
    "load_source",
    "make_report",
    "mermaid_js",
    "render",
    "run_record",
    "traffic",
    "write_report",
]
