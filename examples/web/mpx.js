// mpx.js: the graph contract v3 generation protocol in JavaScript.
//
// One implementation, imported as it is by the web page (onnxruntime-web) and by the Node
// script (onnxruntime-node): the portable random stream (SplitMix64, counter-based), the
// controls (the musical summaries a v3 model follows, as mpx computes them), the spec inside
// the ONNX file, notes from MIDI with pretty_midi's conventions, notes to MIDI and CSV, and the
// generation loop (one primer call, then one call per note carrying the LSTM state).
// The ONNX runtime is passed in (`ort`), so this file never imports one itself.
// Bare imports resolve through node_modules in Node and through the page's import map.
import midiFile from 'midi-file';
import protobuf from 'protobufjs/minimal.js';

export const NOTE_WIDTH = 4;          // pitch, step (s), duration (s), velocity
export const UNIFORM_WIDTH = 8;       // per note: 4 bin choices + 4 positions inside the bin
export const CSV_HEADER = 'pitch,step,duration,velocity';
export const CONTRACT = 3;           // the graph contract this module runs
const INPUTS = ['notes', 'h0', 'c0', 'uniforms', 'temperature', 'top_p', 'controls', 'given'];
const OUTPUTS = ['next_note', 'hn', 'cn', 'logits'];
// The prototype artifacts carry no `sampling` in their spec; the contract says to use these.
const DEFAULT_SAMPLING = { temperature: [1, 1, 1, 1], top_p: [0.95, 0.95, 0.95, 0.95] };
const MAX_NOTES = 100000;
const MAX_TICK = 1e7;                 // pretty_midi's limit: a larger tick means a corrupt file

/** A user-facing error: its message is one line, fit to show as it is. */
export class MpxError extends Error {
  constructor(message) { super(message); this.name = 'MpxError'; }
}

// ---- the portable random stream ---------------------------------------------------------------

const MASK64 = (1n << 64n) - 1n;

/** SplitMix64's output function on a uint64 (BigInt), wrapping modulo 2^64. */
export function splitmix64(x) {
  let z = (x + 0x9E3779B97F4A7C15n) & MASK64;
  z = ((z ^ (z >> 30n)) * 0xBF58476D1CE4E5B9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94D049BB133111EBn) & MASK64;
  return z ^ (z >> 31n);
}

/** key(seed, stream): computed once per stream, the counter then runs over the notes. */
export function streamKey(seed, stream = 0) {
  return splitmix64((splitmix64(BigInt(seed)) + BigInt(stream)) & MASK64);
}

/** The 8 uniforms of note `note` of a stream: uniform(seed, stream, 8 * note + j), float32-exact. */
export function noteUniforms(key, note, out = new Float32Array(UNIFORM_WIDTH)) {
  const base = key + BigInt(note) * BigInt(UNIFORM_WIDTH);
  for (let j = 0; j < UNIFORM_WIDTH; j++) {
    // 24 bits times 2^-24 is exact in float32, so no rounding can differ between languages.
    out[j] = Number(splitmix64((base + BigInt(j)) & MASK64) >> 40n) * 2 ** -24;
  }
  return out;
}

// ---- options -----------------------------------------------------------------------------------

/** A seed as typed by a user: a decimal integer 0..2^64-1, returned as a BigInt. */
export function parseSeed(value) {
  const text = String(value).trim();
  if (!/^\d+$/.test(text) || BigInt(text) > MASK64) {
    throw new MpxError(`seed must be an integer 0..18446744073709551615, got '${text}'`);
  }
  return BigInt(text);
}

/** Notes to generate: an integer 1..100000. */
export function parseCount(value, name = 'notes') {
  const text = String(value).trim();
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > MAX_NOTES) {
    throw new MpxError(`${name} must be an integer 1..${MAX_NOTES}, got '${text}'`);
  }
  return n;
}

/** One value for all four attributes, or four comma-separated (pitch, step, duration, velocity). */
export function parseFour(value, name, check, allowed) {
  const parts = Array.isArray(value) ? value.map(Number) : String(value).split(',').map((s) => (s.trim() === '' ? NaN : Number(s)));
  if (parts.length !== 1 && parts.length !== 4) {
    throw new MpxError(`${name} takes one value or four comma-separated values (pitch,step,duration,velocity), got '${value}'`);
  }
  const four = parts.length === 1 ? [parts[0], parts[0], parts[0], parts[0]] : parts;
  if (!four.every((x) => Number.isFinite(x) && check(x))) {
    throw new MpxError(`${name} must be ${allowed}, got '${value}'`);
  }
  return Float32Array.from(four);
}

