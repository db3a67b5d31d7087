"""The generation report: does free-running music keep the pace, the tempo, the texture and the
dynamics of the piece it continues? Measured against the piece's real continuation.

Definitions (contract v2 issue; docs/benchmarks.md, "Generation report"):
- For each piece, the notes up to position SEED_NOTES (125; the middle of a piece shorter than
  twice that) are the seed; its last seq_len notes prime the model. GENERATED (512) notes are
  generated with the model's default sampling and compared with the piece's real next 512.
- Onsets closer than CHORD (30 ms) form one chord (quantised MIDI has 0, performances 5-30 ms);
  the inter-onset interval (IOI) is between chords. A raw median step is not a pace: where more
  than half the notes are chord notes it falls on a chord's few milliseconds.
- pace kept: median IOI of the last quarter / median IOI of the first quarter in [2/3, 1.5];
- tempo fidelity: generated median IOI / the real continuation's in [2/3, 1.5];
- chord gap: |chord share of the last generated quarter - chord share of the real continuation|;
- short notes: share of generated notes shorter than 10 ms;
- overlapping area (Yang & Lerch 2018: the sum over bins of the minimum of two normalised
  histograms) of pitch (128 bins), log(step + 0.01) with steps < 30 ms counted as 0 (40 bins over
  [log 0.01, log 4.01]), log(duration + 0.01) (40 bins over [log 0.01, log 8.01]) and velocity
  (32 bins of 4), generated vs real.
Pace kept and tempo fidelity are reported as the share of pieces inside the band; the other
figures as means over pieces. Every figure also has its ceiling: the same measurement with a
second real segment of the piece (the 512 notes after the continuation, or before the cut in
a short piece) in place of the generated notes, i.e. what real music scores on it. (On ASAP's
validation and test pieces real music keeps its pace in only ~70% of pieces and has a chord
gap of ~0.12: a pace that never moves scores above the ceiling there.)
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import controls as control_rules
from . import notes as note_rules
from .bins import TIME_OFFSET
from .config import ModelConfig

SEED_NOTES = 125
GENERATED = 512
CHORD = 0.030
SHORT = 0.010
BAND = (2 / 3, 1.5)
QUARTERS = 4
# bins, low, high of each attribute's histogram: times in log(t + 0.01) up to the default model's
# longest step and duration (4 s, 8 s), as its bins (runtime/bins.py)
_LONGEST = ModelConfig()
HISTOGRAMS: dict[str, tuple[int, float, float]] = {
    "pitch": (128, -0.5, 127.5),
    "step": (40, math.log(TIME_OFFSET), math.log(_LONGEST.step_max + TIME_OFFSET)),
    "duration": (40, math.log(TIME_OFFSET), math.log(_LONGEST.duration_max + TIME_OFFSET)),
    "velocity": (32, 0.0, 128.0),
}
TARGETS = {"pace_kept": 0.9, "tempo_fidelity": 0.75, "chord_gap": 0.08, "short_notes": 0.003,
           "overlap_velocity": 0.65, "overlap_duration": 0.72, "overlap_step": 0.75, "overlap_pitch": 0.58}
LOWER_IS_BETTER = ("chord_gap", "short_notes")


@dataclasses.dataclass(frozen=True)
class Piece:
    name: str
    seed: np.ndarray        # [S, 4] the notes before the cut
    real: np.ndarray        # [<= 512, 4] the real continuation
    second: np.ndarray      # another real segment of the piece, for the ceiling


def cut(name: str, notes: np.ndarray) -> Piece | None:
    """Seed / real continuation / second real segment of one piece; None when too short."""
    n = len(notes)
    at = SEED_NOTES if n >= 2 * SEED_NOTES else n // 2
    if at < 2 or n - at < 2 * QUARTERS:
        return None
    real = notes[at: at + GENERATED]
    after = notes[at + GENERATED: at + 2 * GENERATED]
    second = after if len(after) >= len(real) // 2 else notes[max(0, at - GENERATED): at]
    return Piece(name, notes[:at], real, second)


def chord_index(step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(onset time of each note, the chord it belongs to: 0, 1, ...): a note less than 30 ms
    after the previous onset joins its chord."""
    onsets = np.cumsum(step, dtype=np.float64)
    new = np.concatenate([[True], np.diff(onsets) >= CHORD]) if len(onsets) else np.zeros(0, bool)
    return onsets, np.cumsum(new) - 1


