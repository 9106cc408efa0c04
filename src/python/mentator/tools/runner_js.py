# ruff: noqa: E501 - the JavaScript source below keeps its own line lengths
"""The child side of one JS tool call: Node.js runs `SOURCE` (``node -e``), the same protocol as
the PY runner (stdin ``{"code", "args", "env"}``, one JSON answer line on stdout, the tool's
``console.log`` on stderr). The code is the body of ``async (args, LIB, ENV) => {...}`` as in
the original; ``LIB`` holds its Node built-ins (``fs``, ``path``, ``math``, ``crypto``,
``buffer``) and ``http`` over ``fetch``; ``LIB.db`` is the same clear error as in PY tools (no
database connector is shipped for either language)."""

SOURCE = r"""
'use strict';
const out = process.stdout;
const chunks = [];
process.stdin.on('data', (c) => chunks.push(c));
process.stdin.on('end', async () => {
  const request = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  // Node drops pending pipe writes at exit, so the cap on printed output is counted here.
  let printed = 0;
  let capped = false;
  console.log = (...a) => {
    const text = a.map(String).join(' ') + '\n';
    printed += Buffer.byteLength(text);
    if (printed > request.cap) {
      if (capped) throw new Error('output cap');
      capped = true;
      out.write(JSON.stringify({ ok: false, error: `wrote more than ${request.cap} bytes of output` }) + '\n',
        () => process.exit(0));
      throw new Error('output cap');
    }
    process.stderr.write(text);
  };
  console.info = console.warn = console.error = console.log;
  const http = {
    request: async (url, opts = {}) => {
      const { timeoutMsec = 3600000, ...rest } = opts;
      const response = await fetch(url, { ...rest, signal: AbortSignal.timeout(timeoutMsec) });
      const text = await response.text();
      try { return JSON.parse(text); } catch { return text; }
    },
  };
  http.get = (url, opts = {}) => http.request(url, { ...opts, method: 'GET' });
  http.post = (url, body, opts = {}) => {
    const isText = typeof body === 'string' || body === undefined;
    const headers = isText ? opts.headers : { 'content-type': 'application/json', ...(opts.headers || {}) };
    return http.request(url, { ...opts, method: 'POST', headers, body: isText ? body : JSON.stringify(body) });
  };
  const db = new Proxy({}, { get: (_t, name) => {
    throw new Error(`LIB.db.${String(name)}: database connectors are not available in this service`);
  } });
  const LIB = {
    fs: require('fs'), path: require('path'), math: Math, crypto: require('crypto'),
    buffer: Buffer, http, db,
  };
  let line;
  try {
    const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
    const tool = new AsyncFunction('args', 'LIB', 'ENV', request.code);
    const result = await tool(request.args, LIB, request.env);
    line = JSON.stringify({ ok: true, result: result === undefined ? null : result });
  } catch (error) {
    line = JSON.stringify({ ok: false, error: String(error && error.stack ? error.stack.split('\n')[0] : error) });
  }
  if (!capped) out.write(line + '\n', () => process.exit(0));
});
"""
