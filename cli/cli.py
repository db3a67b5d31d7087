"""The `mpx` command line: each command maps its flags onto one library call.

Defaults come from the libraries' option records (ModelConfig, TrainOptions, ExportOptions,
GenerationOptions) and every check is theirs: a command adds no checks of its own. Heavy modules
(torch, onnx, onnxruntime) are imported inside the commands that need them, so
`mpx run --backend onnx` never loads torch and `mpx --help` loads almost nothing.
"""
from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from mpx.runtime import formats
from mpx.runtime.checks import flag
from mpx.runtime.config import ModelConfig
from mpx.runtime.errors import MpxError, OptionsError, missing_extra
from mpx.runtime.generate import MODES, GenerationOptions
from mpx.export.options import FORMATS, QUANTIZATIONS, ExportOptions
from mpx.runtime.run import WriteOptions
from mpx.train.options import PRECISIONS, TrainOptions  # torch-free, like every option record here
from mpx.train.rundir import BEST, LAST

log = logging.getLogger("mpx")

app = typer.Typer(
    help="mpx: train a next-note LSTM on MIDI, export it (TorchScript, ONNX) and generate music "
         "from the artifacts.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum of the library's allowed values, so --help lists them."""
    return Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]


Backend = _choices("Backend", formats.NAMES)
Mode = _choices("Mode", MODES)
Format = _choices("Format", FORMATS)
Quantize = _choices("Quantize", QUANTIZATIONS)
Split = _choices("Split", ("train", "val", "test", "all"))
EvalMode = _choices("EvalMode", ("window", "stateful", "both"))
PrecisionChoice = _choices("PrecisionChoice", PRECISIONS)

MODEL = ModelConfig()
TRAIN = TrainOptions()
EXPORT = ExportOptions()
GENERATION = GenerationOptions()
WRITE = WriteOptions()
PROGRAM_WARNING = formats.program_warning()
MODEL_FILES = ", ".join(f"{f.suffixes[0]}: {f.title}" for f in formats.FORMATS.values())


def _value(option: object) -> object:
    return option.value if isinstance(option, Enum) else option


def _echo(message: str) -> None:
    typer.echo(message)


def _require(*modules: str, purpose: str) -> None:
    """A one-line error, not an ImportError traceback, when an extra is not installed."""
    import importlib.util
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise missing_extra(purpose, ", ".join(missing))


def _version(value: bool) -> None:
    if value:
        from mpx import __version__
        _echo(f"mpx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print mpx's version and exit.")] = False) -> None:
    """mpx: train a next-note LSTM on MIDI, export it and generate music from the artifacts."""


