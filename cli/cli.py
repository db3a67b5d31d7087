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
from mpx.runtime.config import ModelConfig
from mpx.runtime.errors import MpxError, OptionsError, missing_extra
from mpx.runtime.generate import MODES, NOTES_PER_SECOND, GenerationOptions, notes_for
from mpx.export.options import FORMATS, QUANTIZATIONS, SHIPPED_SET, ExportOptions
from mpx.runtime.run import WriteOptions
from mpx.progress import LogHandler, echo
from mpx.train.options import PRECISIONS, TrainOptions  # torch-free, like every option record here
from mpx.train.rundir import BEST, LAST

log = logging.getLogger("mpx")

app = typer.Typer(
    help="mpx: train a next-note LSTM on MIDI, export it (TorchScript, ONNX) and generate music "
         "from the artifacts.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    # Plain help: rich's boxes cut entries with "…" at 80 columns and read `[plot]` as markup.
    rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]},
)


def _plain_argument_help() -> None:
    """typer >= 0.2x labels each argument with its Python type in the help (`DATA <list[str]>`);
    an argument's own help says what it takes."""
    argument = getattr(getattr(typer, "core", None), "TyperArgument", None)
    if argument is not None and hasattr(argument, "display_type_rich"):
        argument.display_type_rich = lambda self, ctx: None


_plain_argument_help()


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
MODEL_FILES = ", ".join(f.suffixes[0] for f in formats.FORMATS.values())


def _value(option: object) -> object:
    return option.value if isinstance(option, Enum) else option


def _echo(message: str) -> None:
    echo(message)  # through the progress bars' console while one is drawn (cli/progress.py)


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


EXIT_STATUS = ("Exit status: 0 done; 1 an error, told in one line on stderr (a bad flag or value, a "
               "file that cannot be read or written); 130 interrupted (Ctrl-C).")


@app.callback(epilog=EXIT_STATUS)
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print mpx's version and exit.")] = False) -> None:
    """mpx: train a next-note LSTM on MIDI, export it and generate music from the artifacts."""


