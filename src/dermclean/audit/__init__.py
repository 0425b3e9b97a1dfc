"""Audit a collection for shortcut risk: per-image artifact flags, their association with the label,
and an HTML report (``dermclean audit``; see :mod:`dermclean.audit.run`)."""

from dermclean.audit.run import AuditResult, run_audit

__all__ = ["AuditResult", "run_audit"]
