// remote.js: generate on an `mpx serve` server instead of in this browser. The page sends the
// primer and the options; the server streams the notes back as they are made (NDJSON lines:
// start, notes..., end). The same seed gives the same notes as in-browser inference and `mpx run`.
// The controls go as the user asked for them ({name: value}, not given as -1): the server
// resolves them on the primer as `mpx run` does.
import { MpxError, NOTE_WIDTH } from './mpx.js';

/** Notes [count * 4] from the server at `url`; `onNote(i)` after each received note (awaited). */
export async function generateOnServer(url, primer, count, options, onNote) {
  const base = url.trim().replace(/\/+$/, '');
  const rows = [];
  for (let i = 0; i < primer.length; i += NOTE_WIDTH) rows.push(Array.from(primer.subarray(i, i + NOTE_WIDTH)));
  const body = {
    primer: rows, notes: count, seed: String(options.seed), stream: true,
    temperature: Array.from(options.temperature), top_p: Array.from(options.topP),
  };
  const asked = Object.entries(options.requested ?? {});
  if (asked.length) body.controls = Object.fromEntries(asked.map(([name, value]) => [name, value ?? -1]));
  let response;
  try {
    response = await fetch(`${base}/v1/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  } catch {
    throw new MpxError(`cannot reach the server at ${base} (is mpx serve running there?)`);
  }
  if (!response.ok) {
    let reason = `HTTP ${response.status}`;
    try { reason = (await response.json()).error ?? reason; } catch { /* not JSON: keep the status */ }
    throw new MpxError(`server: ${reason}`);
  }
  const notes = new Float32Array(count * NOTE_WIDTH);
  let made = 0;
  let pending = '';
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += value;
    let end;
    while ((end = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 1);
      if (!line.trim()) continue;
      const event = JSON.parse(line);
      if (event.event === 'error') throw new MpxError(`server: ${event.error}`);
      if (event.event !== 'notes') continue;
      for (const note of event.notes) {
        notes.set(note, made * NOTE_WIDTH);
        made += 1;
        if (onNote) await onNote(made - 1);
      }
    }
  }
  if (made !== count) throw new MpxError(`server: the stream ended after ${made} of ${count} notes`);
  return notes;
}
