"""The lab as a `nudgeflow` plugin (entry point `nudgeflow.plugins: lab`): its commands and
its report lines and sections. The product finds it through the entry point and never
imports it."""

from nudgeflow.lab.cli import register
from nudgeflow.lab.truth import report_lines, report_sections

__all__ = ["register", "report_lines", "report_sections"]