export const parseTemperature = (v) => parseFour(v, 'temperature', (x) => x >= 0, '>= 0 (0 = greedy)');
export const parseTopP = (v) => parseFour(v, 'top-p', (x) => x > 0 && x <= 1, 'in (0, 1] (1 = off)');

// ---- controls (graph contract v3) ---------------------------------------------------------------
// The musical summaries a v3 model follows, computed exactly as mpx computes them
// (runtime/controls.py): every sum and quotient in float64 in the same order, then rounded to
// float32, so the page, Node, C++ and Python give the same bits for the same notes.

export const CHORD = 0.030;           // seconds: onsets closer than this form one chord
export const WINDOW = 64;             // the primer's last WINDOW notes give the default controls
export const MIN_NOTES = 16;          // fewer notes give no summaries (every control not given)
export const NOT_GIVEN = -1;          // any negative value: not given (the model's learned default)
export const PITCH_CLASSES = Array.from({ length: 12 }, (_, k) => `pc${k}`);
export const CONTROLS = ['density', 'chord_share', 'pitch_mean', 'pitch_spread', 'velocity_mean', 'duration_median', ...PITCH_CLASSES];
const UNITS = {
  density: 'onsets/s', chord_share: 'share of notes', pitch_mean: 'MIDI pitch', pitch_spread: 'semitones (standard deviation)',
  velocity_mean: 'MIDI velocity', duration_median: 'seconds', ...Object.fromEntries(PITCH_CLASSES.map((n) => [n, 'share of notes'])),
};
// What a caller may request (inclusive); values outside are refused naming the control.
export const CONTROL_RANGES = {
  density: [0.1, 50], chord_share: [0, 1], pitch_mean: [0, 127], pitch_spread: [0, 64], velocity_mean: [1, 127],
  duration_median: [0, 8], ...Object.fromEntries(PITCH_CLASSES.map((n) => [n, [0, 1]])),
};
// A control a caller sets releases the others of its family from the primer's values; the
// register is left to the model unless asked for (runtime/controls.py, FAMILIES and HELD).
const FAMILIES = [['density', 'chord_share', 'duration_median'], ['pitch_mean', 'pitch_spread'], ['velocity_mean'], PITCH_CLASSES];
const HELD = CONTROLS.filter((n) => n !== 'pitch_mean' && n !== 'pitch_spread');
// Pitch-class profiles of major and minor music, tonic at 0 (runtime/controls.py KEY_PROFILES).
const KEY_PROFILES = {
  major: [0.1553, 0.0343, 0.1016, 0.0435, 0.1103, 0.1002, 0.0384, 0.1429, 0.0521, 0.0940, 0.0468, 0.0806],
  minor: [0.1575, 0.0527, 0.0791, 0.1118, 0.0474, 0.1031, 0.0373, 0.1371, 0.1005, 0.0403, 0.0740, 0.0592],
};
const TONICS = { c: 0, d: 2, e: 4, f: 5, g: 7, a: 9, b: 11 };
const ACCIDENTALS = { '': 0, '#': 1, '♯': 1, b: -1, '♭': -1 };
const MODES = { '': 'major', major: 'major', maj: 'major', minor: 'minor', min: 'minor', m: 'minor' };

/** The controls of a run of notes (Float32Array [m * 4]): Float32Array [C]. Every control not
 * given below MIN_NOTES notes, density not given when the run is one chord. */