def chord_starts(step: np.ndarray) -> np.ndarray:
    """Onset times of the chords of a run of notes."""
    onsets, index = chord_index(step)
    return onsets[np.diff(index, prepend=-1) > 0]


def median_ioi(notes: np.ndarray) -> float:
    iois = np.diff(chord_starts(notes[:, note_rules.STEP]))
    return float(np.median(iois)) if len(iois) else math.nan


def chord_share(notes: np.ndarray) -> float:
    """Share of notes that sound in a chord of two or more onsets less than 30 ms apart."""
    if len(notes) < 2:
        return 0.0
    joins = np.diff(np.cumsum(notes[:, note_rules.STEP], dtype=np.float64)) < CHORD  # note i+1 joins note i
    in_chord = np.zeros(len(notes), bool)
    in_chord[1:] |= joins
    in_chord[:-1] |= joins
    return float(in_chord.mean())


def histogram(name: str, notes: np.ndarray) -> np.ndarray:
    bins, low, high = HISTOGRAMS[name]
    values = notes[:, note_rules.INDEX[name]].astype(np.float64)
    if name == "step":
        values = np.log(np.where(values < CHORD, 0.0, values) + TIME_OFFSET)
    elif name == "duration":
        values = np.log(np.maximum(values, 0.0) + TIME_OFFSET)
    width = (high - low) / bins
    index = np.clip(np.floor((values - low) / width), 0, bins - 1).astype(np.int64)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def overlap(name: str, a: np.ndarray, b: np.ndarray) -> float:
    return float(np.minimum(histogram(name, a), histogram(name, b)).sum())


def in_band(ratio: float) -> bool:
    return bool(BAND[0] <= ratio <= BAND[1])


def measure(generated: np.ndarray, piece: Piece) -> dict[str, Any]:
    """Every figure of one piece."""
    quarter = len(generated) // QUARTERS
    first, last = generated[:quarter], generated[-quarter:]
    pace = median_ioi(last) / median_ioi(first)
    tempo = median_ioi(generated) / median_ioi(piece.real)
    row: dict[str, Any] = {
        "piece": piece.name, "pace_ratio": pace, "pace_kept": in_band(pace),
        "tempo_ratio": tempo, "tempo_fidelity": in_band(tempo),
        "chord_share_first": chord_share(first), "chord_share_last": chord_share(last),
        "chord_share_real": chord_share(piece.real),
        "chord_gap": abs(chord_share(last) - chord_share(piece.real)),
        "short_notes": float(np.mean(generated[:, note_rules.DURATION] < SHORT)),
    }
    for name in HISTOGRAMS:
        row[f"overlap_{name}"] = overlap(name, generated, piece.real)
    return row


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Shares of pieces for the two bands, means for the rest."""
    keys = ["pace_kept", "tempo_fidelity", "chord_gap", "short_notes",
            "chord_share_first", "chord_share_last", "chord_share_real", *(f"overlap_{n}" for n in HISTOGRAMS)]
    out = {k: float(np.mean([float(r[k]) for r in rows])) for k in keys}
    out["median_pace_ratio"] = float(np.nanmedian([r["pace_ratio"] for r in rows]))
    out["median_tempo_ratio"] = float(np.nanmedian([r["tempo_ratio"] for r in rows]))
    out["pieces"] = len(rows)
    return out


def misses(summary: dict[str, float]) -> dict[str, str]:
    """The targets the summary misses, each with its figure."""
    out = {}
    for key, goal in TARGETS.items():
        value = summary[key]
        ok = value <= goal if key in LOWER_IS_BETTER else value >= goal
        if not ok:
            out[key] = f"{value:.3f} ({'<=' if key in LOWER_IS_BETTER else '>='} {goal})"
    return out


def generation_report(generate: Callable[[np.ndarray, int], np.ndarray],
                      pieces: Sequence[tuple[str, np.ndarray]],
                      on_piece: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run `generate(seed notes, rng seed) -> GENERATED notes` on every piece long enough, and
    measure. Each piece gets its own random seed (its index), so the report is repeatable."""
    cuts = [p for p in (cut(name, notes) for name, notes in pieces) if p is not None]
    rows, runs = [], []
    for i, piece in enumerate(cuts):
        runs.append(generate(piece.seed, i))
        rows.append(measure(runs[-1], piece))
        if on_piece:
            on_piece(i + 1, len(cuts))
    if not rows:
        return {"pieces": 0, "rows": [], "summary": {}, "skipped": len(pieces)}
    summary = summarise(rows)
    ceiling = summarise([measure(piece.second, piece) for piece in cuts])
    moved, intervals = drift_report(runs, cuts), interval_report(runs, cuts)
    return {"summary": summary, "ceiling": ceiling, "drift": moved, "intervals": intervals,
            "misses": {**misses(summary), **v3_misses(moved, intervals)}, "rows": rows,
            "skipped": len(pieces) - len(cuts)}