# ---------------------------------------------------------------------------------------------
@app.command(short_help="Train a model on MIDI files.")
def train(
    ctx: typer.Context,
    data: Annotated[list[str], typer.Argument(metavar="DATA", help="MIDI files, folders (searched recursively) or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help=f"Folder for {BEST} and {LAST}.")],
    epochs: Annotated[int, typer.Option(help="Epochs to train (the total, also with --resume).")] = TRAIN.epochs,
    batch_size: Annotated[int, typer.Option(help="Sequences (lanes) per batch.")] = TRAIN.batch_size,
    seq_len: Annotated[int, typer.Option(help="Notes per training chunk (the state carries between chunks).")] = TRAIN.seq_len,
    primer_len: Annotated[int, typer.Option(help="Primer length recorded in the spec.")] = TRAIN.primer_len,
    lr: Annotated[float, typer.Option(help="Peak learning rate (cosine decay to a tenth).")] = TRAIN.lr,
    hidden: Annotated[int, typer.Option(help="LSTM hidden size.")] = MODEL.hidden,
    layers: Annotated[int, typer.Option(help="LSTM layers.")] = MODEL.layers,
    embedding: Annotated[int, typer.Option(help="Size of the learned vector of a pitch.")] = MODEL.embedding,
    dropout: Annotated[float, typer.Option(help="Dropout on the LSTM output during training.")] = MODEL.dropout,
    step_bins: Annotated[int, typer.Option(help="Step bins, log-spaced up to --step-max.")] = MODEL.step_bins,
    step_max: Annotated[float, typer.Option(help="Longest step with a bin of its own (s).")] = MODEL.step_max,
    duration_bins: Annotated[int, typer.Option(help="Duration bins, log-spaced up to the longest.")] = MODEL.duration_bins,
    duration_max: Annotated[float, typer.Option(help="Longest duration with a bin of its own (s).")] = MODEL.duration_max,
    velocity_bins: Annotated[int, typer.Option(help="Velocity bins over 1..127.")] = MODEL.velocity_bins,
    head_hidden: Annotated[int, typer.Option(help="Width of each attribute's head (one hidden layer).")] = MODEL.head_hidden,
    order: Annotated[str, typer.Option(help="The chain: the order in which a note's attributes are drawn, each seeing the ones before it.")] = ",".join(MODEL.order),
    transpose: Annotated[int, typer.Option(help="Transpose training runs by up to N semitones.")] = TRAIN.transpose,
    reset_prob: Annotated[float, typer.Option(help="Chance of a zero state at a chunk boundary.")] = TRAIN.reset_prob,
    character_change: Annotated[float, typer.Option(help="Share of training chunks whose tempo, articulation, dynamics or register change from a random note on, the controls following (teaches the model to follow controls).")] = TRAIN.character_change,
    pitch_weight: Annotated[float, typer.Option(help="Loss weight of the pitch cross-entropy.")] = TRAIN.pitch_weight,
    step_weight: Annotated[float, typer.Option(help="Loss weight of the step cross-entropy.")] = TRAIN.step_weight,
    duration_weight: Annotated[float, typer.Option(help="Loss weight of the duration cross-entropy.")] = TRAIN.duration_weight,
    velocity_weight: Annotated[float, typer.Option(help="Loss weight of the velocity cross-entropy.")] = TRAIN.velocity_weight,
    licence: Annotated[str, typer.Option(help="Licence of the data, which the weights inherit.")] = TRAIN.licence,
    max_files: Annotated[Optional[int], typer.Option(help="Use at most N files (sorted by path).")] = None,
    metadata: Annotated[Optional[Path], typer.Option(metavar="FILE", help="Metadata that splits by piece.  [default: found in DATA]")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights and batch order.")] = TRAIN.seed,
    device: Annotated[str, typer.Option(help="auto (cuda if there is one), cpu, cuda or cuda:N.")] = TRAIN.device,
    precision: Annotated[PrecisionChoice, typer.Option(help="auto: bf16 or fp16 on a GPU, fp32 on a CPU.")] = PrecisionChoice(TRAIN.precision),
    nproc: Annotated[int, typer.Option(help="Processes on this machine (torchrun; one per GPU).")] = 1,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out (its own options, up to --epochs).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Start over in an --out that holds a run.")] = False,
    workers: Annotated[Optional[int], typer.Option(help="Processes parsing MIDI.  [default: all cores]")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(metavar="DIR", help="Parsed-notes cache.  [default: $MPX_CACHE_DIR or ~/.cache/mpx/notes]")] = None,
    pedal: Annotated[bool, typer.Option("--pedal", help="Sounding durations (the sustain pedal).")] = TRAIN.pedal,
) -> None:
    """Train the model on MIDI files; keep the best checkpoint by validation loss."""
    _require("torch", "safetensors", purpose="training")
    from mpx.train.api import TrainHooks, TrainJob, train_command

    model = ModelConfig(hidden=hidden, layers=layers, embedding=embedding, dropout=dropout,
                        step_bins=step_bins, step_max=step_max, duration_bins=duration_bins,
                        duration_max=duration_max, velocity_bins=velocity_bins, head_hidden=head_hidden,
                        order=tuple(name.strip() for name in order.split(",")))
    options = TrainOptions(model=model, epochs=epochs, batch_size=batch_size, seq_len=seq_len,
                           primer_len=primer_len, lr=lr, transpose=transpose, reset_prob=reset_prob,
                           character_change=character_change,
                           pitch_weight=pitch_weight, step_weight=step_weight,
                           duration_weight=duration_weight, velocity_weight=velocity_weight,
                           seed=seed, device=device, precision=_value(precision), licence=licence,
                           pedal=pedal)
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
def _training_progress(main: bool, first_epoch: int, epochs: int) -> Iterator[tuple[Callable[..., None], ...]]:
    """A bar that says which epoch it is (drawn only on a terminal, by rank 0), and a line per
    finished epoch, printed above the bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from mpx.progress import bars

    epoch, loss_now = [first_epoch], [float("nan")]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn())
    with bars(enabled=main, columns=columns) as progress:
        def on_step(done: int, total: int, loss: float) -> None:
            loss_now[0] = loss
            progress.update("epoch", done, total, description=f"epoch {epoch[0]}/{epochs} train", loss=loss)

        def on_validate(done: int, total: int) -> None:
            progress.update("epoch", done, total, description=f"epoch {epoch[0]}/{epochs} validate",
                            loss=loss_now[0])

        def on_epoch(row: dict[str, float]) -> None:
            epoch[0] = int(row["epoch"]) + 1
            if main:
                _echo(f"epoch {row['epoch']:>3}: train {row['train_loss']:.4f}  val {row['val_loss']:.4f}  "
                      f"(nats: pitch {row['val_pitch']:.3f}, step {row['val_step']:.3f}, duration "
                      f"{row['val_duration']:.3f}, velocity {row['val_velocity']:.3f})")

        yield on_step, on_validate, on_epoch


# ---------------------------------------------------------------------------------------------
@app.command(short_help="Export a checkpoint to .pt, .onnx, .pt2, .aoti.pt2.")
def export(
    checkpoint: Annotated[Optional[Path], typer.Option(metavar="FILE", help="Checkpoint (.safetensors).  [default: the bundled one]")] = None,
    format: Annotated[Format, typer.Option("--format", "-f", help=f"One format, the {SHIPPED_SET.replace('+', ' and ')} mpx ships, or all four (aoti compiles for minutes).")] = Format(EXPORT.format),
    out_dir: Annotated[Path, typer.Option(metavar="DIR", help="Where to write (made if missing).")] = Path("."),
    opset: Annotated[int, typer.Option(help="ONNX opset, 13..23.")] = EXPORT.opset,
    atol: Annotated[float, typer.Option(help="Parity: |artifact - eager| <= atol + rtol |eager|.")] = EXPORT.atol,
    rtol: Annotated[float, typer.Option(help="Relative part of the parity bound.")] = EXPORT.rtol,
    quantize: Annotated[Optional[Quantize], typer.Option(help="Also write music_producter.int8.onnx.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the artifacts in --out-dir (and remove those of other weights).")] = False,
) -> None:
    """Export a checkpoint to music_producter.onnx and .pt (the default), .pt2 (torch.export) or
    .aoti.pt2 (AOTInductor, for C++ without Python), each checked against eager PyTorch before it
    is kept."""
    _require("torch", "onnx", "safetensors", purpose="export")
    from mpx.export import targets
    from mpx.progress import bars
    from mpx.runtime.artifacts import bundled

    options = ExportOptions(format=_value(format), opset=opset, atol=atol, rtol=rtol,
                            quantize=_value(quantize), force=force)
    source = checkpoint or bundled("eager")
    targets.plan(source, out_dir, options)  # refused in a moment, before torch is imported
    from mpx.export.api import export_artifacts
    with bars() as progress:
        report = export_artifacts(source, out_dir, options, echo=_echo, progress=progress.update)
    for path in report.written:
        _echo(f"wrote {path}")


# ---------------------------------------------------------------------------------------------
@app.command(short_help="Continue a seed: write new notes.", epilog=PROGRAM_WARNING)
def run(
    seed_file: Annotated[Path, typer.Argument(metavar="SEED", help="MIDI or CSV notes that prime the model.")],
    backend: Annotated[Optional[Backend], typer.Option(help="How to run the model.  [default: by its suffix]")] = None,
    model: Annotated[Optional[Path], typer.Option(metavar="FILE", help=f"{MODEL_FILES}.  [default: the bundled model]")] = None,
    notes: Annotated[Optional[int], typer.Option(help=f"Notes to generate (with --seconds: the most).  [default: {GENERATION.notes}; with --seconds, {NOTES_PER_SECOND} a second]")] = None,
    seconds: Annotated[Optional[float], typer.Option(help="Length of each take (s), instead of a count.")] = None,
    temperature: Annotated[Optional[str], typer.Option(metavar="T[,T,T,T]", help="One, or per pitch,step,duration,velocity; 0 = greedy (README).  [default: the model's]")] = None,
    top_p: Annotated[Optional[str], typer.Option(metavar="P[,P,P,P]", help="Nucleus mass in (0, 1], like --temperature; 1 = off.  [default: the model's]")] = None,
    seed: Annotated[Optional[int], typer.Option(help="The same seed, the same notes, in every consumer.  [default: a fresh one, printed]")] = None,
    mode: Annotated[Mode, typer.Option(help="window: re-run the last seq_len notes per note.")] = Mode(GENERATION.mode),
    num_outputs: Annotated[int, typer.Option(help="Takes, one file each (OUT-1, OUT-2, ...).")] = GENERATION.num_outputs,
    primer_notes: Annotated[Optional[int], typer.Option(help="Seed notes that prime the model.  [default: the model's seq_len]")] = None,
    primer_from: Annotated[Optional[str], typer.Option(metavar="WHERE", help="Where the primer begins: start, a note (0 = the first) or a time (30s, 1:30).  [default: it ends with the seed]")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", metavar="FILE", help=".mid, .midi or .csv.  [default: NAME-mpx.mid here, for a seed NAME.mid]")] = None,
    include_primer: Annotated[bool, typer.Option("--include-primer", help="Write the primer before the continuation.")] = False,
    program: Annotated[int, typer.Option(help="General MIDI program (0 = piano).")] = WRITE.program,
    velocity: Annotated[Optional[int], typer.Option(help="One velocity 1..127 for every note.")] = None,
    tempo: Annotated[str, typer.Option(metavar="BPM|auto", help="Tempo the MIDI file says (auto: the seed's); times in seconds stay.")] = f"{WRITE.tempo:g}",
    plot: Annotated[Optional[Path], typer.Option(metavar="PNG", help="Also draw a piano roll (needs matplotlib).")] = None,
    density: Annotated[Optional[float], typer.Option(metavar="ONSETS/S", help="Controls (default: the primer's character): onsets a second, a chord counting once.")] = None,
    chord_share: Annotated[Optional[float], typer.Option(metavar="SHARE", help="Share of notes in chords, 0..1.")] = None,
    pitch_mean: Annotated[Optional[float], typer.Option(metavar="PITCH", help="Mean MIDI pitch (register; default: free).")] = None,
    pitch_spread: Annotated[Optional[float], typer.Option(metavar="SEMITONES", help="Spread of the pitches (semitones).")] = None,
    velocity_mean: Annotated[Optional[float], typer.Option(metavar="VELOCITY", help="Mean velocity 1..127 (dynamics).")] = None,
    duration_median: Annotated[Optional[float], typer.Option(metavar="SECONDS", help="Median note duration (articulation).")] = None,
    key: Annotated[Optional[str], typer.Option(metavar="KEY", help="Key whose pitch-class profile to follow: 'D minor', 'F# major', 'Bb'.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="Threads of the backend; 1 is faster on a busy CPU.  [default: 2]")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace outputs that exist (never the seed).")] = False,
    pedal: Annotated[bool, typer.Option("--pedal", help="Sounding durations (the sustain pedal).")] = False,
) -> None:
    """Continue a seed with a model: write MIDI (or CSV) of new notes (no training code on the
    ONNX path)."""
    from mpx.runtime.artifacts import load
    from mpx.runtime.run import generate_files

    if notes is None:
        notes = notes_for(seconds) if seconds is not None else GENERATION.notes
    options = GenerationOptions(notes=notes, temperature=temperature, top_p=top_p, seed=seed,
                                mode=_value(mode), num_outputs=num_outputs, primer_notes=primer_notes,
                                primer_from=primer_from, seconds=seconds, key=key,
                                controls={name: value for name, value in (
                                    ("density", density), ("chord_share", chord_share), ("pitch_mean", pitch_mean),
                                    ("pitch_spread", pitch_spread), ("velocity_mean", velocity_mean),
                                    ("duration_median", duration_median)) if value is not None})
    write = WriteOptions(program=program, velocity=velocity, tempo=tempo)
    generator = load(model, _value(backend), threads)
    with _note_progress(options) as progress:
        result = generate_files(generator, seed_file, out, options, write, include_primer,
                                plot=plot, force=force, progress=progress, pedal=pedal)
    tempo_said = f", {result.tempo:g} bpm from the seed" if write.tempo == "auto" else ""
    for path, take in zip(result.outputs, result.takes):
        written = len(take) + (len(result.primer) if include_primer else 0)
        _echo(f"wrote {path} ({written} notes, {generator.backend.name}, {options.mode}, "
              f"seed {result.seed}{tempo_said})")
    if result.plot is not None:
        _echo(f"wrote {result.plot}")


PROGRESS_FROM = 20_000  # notes: below this a run takes a second or two, a bar would only flicker


@contextlib.contextmanager
def _note_progress(options: GenerationOptions) -> Iterator[Optional[Callable[[int, int], None]]]:
    """A progress bar on stderr for long runs on a terminal; nothing otherwise (logs, pipes).
    With --seconds the bar counts the seconds of music made (of the slowest take)."""
    from mpx.progress import bars
    most = options.notes * options.num_outputs
    if most < PROGRESS_FROM or not sys.stderr.isatty():
        yield None
        return
    name = "generate" if options.seconds is None else "generate (s)"
    with bars() as progress:
        step, last = (1 if options.seconds is not None else max(1, most // 1000)), [-1]

        def update(done: int, of: int) -> None:  # a redraw per 0.1% at most: the bar must not cost speed
            if done != last[0] and (done % step == 0 or done == of):
                last[0] = done
                progress.update(name, done, of)

        yield update


# ---------------------------------------------------------------------------------------------
@app.command(short_help="Show what a model file holds.")
def info(
    artifact: Annotated[Path, typer.Argument(metavar="MODEL", help=f"{MODEL_FILES}.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show an artifact's spec, inputs/outputs, size and sha256, for every format (no torch
    needed: a .pt, .pt2 or .aoti.pt2 is read as an archive, never loaded or run)."""
    from mpx.runtime.info import describe, format_description

    description = describe(artifact)
    _echo(json.dumps(description, indent=2) if as_json else format_description(description))


# ---------------------------------------------------------------------------------------------
@app.command(name="eval", short_help="Score a model on MIDI files.", epilog=PROGRAM_WARNING)
def evaluate(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(metavar="MODEL", help=f"{MODEL_FILES}.")],
    data: Annotated[list[str], typer.Argument(metavar="DATA", help="MIDI files, folders or glob patterns.")],
    split: Annotated[Split, typer.Option(help="Which side of the split to score (files named one by one: all).")] = Split("test"),
    mode: Annotated[EvalMode, typer.Option(help="How to score.")] = EvalMode("both"),
    backend: Annotated[Optional[Backend], typer.Option(help="How to run the model.  [default: by its suffix]")] = None,
    max_files: Annotated[Optional[int], typer.Option(help="Use at most N files.")] = None,
    metadata: Annotated[Optional[Path], typer.Option(metavar="FILE", help="Metadata that splits DATA.  [default: found in DATA]")] = None,
    stride: Annotated[Optional[int], typer.Option(help="Window mode: every Nth window.  [default: seq_len/4]")] = None,
    threads: Annotated[Optional[int], typer.Option(help="Threads of the backend; 1 is faster on a busy CPU.")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(metavar="DIR", help="Parsed-notes cache.  [default: $MPX_CACHE_DIR or ~/.cache/mpx/notes]")] = None,
    generation: Annotated[bool, typer.Option("--generation", help="Also the generation report (docs/benchmarks.md).")] = False,
    files: Annotated[Optional[int], typer.Option(help="Pieces of the generation report.  [default: 48]")] = None,
    adherence: Annotated[bool, typer.Option("--adherence", help="With --generation: also how closely generation follows each control (5 values x 18 controls on 24 seeds, 256 notes each).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    pedal: Annotated[bool, typer.Option("--pedal", help="Sounding durations (the sustain pedal).")] = False,
) -> None:
    """Score a model on MIDI: cross-entropy and top-1 of every note attribute; with
    --generation, how its free-running music compares with the real continuations (and with
    --adherence, how it follows its controls)."""
    from mpx.progress import bars
    from mpx.runtime.artifacts import load
    from mpx.runtime.report import format_report as format_generation
    from mpx.runtime.run import warn_pedal
    from mpx.train.cache import NoteCache
    from mpx.train.corpus import load_corpus
    from mpx.train.evaluate import (MODES, check_adherence, check_generation_files, evaluate_split, format_report,
                                    generation_split, use_scoring_kernels)

    check_generation_files(files, generation)  # before minutes of scoring
    check_adherence(None, adherence, generation)
    fmt = formats.get(_value(backend)) if backend is not None else formats.of(model)
    use_scoring_kernels(fmt.needs_torch and not generation)  # before the model opens: set once
    generator = load(model, _value(backend), threads)
    check_adherence(generator, adherence, generation)
    warn_pedal(generator.spec.training, pedal, model)
    modes = MODES if _value(mode) == "both" else (_value(mode),)
    chosen = _value(split)
    if "split" not in _given(ctx) and all(Path(d).is_file() for d in data):
        chosen = "all"  # files named one by one are pieces to score, whichever side of a split they fall on
    with bars() as progress:  # the split is known before parsing: only its files are parsed
        corpus = load_corpus(data, max_files=max_files, metadata=metadata, cache=NoteCache(cache_dir),
                             splits=None if chosen == "all" else (chosen,),
                             on_parsed=progress.callback("parse MIDI"), pedal=pedal)
        report = evaluate_split(generator.backend, corpus, chosen, modes, stride=stride,
                                on_progress=progress.update)
    report["model"] = str(model)
    if generation:
        with bars() as progress:
            report["generation"] = generation_split(generator, corpus, chosen, files,
                                                    on_progress=progress.callback("generate"), adherence=adherence,
                                                    on_adherence=progress.callback("adherence"))
    if as_json:
        _echo(json.dumps(report, indent=2))
        return
    _echo(format_report(report))
    if generation:
        _echo(format_generation(report["generation"]))


# ---------------------------------------------------------------------------------------------
@app.command(short_help="Convert notes between MIDI and CSV.")
def notes(
    source: Annotated[Path, typer.Argument(metavar="FILE", help="MIDI or CSV notes.")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="FILE", help=".csv (notes as text), .mid or .midi.")],
    last: Annotated[Optional[int], typer.Option(help="Keep the last N notes (a primer).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists (never FILE).")] = False,
    pedal: Annotated[bool, typer.Option("--pedal", help="Sounding durations (the sustain pedal).")] = False,
) -> None:
    """Convert notes between MIDI and CSV (pitch,step,duration,velocity per line)."""
    from mpx.runtime.notes_csv import convert

    path, count = convert(source, out, last, force=force, pedal=pedal)
    _echo(f"wrote {path} ({count} notes)")


@app.command(short_help="Draw a piano roll of a MIDI or CSV file.")
def plot(
    midi: Annotated[Path, typer.Argument(metavar="FILE", help="MIDI or CSV notes.")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="PNG", help="The picture to write.")],
    primer_notes: Annotated[int, typer.Option(help="Colour the first N notes as a primer.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
) -> None:
    """Draw a piano roll of a MIDI or CSV file.

    Needs matplotlib: pip install 'mpx-music[plot]' (or '.[plot]' in a checkout)."""
    from mpx.runtime.plot import plot_file

    _echo(f"wrote {plot_file(midi, out, primer_notes, force=force)}")


from mpx.runtime.serve.options import ServeOptions  # noqa: E402  (torch- and FastAPI-free)

SERVE = ServeOptions()


@app.command(short_help="Serve a model to many listeners (HTTP, WebSocket).")
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
FAILED = 1         # every error, a bad flag or value as much as an unreadable file (EXIT_STATUS)


def _flag_as_typed(param: object) -> str:
    """The spelling of an option the user typed (`-f` or `--format`), else its long name; an
    argument's metavar."""
    opts = list(getattr(param, "opts", None) or [])
    if getattr(param, "param_type_name", "") == "argument" or not opts:
        return str(getattr(param, "metavar", None) or getattr(param, "name", "") or "?").upper()
    typed = [arg.split("=", 1)[0] for arg in sys.argv[1:] if arg.split("=", 1)[0] in opts]
    return typed[-1] if typed else max(opts, key=len)


def _usage_message(exc: Exception) -> str:
    """A parse error in mpx's own words: `--mode must be one of stateful, window, got 'bogus'`,
    like the libraries' checks (no `Value error,` or `Input should be` of the parser)."""
    param = getattr(exc, "param", None)
    cause = exc.__cause__
    errors = cause.errors() if hasattr(cause, "errors") else []
    text = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    if param is None or not errors:
        return text
    flag_, value, kind = _flag_as_typed(param), errors[0].get("input"), errors[0].get("type", "")
    choices = getattr(getattr(param, "type_descriptor", None), "choices", None)
    if choices:
        return f"{flag_} must be one of {', '.join(str(_value(c)) for c in choices)}, got {value!r}"
    if kind == "int_parsing":
        return f"{flag_} must be an integer, got {value!r}"
    if kind == "float_parsing":
        return f"{flag_} must be a number, got {value!r}"
    reason = str(errors[0].get("msg", text)).removeprefix("Value error, ")
    return f"{flag_} {value!r}: {reason}"


def _option_message(exc: OptionsError) -> str:
    """A library's OptionsError names the Python parameter at fault (`exc.field`, e.g.
    num_outputs); the command's flag for it is named as the user typed it (`--num-outputs`).
    A field that is no flag of the command keeps the library's words."""
    if not exc.field:
        return str(exc)
    command = typer.main.get_command(app)
    commands = getattr(command, "commands", {})
    chosen = next((commands[arg] for arg in sys.argv[1:] if arg in commands), None)
    param = next((p for p in getattr(chosen, "params", []) if p.name == exc.field and getattr(p, "opts", None)), None)
    return exc.naming(_flag_as_typed(param)) if param is not None else str(exc)


def _quiet_library_warnings() -> None:
    """Python warnings are libraries' notes to programmers (torch's FutureWarning when
    AOTInductor packages a model, ...): not shown to mpx's users, unless they ask with
    `python -W` or PYTHONWARNINGS. mpx's own warnings are log lines."""
    import warnings
    if not sys.warnoptions:
        warnings.simplefilter("ignore")


def main() -> None:
    """Entry point: every failure a user can cause ends as one line on stderr, never a traceback.
    (The console script starts in mpx.start, which catches Ctrl-C during the imports; called
    from Python, this changes no signal handler.)"""
    from .start import interrupt_seen, raise_on_interrupt
    try:
        from typer._click import exceptions as click  # typer >= 0.2x vendors its own click
    except ImportError:
        from click import exceptions as click  # type: ignore[no-redef]

    handler = LogHandler()  # above any progress bar (cli/progress.py)
    handler.setFormatter(logging.Formatter("mpx: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    _quiet_library_warnings()
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
        error, code = f"mpx: error: {_usage_message(exc)} (see `{command} --help`)", FAILED
    except (typer.Abort, KeyboardInterrupt):
        error, code = "mpx: interrupted", INTERRUPTED
    except OptionsError as exc:  # named as its flag: the library names its Python parameter
        error, code = f"mpx: error: {_option_message(exc)}", exc.exit_code
    except MpxError as exc:
        # a rank of a distributed run that stops quietly (an empty message): rank 0 says why;
        # an interruption that saved its work says so: `mpx: interrupted at epoch 3, ...`
        interrupted = exc.exit_code == INTERRUPTED and str(exc).startswith("interrupted")
        error, code = f"mpx: {'' if interrupted else 'error: '}{exc}" if str(exc) else "", exc.exit_code
    except OSError as exc:  # a file system failure no library turned into an MpxError
        where = f"{exc.filename}: " if exc.filename else ""
        error, code = f"mpx: error: {where}{exc.strerror or exc}", FAILED
    if interrupt_seen():  # whatever a library made of the Ctrl-C
        error, code = "mpx: interrupted", INTERRUPTED
    if error:
        typer.echo(error, err=True)
    sys.exit(code if isinstance(code, int) else 0)