export function summaries(notes) {
  const m = Math.floor(notes.length / NOTE_WIDTH);
  const out = new Float32Array(CONTROLS.length).fill(NOT_GIVEN);
  if (m < MIN_NOTES) return out;
  const pitch = new Float64Array(m);
  const durations = new Float64Array(m);
  const classes = new Array(12).fill(0);
  let s1 = 0;
  let s2 = 0;
  let velocities = 0;
  let chords = 1;      // note 1 starts the first chord
  let lastStart = 0;
  let inChord = 0;
  for (let i = 0; i < m; i++) {
    const p = Math.floor(notes[i * NOTE_WIDTH] + 0.5);
    const step = notes[i * NOTE_WIDTH + 1];
    pitch[i] = p;
    durations[i] = notes[i * NOTE_WIDTH + 2];
    s1 += p;             // sums of integers: exact in float64, in any order
    s2 += p * p;
    velocities += Math.floor(notes[i * NOTE_WIDTH + 3] + 0.5);
    classes[((p % 12) + 12) % 12] += 1;
    if (i > 0 && step >= CHORD) { chords += 1; lastStart = i; }
    const joinsPrevious = i > 0 && step < CHORD;
    const joinedByNext = i + 1 < m && notes[(i + 1) * NOTE_WIDTH + 1] < CHORD;
    if (joinsPrevious || joinedByNext) inChord += 1;
  }
  let span = 0;          // s_2 + ... + s_j, left to right: the one sum of non-integers
  for (let i = 1; i <= lastStart; i++) span += notes[i * NOTE_WIDTH + 1];
  durations.sort();
  const median = (durations[(m - 1) >> 1] + durations[m >> 1]) / 2;
  const values = [
    chords > 1 ? (chords - 1) / (span > 0 ? span : 1) : NOT_GIVEN,
    inChord / m,
    s1 / m,
    Math.sqrt(Math.max(m * s2 - s1 * s1, 0) / (m * m)),
    velocities / m,
    median,
    ...classes.map((k) => k / m),
  ];
  out.set(values);       // rounded to float32, the graph's input type
  return out;
}

/** The generation default: the summaries of the primer's last WINDOW notes. */
export function primerSummaries(primer) {
  return summaries(primer.subarray(Math.max(primer.length / NOTE_WIDTH - WINDOW, 0) * NOTE_WIDTH));
}

const familyOf = (name) => FAMILIES.find((f) => f.includes(name));

/** The controls generation feeds after `primer` (Float32Array [C]), as `mpx run` resolves them:
 * the requested ones ({name: value}, null or negative = not given), the other members of their
 * families not given, the held ones at the primer's summaries, the rest (the register) not given. */
export function resolveControls(primer, requested = {}) {
  const unknown = Object.keys(requested).filter((n) => !CONTROLS.includes(n));
  if (unknown.length) throw new MpxError(`controls: unknown ${unknown.sort().join(', ')}; known: ${CONTROLS.join(', ')}`);
  const own = primerSummaries(primer);
  const released = new Set(Object.keys(requested).flatMap(familyOf));
  const out = new Float32Array(CONTROLS.length).fill(NOT_GIVEN);
  CONTROLS.forEach((name, i) => {
    if (Object.hasOwn(requested, name)) out[i] = requested[name] ?? NOT_GIVEN;
    else if (HELD.includes(name) && !released.has(name)) out[i] = own[i];
  });
  CONTROLS.forEach((name, i) => checkControl(name, out[i]));
  return out;
}

const showRange = (name) => `${CONTROL_RANGES[name][0]}..${CONTROL_RANGES[name][1]} ${UNITS[name]}`;

