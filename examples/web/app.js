// The page: load the artifact and the bundled seed, read the options, generate with the shared
// protocol module (mpx.js) on onnxruntime-web, then draw, play and offer the MIDI for download.
import * as ort from 'onnxruntime-web';
import * as mpx from './mpx.js';
import { generateOnServer } from './remote.js';
import { drawRoll, layoutRoll } from './roll.js';
import { Player } from './synth.js';

// One wasm thread: more would need cross-origin isolation headers, and a one-note call is tiny.
ort.env.wasm.numThreads = 1;
// Hand control back to the browser every this many notes, so the page repaints while it works.
const YIELD_EVERY = 64;
const RUNTIME = `onnxruntime-web ${ort.env.versions?.web ?? ''} (wasm, 1 thread)`;

const $ = (id) => document.getElementById(id);
const state = { generator: null, bundled: null, file: null, last: null, layout: null, player: new Player(), url: null, runs: 0, attempts: 0 };

function setMessage(text, kind = 'info') {
  $('message').textContent = text;
  $('message').className = kind;
}

/** Show an error on the page: ours are one line already; anything else is a bug, logged too. */
function showError(err, context) {
  if (!(err instanceof mpx.MpxError)) console.error(err);
  setMessage(err instanceof mpx.MpxError ? err.message : `${context}: ${err?.message ?? err}`, 'error');
}

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new mpx.MpxError(`cannot fetch ${url} (HTTP ${response.status})`);
  return new Uint8Array(await response.arrayBuffer());
}

/** What the server calls the files it serves as model.onnx and seed.mid (names only). */
async function fileNames() {
  try {
    return await (await fetch('files.json')).json();
  } catch {
    return { model: 'model.onnx', seed: 'seed.mid' };
  }
}

const shortNumber = (x) => Number(x.toPrecision(6));
// The page's control fields: the input's id is the control's name with dashes.
const CONTROL_FIELDS = mpx.CONTROLS.slice(0, 6).map((name) => ({ name, id: name.replaceAll('_', '-') }));
const LEFT_TO_THE_MODEL = new Set(['pitch_mean', 'pitch_spread']);  // the register: not held by default
const fourText = (values) => (values.every((v) => v === values[0]) ? String(shortNumber(values[0])) : Array.from(values, shortNumber).join(','));

async function start() {
  try {
    const names = await fileNames();
    const generator = await mpx.Generator.load(ort, await fetchBytes('model.onnx'), { executionProviders: ['wasm'] });
    state.generator = generator;
    const { layers, hidden, seqLen, temperature, topP } = generator.spec;
    $('model-info').textContent = `${names.model}: LSTM ${layers} layer${layers > 1 ? 's' : ''} × ${hidden}, `
      + `primer ${seqLen} notes, sampling defaults temperature ${fourText(temperature)}, top-p ${fourText(topP)} · ${RUNTIME}`;
    $('temperature').value = fourText(temperature);
    $('top-p').value = fourText(topP);
    const notes = mpx.notesFromMidi(await fetchBytes('seed.mid'), names.seed);
    state.bundled = { name: names.seed, notes };
    $('bundled-info').textContent = `(${names.seed}, ${notes.length / mpx.NOTE_WIDTH} notes)`;
    showSeedControls();
    $('generate').disabled = false;
    setMessage('Ready: choose a seed and the options, then press Generate.');
    document.body.dataset.state = 'ready';
  } catch (err) {
    showError(err, 'cannot start');
    if (!state.generator) $('model-info').textContent = 'No model loaded.';
    document.body.dataset.state = 'error';
  }
}

/** A dropped or chosen file becomes the seed, or the page says why it cannot. */
async function loadFile(file) {
  if (!file) return;
  try {
    const notes = mpx.notesFromFile(new Uint8Array(await file.arrayBuffer()), file.name);
    if (state.generator) state.generator.primerFrom(notes, file.name);
    state.file = { name: file.name, notes };
    $('file-info').textContent = `(${file.name}, ${notes.length / mpx.NOTE_WIDTH} notes)`;
    $('use-file').disabled = false;
    $('use-file').checked = true;
    showSeedControls();
    setMessage(`Loaded ${file.name}: ${notes.length / mpx.NOTE_WIDTH} notes.`);
  } catch (err) {
    showError(err, `cannot read ${file.name}`);
  } finally {
    $('file').value = '';   // choosing the same file again must fire `change` again
  }
}

/** Beside each control: the seed's own value (its primer's summaries), what a blank field means. */
function showSeedControls() {
  const seed = chosenSeed();
  if (!state.generator || !seed) return;
  const own = mpx.primerSummaries(state.generator.primerFrom(seed.notes, seed.name));
  const shown = (x) => (x < 0 ? 'too few notes' : String(Number(x.toPrecision(4))));
  for (const { name, id } of CONTROL_FIELDS) {
    const value = own[mpx.CONTROLS.indexOf(name)];
    $(`own-${id}`).textContent = `seed: ${shown(value)}${LEFT_TO_THE_MODEL.has(name) ? ' (blank: the model\'s)' : ''}`;
    $(`own-${id}`).dataset.value = String(value);
  }
  const key = mpx.closestKey(Array.from(own.subarray(6)));
  $('own-key').textContent = key ? `seed: its own profile (closest: ${key})` : 'seed: too few notes';
}

/** What the user typed per control: blank = the seed's, a number, none, a key. */
function typedControls() {
  return { ...Object.fromEntries(CONTROL_FIELDS.map(({ name, id }) => [name, $(id).value])), key: $('key').value };
}