def spread(items: Sequence[Any], count: int | None) -> list[Any]:
    """`count` items spread evenly over a sorted sequence (all of them for None)."""
    if count is None or count >= len(items):
        return list(items)
    return [items[int(i * len(items) / count)] for i in range(count)]


def format_report(report: dict[str, Any]) -> str:
    s = report.get("summary") or {}
    if not s:
        return "generation report: no piece is long enough to measure"
    real = report["ceiling"]
    lines = [f"generation: {s['pieces']} pieces, {GENERATED} notes each (real music: a second real segment of each piece)",
             f"{'figure':<18} {'generated':>9} {'real':>8} {'target':>8}"]
    for key in TARGETS:
        name = key.replace("overlap_", "overlap ")
        goal = f"{'<=' if key in LOWER_IS_BETTER else '>='}{TARGETS[key]:g}"
        lines.append(f"{name:<18} {s[key]:>9.3f} {real[key]:>8.3f} {goal:>8}"
                     + ("" if key not in report.get("misses", {}) else "  MISS"))
    lines.append(f"median pace ratio {s['median_pace_ratio']:.2f}, median tempo ratio "
                 f"{s['median_tempo_ratio']:.2f}; chord share first/last quarter/real "
                 f"{s['chord_share_first']:.2f}/{s['chord_share_last']:.2f}/{s['chord_share_real']:.2f}")
    if "intervals" in report:
        lines += format_v3(report)
    if "adherence" in report:
        lines += format_adherence(report["adherence"])
    return "\n".join(lines)


# -- contract v3 additions: drift per quarter, voice leading, control adherence ----------------
INTERVAL_RANGE = 24  # semitones: consecutive-note pitch intervals are clipped to -24..24


def quarter_figures(notes: np.ndarray) -> dict[str, list[float]]:
    """Per quarter of a run of notes: median onset gap (between chords, as median_ioi), mean
    pitch, median duration, chord share."""
    out: dict[str, list[float]] = {"ioi": [], "pitch": [], "duration": [], "chord_share": []}
    for part in np.array_split(np.asarray(notes, np.float64), QUARTERS):
        out["ioi"].append(median_ioi(part) if len(part) > 1 else math.nan)
        out["pitch"].append(float(part[:, 0].mean()) if len(part) else math.nan)
        out["duration"].append(float(np.median(part[:, 2])) if len(part) else math.nan)
        out["chord_share"].append(chord_share(part))
    return out


def drift(notes: np.ndarray) -> dict[str, float]:
    """How a run moves from its first quarter to its last: onset-gap and duration ratios
    (last / first), mean-pitch and chord-share changes (last - first)."""
    q = quarter_figures(notes)
    return {"ioi_ratio": q["ioi"][-1] / q["ioi"][0], "pitch_change": q["pitch"][-1] - q["pitch"][0],
            "pitch_change_abs": abs(q["pitch"][-1] - q["pitch"][0]),
            "duration_ratio": q["duration"][-1] / q["duration"][0],
            "chord_share_change": q["chord_share"][-1] - q["chord_share"][0]}


def drift_report(generated: Sequence[np.ndarray], pieces: Sequence[Piece]) -> dict[str, Any]:
    """Drift of the generated runs beside the real continuations' (medians over pieces; the
    per-quarter medians too), and the generated median duration over the real one."""
    def medians(rows: list[dict[str, float]]) -> dict[str, float]:
        return {k: float(np.nanmedian([r[k] for r in rows])) for k in rows[0]}

    def per_quarter(runs: Sequence[np.ndarray]) -> dict[str, list[float]]:
        figures = [quarter_figures(r) for r in runs]
        return {k: [float(np.nanmedian([f[k][i] for f in figures])) for i in range(QUARTERS)] for k in figures[0]}

    real = [p.real for p in pieces]
    gen_duration = [float(np.median(g[:, 2])) for g in generated]
    real_duration = [float(np.median(r[:, 2])) for r in real]
    return {"generated": medians([drift(g) for g in generated]), "real": medians([drift(r) for r in real]),
            "quarters": {"generated": per_quarter(generated), "real": per_quarter(real)},
            "median_duration": {"generated": float(np.median(gen_duration)), "real": float(np.median(real_duration))},
            "duration_vs_real": float(np.median(np.array(gen_duration) / np.maximum(real_duration, 1e-9)))}


