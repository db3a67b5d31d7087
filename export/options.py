"""Export options: one frozen record, checked in one place (the CLI adds no checks)."""
from __future__ import annotations

import dataclasses
import math

from .errors import ExportError

# "all" is the two artifacts mpx ships; pt2 (torch.export) and aoti (AOTInductor, compiled for
# this CPU: tens of seconds) are asked for by name.
FORMATS = ("torchscript", "onnx", "pt2", "aoti", "all")
QUANTIZATIONS = ("int8",)
# Opsets the exporter and onnxruntime both handle for this graph (tested: 13, 17, 20).
OPSETS = range(13, 24)


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    format: str = "all"            # which artifacts: torchscript, onnx, pt2, aoti, or all (= the first two)
    opset: int = 17                # ONNX opset
    atol: float = 1e-5             # parity: |artifact - eager| <= atol + rtol * |eager|
    rtol: float = 1e-5
    quantize: str | None = None    # also write an int8 ONNX variant
    force: bool = False            # replace existing artifacts in the output folder

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if not isinstance(self.opset, int) or self.opset not in OPSETS:
            raise ExportError(f"--opset {self.opset} is not supported; choose {OPSETS.start}..{OPSETS.stop - 1}")
        if not (isinstance(self.atol, (int, float)) and math.isfinite(self.atol) and self.atol > 0):
            raise ExportError(f"--atol must be a number > 0, got {self.atol!r}")
        if not (isinstance(self.rtol, (int, float)) and math.isfinite(self.rtol) and self.rtol >= 0):
            raise ExportError(f"--rtol must be a number >= 0, got {self.rtol!r}")
        if self.quantize is not None and self.quantize not in QUANTIZATIONS:
            raise ExportError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}, got {self.quantize!r}")
        if self.quantize and "onnx" not in self.formats:
            raise ExportError("--quantize applies to the ONNX artifact; use --format onnx or all")

    @property
    def formats(self) -> tuple[str, ...]:
        return ("torchscript", "onnx") if self.format == "all" else (self.format,)
