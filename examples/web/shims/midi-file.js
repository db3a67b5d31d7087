// Browser stand-in for `import midiFile from 'midi-file'` (mapped by index.html's import map).
// midi-file ships CommonJS only and the page has no bundler, so its two files (each
// self-contained: neither requires anything) run here with a `module` object of their own.
async function commonjs(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot load ${url} (${response.status}): run make web-deps`);
  const module = { exports: {} };
  new Function('module', 'exports', await response.text())(module, module.exports);
  return module.exports;
}

const lib = new URL('/node_modules/midi-file/lib/', import.meta.url);
export const parseMidi = await commonjs(new URL('midi-parser.js', lib));
export const writeMidi = await commonjs(new URL('midi-writer.js', lib));
export default { parseMidi, writeMidi };
