#!/usr/bin/env node
// Generate notes from a contract-v3 ONNX artifact with onnxruntime-node.
//
//   node examples/node/generate.mjs MODEL PRIMER [OUT] [--notes 256] [--seed 0]
//        [--temperature T] [--top-p P] [--density X] [--chord-share X] [--pitch-mean X]
//        [--pitch-spread X] [--velocity-mean X] [--duration-median X] [--key K]
//        [--show-controls] [--threads 1] [--bench] [--force]
//
// PRIMER is a MIDI file or a CSV of notes (`pitch,step,duration,velocity`, header optional);
// its last seq_len notes (from the model's spec) are the primer. OUT is written in the format its
// suffix names, as mpx does: .csv (notes as text), .mid or .midi (MIDI); CSV on stdout when
// omitted or "-". An OUT that exists is replaced only with --force, and never when it is MODEL
// or PRIMER. T and P are one value or four comma-separated values
// (pitch, step, duration, velocity); the defaults come from the model's spec. The controls
// default to the primer's own summaries (continue in its character); each flag sets one, as
// `mpx run` does ("none": not given, the model chooses); --key "D minor" sets the pitch-class
// profile; --show-controls prints what is fed on stderr. The protocol lives in ../web/mpx.js,
// shared with the web page.
import { existsSync, readFileSync, realpathSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as mpx from '../web/mpx.js';

const USAGE = 'usage: generate.mjs MODEL PRIMER [OUT.csv|OUT.mid|-] [--notes N] [--seed S] [--temperature T] [--top-p P] '
  + '[--density X] [--chord-share X] [--pitch-mean X] [--pitch-spread X] [--velocity-mean X] [--duration-median X] [--key K] '
  + '[--show-controls] [--threads N] [--bench] [--force]';
// The control flags, named as mpx run's: --chord-share sets chord_share.
const CONTROL_FLAGS = [...mpx.CONTROLS.slice(0, 6).map((name) => name.replaceAll('_', '-')), 'key'];
const OUTPUTS = { '.csv': 'csv', '.mid': 'midi', '.midi': 'midi' };  // what an OUT's suffix asks for

function parseCommandLine(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        notes: { type: 'string', default: '256' },
        seed: { type: 'string', default: '0' },
        temperature: { type: 'string' },
        'top-p': { type: 'string' },
        ...Object.fromEntries(CONTROL_FLAGS.map((flag) => [flag, { type: 'string' }])),
        'show-controls': { type: 'boolean', default: false },
        threads: { type: 'string', default: '1' },
        bench: { type: 'boolean', default: false },
        force: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    // node's message goes on with advice about positionals; its first sentence names the flag.
    throw new UsageError(`${err.message.split(/\.\s/)[0]} (${USAGE})`);
  }
  const { values, positionals } = parsed;
  if (values.help) return { help: true };
  if (positionals.length < 2 || positionals.length > 3) throw new UsageError(USAGE);
  const [model, primer, out = '-'] = positionals;
  try {
    return {
      model, primer, out,
      notes: mpx.parseCount(values.notes),
      seed: mpx.parseSeed(values.seed),
      temperature: values.temperature === undefined ? undefined : mpx.parseTemperature(values.temperature),
      topP: values['top-p'] === undefined ? undefined : mpx.parseTopP(values['top-p']),
      requested: mpx.requestedControls(Object.fromEntries(CONTROL_FLAGS.map((flag) => [flag.replaceAll('-', '_'), values[flag]]))),
      showControls: values['show-controls'],
      threads: mpx.parseCount(values.threads, 'threads'),
      bench: values.bench,
      force: values.force,
    };
  } catch (err) {
    throw new UsageError(err.message);
  }
}

class UsageError extends mpx.MpxError {}

function readBytes(path, what) {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (err) {
    const reason = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'is a directory' : err.message;
    throw new mpx.MpxError(`${what} ${path}: ${reason}`);
  }
}

