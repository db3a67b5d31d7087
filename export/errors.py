"""Typed export failures (optimum's validation errors, except that ours stop the export)."""
from __future__ import annotations

from mpx.runtime.errors import MpxError


class ExportError(MpxError):
    """The artifact could not be produced."""


class ParityError(ExportError):
    """The artifact disagrees with eager PyTorch beyond the tolerance: it is not kept."""