function readOptions() {
  return {
    count: mpx.parseCount($('notes').value),
    seed: mpx.parseSeed($('seed').value),
    temperature: mpx.parseTemperature($('temperature').value),
    topP: mpx.parseTopP($('top-p').value),
    requested: mpx.requestedControls(typedControls(), (name) => name.replaceAll('_', ' ')),  // as the fields are labelled
  };
}

function chosenSeed() {
  return $('use-file').checked && state.file ? state.file : state.bundled;
}

async function onGenerate() {
  try {
    await generateOnce();
  } finally {  // every click ends here, made or refused: tests wait for this count
    state.attempts += 1;
    document.body.dataset.attempts = String(state.attempts);
  }
}

async function generateOnce() {
  let options;
  let primer;
  const seed = chosenSeed();
  try {
    options = readOptions();
    primer = state.generator.primerFrom(seed.notes, seed.name);
    options.controls = state.generator.controlsFor(primer, options.requested);
  } catch (err) {
    showError(err, 'bad options');
    return;
  }
  state.player.stop();
  setMessage('Generating…');  // an earlier run's error must not stand while this one runs
  setBusy(true);
  try {
    const { notes, seconds } = await timedGenerate(primer, options);
    finish(seed, primer, notes, options, seconds);
  } catch (err) {
    showError(err, 'generation failed');
  } finally {
    setBusy(false);
  }
}

/** Where the notes are made: this browser, or an mpx serve server (the page's switch). */
function runtimeLabel() {
  return $('use-server').checked ? `mpx serve at ${$('server-url').value.trim()}` : RUNTIME;
}

/** Generate, timing only the model's work (not the pauses that let the page repaint). */
async function timedGenerate(primer, options) {
  let busy = 0;
  let since = performance.now();
  const generate = $('use-server').checked
    ? (p, n, o, onNote) => generateOnServer($('server-url').value, p, n, o, onNote)
    : (p, n, o, onNote) => state.generator.generate(p, n, o, onNote);
  const notes = await generate(primer, options.count, options, async (i) => {
    if ((i + 1) % YIELD_EVERY !== 0 || i + 1 === options.count) return;
    busy += performance.now() - since;
    setMessage(`Generating… ${i + 1} / ${options.count} notes`);
    await new Promise((resolve) => setTimeout(resolve, 0));
    since = performance.now();
  });
  busy += performance.now() - since;
  return { notes, seconds: busy / 1000 };
}

function finish(seed, primer, notes, options, seconds) {
  const rate = options.count / seconds;
  $('speed').textContent = `${options.count} notes in ${seconds.toFixed(2)} s: ${Math.round(rate)} notes/s · ${runtimeLabel()}`;
  $('speed').dataset.notesPerSecond = rate.toFixed(1);
  state.last = { notes, seed, options };
  state.layout = layoutRoll(primer, notes);
  drawRoll($('roll'), state.layout);
  offerDownload(notes, seed.name, options.seed);
  publish(seed, primer, notes, options, rate);
  $('play').disabled = false;
  setMessage(`Generated ${options.count} notes after ${seed.name} (seed ${options.seed}).`);
}

function offerDownload(notes, seedName, seed) {
  if (state.url) URL.revokeObjectURL(state.url);
  state.url = URL.createObjectURL(new Blob([mpx.notesToMidi(notes)], { type: 'audio/midi' }));
  const link = $('download');
  link.href = state.url;
  link.download = `${seedName.replace(/\.[^.]*$/, '')}-mpx-seed${seed}.mid`;
  link.classList.remove('disabled');
  link.removeAttribute('aria-disabled');
}

/** The last run as JSON in the page, for tests (and anyone who wants the numbers). */
function publish(seed, primer, notes, options, rate) {
  const rows = (a) => Array.from({ length: a.length / mpx.NOTE_WIDTH }, (_, i) => Array.from(a.subarray(i * mpx.NOTE_WIDTH, (i + 1) * mpx.NOTE_WIDTH)));
  state.runs += 1;
  const result = $('result');
  result.textContent = JSON.stringify({
    run: state.runs, seed_file: seed.name, seed: String(options.seed), notes: options.count, runtime: runtimeLabel(),
    temperature: Array.from(options.temperature), top_p: Array.from(options.topP),
    requested: options.requested, controls: Array.from(options.controls),
    notes_per_second: rate, primer: rows(primer), generated: rows(notes),
  });
  result.dataset.run = String(state.runs);
}

function setBusy(busy) {
  document.body.dataset.state = busy ? 'generating' : 'ready';
  const fields = ['generate', 'notes', 'temperature', 'top-p', 'seed', 'use-server', 'server-url', 'key', ...CONTROL_FIELDS.map((f) => f.id)];
  for (const id of fields) $(id).disabled = busy;
}

async function onPlay() {
  if (state.player.playing) {
    state.player.stop();
    $('play').textContent = 'Play';
    return;
  }
  $('play').textContent = 'Stop';
  await state.player.play(state.last.notes, () => { $('play').textContent = 'Play'; });
  animatePlayhead();
}

function animatePlayhead() {
  const position = state.player.position();
  const first = state.layout.split;
  drawRoll($('roll'), state.layout, position === null || position < 0 ? null : first + position);
  if (position !== null) requestAnimationFrame(animatePlayhead);
}

function wireDrop() {
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    loadFile(e.dataTransfer.files[0]);
  });
  $('file').addEventListener('change', (e) => loadFile(e.target.files[0]));
}

$('generate').addEventListener('click', onGenerate);
for (const id of ['use-bundled', 'use-file']) $(id).addEventListener('change', showSeedControls);
$('play').addEventListener('click', onPlay);
window.addEventListener('resize', () => state.layout && drawRoll($('roll'), state.layout));
wireDrop();
start();