# ---------------------------------------------------------------------------------------------
@app.command()
def train(
    ctx: typer.Context,
    data: Annotated[list[str], typer.Argument(help="MIDI files, directories (searched recursively) or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help=f"Directory for {BEST} and {LAST}.")],
    epochs: Annotated[int, typer.Option(help="Epochs to train (the total, also with --resume).")] = TRAIN.epochs,
    batch_size: Annotated[int, typer.Option(help="Sequences (lanes) per batch.")] = TRAIN.batch_size,
    seq_len: Annotated[int, typer.Option(help="Notes per training chunk; the LSTM state is carried between chunks of a piece.")] = TRAIN.seq_len,
    primer_len: Annotated[int, typer.Option(help="Primer (at most) / window length recorded in the spec.")] = TRAIN.primer_len,
    lr: Annotated[float, typer.Option(help="Peak Adam learning rate (cosine decay to a tenth).")] = TRAIN.lr,
    hidden: Annotated[int, typer.Option(help="LSTM hidden size.")] = MODEL.hidden,
    layers: Annotated[int, typer.Option(help="LSTM layers.")] = MODEL.layers,
    embedding: Annotated[int, typer.Option(help="Size of the learned vector per pitch.")] = MODEL.embedding,
    dropout: Annotated[float, typer.Option(help="Dropout on the LSTM output during training.")] = MODEL.dropout,
    step_bins: Annotated[int, typer.Option(help="Step bins, uniform in log(t + 0.01) up to --step-max.")] = MODEL.step_bins,
    step_max: Annotated[float, typer.Option(help="Longest step (seconds) with a bin of its own.")] = MODEL.step_max,
    duration_bins: Annotated[int, typer.Option(help="Duration bins, uniform in log(t + 0.01) up to --duration-max.")] = MODEL.duration_bins,
    duration_max: Annotated[float, typer.Option(help="Longest duration (seconds) with a bin of its own.")] = MODEL.duration_max,
    velocity_bins: Annotated[int, typer.Option(help="Velocity bins over 1..127.")] = MODEL.velocity_bins,
    transpose: Annotated[int, typer.Option(help="Augment: transpose each training run by up to N semitones.")] = TRAIN.transpose,
    reset_prob: Annotated[float, typer.Option(help="Chance of a zero state at a chunk boundary.")] = TRAIN.reset_prob,
    pitch_weight: Annotated[float, typer.Option(help="Loss weight of the pitch cross-entropy.")] = TRAIN.pitch_weight,
    step_weight: Annotated[float, typer.Option(help="Loss weight of the step cross-entropy.")] = TRAIN.step_weight,
    duration_weight: Annotated[float, typer.Option(help="Loss weight of the duration cross-entropy.")] = TRAIN.duration_weight,
    velocity_weight: Annotated[float, typer.Option(help="Loss weight of the velocity cross-entropy.")] = TRAIN.velocity_weight,
    licence: Annotated[str, typer.Option(help="Licence of the training data, which the weights inherit (stored in the spec).")] = TRAIN.licence,
    max_files: Annotated[Optional[int], typer.Option(help="Use at most this many files (sorted by path).")] = None,
    metadata: Annotated[Optional[Path], typer.Option(help="CSV with composer,title,midi_performance to split by piece (found automatically as DATA/metadata.csv).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and batch order.")] = TRAIN.seed,
    device: Annotated[str, typer.Option(help="auto (cuda when available), cpu, cuda or cuda:N.")] = TRAIN.device,
    precision: Annotated[PrecisionChoice, typer.Option(help="auto: bf16 autocast on a GPU that has it, else fp16 with a gradient scaler; fp32 on a CPU.")] = PrecisionChoice(TRAIN.precision),
    nproc: Annotated[int, typer.Option(help="Train with N processes on this machine (torchrun, DistributedDataParallel; one per GPU with --device cuda). Several machines: run torchrun yourself (docs/training-at-scale.md).")] = 1,
    resume: Annotated[bool, typer.Option(help=f"Continue the run saved in OUT/{LAST} (its options, up to --epochs).")] = False,
    force: Annotated[bool, typer.Option(help="Start a new run in an OUT that holds one, replacing its checkpoints.")] = False,
    workers: Annotated[Optional[int], typer.Option(help="Processes parsing MIDI (default: all cores).")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Parsed-notes cache (default ~/.cache/mpx/notes or $MPX_CACHE_DIR).")] = None,
) -> None:
    """Train the model on MIDI files; keep the best checkpoint by validation loss."""
    _require("torch", "safetensors", purpose="training")
    from mpx.train.api import TrainHooks, TrainJob, train_command

    model = ModelConfig(hidden=hidden, layers=layers, embedding=embedding, dropout=dropout,
                        step_bins=step_bins, step_max=step_max, duration_bins=duration_bins,
                        duration_max=duration_max, velocity_bins=velocity_bins)
    options = TrainOptions(model=model, epochs=epochs, batch_size=batch_size, seq_len=seq_len,
                           primer_len=primer_len, lr=lr, transpose=transpose, reset_prob=reset_prob,
                           pitch_weight=pitch_weight, step_weight=step_weight,
                           duration_weight=duration_weight, velocity_weight=velocity_weight,
                           seed=seed, device=device, precision=_value(precision), licence=licence)
    job = TrainJob(data=data, out=out, options=options, resume=resume, force=force, nproc=nproc,
                   max_files=max_files, metadata=metadata, workers=workers, cache_dir=cache_dir,
                   given=tuple(_given(ctx)))
    train_command(job, TrainHooks(parsing=_parsing_progress, training=_training_progress, echo=_echo),
                  argv=sys.argv[1:])


@contextlib.contextmanager
def _parsing_progress(main: bool) -> Iterator[Optional[Callable[[int, int], None]]]:
    from mpx.progress import bars
    with bars(enabled=main) as progress:
        yield progress.callback("parse MIDI")


def _given(ctx: typer.Context) -> list[str]:
    """The options the user typed (not defaults), by parameter name."""
    return [name for name in ctx.params
            if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"]


@contextlib.contextmanager
def _training_progress(main: bool) -> Iterator[tuple[Callable[..., None], ...]]:
    """A bar per epoch (drawn only on a terminal, by rank 0) and a line per finished epoch."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(),
                  transient=True, disable=not main) as progress:
        task = progress.add_task("train", total=None, loss=float("nan"))

        def on_step(done: int, total: int, loss: float) -> None:
            progress.update(task, description="train", completed=done, total=total, loss=loss)

        def on_validate(done: int, total: int) -> None:
            progress.update(task, description="validate", completed=done, total=total)

        def on_epoch(row: dict[str, float]) -> None:
            if main:
                progress.console.print(
                    f"epoch {row['epoch']:>3}: train {row['train_loss']:.4f}  val {row['val_loss']:.4f}  "
                    f"(nats: pitch {row['val_pitch']:.3f}, step {row['val_step']:.3f}, duration "
                    f"{row['val_duration']:.3f}, velocity {row['val_velocity']:.3f})",
                    highlight=False, soft_wrap=True)

        yield on_step, on_validate, on_epoch


# ---------------------------------------------------------------------------------------------
@app.command()
def export(
    checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint (.safetensors) to export; default: the bundled one.")] = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="Artifact(s) to write.")] = Format(EXPORT.format),
    out_dir: Annotated[Path, typer.Option(help="Where to write (created if missing).")] = Path("."),
    opset: Annotated[int, typer.Option(help="ONNX opset (13..23).")] = EXPORT.opset,
    atol: Annotated[float, typer.Option(help="Parity with eager PyTorch: |artifact - eager| <= atol + rtol * |eager| on every output.")] = EXPORT.atol,
    rtol: Annotated[float, typer.Option(help="Relative part of the parity bound (matters for the unbounded logits and cell state cn).")] = EXPORT.rtol,
    quantize: Annotated[Optional[Quantize], typer.Option(help="Also write a quantized ONNX variant.")] = None,
    force: Annotated[bool, typer.Option(help="Replace artifacts that already exist in --out-dir.")] = False,
) -> None:
    """Export a checkpoint to music_producter.pt / .onnx (all), or .pt2 (torch.export) / .aoti.pt2
    (AOTInductor, for C++ without Python); each checked against eager PyTorch before it is kept."""
    _require("torch", "onnx", "safetensors", purpose="export")
    from mpx.export.api import export_artifacts
    from mpx.progress import bars
    from mpx.runtime.artifacts import bundled

    options = ExportOptions(format=_value(format), opset=opset, atol=atol, rtol=rtol,
                            quantize=_value(quantize), force=force)
    with bars() as progress:
        report = export_artifacts(checkpoint or bundled("eager"), out_dir, options, echo=_echo,
                                  progress=progress.update)
    for path in report.written:
        _echo(f"wrote {path}")


# ---------------------------------------------------------------------------------------------
@app.command(epilog=PROGRAM_WARNING)
def run(
    seed_file: Annotated[Path, typer.Argument(metavar="SEED", help="Seed MIDI (or CSV notes); its last notes prime the model.")],
    backend: Annotated[Optional[Backend], typer.Option(help="Backend; default: by --model's suffix, else onnx.")] = None,
    model: Annotated[Optional[Path], typer.Option(help=f"Model file ({MODEL_FILES}); default: the bundled one.")] = None,
    notes: Annotated[int, typer.Option(help="Notes to generate per output.")] = GENERATION.notes,
    temperature: Annotated[Optional[str], typer.Option(help="Sampling temperature: one value, or four for pitch,step,duration,velocity; 0 = greedy. Default: the model's own (mpx info).")] = None,
    top_p: Annotated[Optional[str], typer.Option(help="Nucleus mass in (0, 1]: one value or four (pitch,step,duration,velocity); 1 = off. Default: the model's own.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed: the same seed gives the same notes on every backend and consumer (C++, JavaScript). Default: a fresh one, printed.")] = None,
    mode: Annotated[Mode, typer.Option(help="stateful: O(1) per note; window: re-run the last seq_len notes per note.")] = Mode(GENERATION.mode),
    num_outputs: Annotated[int, typer.Option(help="Variations generated in one batched pass, one file each.")] = GENERATION.num_outputs,
    primer_notes: Annotated[Optional[int], typer.Option(help="Seed notes used as primer; default: the model's seq_len (all of a shorter seed).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output .mid, .midi or .csv; default SEED-mpx.mid here. An existing file needs --force.")] = None,
    include_primer: Annotated[bool, typer.Option(help="Write the primer, then the continuation, in one file.")] = False,
    program: Annotated[int, typer.Option(help="General MIDI program of the output (0 = piano).")] = WRITE.program,
    velocity: Annotated[Optional[int], typer.Option(help="Play every note at this velocity (1..127) instead of the generated dynamics.")] = None,
    tempo: Annotated[float, typer.Option(help="Tempo (bpm) written into the MIDI file; the notes' times in seconds do not change.")] = WRITE.tempo,
    plot: Annotated[Optional[Path], typer.Option(help="Also draw a piano roll (primer and continuation) to this PNG (needs matplotlib: pip install 'mpx-music[plot]', or '.[plot]' in a checkout).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="Intra-op threads of the backend; default 2 (measured fastest on an idle 2-core CPU), 1 is faster on a busy machine.")] = None,
    force: Annotated[bool, typer.Option(help="Replace output files that exist (never the seed itself).")] = False,
) -> None:
    """Generate music from a seed with an exported model (no training code on the ONNX path)."""
    from mpx.runtime.artifacts import load
    from mpx.runtime.run import generate_files

    options = GenerationOptions(notes=notes, temperature=temperature, top_p=top_p, seed=seed,
                                mode=_value(mode), num_outputs=num_outputs, primer_notes=primer_notes)
    write = WriteOptions(program=program, velocity=velocity, tempo=tempo)
    generator = load(model, _value(backend), threads)
    with _note_progress(options.notes * options.num_outputs) as progress:
        result = generate_files(generator, seed_file, out, options, write, include_primer,
                                plot=plot, force=force, progress=progress)
    written = options.notes + (len(result.primer) if include_primer else 0)
    for path in result.outputs:
        _echo(f"wrote {path} ({written} notes, {generator.backend.name}, {options.mode}, "
              f"seed {result.seed})")
    if result.plot is not None:
        _echo(f"wrote {result.plot}")


PROGRESS_FROM = 20_000  # notes: below this a run takes a second or two, a bar would only flicker


@contextlib.contextmanager
def _note_progress(total: int) -> Iterator[Optional[Callable[[int, int], None]]]:
    """A progress bar on stderr for long runs on a terminal; nothing otherwise (logs, pipes)."""
    if total < PROGRESS_FROM or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    with Progress(TextColumn("generate"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("generate", total=None)
        step = max(1, total // 1000)  # a redraw per 0.1%: the bar must not cost the run its speed

        def update(done: int, of: int) -> None:
            if done % step == 0 or done == of:
                bar.update(task, completed=done, total=of)

        yield update


# ---------------------------------------------------------------------------------------------
@app.command()
def info(
    artifact: Annotated[Path, typer.Argument(help=f"A model file ({MODEL_FILES}).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show an artifact's spec, inputs/outputs, size and sha256, for every format (no torch
    needed: a .pt, .pt2 or .aoti.pt2 is read as an archive, never loaded or run)."""
    from mpx.runtime.info import describe, format_description

    description = describe(artifact)
    _echo(json.dumps(description, indent=2) if as_json else format_description(description))


# ---------------------------------------------------------------------------------------------
@app.command(name="eval", epilog=PROGRAM_WARNING)
def evaluate(
    model: Annotated[Path, typer.Argument(help=f"Model file ({MODEL_FILES}).")],
    data: Annotated[list[str], typer.Argument(help="MIDI files, directories or glob patterns.")],
    split: Annotated[Split, typer.Option(help="Which split of DATA to score.")] = Split("test"),
    mode: Annotated[EvalMode, typer.Option(help="Window, stateful or both.")] = EvalMode("both"),
    backend: Annotated[Optional[Backend], typer.Option(help="Backend; default: by the file's suffix.")] = None,
    max_files: Annotated[Optional[int], typer.Option(help="Use at most this many files.")] = None,
    metadata: Annotated[Optional[Path], typer.Option(help="Metadata that splits DATA: MAESTRO's maestro-v*.csv/.json or ASAP's metadata.csv (found at the top of a DATA folder by default).")] = None,
    stride: Annotated[Optional[int], typer.Option(help="Window mode: score every Nth window; default seq_len/4 (a window costs seq_len LSTM steps, a stateful prediction one); 1 = every window.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="Threads of the backend (onnxruntime's or torch's); 1 is faster on a busy machine.")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Parsed-notes cache (default ~/.cache/mpx/notes or $MPX_CACHE_DIR).")] = None,
    generation: Annotated[bool, typer.Option(help="Also generate from every scored piece and report pace, tempo, texture and overlaps with the real continuation (docs/benchmarks.md, 'Generation report').")] = False,
    files: Annotated[Optional[int], typer.Option(help="With --generation: this many pieces, spread over the split.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Score a model on MIDI: cross-entropy and top-1 of every note attribute; with
    --generation, how its free-running music compares with the real continuations."""
    from mpx.progress import bars
    from mpx.runtime.artifacts import load
    from mpx.runtime.report import format_report as format_generation
    from mpx.train.cache import NoteCache
    from mpx.train.corpus import load_corpus
    from mpx.train.evaluate import (MODES, check_generation_files, evaluate_split, format_report, generation_split,
                                    use_scoring_kernels)

    check_generation_files(files, generation)  # before minutes of scoring
    fmt = formats.get(_value(backend)) if backend is not None else formats.of(model)
    use_scoring_kernels(fmt.needs_torch and not generation)  # before the model opens: set once
    generator = load(model, _value(backend), threads)
    modes = MODES if _value(mode) == "both" else (_value(mode),)
    chosen = _value(split)
    with bars() as progress:  # the split is known before parsing: only its files are parsed
        corpus = load_corpus(data, max_files=max_files, metadata=metadata, cache=NoteCache(cache_dir),
                             splits=None if chosen == "all" else (chosen,),
                             on_parsed=progress.callback("parse MIDI"))
        report = evaluate_split(generator.backend, corpus, chosen, modes, stride=stride,
                                on_progress=progress.update)
    report["model"] = str(model)
    if generation:
        report["generation"] = generation_split(generator, corpus, _value(split), files)
    if as_json:
        _echo(json.dumps(report, indent=2))
        return
    _echo(format_report(report))
    if generation:
        _echo(format_generation(report["generation"]))


# ---------------------------------------------------------------------------------------------
@app.command()
def notes(
    source: Annotated[Path, typer.Argument(help="MIDI or CSV file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output: .csv for notes as text, .mid or .midi for MIDI.")],
    last: Annotated[Optional[int], typer.Option(help="Keep only the last N notes (e.g. a primer for the C++ example).")] = None,
    force: Annotated[bool, typer.Option(help="Replace --out if it exists (never the source itself).")] = False,
) -> None:
    """Convert notes between MIDI and CSV (pitch,step,duration,velocity per line)."""
    from mpx.runtime.notes_csv import convert

    path, count = convert(source, out, last, force=force)
    _echo(f"wrote {path} ({count} notes)")


@app.command()
def plot(
    midi: Annotated[Path, typer.Argument(help="MIDI or CSV file to draw.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")],
    primer_notes: Annotated[int, typer.Option(help="Colour the first N notes as the primer.")] = 0,
    force: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Draw a piano roll of a MIDI file (primer and continuation in two colours; needs
    matplotlib: pip install 'mpx-music[plot]', or '.[plot]' in a checkout)."""
    from mpx.runtime.plot import plot_file

    _echo(f"wrote {plot_file(midi, out, primer_notes, force=force)}")


from mpx.runtime.serve.options import ServeOptions  # noqa: E402  (torch- and FastAPI-free)

SERVE = ServeOptions()


@app.command()
def serve(
    model: Annotated[Optional[Path], typer.Argument(help="ONNX model to serve; default: the bundled one.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; 127.0.0.1 = this machine only (anything else warns without --token).")] = SERVE.host,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = SERVE.port,
    token: Annotated[Optional[str], typer.Option(envvar="MPX_SERVE_TOKEN", help="Require 'Authorization: Bearer TOKEN' on every request but /healthz (or set MPX_SERVE_TOKEN).")] = None,
    seed_file: Annotated[Optional[Path], typer.Option(help="Seed (MIDI or CSV) used when a request sends none; default: the bundled seed.")] = None,
    threads: Annotated[int, typer.Option(help="onnxruntime intra-op threads.")] = SERVE.threads,
    max_streams: Annotated[int, typer.Option(help="Streams generating at once.")] = SERVE.max_streams,
    max_queue: Annotated[int, typer.Option(help="Requests waiting for a stream; beyond it: 429 with Retry-After.")] = SERVE.max_queue,
    max_batch: Annotated[int, typer.Option(help="1 = no batching: every stream its own graph calls, bit for bit as mpx run.")] = SERVE.max_batch,
    max_notes: Annotated[int, typer.Option(help="Notes per request.")] = SERVE.max_notes,
    cors_origin: Annotated[Optional[list[str]], typer.Option(help="A web page origin (https://host:port) allowed to call, beyond pages served from this machine; repeatable.")] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Run on Ray Serve (needs the ray extra), one batcher per replica.")] = False,
    replicas: Annotated[int, typer.Option(help="Batcher replicas with --ray.")] = 2,
) -> None:
    """Serve the model over HTTP and WebSocket to many listeners, batching their streams into
    one graph call per step (needs the serve extra); SIGTERM finishes the streams in flight."""
    from mpx.runtime.serve.server import serve as run_server

    options = ServeOptions(host=host, port=port, token=token, threads=threads, max_streams=max_streams,
                           max_queue=max_queue, max_batch=max_batch, max_notes=max_notes,
                           cors_origins=tuple(cors_origin or ()))
    run_server(model, options, seed_file, replicas if ray else None)


from .start import INTERRUPTED  # noqa: E402 - the shell's code for a process ended by Ctrl-C


def main() -> None:
    """Entry point: every failure a user can cause ends as one line on stderr, never a traceback.
    (The console script starts in mpx.start, which catches Ctrl-C during the imports; called
    from Python, this changes no signal handler.)"""
    from .start import interrupt_seen, raise_on_interrupt
    try:
        from typer._click import exceptions as click  # typer >= 0.2x vendors its own click
    except ImportError:
        from click import exceptions as click  # type: ignore[no-redef]

    logging.basicConfig(level=logging.WARNING, format="mpx: %(message)s")
    error, code = "", 0
    try:
        raise_on_interrupt()  # the work: Ctrl-C unwinds it, so a write in progress is undone
        code = app(standalone_mode=False)
        if code == INTERRUPTED:  # typer turns Ctrl-C into this return value, silently
            error = "mpx: interrupted"
    except click.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        code = 0
    except click.UsageError as exc:  # bad flag, bad value, missing argument
        command = exc.ctx.command_path if exc.ctx else "mpx"
        message = " ".join(exc.format_message().split())
        error, code = f"mpx: error: {message} (see `{command} --help`)", 2
    except (typer.Abort, KeyboardInterrupt):
        error, code = "mpx: interrupted", INTERRUPTED
    except OptionsError as exc:  # named as its flag: the library names its Python parameter
        error, code = f"mpx: error: {exc.naming(flag(exc.field)) if exc.field else exc}", exc.exit_code
    except MpxError as exc:
        # a rank of a distributed run that stops quietly (an empty message): rank 0 says why
        error, code = f"mpx: error: {exc}" if str(exc) else "", exc.exit_code
    except OSError as exc:  # a file system failure no library turned into an MpxError
        where = f"{exc.filename}: " if exc.filename else ""
        error, code = f"mpx: error: {where}{exc.strerror or exc}", 1
    if interrupt_seen():  # whatever a library made of the Ctrl-C
        error, code = "mpx: interrupted", INTERRUPTED
    if error:
        typer.echo(error, err=True)
    sys.exit(code if isinstance(code, int) else 0)
