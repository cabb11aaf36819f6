"""Exceptions raised by :mod:`analysis`.

One tree, rooted at :class:`AnalysisError`::

    AnalysisError
    ├── MissingReferenceData   no snapshot / a source the step needs was never imported
    ├── MissingInput           the step's input table does not exist (the step before it never ran)
    ├── DatasetFormatError     a reference-data file does not parse as its declared kind
    ├── SchemaMismatch         a table lacks columns or has the wrong types for the step
    └── RegistryError          the flagged-carrier registry file is invalid

The CLI catches :class:`AnalysisError` (and :class:`probes.errors.ProbeError`) once and
prints a one-line, actionable message.
"""

from __future__ import annotations

__all__ = [
    "AnalysisError",
    "MissingReferenceData",
    "MissingInput",
    "DatasetFormatError",
    "SchemaMismatch",
    "RegistryError",
]


class AnalysisError(Exception):
    """Root of every error raised by :mod:`analysis`."""


class MissingReferenceData(AnalysisError):
    """Reference data needed by a step has not been imported."""


class MissingInput(AnalysisError):
    """The input table of a step does not exist: the step before it has not run."""


class DatasetFormatError(AnalysisError):
    """A reference-data file does not parse as its declared kind."""


class SchemaMismatch(AnalysisError):
    """A table lacks required columns or has the wrong types."""


class RegistryError(AnalysisError):
    """The flagged-carrier registry file is invalid."""