/** A control's value must be a number in its range, or negative (not given). */
export function checkControl(name, value, label = name) {
  const [low, high] = CONTROL_RANGES[name];
  if (!Number.isFinite(value) || (value >= 0 && (value < low || value > high))) {
    throw new MpxError(`${label} ${value} is out of range; allowed ${showRange(name)}, or none (not given)`);
  }
  return value;
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** A control as a user types it: a number in its range, or "none" (null) or a negative number
 * for not given (the model's learned default). */
export function parseControl(name, text, label = `--${name.replaceAll('_', '-')}`) {
  const t = String(text).trim();
  if (/^none$/i.test(t)) return null;
  const value = NUMBER.test(t) ? Number(t) : NaN;
  if (!Number.isFinite(value)) throw new MpxError(`${label} must be a number (${showRange(name)}) or none, got '${t}'`);
  return checkControl(name, value, label);
}

/** "D minor", "F# major", "Bb", "eb min" -> the 12 pitch-class shares of that key (Float32Array). */
export function keyProfile(name, label = '--key') {
  const text = String(name).trim().split(/\s+/).join(' ');
  const chars = Array.from(text);   // code points, as Python indexes a str
  const tonic = (chars[0] ?? '').toLowerCase();
  const rest = chars.slice(1);
  const accidental = ['#', '♯', 'b', '♭'].includes(rest[0]) ? rest[0] : '';
  const mode = rest.slice(accidental ? 1 : 0).join('').trim().toLowerCase();
  if (!Object.hasOwn(TONICS, tonic) || !Object.hasOwn(MODES, mode)) {
    throw new MpxError(`${label} '${name}' is not a key; write a tonic A-G, optionally # or b, then major or minor (e.g. 'D minor', 'F# major', 'Bb')`);
  }
  const shift = (((TONICS[tonic] + ACCIDENTALS[accidental]) % 12) + 12) % 12;
  const base = Float32Array.from(KEY_PROFILES[MODES[mode]]);
  return Float32Array.from(base, (_, k) => base[(k - shift + 12) % 12]);
}

/** The controls fed, one line each: `name value (where it comes from)`, the value as %.9g. */
export function describeControls(controls, requested = {}) {
  return CONTROLS.map((name, i) => {
    const value = controls[i];
    const asked = Object.hasOwn(requested, name);
    if (value < 0) return `${name} not given (the model's choice)${asked ? ', as asked' : ''}`;
    return `${name} ${formatFloat(value)} ${UNITS[name]} (${asked ? 'asked' : 'the primer\'s'})`;
  });
}

const KEY_NAMES = ['C', 'C#', 'D', 'Eb', 'E', 'F', 'F#', 'G', 'Ab', 'A', 'Bb', 'B'];

/** The key whose profile (KEY_PROFILES rotated) is closest in direction (cosine) to a
 * pitch-class profile: what a page can show for a seed's pc0..pc11. null when not given. */
export function closestKey(profile) {
  if (profile.length !== 12 || profile.some((x) => !(x >= 0))) return null;
  let best = null;
  let bestScore = -Infinity;
  for (const mode of ['major', 'minor']) {
    for (let tonic = 0; tonic < 12; tonic++) {
      const key = keyProfile(`${KEY_NAMES[tonic]} ${mode}`);
      let dot = 0;
      let norm = 0;
      for (let k = 0; k < 12; k++) { dot += key[k] * profile[k]; norm += key[k] * key[k]; }
      const score = dot / Math.sqrt(norm);
      if (score > bestScore) { bestScore = score; best = `${KEY_NAMES[tonic]} ${mode}`; }
    }
  }
  return best;
}

/** The requested controls {name: value|null} from what a user typed per control (a control's
 * name, or `key`, -> text; blank = follow the primer). `labelOf(name)` names a field in an
 * error: the flag (--chord-share) by default, a page passes its fields' labels. */
export function requestedControls(typed, labelOf = (name) => `--${name.replaceAll('_', '-')}`) {
  const requested = {};
  for (const [name, text] of Object.entries(typed)) {
    if (text === undefined || String(text).trim() === '') continue;
    if (name === 'key') {
      const profile = /^none$/i.test(String(text).trim()) ? null : keyProfile(text, labelOf('key'));
      PITCH_CLASSES.forEach((pc, k) => { requested[pc] = profile ? profile[k] : null; });
    } else if (CONTROLS.includes(name)) {
      requested[name] = parseControl(name, text, labelOf(name));
    } else {
      throw new MpxError(`unknown control '${name}'; known: ${CONTROLS.slice(0, 6).join(', ')}, key`);
    }
  }
  return requested;
}

// ---- the spec inside the ONNX file ------------------------------------------------------------

/** The key/value pairs of ModelProto.metadata_props (field 14), read from the model's bytes.
 * onnxruntime's JavaScript API exposes no custom metadata, so we walk the protobuf ourselves;
 * every other field (the graph with its weights included) is skipped, not decoded. */
export function readMetadata(modelBytes) {
  const props = {};
  try {
    const reader = protobuf.Reader.create(modelBytes);
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      if (tag >>> 3 === 14 && (tag & 7) === 2) {
        const [key, value] = readStringPair(reader.bytes());
        props[key] = value;
      } else {
        reader.skipType(tag & 7);
      }
    }
  } catch (err) {
    throw new MpxError(`not an ONNX model (cannot read its protobuf: ${err.message})`);
  }
  return props;
}

function readStringPair(bytes) {
  const reader = protobuf.Reader.create(bytes);
  let key = '';
  let value = '';
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag === ((1 << 3) | 2)) key = reader.string();
    else if (tag === ((2 << 3) | 2)) value = reader.string();
    else reader.skipType(tag & 7);
  }
  return [key, value];
}

