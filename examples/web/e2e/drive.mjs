#!/usr/bin/env node
// Drive the page in headless Debian Chromium through its own controls, as a person would, and
// print what it showed as JSON. tests/test_web.py writes the plan and checks the answers.
//
//   node examples/web/e2e/drive.mjs PLAN.json > RESULT.json
//
// PLAN: {"url": ..., "chromium": "/usr/bin/chromium", "steps": [...]}, each step one of
//   {"do": "generate", "notes": 64, "temperature": "1", "top_p": "0.95", "seed": "0",
//    "controls": {"density": "6", "key": "D minor"}}  control fields by id; the others left blank
//   {"do": "upload", "path": "file.mid"}             choose a file in the page's file input
//   {"do": "drop", "path": "file.mid"}               drop a file on the page's drop zone
//   {"do": "bundled"}                                 pick the bundled seed again
//   {"do": "download", "path": "out.mid"}             click Download MIDI, save the file
//   {"do": "play"}                                     click Play, then Stop
//   {"do": "screenshot", "path": "page.png"}
//   {"do": "fill", "id": "server-url", "value": "http://..."}  type into a field
//   {"do": "check", "id": "use-server", "on": true}   tick or untick a checkbox
// RESULT: {"steps": [one answer per step], "errors": [uncaught page errors and console errors]}
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { chromium } from 'playwright-core';

// The flags that work on this machine's closed network (see the README).
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];
const TIMEOUT = 120_000;

const CONTROL_IDS = ['density', 'chord-share', 'pitch-mean', 'pitch-spread', 'velocity-mean', 'duration-median', 'key'];

const message = async (page) => ({
  message: await page.textContent('#message'),
  error: (await page.getAttribute('#message', 'class')) === 'error',
});

async function generate(page, step) {
  for (const [id, value] of [['notes', step.notes], ['temperature', step.temperature], ['top-p', step.top_p], ['seed', step.seed]]) {
    if (value !== undefined) await page.fill(`#${id}`, String(value));
  }
  for (const id of CONTROL_IDS) await page.fill(`#${id}`, String(step.controls?.[id] ?? ''));
  const before = Number(await page.evaluate(() => document.body.dataset.attempts ?? 0));
  await page.click('#generate');
  // Done when the page has finished this click: a new result published, or an error shown.
  await page.waitForFunction((n) => Number(document.body.dataset.attempts ?? 0) > n, before, { timeout: TIMEOUT });
  const shown = await message(page);
  if (shown.error) return shown;
  return {
    ...shown,
    result: JSON.parse(await page.textContent('#result')),
    speed: await page.textContent('#speed'),
    seed_controls: await seedControls(page),
    notes_per_second: Number(await page.getAttribute('#speed', 'data-notes-per-second')),
  };
}

/** What the page shows beside each control: the seed's value (data-value) and the text. */
async function seedControls(page) {
  const shown = {};
  for (const id of CONTROL_IDS) {
    shown[id] = { text: await page.textContent(`#own-${id}`), value: await page.getAttribute(`#own-${id}`, 'data-value') };
  }
  return shown;
}

async function upload(page, step) {
  const before = await page.textContent('#message');
  await page.setInputFiles('#file', step.path);
  await page.waitForFunction((text) => document.getElementById('message').textContent !== text, before, { timeout: TIMEOUT });
  return { ...(await message(page)), using_file: await page.isChecked('#use-file') };
}

/** Drop a file on the drop zone, as a drag from the desktop would. */
async function drop(page, step) {
  const before = await page.textContent('#message');
  const bytes = Array.from(readFileSync(step.path));
  const name = basename(step.path);
  const transfer = await page.evaluateHandle(([data, fileName]) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(data)], fileName, { type: 'audio/midi' }));
    return dt;
  }, [bytes, name]);
  await page.dispatchEvent('#drop', 'drop', { dataTransfer: transfer });
  await page.waitForFunction((text) => document.getElementById('message').textContent !== text, before, { timeout: TIMEOUT });
  return { ...(await message(page)), using_file: await page.isChecked('#use-file') };
}

async function download(page, step) {
  const [file] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  await file.saveAs(step.path);
  return { name: file.suggestedFilename() };
}

async function play(page) {
  await page.click('#play');
  await page.waitForTimeout(400);
  const label = await page.textContent('#play');
  await page.click('#play');
  // Headless Chromium has no speakers: render the same synthesizer offline and measure it.
  const levels = await page.evaluate(async () => {
    const { renderLevels } = await import('./synth.js');
    const { generated } = JSON.parse(document.getElementById('result').textContent);
    return renderLevels(Float32Array.from(generated.flat()));
  });
  return { label_while_playing: label, label_after: await page.textContent('#play'), levels };
}

const ACTIONS = {
  generate,
  upload,
  drop,
  download,
  play,
  bundled: async (page) => { await page.check('#use-bundled'); return {}; },
  fill: async (page, step) => { await page.fill(`#${step.id}`, String(step.value)); return {}; },
  check: async (page, step) => { await page.setChecked(`#${step.id}`, step.on !== false); return {}; },
  screenshot: async (page, step) => { await page.screenshot({ path: step.path, fullPage: true }); return {}; },
};

async function main(planPath) {
  const plan = JSON.parse(readFileSync(planPath, 'utf8'));
  const browser = await chromium.launch({ executablePath: plan.chromium, headless: true, args: FLAGS });
  const errors = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 }, acceptDownloads: true });
    page.on('pageerror', (err) => errors.push(`page error: ${err.message}`));
    page.on('console', (msg) => { if (msg.type() === 'error') errors.push(`console: ${msg.text()}`); });
    page.on('response', (response) => { if (response.status() >= 400) errors.push(`HTTP ${response.status()}: ${response.url()}`); });
    await page.goto(plan.url);
    await page.waitForFunction(() => document.body.dataset.state !== 'loading', null, { timeout: TIMEOUT });
    const start = { state: await page.getAttribute('body', 'data-state'), model_info: await page.textContent('#model-info'), ...(await message(page)) };
    const steps = [];
    for (const step of plan.steps) steps.push(await ACTIONS[step.do](page, step));
    return { start, steps, errors };
  } finally {
    await browser.close();
  }
}

main(process.argv[2]).then(
  (result) => console.log(JSON.stringify(result)),
  (err) => { console.error(`drive.mjs: ${err.message.split('\n')[0]}`); process.exit(1); },
);
