// A small piano-like synthesizer on Web Audio: no sound files. Each note is one oscillator with a
// few decaying harmonics, a velocity-dependent brightness (low-pass) and loudness, a fast attack,
// a pitch-dependent decay (low strings ring longer) and a short release when the key goes up.
import { noteTimes } from './roll.js';
import { NOTE_WIDTH } from './mpx.js';

const LOOKAHEAD = 0.6;      // s of notes scheduled ahead: enough to ride out a busy main thread
const TICK_MS = 100;
const HARMONICS = [0, 1, 0.42, 0.2, 0.11, 0.05, 0.03];

export class Player {
  constructor() {
    this.context = null;
    this.timer = null;
  }

  get playing() { return this.timer !== null; }

  /** Seconds since the first note began, or null when not playing. */
  position() {
    return this.playing ? this.context.currentTime - this.origin : null;
  }

  /** Play notes [N * 4] from their first onset; `onEnd` runs when the last note has died away. */
  async play(notes, onEnd = () => {}) {
    this.stop();
    this.context ??= new AudioContext();
    await this.context.resume();
    const times = noteTimes(notes);
    const first = times.starts[0] ?? 0;
    this.events = times.starts.map((start, i) => ({
      start: start - first, end: times.ends[i] - first, pitch: notes[i * NOTE_WIDTH], velocity: notes[i * NOTE_WIDTH + 3],
    }));
    this.finish = Math.max(0, ...this.events.map((e) => e.end)) + 1.5;
    this.output = this.makeOutput();
    this.origin = this.context.currentTime + 0.1;
    this.next = 0;
    this.onEnd = onEnd;
    this.timer = setInterval(() => this.schedule(), TICK_MS);
    this.schedule();
  }

  stop() {
    if (!this.playing) return;
    clearInterval(this.timer);
    this.timer = null;
    // Fade the whole mix out rather than cutting notes mid-waveform (a click).
    const now = this.context.currentTime;
    this.output.gain.setTargetAtTime(0, now, 0.03);
    const output = this.output;
    setTimeout(() => output.disconnect(), 300);
  }

  makeOutput() {
    const gain = this.context.createGain();
    gain.gain.value = 0.7;
    gain.connect(this.context.createDynamicsCompressor()).connect(this.context.destination);
    this.wave ??= pianoWave(this.context);
    return gain;
  }

  schedule() {
    const now = this.context.currentTime - this.origin;
    while (this.next < this.events.length && this.events[this.next].start < now + LOOKAHEAD) {
      const e = this.events[this.next++];
      strike(this.context, this.wave, this.output, e.pitch, e.velocity, this.origin + e.start, this.origin + e.end);
    }
    if (now > this.finish) {
      this.stop();
      this.onEnd();
    }
  }
}

function pianoWave(ctx) {
  return ctx.createPeriodicWave(new Float32Array(HARMONICS.length), Float32Array.from(HARMONICS));
}

/** One note: oscillator -> brightness filter -> hammer/decay envelope -> damper -> out. */
function strike(ctx, wave, out, pitch, velocity, start, end) {
  const v = Math.min(Math.max(velocity / 127, 0.05), 1);
  const frequency = 440 * 2 ** ((pitch - 69) / 12);
  const decay = 0.35 + 1.6 * Math.min(Math.max((108 - pitch) / 87, 0), 1);
  const release = Math.max(end, start + 0.03);
  const osc = ctx.createOscillator();
  osc.setPeriodicWave(wave);
  osc.frequency.value = frequency;
  const filter = ctx.createBiquadFilter();
  filter.type = 'lowpass';
  filter.frequency.value = Math.min(frequency * (1.5 + 7 * v), 16000);
  const env = ctx.createGain();
  env.gain.setValueAtTime(0, start);
  env.gain.linearRampToValueAtTime(0.04 + 0.22 * v ** 1.5, start + 0.005);
  env.gain.setTargetAtTime(0, start + 0.005, decay);
  const damper = ctx.createGain();
  damper.gain.setValueAtTime(1, start);
  damper.gain.setTargetAtTime(0, release, 0.07);
  osc.connect(filter).connect(env).connect(damper).connect(out);
  osc.start(start);
  osc.stop(release + 0.6);
}

/** Render the first `seconds` of notes offline (no speakers needed) and measure the signal:
 * how tests know the synthesizer makes sound, without listening. */
export async function renderLevels(notes, seconds = 2, rate = 22050) {
  const ctx = new OfflineAudioContext(1, Math.round(seconds * rate), rate);
  const wave = pianoWave(ctx);
  const times = noteTimes(notes);
  const first = times.starts[0] ?? 0;
  times.starts.forEach((start, i) => {
    if (start - first < seconds) strike(ctx, wave, ctx.destination, notes[i * NOTE_WIDTH], notes[i * NOTE_WIDTH + 3], start - first, times.ends[i] - first);
  });
  const samples = (await ctx.startRendering()).getChannelData(0);
  let peak = 0;
  let energy = 0;
  for (const x of samples) {
    peak = Math.max(peak, Math.abs(x));
    energy += x * x;
  }
  return { peak, rms: Math.sqrt(energy / samples.length), finite: samples.every(Number.isFinite) };
}