/** The spec's contract must be this module's: older models cannot be converted, only retrained. */
function checkContract(version) {
  if (!Number.isInteger(version) || version < 1) throw new MpxError('the model\'s mpx spec has no valid spec_version');
  if (version > CONTRACT) throw new MpxError(`the model follows graph contract v${version}, newer than this consumer (v${CONTRACT}): update the examples`);
  if (version < CONTRACT) {
    throw new MpxError(`the model follows graph contract v${version}; this consumer runs v${CONTRACT} (controls, per-row sampling): `
      + `a v${version} model cannot be converted, train and export a new one with mpx (mpx train, then mpx export)`);
  }
}

/** The controls the model reads must be the ones defined here, in this order. */
function checkControlNames(names) {
  if (names === undefined) return;
  if (!Array.isArray(names) || names.join(',') !== CONTROLS.join(',')) {
    throw new MpxError(`the model's controls (${Array.isArray(names) ? names.join(', ') : String(names)}) are not the ones this consumer computes (${CONTROLS.join(', ')})`);
  }
}

/** The mpx spec (JSON in metadata_props["mpx_spec"]) with the facts generation needs. */
export function readSpec(modelBytes) {
  const text = readMetadata(modelBytes).mpx_spec;
  if (text === undefined) throw new MpxError('the model carries no mpx spec (metadata_props["mpx_spec"]): not an mpx artifact');
  let spec;
  try { spec = JSON.parse(text); } catch { throw new MpxError('the model\'s mpx spec is not valid JSON'); }
  checkContract(spec.spec_version);
  checkControlNames(spec.controls?.names);
  const layers = spec.config?.layers;
  const hidden = spec.config?.hidden;
  const seqLen = spec.seq_len;
  if (![layers, hidden, seqLen].every((x) => Number.isInteger(x) && x > 0)) {
    throw new MpxError('the model\'s spec lacks config.layers, config.hidden or seq_len');
  }
  const sampling = spec.sampling ?? DEFAULT_SAMPLING;
  return {
    raw: spec, layers, hidden, seqLen,
    temperature: Float32Array.from(sampling.temperature ?? DEFAULT_SAMPLING.temperature),
    topP: Float32Array.from(sampling.top_p ?? DEFAULT_SAMPLING.top_p),
  };
}

// ---- notes from MIDI, the pretty_midi way ----------------------------------------------------

/** MIDI bytes -> notes Float32Array [N * 4], exactly as mpx reads them through pretty_midi:
 * every non-drum instrument merged, ordered by start, pitch, end; times in seconds through the
 * tempo map of track 0; steps and durations computed in float64, then rounded to float32. */
export function notesFromMidi(bytes, label = 'the file') {
  const midi = parseMidiBytes(bytes, label);
  const ppq = midi.header.ticksPerBeat;
  const timeOf = tickToTime(midi.tracks[0] ?? [], ppq);
  const notes = [];
  for (const instrument of instrumentsOf(midi.tracks, label)) {
    if (!instrument.drum) notes.push(...instrument.notes.map((n) => ({ ...n, start: timeOf(n.startTick), end: timeOf(n.endTick) })));
  }
  if (notes.length === 0) throw new MpxError(`${label} holds no notes`);
  // Array.prototype.sort is stable, like numpy's lexsort: full ties keep pretty_midi's order.
  notes.sort((a, b) => a.start - b.start || a.pitch - b.pitch || a.end - b.end);
  const out = new Float32Array(notes.length * NOTE_WIDTH);
  notes.forEach((n, i) => {
    out.set([n.pitch, i === 0 ? 0 : n.start - notes[i - 1].start, n.end - n.start, n.velocity], i * NOTE_WIDTH);
  });
  return out;
}

function parseMidiBytes(bytes, label) {
  if (bytes.length === 0) throw new MpxError(`${label} is empty (0 bytes)`);
  if (String.fromCharCode(...bytes.subarray(0, 4)) !== 'MThd') {
    throw new MpxError(`${label} is not a MIDI file (no MThd header)`);
  }
  checkChunks(bytes, label);
  let midi;
  try {
    midi = midiFile.parseMidi(bytes);
  } catch (err) {
    throw new MpxError(`${label}: cannot parse MIDI (${String(err?.message ?? err)})`);
  }
  if (!midi.header.ticksPerBeat) throw new MpxError(`${label}: SMPTE time division is not supported, only ticks per beat`);
  return midi;
}