function sameFile(a, b) {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return resolve(a) === resolve(b);
  }
}

/** The output's format, checked before any work as mpx checks its outputs: a known suffix, not
 * one of the inputs, new unless --force. */
function checkOutput(args) {
  if (args.out === '-') return 'csv';
  const suffix = (/\.[^./\\]+$/.exec(args.out.toLowerCase()) || [''])[0];
  const format = OUTPUTS[suffix];
  if (!format) throw new UsageError(`OUT ${args.out}: writes .csv, .mid or .midi files only (${suffix ? `not '${suffix}'` : 'the name has no suffix'})`);
  for (const input of [args.model, args.primer]) {
    if (sameFile(args.out, input)) throw new mpx.MpxError(`OUT ${args.out}: is the input ${input}; choose another output (--force does not replace an input)`);
  }
  if (existsSync(args.out)) {
    if (statSync(args.out).isDirectory()) throw new mpx.MpxError(`OUT ${args.out}: is a directory, expected a file path`);
    if (!args.force) throw new mpx.MpxError(`OUT ${args.out}: exists; pass --force to replace it, or choose another OUT`);
  }
  return format;
}

/** Write through a temporary file and a rename, so a failure leaves no half-written file. */
function writeOutput(path, format, notes) {
  const data = format === 'midi' ? mpx.notesToMidi(notes) : mpx.notesToCsv(notes);
  if (path === '-') {
    process.stdout.write(data);
    return;
  }
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (err) {
    try { unlinkSync(tmp); } catch { /* never made */ }
    throw new mpx.MpxError(`cannot write ${path}: ${err.message}`);
  }
}

async function loadRuntime() {
  try {
    return await import('onnxruntime-node');
  } catch {
    throw new mpx.MpxError('onnxruntime-node is not installed: run `make web-deps` (or npm ci in examples/)');
  }
}

async function main(argv) {
  const args = parseCommandLine(argv);
  if (args.help) {
    console.log(USAGE);
    return;
  }
  const format = checkOutput(args);
  const ort = await loadRuntime();
  const modelBytes = readBytes(args.model, 'model');
  const seedNotes = mpx.notesFromFile(readBytes(args.primer, 'primer'), args.primer);
  let generator;
  try {
    generator = await mpx.Generator.load(ort, modelBytes, {
      executionProviders: ['cpu'], intraOpNumThreads: args.threads, interOpNumThreads: 1,
    });
  } catch (err) {  // the line names the model: "model m.onnx: the model follows graph contract v2; ..."
    if (err instanceof mpx.MpxError) throw new mpx.MpxError(`model ${args.model}: ${err.message}`);
    throw err;
  }
  const primer = generator.primerFrom(seedNotes, args.primer);
  const controls = generator.controlsFor(primer, args.requested);
  if (args.showControls) console.error(mpx.describeControls(controls, args.requested).join('\n'));
  const options = {
    seed: args.seed, temperature: args.temperature ?? generator.spec.temperature, topP: args.topP ?? generator.spec.topP, controls,
  };
  const t0 = performance.now();
  const notes = await generator.generate(primer, args.notes, options);
  const seconds = (performance.now() - t0) / 1000;
  writeOutput(args.out, format, notes);
  if (args.bench) {
    const line = `${args.notes} notes in ${seconds.toFixed(3)} s: ${(args.notes / seconds).toFixed(0)} notes/s (onnxruntime-node, ${args.threads} thread${args.threads > 1 ? 's' : ''})`;
    (args.out === '-' ? console.error : console.log)(line);
  }
}

main(process.argv.slice(2)).catch((err) => {
  // Our errors are one line for the user; anything else is a bug, shown in full.
  if (err instanceof mpx.MpxError) console.error(`generate.mjs: ${err.message}`);
  else console.error(err);
  process.exit(err instanceof UsageError ? 2 : 1);
});
