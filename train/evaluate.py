"""`mpx eval`: how well a model predicts the next note, in the two ways it is used.

window:   every seq_len-note window from a zero state predicts the note after it (the
          tutorial's setting, and what the window generation mode does);
stateful: each file from a zero state predicts every next note, the state carried through
          the whole file (what the stateful generation mode does). Files are packed into
          batch rows and run in chunks with the state carried (train/batches.py's evaluation
          plan), so a backend scores many files per call.
Metrics per predicted note and attribute (pitch, step, duration, velocity): cross-entropy of
the real next note's bin (nats) and top-1 accuracy of the likeliest bin. Works on any backend:
checkpoint (eager), TorchScript or ONNX. The training's validation loss is this stateful pass.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mpx.runtime import bins, controls, report
from mpx.runtime.backends import Backend, import_torch, use_torch_kernels, zero_state
from mpx.runtime.checks import integer
from mpx.runtime.contract import ATTRIBUTES, UNIFORMS
from mpx.runtime.errors import MpxError, OptionsError
from mpx.runtime.generate import GenerationOptions, Generator, Take
from mpx.runtime.session import Session
from mpx.runtime.spec import Sampling

from .batches import LanePlanner, gather

if TYPE_CHECKING:
    from .corpus import Corpus

MODES = ("window", "stateful")
A = len(ATTRIBUTES)


class Totals:
    """Running sums of cross-entropy and top-1 hits per attribute."""

    def __init__(self, counts: tuple[int, ...]) -> None:
        self.counts = counts
        self.n = 0
        self.ce = np.zeros(A)
        self.hits = np.zeros(A)

    def add(self, logits: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None) -> None:
        """logits [N, 4, 128], targets [N, 4] (bins), mask [N] (1 = a real prediction)."""
        keep = np.ones(len(logits), bool) if mask is None else mask.astype(bool)
        logits, targets = logits[keep], targets[keep]
        rows = np.arange(len(logits))
        for a, n in enumerate(self.counts):
            z = logits[:, a, :n].astype(np.float64)
            top = z.max(axis=-1)
            log_norm = top + np.log(np.exp(z - top[:, None]).sum(axis=-1))
            self.ce[a] += float((log_norm - z[rows, targets[:, a]]).sum())
            self.hits[a] += float((z.argmax(axis=-1) == targets[:, a]).sum())
        self.n += len(logits)

    def vector(self) -> np.ndarray:
        """[n, cross-entropy sums, hits]: the numbers ranks add up (float64)."""
        return np.concatenate([[self.n], self.ce, self.hits]).astype(np.float64)

    def set_vector(self, vector: np.ndarray) -> None:
        self.n, self.ce, self.hits = int(round(vector[0])), vector[1:1 + A].copy(), vector[1 + A:].copy()

    def result(self) -> dict[str, float]:
        n = max(self.n, 1)
        out: dict[str, float] = {}
        for a, name in enumerate(ATTRIBUTES):
            out[f"{name}_ce"] = self.ce[a] / n
            out[f"{name}_top1"] = self.hits[a] / n
        out["predictions"] = self.n
        return out


GREEDY = Sampling(0.0, 1.0)  # scoring calls' sampled notes are not used: the cheapest draw


def scoring_inputs(batch: int) -> tuple[np.ndarray, ...]:
    """Uniforms, sampling parameters and controls for calls whose drawn note is not used
    (greedy, no control given: the model's own distributions)."""
    return (np.zeros((batch, UNIFORMS), np.float32), np.tile(np.float32(GREEDY.temperature), (batch, 1)),
            np.tile(np.float32(GREEDY.top_p), (batch, 1)), controls.unset(batch))


def windows(notes: Sequence[np.ndarray], width: int, batch: int, stride: int
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of (windows [B, width, 4], the note after each [B, 4]) across all files."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    size = 0
    for seq in notes:
        if len(seq) <= width:
            continue
        # every window of the file as a view [n, width, 4]: copied only batch by batch
        x = np.lib.stride_tricks.sliding_window_view(seq[:-1], width, axis=0)[::stride].transpose(0, 2, 1)
        y = seq[width:][::stride]
        while len(x):
            take = min(batch - size, len(x))
            xs.append(x[:take])
            ys.append(y[:take])
            x, y, size = x[take:], y[take:], size + take
            if size == batch:
                yield np.concatenate(xs), np.concatenate(ys)
                xs, ys, size = [], [], 0
    if size:
        yield np.concatenate(xs), np.concatenate(ys)


Progress = Callable[[int, int], None]  # (predictions scored, predictions to score)


def window_count(notes: Sequence[np.ndarray], width: int, stride: int) -> int:
    """How many windows `windows` yields over these files."""
    return sum(len(range(0, len(seq) - width, stride)) for seq in notes if len(seq) > width)


WINDOW_POSITIONS = 16384  # notes per window-mode call: its logits ([B, T, 4, 128]) stay ~32 MB


def evaluate_window(backend: Backend, notes: Sequence[np.ndarray], batch: int | None = None,
                    stride: int = 1, on_progress: Progress | None = None) -> dict[str, float]:
    spec = backend.spec
    batch = batch or max(1, WINDOW_POSITIONS // spec.seq_len)
    totals = Totals(bins.counts(spec.config))
    total = window_count(notes, spec.seq_len, stride)
    for x, y in windows(notes, spec.seq_len, batch, stride):
        # the real next note given: the last row's logits are teacher-forced, as every other's
        out = backend.call(np.ascontiguousarray(x, np.float32), *zero_state(spec, len(x)), *scoring_inputs(len(x)),
                           np.ascontiguousarray(y, np.float32))
        totals.add(out.logits[:, -1], bins.index(spec.config, y))
        if on_progress:
            on_progress(totals.n, total)
    return totals.result()


def stateful_totals(backend: Backend, planner: LanePlanner, on_progress: Progress | None = None) -> Totals:
    """Every next note of every piece of the planner, each piece from a zero state, pieces side
    by side in the planner's lanes (the rows of one session, fed the real notes chunk by chunk,
    the state carried); the sums (not yet means), which distributed validation adds up across
    ranks."""
    spec = backend.spec
    totals = Totals(bins.counts(spec.config))
    plan = planner.plan(None)
    chunk, data = planner.seq_len, planner.data
    session = Session(backend, plan.starts.shape[1], seed=0, sampling=GREEDY)
    for s in range(plan.steps):
        x, y, mask = gather(data, plan.starts[s], plan.lengths[s], chunk, spec.config)
        session.reset(np.flatnonzero(plan.resets[s]))
        session.append(x)
        # the note after each chunk given, so its last row is teacher-forced as the others are
        session.give(data[np.minimum(plan.starts[s] + chunk, len(data) - 1)])
        session.step(feed_back=False)
        logits = session.last[1].logits  # type: ignore[index]
        totals.add(logits.reshape(-1, A, logits.shape[-1]), y.reshape(-1, A), mask.reshape(-1))
        if on_progress:
            on_progress(totals.n, plan.predictions)
    return totals


def evaluate_stateful(backend: Backend, notes: Sequence[np.ndarray], lanes: int = 32,
                      chunk: int = 256, on_progress: Progress | None = None) -> dict[str, float]:
    """Each file from a zero state, every next note, files side by side in `lanes` batch rows."""
    if not any(len(n) >= 2 for n in notes):
        return Totals(bins.counts(backend.spec.config)).result()
    planner = LanePlanner.of_notes(list(notes), chunk, lanes, reset_prob=0.0)
    return stateful_totals(backend, planner, on_progress).result()


def auto_stride(seq_len: int) -> int:
    """The default window stride: a window costs seq_len LSTM steps for one prediction, so every
    window of a split takes seq_len times the stateful pass (~10 min for the ASAP test split on
    a 2-core CPU); every (seq_len / 4)th window costs 4 times it and still scores thousands of
    notes (the stride used is in the report; --stride 1 scores every window)."""
    return max(1, seq_len // 4)


def use_scoring_kernels(needs_torch: bool) -> None:
    """Before a scoring process opens its model: oneDNN's LSTM for the long chunks of scoring,
    ~1.7x faster there than torch's own kernels (measured, 1 thread), which generation's
    one-note steps use. The switch is process-wide and set once (runtime/backends.py), so a
    process that also generates (eval --generation) keeps generation's kernels instead."""
    if needs_torch:
        use_torch_kernels(import_torch("scoring a torch model"), None, onednn=True)


def evaluate_model(backend: Backend, notes: Sequence[np.ndarray], modes: Sequence[str] = MODES,
                   stride: int | None = 1, on_progress: Callable[[str, int, int], None] | None = None
                   ) -> dict[str, Any]:
    """Score `notes` in each mode; on_progress(mode, done, total) while it runs. stride: every
    stride-th window in window mode (None: auto_stride)."""
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise OptionsError(f"--mode must be one of {', '.join(MODES)} (or both), got {', '.join(unknown) or 'none'}")
    if stride is not None:
        integer("stride", stride, 1)
    stride = stride or auto_stride(backend.spec.seq_len)
    report: dict[str, Any] = {"backend": backend.name, "seq_len": backend.spec.seq_len}

    def progress(mode: str) -> Progress | None:
        return (lambda done, total: on_progress(mode, done, total)) if on_progress else None

    if "window" in modes:
        report["window"] = evaluate_window(backend, notes, stride=stride, on_progress=progress("window"))
        report["window"]["stride"] = stride
    if "stateful" in modes:
        report["stateful"] = evaluate_stateful(backend, notes, on_progress=progress("stateful"))
    for mode in modes:  # a mode that scored nothing says why, rather than "0.0000 over 0"
        if not report[mode]["predictions"]:
            report[mode] = {"predictions": 0, "not_scored": _too_short(mode, notes, backend.spec.seq_len)}
    return report


def _too_short(mode: str, notes: Sequence[np.ndarray], seq_len: int) -> str:
    need = seq_len + 1 if mode == "window" else 2
    longest = max((len(n) for n in notes), default=0)
    which = "the file has" if len(notes) == 1 else f"the longest of the {len(notes)} files has"
    why = f"the model's seq_len {seq_len} + 1" if mode == "window" else "a note and the next"
    return f"{which} {longest} notes; {mode} mode needs {need} ({why})"


def evaluate_split(backend: Backend, corpus: "Corpus", split: str = "test",
                   modes: Sequence[str] = MODES, stride: int | None = None,
                   on_progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """`mpx eval`: score one split of a corpus (or "all" of it) in the given modes."""
    chosen = corpus.select(split)
    if not chosen.files:
        raise MpxError(f"the {split} split of this data is empty (DATA has "
                       f"{sum(side.get('files', 0) for side in corpus.sides.values()) or len(corpus.files)} "
                       "files: try --split all)")
    report = evaluate_model(backend, chosen.notes, modes, stride=stride, on_progress=on_progress)
    scored = sum(report[m]["predictions"] for m in modes if m in report)
    if not scored:
        raise MpxError(f"none of the {len(chosen.files)} files of the {split} split is long enough to "
                       f"score (window mode needs more than {backend.spec.seq_len} notes, stateful 2)")
    report["split"], report["files"] = split, len(chosen.files)
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report.get('model', '')} on {report.get('files', '?')} files "
             f"({report.get('split', '')} split), backend {report['backend']}",
             f"{'mode':<9} " + " ".join(f"{name + ' CE':>12}" for name in ATTRIBUTES)
             + f" {'pitch top-1':>12} {'predictions':>12}   (CE in nats per note)"]
    for mode in MODES:
        if mode in report and "not_scored" in report[mode]:
            lines.append(f"{mode:<9} not scored: {report[mode]['not_scored']}")
        elif mode in report:
            r = report[mode]
            lines.append(f"{mode:<9} " + " ".join(f"{r[name + '_ce']:>12.4f}" for name in ATTRIBUTES)
                         + f" {r['pitch_top1']:>12.4f} {r['predictions']:>12}")
    return "\n".join(lines)


GENERATION_FILES = 48  # pieces of the generation report by default (24 gave +-0.10 standard error)


def check_generation_files(files: int | None, generation: bool = True) -> None:
    """--files: how many pieces the generation report continues (None: GENERATION_FILES)."""
    if files is None:
        return
    if not generation:
        raise OptionsError("--files sets how many pieces --generation continues: add --generation "
                           "(--max-files limits the files scored)")
    if isinstance(files, bool) or not isinstance(files, int) or files < 1:
        raise OptionsError(f"--files must be an integer >= 1 (pieces to continue), got {files!r}")


def check_adherence(generator: Generator | None, adherence: bool, generation: bool) -> None:
    """--adherence: part of the generation report, for a model that takes controls."""
    if not adherence:
        return
    if not generation:
        raise OptionsError("--adherence measures how generation follows its controls: add --generation")
    if generator is not None and "controls" not in generator.spec.inputs:
        raise OptionsError("--adherence: this model takes no controls to follow (inputs "
                           f"{', '.join(generator.spec.inputs)})")


def generation_split(generator: Generator, corpus: "Corpus", split: str = "test", files: int | None = None,
                     options: GenerationOptions | None = None,
                     on_progress: Callable[[int, int], None] | None = None,
                     adherence: bool = False,
                     on_adherence: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The generation report (runtime/report.py) on `files` pieces (None: GENERATION_FILES)
    spread over one split: each piece's seed continued with the model's default sampling (or
    `options`); on_progress(pieces done, pieces) after each. With `adherence`, also control
    adherence (report.adherence) on the first ADHERENCE_SEEDS of those seeds (on_adherence(seeds
    done, seeds) after each)."""
    check_generation_files(files)
    check_adherence(generator, adherence, True)
    chosen = corpus.select(split)
    pieces = report.spread([(path.name, notes) for path, notes in zip(chosen.files, chosen.notes)],
                           GENERATION_FILES if files is None else files)
    options = options or GenerationOptions()

    def generate(seed: np.ndarray, rng_seed: int) -> np.ndarray:
        return generator.generate(seed, report.GENERATED, options, seed=rng_seed)

    out = report.generation_report(generate, pieces, on_piece=on_progress)
    out["split"], out["options"] = split, {k: v for k, v in vars(options).items() if v is not None}
    if adherence:
        cuts = [p for p in (report.cut(name, notes) for name, notes in pieces) if p is not None]
        out["adherence"] = adherence_of(generator, [p.seed for p in cuts[:report.ADHERENCE_SEEDS]], options,
                                        on_adherence)
        out["misses"].update({f"adherence_{k}": v for k, v in out["adherence"]["misses"].items()})
    return out


def adherence_of(generator: Generator, seeds: Sequence[np.ndarray], options: GenerationOptions | None = None,
                 on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """report.adherence through the runtime: per seed one session, one take per request (the
    control asked for, its family released, the others held at the primer's summaries, as
    generation does), ADHERENCE_NOTES notes each, seeded 1000 + the seed's index."""
    options = options or GenerationOptions()

    def run(seed: np.ndarray, requests: list[tuple[str, float]], index: int) -> np.ndarray:
        takes = tuple(Take(controls={name: value}) for name, value in requests)
        opts = generator.options(options, notes=report.ADHERENCE_NOTES, num_outputs=len(takes), takes=takes,
                                 seed=1000 + index, controls=None, key=None, seconds=None)
        return generator.rollout(seed, opts).notes

    return report.adherence(run, seeds, on_seed=on_progress)