/** midi-file reads past a chunk's end without a word; a truncated file must say so instead.
 * Like mido, only the header and the tracks it announces are read; anything after is ignored. */
function checkChunks(bytes, label) {
  if (bytes.length < 14) throw new MpxError(`${label}: cannot parse MIDI (file ends early, truncated?)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const chunks = 1 + view.getUint16(10);
  for (let pos = 0, k = 0; k < chunks; k++) {
    pos += 8 + (pos + 8 <= bytes.length ? view.getUint32(pos + 4) : 0);
    if (pos > bytes.length) throw new MpxError(`${label}: cannot parse MIDI (file ends early, truncated?)`);
  }
}

/** tick -> seconds as pretty_midi computes it: tempo events of track 0 only, a tempo at tick 0
 * replaces the default 120 bpm, repeats of the current tempo are ignored; same float64 steps. */
function tickToTime(track0, ppq) {
  let scales = [{ tick: 0, scale: 60.0 / (120.0 * ppq) }];
  let tick = 0;
  for (const event of track0) {
    tick += event.deltaTime;
    if (event.type !== 'setTempo') continue;
    const scale = 60.0 / ((6e7 / event.microsecondsPerBeat) * ppq);
    if (tick === 0) scales = [{ tick: 0, scale }];
    else if (scale !== scales[scales.length - 1].scale) scales.push({ tick, scale });
  }
  scales[0].time = 0;
  for (let k = 1; k < scales.length; k++) {
    const prev = scales[k - 1];
    scales[k].time = prev.time + prev.scale * (scales[k].tick - prev.tick);
  }
  return (t) => {
    // The last segment starting at or before t (a later one at the same tick wins, as in pretty_midi).
    let lo = 0;
    for (let hi = scales.length - 1; lo < hi;) {
      const mid = (lo + hi + 1) >> 1;
      if (scales[mid].tick <= t) lo = mid; else hi = mid - 1;
    }
    return scales[lo].time + scales[lo].scale * (t - scales[lo].tick);
  };
}

/** pretty_midi's instruments, in its order: one per (program, channel, track), created when its
 * first note closes. A note-off closes every open note of its (channel, pitch) that started on an
 * earlier tick; a note-off on a note-on's own tick drops that note, as pretty_midi does. */
function instrumentsOf(tracks, label) {
  const instruments = new Map();
  tracks.forEach((events, track) => {
    const open = new Map();
    const program = new Array(16).fill(0);
    let tick = 0;
    for (const e of events) {
      tick += e.deltaTime;
      if (!Number.isFinite(tick) || tick > MAX_TICK) throw new MpxError(`${label}: cannot parse MIDI (tick ${tick} out of range, corrupt file?)`);
      checkDataBytes(e, label);
      if (e.type === 'programChange') program[e.channel] = e.programNumber;
      else if (e.type === 'noteOn') openNote(open, e, tick);
      else if (e.type === 'noteOff') closeNotes(open, e, tick, () => instrumentFor(instruments, program[e.channel], e.channel, track));
    }
  });
  return instruments.values();
}

const DATA_FIELDS = ['noteNumber', 'velocity', 'controllerType', 'programNumber', 'amount'];

/** mido (so mpx) rejects a channel event's data byte over 127; midi-file passes it on. */
function checkDataBytes(e, label) {
  if (e.channel === undefined) return;
  const values = DATA_FIELDS.map((k) => e[k]);
  if (e.type === 'controller') values.push(e.value);
  const inRange = values.every((v) => v === undefined || (v >= 0 && v <= 127));
  if (!inRange || (e.type === 'pitchBend' && !(e.value >= -8192 && e.value <= 8191))) {
    throw new MpxError(`${label}: cannot parse MIDI (data byte must be in range 0..127)`);
  }
}

function openNote(open, e, tick) {
  const key = e.channel * 128 + e.noteNumber;
  if (!open.has(key)) open.set(key, []);
  open.get(key).push({ tick, velocity: e.velocity });
}

function closeNotes(open, e, tick, instrument) {
  const key = e.channel * 128 + e.noteNumber;
  const notes = open.get(key);
  if (!notes) return;
  const close = notes.filter((n) => n.tick !== tick);
  const keep = notes.filter((n) => n.tick === tick);
  for (const n of close) instrument().notes.push({ pitch: e.noteNumber, velocity: n.velocity, startTick: n.tick, endTick: tick });
  if (close.length > 0 && keep.length > 0) open.set(key, keep);
  else open.delete(key);
}

function instrumentFor(instruments, program, channel, track) {
  const key = `${program},${channel},${track}`;
  if (!instruments.has(key)) instruments.set(key, { drum: channel === 9, notes: [] });
  return instruments.get(key);
}

// ---- notes to MIDI -----------------------------------------------------------------------------

/** Notes [N * 4] -> MIDI file bytes: one track, 960 ticks per beat at 120 bpm (as mpx writes),
 * velocities kept, every note at least one tick long (a zero-length note would vanish). */
export function notesToMidi(notes, { program = 0, tempo = 120, ppq = 960 } = {}) {
  const ticksPerSecond = (ppq * tempo) / 60;
  const events = [];
  let start = 0;
  for (let i = 0; i < notes.length; i += NOTE_WIDTH) {
    start += Math.max(notes[i + 1], 0);
    const on = Math.round(start * ticksPerSecond);
    const off = Math.max(Math.round((start + Math.max(notes[i + 2], 0)) * ticksPerSecond), on + 1);
    const noteNumber = Math.min(127, Math.max(0, Math.round(notes[i])));
    const velocity = Math.min(127, Math.max(1, Math.round(notes[i + 3])));
    events.push({ tick: on, order: 1, type: 'noteOn', channel: 0, noteNumber, velocity });
    events.push({ tick: off, order: 0, type: 'noteOff', channel: 0, noteNumber, velocity: 0 });
  }
  // At one tick, note-offs go first so a repeated pitch is not cut by its predecessor's end.
  events.sort((a, b) => a.tick - b.tick || a.order - b.order);
  const track = [
    { deltaTime: 0, meta: true, type: 'setTempo', microsecondsPerBeat: Math.round(6e7 / tempo) },
    { deltaTime: 0, type: 'programChange', channel: 0, programNumber: program },
  ];
  let last = 0;
  for (const { tick, order, ...event } of events) {
    track.push({ deltaTime: tick - last, ...event });
    last = tick;
  }
  track.push({ deltaTime: 0, meta: true, type: 'endOfTrack' });
  return Uint8Array.from(midiFile.writeMidi({ header: { format: 0, numTracks: 1, ticksPerBeat: ppq }, tracks: [track] }));
}

// ---- notes as CSV ------------------------------------------------------------------------------

/** float32 -> shortest text of at most 9 significant digits that reads back to the same float32,
 * formatted like C's %.9g (exponent form below 1e-4 and from 1e9). */
export function formatFloat(x) {
  if (x === 0 || !Number.isFinite(x)) return Object.is(x, -0) ? '-0' : String(x);
  const [mantissa, exp] = x.toExponential(8).split('e');
  const e = Number(exp);
  const trim = (s) => (s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s);
  if (e < -4 || e >= 9) return `${trim(mantissa)}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  return trim(x.toFixed(Math.max(0, 8 - e)));
}

export function notesToCsv(notes) {
  const lines = [CSV_HEADER];
  for (let i = 0; i < notes.length; i += NOTE_WIDTH) {
    lines.push(Array.from(notes.subarray(i, i + NOTE_WIDTH), formatFloat).join(','));
  }
  return `${lines.join('\n')}\n`;
}

/** CSV text (`pitch,step,duration,velocity`, header optional) -> notes Float32Array [N * 4]. */
export function notesFromCsv(text, label = 'the file') {
  const values = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || (index === 0 && line.replace(/\s/g, '') === CSV_HEADER)) return;
    const fields = line.split(',').map((f) => (f.trim() === '' ? NaN : Number(f)));
    if (fields.length !== NOTE_WIDTH || !fields.every(Number.isFinite)) {
      throw new MpxError(`${label}: line ${index + 1}: expected 4 numbers ${CSV_HEADER}, got '${line.slice(0, 60)}'`);
    }
    values.push(...fields);
  });
  if (values.length === 0) throw new MpxError(`${label} holds no notes`);
  return Float32Array.from(values);
}

