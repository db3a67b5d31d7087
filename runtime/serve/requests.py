"""What a client may ask for, checked in one place: the request schema (pydantic, so the
OpenAPI docs show it), then every value through the library's own checks. Any fault is an
InputError: one line that names the field, answered with a 4xx."""
from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from pathlib import Path
from typing import Any, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..contract import FEATURES
from ..errors import MpxError
from ..generate import GenerationOptions, Generator
from ..notes import check as check_notes
from ..midi import read_notes
from ..notes_csv import read_csv
from ..rng import check_seed
from ..spec import Sampling
from .options import ServeOptions

Number = Union[float, list[float]]
FORMATS = ("json", "midi", "csv")


class InputError(MpxError):
    """A request the server cannot take: `status` is the HTTP status (400, 413, 422)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class Sampled(BaseModel):
    """Sampling of one stream; every field optional (the model's defaults)."""

    model_config = ConfigDict(extra="forbid")
    temperature: Optional[Number] = Field(None, description="one value or four (pitch, step, duration, velocity); 0 = greedy; default: the model's own")
    top_p: Optional[Number] = Field(None, description="one value or four, in (0, 1]; 1 = off; default: the model's own")
    controls: Optional[dict[str, float]] = Field(None, description="musical controls of a contract v3 model (runtime/controls.py: density, chord_share, ...); refused by a v2 model")


class GenerateRequest(Sampled):
    primer: Optional[list[list[float]]] = Field(None, description="seed notes [[pitch, step, duration, velocity], ...] (the last seq_len prime the model); default: the server's seed file")
    notes: int = Field(256, description="notes to generate")
    seed: Optional[Union[int, str]] = Field(None, description="0..2^64-1 (a number or its decimal string): the same seed gives the same notes as `mpx run --seed`; default: a fresh one, returned")
    primer_notes: Optional[int] = Field(None, description="seed notes used as primer; default: the model's seq_len")
    format: Literal["json", "midi", "csv"] = Field("json", description="the answer: JSON notes, a MIDI file or CSV notes (not with stream)")
    stream: bool = Field(False, description="send notes as they are made: NDJSON lines, or server-sent events with Accept: text/event-stream")
    exact: bool = Field(False, description="run this stream alone (batch of one), bit for bit as `mpx run`, at the cost of throughput")


class SessionOpen(Sampled):
    type: Literal["open"]
    primer: Optional[list[list[float]]] = None
    seed: Optional[Union[int, str]] = None
    primer_notes: Optional[int] = None
    exact: bool = False


class SessionAppend(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["append"]
    notes: list[list[float]]


class SessionGenerate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["generate"]
    notes: int


class SessionSet(Sampled):
    type: Literal["set"]


class SessionClose(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["close"]


SESSION_MESSAGES = {"open": SessionOpen, "append": SessionAppend, "generate": SessionGenerate,
                    "set": SessionSet, "close": SessionClose}


@dataclasses.dataclass(frozen=True)
class Job:
    """A checked request: what the batcher runs and how the answer is written."""

    primer: np.ndarray
    notes: int
    seed: int
    sampling: Sampling
    format: str = "json"
    stream: bool = False
    exact: bool = False


def one_line(exc: ValidationError) -> str:
    """pydantic's first complaint as `field: what is wrong`."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
    message = error.get("msg", "invalid")
    if error.get("type") == "extra_forbidden":
        message = "unknown field"
    return f"{where}: {message}"


def parse(model: type[BaseModel], raw: Any) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InputError(one_line(exc)) from None


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"body: not valid JSON ({str(exc).splitlines()[0][:120]})", 400) from None


_FLAG = re.compile(r"--([a-z][a-z-]*)")


def field_message(exc: MpxError) -> str:
    """The library's messages name command-line flags (--top-p); a request names fields (top_p)."""
    return _FLAG.sub(lambda m: m.group(1).replace("-", "_"), str(exc))


def check_count(name: str, value: object, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
        raise InputError(f"{name}: must be an integer 1..{high:,}, got {value!r}")
    return value


def seed_of(value: int | str | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise InputError(f"seed: must be an integer 0..2^64-1, got {value!r}")
        value = int(value)
    try:
        return check_seed(value)
    except MpxError:
        raise InputError(f"seed: must be an integer 0..2^64-1, got {value!r}") from None


def sampling_of(request: Sampled, generator: Generator, base: Sampling | None = None) -> Sampling:
    """The request's sampling, the model's defaults (or `base`) where it gives none."""
    check_controls(request.controls)
    base = base or generator.spec.sampling
    try:
        return Sampling(request.temperature if request.temperature is not None else base.temperature,
                        request.top_p if request.top_p is not None else base.top_p)
    except MpxError as exc:
        raise InputError(field_message(exc)) from None


def check_controls(controls: dict[str, float] | None) -> None:
    if controls:
        raise InputError("controls: the server does not take them yet (the model follows them through "
                         "`mpx run --density ...` and the Python API's GenerationOptions.controls)")


def primer_of(notes: Any, generator: Generator, primer_notes: int | None, options: ServeOptions,
              source: str = "primer") -> np.ndarray:
    """Seed notes -> the primer (the last primer_notes, default the model's seq_len)."""
    arr = np.asarray(notes, dtype=np.float32) if not isinstance(notes, np.ndarray) else notes
    if arr.size == 0:
        arr = arr.reshape(0, len(FEATURES))
    if arr.ndim == 2 and arr.shape[1] == len(FEATURES) - 1:  # no velocity column, as a v1 CSV
        arr = np.concatenate([arr, np.full((len(arr), 1), 100, np.float32)], axis=1)
    if len(arr) > options.max_primer_notes:
        raise InputError(f"{source}: {len(arr):,} notes, more than the {options.max_primer_notes:,} this server takes", 413)
    try:
        check_notes(arr, source)
        gen_options = GenerationOptions(primer_notes=primer_notes)
        return generator.primer_from(arr, gen_options, source=source)
    except MpxError as exc:
        raise InputError(field_message(exc)) from None


def appended_notes(notes: list[list[float]], pending: int, options: ServeOptions) -> np.ndarray:
    """Notes a session's client played, checked: [k, 4] (k may be 0)."""
    if pending + len(notes) > options.max_primer_notes:
        raise InputError(f"notes: more than {options.max_primer_notes:,} notes would wait for the next call", 413)
    if not notes:
        return np.empty((0, len(FEATURES)), np.float32)
    try:
        return check_notes(np.asarray(notes, dtype=np.float32), "notes")
    except (MpxError, ValueError) as exc:
        raise InputError(field_message(exc) if isinstance(exc, MpxError) else "notes: must be [[pitch, step, duration, velocity], ...]") from None


def job_of(request: GenerateRequest, generator: Generator, default_primer: np.ndarray,
           options: ServeOptions, uploaded: np.ndarray | None = None) -> Job:
    check_count("notes", request.notes, options.max_notes)
    if request.stream and request.format != "json":
        raise InputError(f"format: a stream sends notes as JSON lines; format {request.format!r} needs stream false")
    if uploaded is not None and request.primer is not None:
        raise InputError("primer: give the seed notes once (a file or primer), not both")
    seed = seed_of(request.seed)
    if seed is None:
        import secrets
        seed = secrets.randbelow(2**64)
    notes = uploaded if uploaded is not None else request.primer if request.primer is not None else default_primer
    primer = primer_of(notes, generator, request.primer_notes, options)
    return Job(primer=primer, notes=request.notes, seed=seed, sampling=sampling_of(request, generator),
               format=request.format, stream=request.stream, exact=request.exact)


def notes_of_file(data: bytes, name: str) -> np.ndarray:
    """An uploaded seed: a MIDI file (by its MThd header) or CSV notes."""
    label = Path(name or "upload").name
    if not data:
        raise InputError(f"primer: {label} is empty", 400)
    try:
        if data[:4] == b"MThd":
            return read_notes(data, name=label)
        if label.lower().endswith((".mid", ".midi")):
            raise InputError(f"primer: {label} is not a MIDI file (no MThd header)", 400)
        with tempfile.TemporaryDirectory(prefix="mpx-serve-") as folder:
            path = Path(folder) / label
            path.write_bytes(data)
            return read_csv(path)
    except MpxError as exc:
        message = str(exc).replace(str(Path(tempfile.gettempdir())), "").lstrip("/")
        raise InputError(f"primer: {_last_part(message, label)}", 400) from None


def _last_part(message: str, label: str) -> str:
    """A message about the temporary copy names the upload instead."""
    at = message.find(label)
    return message[at:] if at >= 0 else message
