// Browser stand-in for `import protobuf from 'protobufjs/minimal.js'` (mapped by index.html's
// import map): protobufjs ships CommonJS, plus a browser build that sets globalThis.protobuf.
import '/node_modules/protobufjs/dist/minimal/protobuf.min.js';

export default globalThis.protobuf;