/** Notes from a file's bytes: CSV by its name, MIDI otherwise. */
export function notesFromFile(bytes, name) {
  if (/\.csv$/i.test(name)) return notesFromCsv(new TextDecoder().decode(bytes), name);
  return notesFromMidi(bytes, name);
}

// ---- generation -------------------------------------------------------------------------------

/** A contract-v3 artifact on an onnxruntime (web or node): primer in, notes out. */
export class Generator {
  constructor(ort, session, spec) {
    this.ort = ort;
    this.session = session;
    this.spec = spec;
  }

  /** Load from the model's bytes; `sessionOptions` go to onnxruntime as they are. */
  static async load(ort, modelBytes, sessionOptions = {}) {
    const spec = readSpec(modelBytes);
    const session = await ort.InferenceSession.create(modelBytes, sessionOptions);
    const missing = [...INPUTS.filter((n) => !session.inputNames.includes(n)), ...OUTPUTS.filter((n) => !session.outputNames.includes(n))];
    if (missing.length) {
      throw new MpxError(`the model does not follow graph contract v${CONTRACT} (missing ${missing.join(', ')}; it has inputs ${session.inputNames.join(', ')})`);
    }
    return new Generator(ort, session, spec);
  }

  /** The primer: the last seq_len notes, or all of a shorter seed (protocol step 1). */
  primerFrom(notes, label = 'the seed') {
    const have = notes.length / NOTE_WIDTH;
    if (have < 1) throw new MpxError(`${label} holds no notes to prime the model with`);
    return notes.slice(Math.max(have - this.spec.seqLen, 0) * NOTE_WIDTH);
  }

