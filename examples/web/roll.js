// Piano roll on a canvas: the primer in grey, the generated notes in blue (brighter = louder).
import { NOTE_WIDTH } from './mpx.js';

const MARGIN = { left: 38, right: 10, top: 10, bottom: 22 };
const PRIMER_COLOUR = '#9aa0a6';
const BLACK_KEYS = new Set([1, 3, 6, 8, 10]);

/** Onset and release times (s) of notes [N * 4]: the first onset at `offset` + its step. */
export function noteTimes(notes, offset = 0) {
  const starts = [];
  const ends = [];
  let t = offset;
  for (let i = 0; i < notes.length; i += NOTE_WIDTH) {
    t += notes[i + 1];
    starts.push(t);
    ends.push(t + notes[i + 2]);
  }
  return { starts, ends };
}

/** Everything drawRoll needs, computed once per generation (the playhead redraws often). */
export function layoutRoll(primer, generated) {
  // The primer's first step points before the primer: its first note starts the roll at 0.
  const first = noteTimes(primer, -primer[1]);
  const last = first.starts[first.starts.length - 1] ?? 0;
  const second = noteTimes(generated, last);
  const notes = [];
  const add = (source, times, isGenerated) => times.starts.forEach((start, k) => notes.push({
    start, end: times.ends[k], pitch: source[k * NOTE_WIDTH], velocity: source[k * NOTE_WIDTH + 3], isGenerated,
  }));
  add(primer, first, false);
  add(generated, second, true);
  const pitches = notes.map((n) => n.pitch);
  let lo = Math.min(...pitches) - 2;
  let hi = Math.max(...pitches) + 2;
  if (hi - lo < 24) { const pad = (24 - (hi - lo)) / 2; lo -= Math.ceil(pad); hi += Math.floor(pad); }
  const end = Math.max(...notes.map((n) => n.end), 1);
  return { notes, lo, hi, end, split: second.starts[0] ?? last };
}

function fitCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(width * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return { ctx, width, height };
}

/** Draw the roll; `playhead` (s, on the roll's time axis) adds a red line. */
export function drawRoll(canvas, layout, playhead = null) {
  const { ctx, width, height } = fitCanvas(canvas);
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const rows = layout.hi - layout.lo + 1;
  const row = plotH / rows;
  const x = (t) => MARGIN.left + (t / layout.end) * plotW;
  const y = (pitch) => MARGIN.top + (layout.hi - pitch) * row;
  ctx.clearRect(0, 0, width, height);
  drawKeys(ctx, layout, x, y, row, plotW);
  drawTimeAxis(ctx, layout, x, height);
  ctx.fillStyle = 'rgba(154, 160, 166, 0.10)';
  ctx.fillRect(MARGIN.left, MARGIN.top, x(layout.split) - MARGIN.left, plotH);
  for (const n of layout.notes) {
    const v = Math.min(Math.max(n.velocity / 127, 0), 1);
    ctx.fillStyle = n.isGenerated ? `hsla(218, 72%, ${62 - 30 * v}%, ${0.45 + 0.55 * v})` : PRIMER_COLOUR;
    ctx.fillRect(x(n.start), y(n.pitch) + 0.5, Math.max(2, x(n.end) - x(n.start)), Math.max(1.5, row - 1));
  }
  line(ctx, x(layout.split), MARGIN.top, plotH, '#5f6368', [4, 3]);
  if (playhead !== null) line(ctx, x(playhead), MARGIN.top, plotH, '#d93025', []);
}

function drawKeys(ctx, layout, x, y, row, plotW) {
  ctx.font = '11px system-ui, sans-serif';
  ctx.textBaseline = 'middle';
  for (let p = layout.lo; p <= layout.hi; p++) {
    if (BLACK_KEYS.has(p % 12)) {
      ctx.fillStyle = '#f0efe9';
      ctx.fillRect(MARGIN.left, y(p), plotW, row);
    }
    if (p % 12 === 0) {
      ctx.fillStyle = '#d5d2c8';
      ctx.fillRect(MARGIN.left, y(p) + row - 0.5, plotW, 1);
      ctx.fillStyle = '#6a6f76';
      ctx.fillText(`C${p / 12 - 1}`, 6, y(p) + row / 2);
    }
  }
}

function drawTimeAxis(ctx, layout, x, height) {
  const every = [1, 2, 5, 10, 20, 30, 60, 120].find((s) => layout.end / s <= 14) ?? 300;
  ctx.fillStyle = '#6a6f76';
  ctx.textBaseline = 'alphabetic';
  for (let t = 0; t <= layout.end; t += every) {
    ctx.fillRect(x(t), height - MARGIN.bottom, 1, 4);
    ctx.fillText(`${t}s`, x(t) + 2, height - 6);
  }
}

function line(ctx, x, top, length, colour, dash) {
  ctx.save();
  ctx.strokeStyle = colour;
  ctx.setLineDash(dash);
  ctx.beginPath();
  ctx.moveTo(x, top);
  ctx.lineTo(x, top + length);
  ctx.stroke();
  ctx.restore();
}