def interval_histogram(notes: np.ndarray) -> np.ndarray:
    steps = np.clip(np.diff(np.asarray(notes, np.float64)[:, 0]), -INTERVAL_RANGE, INTERVAL_RANGE)
    counts = np.bincount(np.rint(steps).astype(np.int64) + INTERVAL_RANGE, minlength=2 * INTERVAL_RANGE + 1)
    return counts / max(counts.sum(), 1)


def interval_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Overlapping area of the consecutive-note pitch-interval histograms (voice leading)."""
    return float(np.minimum(interval_histogram(a), interval_histogram(b)).sum())


def interval_report(generated: Sequence[np.ndarray], pieces: Sequence[Piece]) -> dict[str, float]:
    """Mean over pieces of the interval overlap with the real continuation; real music's (a
    second real segment) beside it."""
    return {"generated": float(np.mean([interval_overlap(g, p.real) for g, p in zip(generated, pieces)])),
            "real": float(np.mean([interval_overlap(p.second, p.real) for p in pieces]))}


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their mean rank."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="mergesort")
    ranked = np.empty(len(values))
    ranked[order] = np.arange(1, len(values) + 1)
    for v in np.unique(values):
        tied = values == v
        ranked[tied] = ranked[tied].mean()
    return ranked


def adherence_figures(requested: np.ndarray, made: np.ndarray) -> dict[str, float]:
    """Spearman rank correlation between requested and generated values of a control, the
    median relative error |made - requested| / requested (requests > 0), the median absolute
    error."""
    requested, made = np.asarray(requested, np.float64), np.asarray(made, np.float64)
    if len(requested) < 3:
        return {"rank_correlation": math.nan, "median_relative_error": math.nan,
                "median_absolute_error": math.nan, "n": len(requested)}
    rho = float(np.corrcoef(ranks(requested), ranks(made))[0, 1])
    positive = requested > 0
    error = np.abs(made - requested)
    return {"rank_correlation": rho,
            "median_relative_error": float(np.median(error[positive] / requested[positive])) if positive.any() else math.nan,
            "median_absolute_error": float(np.median(error)), "n": int(len(requested))}


# Targets of the v3 figures (issue 19): the generated drift within these of the real
# continuation's (medians over pieces: the onset-gap ratio Q4/Q1, and the size of the mean-pitch
# change, |Q4 - Q1| in semitones: a signed median would let rises and falls cancel), the
# interval overlap no more than this below real music's own (as the other overlaps: a score
# above real's is no miss).
DRIFT_TARGETS = {"ioi_ratio": 0.08, "pitch_change_abs": 1.0}
INTERVAL_TARGET = 0.05
QUARTER_FIGURES = {"ioi": "onset gap (s)", "pitch": "mean pitch", "duration": "duration (s)",
                   "chord_share": "chord share"}


def v3_misses(moved: dict[str, Any], intervals: dict[str, float]) -> dict[str, str]:
    """The drift and voice-leading targets missed, each with its figures."""
    out = {}
    for key, most in DRIFT_TARGETS.items():
        made, real = moved["generated"][key], moved["real"][key]
        if not abs(made - real) <= most:  # NaN misses too
            out[f"drift_{key}"] = f"{made:.3f} vs real {real:.3f} (within {most:g})"
    made, real = intervals["generated"], intervals["real"]
    if not made >= real - INTERVAL_TARGET:  # above real's own score is no miss (a copy scores 1)
        out["overlap_interval"] = f"{made:.3f} vs real {real:.3f} (>= real - {INTERVAL_TARGET:g})"
    return out


def format_v3(report: dict[str, Any]) -> list[str]:
    """The per-quarter drift and the interval overlap, generated beside real."""
    moved, intervals, missed = report["drift"], report["intervals"], report.get("misses", {})
    q = moved["quarters"]
    lines = [f"{'drift (medians)':<18} {'Q1':>7} {'Q2':>7} {'Q3':>7} {'Q4':>7}   Q4 vs Q1"]
    change = {"ioi": "ioi_ratio", "pitch": "pitch_change", "duration": "duration_ratio",
              "chord_share": "chord_share_change"}
    for key, name in QUARTER_FIGURES.items():
        for side in ("generated", "real"):
            figure = change[key]
            value = moved[side][figure]
            how = f"x{value:.2f}" if figure.endswith("ratio") else f"{value:+.2f}"
            if key == "pitch":
                how += f" (size {moved[side]['pitch_change_abs']:.2f})"
            flag = "  MISS" if side == "generated" and ({f"drift_{figure}", f"drift_{figure}_abs"} & set(missed)) else ""
            lines.append(f"{name if side == 'generated' else '':<18} "
                         + " ".join(f"{v:>7.3f}" if key != "pitch" else f"{v:>7.1f}" for v in q[side][key])
                         + f"   {how} {side}{flag}")
    lines.append(f"{'overlap interval':<18} {intervals['generated']:>9.3f} {intervals['real']:>8.3f} "
                 f"{'>=r-' + format(INTERVAL_TARGET, 'g'):>8}" + ("  MISS" if "overlap_interval" in missed else ""))
    lines.append(f"median duration generated/real {moved['median_duration']['generated']:.3f}/"
                 f"{moved['median_duration']['real']:.3f} s (per piece, median ratio {moved['duration_vs_real']:.2f})")
    return lines


# Control adherence: each control asked for at ADHERENCE_VALUES values across its typical range
# (controls.TYPICAL) on the first ADHERENCE_SEEDS seeds, ADHERENCE_NOTES notes each; the
# summaries of what is generated against what was asked.
ADHERENCE_SEEDS = 24
ADHERENCE_VALUES = 5
ADHERENCE_NOTES = 256
ADHERENCE_RANK = 0.9
ADHERENCE_ERROR = {"density": 0.15, "velocity_mean": 0.15}


def adherence_requests() -> list[tuple[str, float]]:
    """(control, value) of every request: ADHERENCE_VALUES per control, in contract order."""
    return [(name, float(v)) for name in control_rules.CONTROLS
            for v in np.linspace(*control_rules.TYPICAL[name], ADHERENCE_VALUES)]


def adherence(run: Callable[[np.ndarray, list[tuple[str, float]], int], np.ndarray],
              seeds: Sequence[np.ndarray], on_seed: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """`run(seed notes, requests, rng seed) -> [len(requests), n, 4]` (one take per request) on
    every seed; per control, adherence_figures of requested against generated (controls.summaries
    of the take; takes whose summary is not given are left out), and the targets missed."""
    requests = adherence_requests()
    asked, made, notes = [], [], 0
    for i, seed in enumerate(seeds):
        takes = np.asarray(run(seed, requests, i), np.float32)
        notes = takes.shape[1]
        made.append(control_rules.batch_summaries(takes, np.full(len(takes), takes.shape[1])))
        asked.append(np.array([v for _, v in requests]))
        if on_seed:
            on_seed(i + 1, len(seeds))
    if not made:
        return {"seeds": 0, "controls": {}, "misses": {}}
    got, want = np.stack(made), np.stack(asked)                       # [seeds, requests, C], [seeds, requests]
    figures, missed = {}, {}
    for j, name in enumerate(control_rules.CONTROLS):
        mine = [r for r, (control, _) in enumerate(requests) if control == name]
        req, out = want[:, mine].ravel(), got[:, mine, j].ravel()
        ok = out >= 0
        figures[name] = adherence_figures(req[ok], out[ok])
        rho, error = figures[name]["rank_correlation"], figures[name]["median_relative_error"]
        if not rho >= ADHERENCE_RANK:
            missed[f"{name}_rank"] = f"{rho:.3f} (>= {ADHERENCE_RANK:g})"
        if name in ADHERENCE_ERROR and not error <= ADHERENCE_ERROR[name]:
            missed[f"{name}_error"] = f"{error:.3f} (<= {ADHERENCE_ERROR[name]:g})"
    return {"seeds": len(seeds), "values": ADHERENCE_VALUES, "notes": int(notes), "controls": figures,
            "misses": missed}


def format_adherence(result: dict[str, Any]) -> list[str]:
    if not result.get("controls"):
        return ["control adherence: no seed to measure"]
    lines = [f"control adherence: {result['values']} values per control on {result['seeds']} seeds",
             f"{'control':<18} {'rank':>7} {'rel err':>8} {'abs err':>8} {'n':>5}"]
    for name, f in result["controls"].items():
        flag = "  MISS" if any(k in result["misses"] for k in (f"{name}_rank", f"{name}_error")) else ""
        lines.append(f"{name:<18} {f['rank_correlation']:>7.3f} {f['median_relative_error']:>8.3f} "
                     f"{f['median_absolute_error']:>8.3f} {f['n']:>5}{flag}")
    return lines