  /** The controls fed with this primer: its own summaries, with the requested ones
   * ({name: value}, null = not given) as `mpx run` resolves them (resolveControls). */
  controlsFor(primer, requested = {}) {
    return resolveControls(primer, requested);
  }

  /** Yields the generated notes (Float32Array(4) each), one model call per note (steps 2-3).
   * Every call takes the same per-row sampling parameters and controls; nothing is given. */
  async *stream(primer, count, { seed = 0n, temperature = this.spec.temperature, topP = this.spec.topP, controls = undefined } = {}) {
    const { Tensor } = this.ort;
    const { layers, hidden } = this.spec;
    const key = streamKey(seed, 0);
    const zeros = new Float32Array(layers * hidden);
    const fed = controls ?? this.controlsFor(primer);
    if (fed.length !== CONTROLS.length) throw new MpxError(`controls must hold ${CONTROLS.length} values, got ${fed.length}`);
    const feed = {
      notes: new Tensor('float32', Float32Array.from(primer), [1, primer.length / NOTE_WIDTH, NOTE_WIDTH]),
      h0: new Tensor('float32', zeros, [layers, 1, hidden]),
      c0: new Tensor('float32', zeros.slice(), [layers, 1, hidden]),
      temperature: new Tensor('float32', Float32Array.from(temperature), [1, 4]),
      top_p: new Tensor('float32', Float32Array.from(topP), [1, 4]),
      controls: new Tensor('float32', Float32Array.from(fed), [1, CONTROLS.length]),
      given: new Tensor('float32', new Float32Array(NOTE_WIDTH).fill(NOT_GIVEN), [1, NOTE_WIDTH]),  // every attribute drawn
    };
    for (let i = 0; i < count; i++) {
      feed.uniforms = new Tensor('float32', noteUniforms(key, i), [1, UNIFORM_WIDTH]);
      // Only the note and the state: the per-position logits are for scoring, not generation.
      const out = await this.session.run(feed, ['next_note', 'hn', 'cn']);
      const note = Float32Array.from(out.next_note.data);
      yield note;
      feed.notes = new Tensor('float32', note, [1, 1, NOTE_WIDTH]);
      feed.h0 = out.hn;
      feed.c0 = out.cn;
    }
  }

  /** All `count` notes as one Float32Array [count * 4]; `onNote(i, note)` after each. */
  async generate(primer, count, options = {}, onNote = undefined) {
    const out = new Float32Array(count * NOTE_WIDTH);
    let i = 0;
    for await (const note of this.stream(primer, count, options)) {
      out.set(note, i * NOTE_WIDTH);
      if (onNote) await onNote(i, note);
      i += 1;
    }
    return out;
  }
}
