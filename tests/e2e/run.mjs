#!/usr/bin/env node
// End-to-end tests: a real Prosody with the shim (prosody-shim/), the token-sidecar daemon, a key
// server, and real XMPP clients (strophe.js over WebSocket and BOSH). Case numbers are those of
// docs/COMPATIBILITY.md ("Cases"); "difference n" are its deliberate differences.
//
//   cd tests/e2e && npm ci && cd ../..
//   node tests/e2e/run.mjs --prosody /usr/bin/prosody --daemon target/debug/token-sidecar \
//        --shim prosody-shim [--filter substring] [--keep] [--verbose]
//
// Prints one line per case (`ok - name` / `not ok - name: why`), then `N passed, N failed`; exits 1
// on any failure. --keep leaves the temp dir (configs, logs) in place; it is kept anyway on failure.

import { spawn, execFile, execFileSync } from 'node:child_process';
import { createHash, createHmac, generateKeyPairSync, sign as rsaSign, verify as cryptoVerify } from 'node:crypto';
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer, connect as netConnect } from 'node:net';
import { freePort } from './net.mjs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

import { Strophe, $pres, $iq } from 'strophe.js';
import WS from 'ws';
import XHR2 from 'xhr2';

// ---------------------------------------------------------------------------------------------
// Arguments

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');

function parseArgs(argv) {
  const out = { flags: new Set() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const name = a.slice(2);
    if (['keep', 'verbose', 'help'].includes(name)) out.flags.add(name);
    else if (i + 1 < argv.length) out[name] = argv[++i];
    else throw new Error(`${a} needs a value`);
  }
  return out;
}

let args;
try {
  args = parseArgs(process.argv.slice(2));
} catch (e) {
  console.error(`run.mjs: ${e.message}`);
  process.exit(2);
}
if (args.flags.has('help')) {
  console.log('usage: node tests/e2e/run.mjs --prosody PATH --daemon PATH --shim DIR [--filter TEXT] [--keep] [--verbose] [--xmpp-login PATH] [--api-service PATH]');
  process.exit(0);
}
const prosodyBin = resolve(args.prosody ?? '/usr/bin/prosody');
const prosodyctlBin = join(dirname(prosodyBin), 'prosodyctl');
const daemonBin = resolve(args.daemon ?? join(repo, 'target/debug/token-sidecar'));
const shimDir = resolve(args.shim ?? join(repo, 'prosody-shim'));
const filter = args.filter?.toLowerCase();
const verbose = args.flags.has('verbose');

for (const [what, path] of [['--prosody', prosodyBin], ['prosodyctl', prosodyctlBin], ['--daemon', daemonBin],
  ['--shim', join(shimDir, 'mod_auth_token.lua')], ['--shim', join(shimDir, 'mod_token_verification.lua')]]) {
  if (!existsSync(path)) {
    console.error(`run.mjs: ${what}: ${path} does not exist`);
    process.exit(2);
  }
}

// ---------------------------------------------------------------------------------------------
// Strophe under node: quiet, BOSH through an XMLHttpRequest polyfill, WebSocket headers per URL.

Strophe.setLogLevel(Strophe.LogLevel.FATAL);

// xhr2 has no responseXML, and strophe 5's BOSH reads only that (its responseText fallback
// parses and then drops the result): parse the text with the DOMParser strophe installed.
class XMLHttpRequestWithXML extends XHR2 {
  get responseXML() {
    if (this.readyState !== 4 || !this.responseText) return null;
    return new DOMParser().parseFromString(this.responseText, 'text/xml');
  }
}
globalThis.XMLHttpRequest = XMLHttpRequestWithXML;

// strophe opens `new WebSocket(url, 'xmpp')` on the global; this subclass adds HTTP headers
// registered for that exact URL (the Authorization header of case 27).
const wsHeaders = new Map();
class HeaderWebSocket extends WS {
  constructor(url, protocols) {
    super(url, protocols, wsHeaders.has(url) ? { headers: wsHeaders.get(url) } : {});
  }
}
globalThis.WebSocket = HeaderWebSocket;

const NS = {
  SASL: 'urn:ietf:params:xml:ns:xmpp-sasl',
  STANZAS: 'urn:ietf:params:xml:ns:xmpp-stanzas',
  MUC: 'http://jabber.org/protocol/muc',
  MUC_USER: 'http://jabber.org/protocol/muc#user',
  JITMEET: 'http://jitsi.org/jitmeet',
  JIGASI: 'http://jitsi.org/protocol/jigasi',
  TRANSCRIBER: 'http://jitsi.org/protocol/transcriber',
  REPORT: 'urn:x-token-sidecar:e2e:session',
};

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => Math.floor(Date.now() / 1000);
const b64u = (b) => Buffer.from(b).toString('base64url');
const sha256hex = (s) => createHash('sha256').update(s).digest('hex');
const ms = (t0) => Math.round(performance.now() - t0);


function withTimeout(promise, msTimeout, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, fail) => { timer = setTimeout(() => fail(new Error(`${what}: no answer in ${msTimeout} ms`)), msTimeout); }),
  ]).finally(() => clearTimeout(timer));
}

function tail(path, lines) {
  try {
    const all = readFileSync(path, 'utf8').split('\n');
    return all.slice(-lines - 1).join('\n');
  } catch (e) {
    return `(cannot read ${path}: ${e.message})`;
  }
}

function elementChildren(el) {
  const out = [];
  for (let n = el?.firstChild; n; n = n.nextSibling) if (n.nodeType === 1) out.push(n);
  return out;
}
const localName = (el) => el.localName ?? el.tagName;
function findChild(el, name, ns) {
  return elementChildren(el).find((c) => localName(c) === name && (ns === undefined || c.namespaceURI === ns));
}
function findDeep(el, pred) {
  if (!el) return undefined;
  if (el.nodeType === 1 && pred(el)) return el;
  for (const c of elementChildren(el)) {
    const hit = findDeep(c, pred);
    if (hit) return hit;
  }
  return undefined;
}
const textOf = (el) => (el ? el.textContent : undefined);
const serialize = (el) => (el ? Strophe.serialize(el) : '(none)');

// ---------------------------------------------------------------------------------------------
// Tokens

const SECRET = 's3cret';
const rsaKeys = generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsaPublicPem = rsaKeys.publicKey.export({ type: 'spki', format: 'pem' });

// Access tokens (issue 9): mod_access_token's HS256 secret on conference.meet.example.com, and
// mod_short_lived_token's ES256 key (a PKCS#8 PEM file) on meet.example.com.
const ACCESS_KEY = 'e2e-access-token-secret-0123456789abcdef';
const ACCESS_RATE_LIMIT = 3; // tokens per minute per occupant
const sltKeys = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const SLT = { issuer: 'e2e-issuer', audience: 'file-sharing', kid: 'slt-key-1', ttl: 30 };
const INTROSPECT_SECRET = 'e2e-introspect-secret';

// A JWT. `header`/`payload` are taken as is (undefined members dropped); the signature is an
// HMAC (HS*) with `secret`, an RSA signature (RS*) with `key`, or exactly `signature` when given.
function jwt(header, payload, { secret = SECRET, key = rsaKeys.privateKey, signature } = {}) {
  const clean = (o) => JSON.parse(JSON.stringify(o));
  const input = `${b64u(JSON.stringify(clean(header)))}.${b64u(JSON.stringify(clean(payload)))}`;
  let sig = signature;
  if (sig === undefined) {
    const alg = header.alg ?? 'HS256';
    const bits = alg.slice(2);
    if (alg.startsWith('HS')) sig = createHmac(`sha${bits}`, secret).update(input).digest('base64url');
    else if (alg.startsWith('RS')) sig = rsaSign(`sha${bits}`, Buffer.from(input), key).toString('base64url');
    else sig = '';
  }
  return `${input}.${sig}`;
}

// Base token T of docs/COMPATIBILITY.md's cases, with claims and header members replaced (undefined removes).
function T(claims = {}, { header = {}, ...opts } = {}) {
  const payload = { iss: 'myapp', aud: 'jitsi', sub: 'meet.example.com', room: 'room1', exp: now() + 3600, ...claims };
  return jwt({ alg: 'HS256', typ: 'JWT', ...header }, payload, opts);
}
const user = (id, name = id) => ({ context: { user: { id, name } } });

// ---------------------------------------------------------------------------------------------
// Processes: everything we start is killed on exit, exceptions and signals.

const children = new Set();
let tmp;
let daemon;   // { proc, pid }
let prosody;  // { proc, pid }
let keyServer;
let ports = {};

function killAll() {
  for (const child of children) {
    try { process.kill(child.pid, 'SIGCONT'); } catch { /* gone */ }
    try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  children.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.log(`# interrupted (${sig}); stopping`);
    killAll();
    process.exit(130);
  });
}
process.on('uncaughtException', (e) => {
  console.log(`# uncaught exception: ${e?.stack ?? e}`);
  printDiagnostics();
  killAll();
  process.exit(1);
});
process.on('unhandledRejection', (e) => {
  console.log(`# unhandled rejection: ${e?.stack ?? e}`);
  printDiagnostics();
  killAll();
  process.exit(1);
});

function spawnTracked(cmd, argv, logPath, env = {}) {
  const fd = openSync(logPath, 'a');
  const proc = spawn(cmd, argv, { stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
  closeSync(fd);
  const entry = { proc, pid: proc.pid, exited: null };
  children.add(entry);
  proc.on('exit', (code, signal) => {
    entry.exited = { code, signal };
    children.delete(entry);
  });
  return entry;
}

async function stopTracked(entry, graceMs = 2000) {
  if (!entry || entry.exited) return;
  const done = new Promise((r) => entry.proc.once('exit', r));
  try { process.kill(entry.pid, 'SIGCONT'); } catch { /* gone */ }
  try { process.kill(entry.pid, 'SIGTERM'); } catch { /* gone */ }
  const timer = setTimeout(() => { try { process.kill(entry.pid, 'SIGKILL'); } catch { /* gone */ } }, graceMs);
  await done;
  clearTimeout(timer);
}

function printDiagnostics() {
  if (!tmp) return;
  console.log(`# ---- prosody log (last 60 lines of ${join(tmp, 'prosody.log')}) ----`);
  console.log(tail(join(tmp, 'prosody.log'), 60).replace(/^/gm, '#   '));
  console.log(`# ---- prosody stdout/stderr (last 15 lines) ----`);
  console.log(tail(join(tmp, 'prosody.out'), 15).replace(/^/gm, '#   '));
  console.log(`# ---- daemon stderr (last 40 lines of ${join(tmp, 'daemon.log')}) ----`);
  console.log(tail(join(tmp, 'daemon.log'), 40).replace(/^/gm, '#   '));
  console.log(`# full logs: ${tmp} (debug log: prosody-debug.log)`);
}

// ---------------------------------------------------------------------------------------------
// Key server: GET /asap/<sha256hex(kid)>.pem. Per file: 'ok' (the PEM), '404', or 'hang' (never
// answers). Counts requests per path and keeps the last User-Agent.

class KeyServer {
  constructor() {
    this.files = new Map();   // file name -> { mode, pem }
    this.counts = new Map();  // path -> n
    this.userAgents = new Map();
    this.hanging = new Set();
  }

  set(kid, mode, pem = rsaPublicPem) {
    this.files.set(`${sha256hex(kid)}.pem`, { mode, pem });
  }

  pathFor(kid) { return `/asap/${sha256hex(kid)}.pem`; }

  count(kid) { return this.counts.get(this.pathFor(kid)) ?? 0; }

  async start() {
    this.server = createHttpServer((req, res) => {
      const path = req.url.split('?')[0];
      this.counts.set(path, (this.counts.get(path) ?? 0) + 1);
      this.userAgents.set(path, req.headers['user-agent']);
      if (path === '/jwks.json') {
        // A key set (cache_keys_url) holding the test RSA key as kid "k1".
        const jwk = { ...rsaKeys.publicKey.export({ format: 'jwk' }), kid: 'k1', use: 'sig', alg: 'RS256' };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
        return;
      }
      const file = path.startsWith('/asap/') ? this.files.get(path.slice('/asap/'.length)) : undefined;
      if (!file || file.mode === '404') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      } else if (file.mode === 'hang') {
        this.hanging.add(res);
        res.on('close', () => this.hanging.delete(res));
      } else {
        res.writeHead(200, { 'content-type': 'application/x-pem-file' }).end(file.pem);
      }
    });
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = this.server.address().port;
  }

  async stop() {
    for (const res of this.hanging) res.destroy();
    this.server?.closeAllConnections?.();
    await new Promise((r) => (this.server ? this.server.close(r) : r()));
  }
}

// ---------------------------------------------------------------------------------------------
// Prosody config

const TOKEN_HOSTS = {
  'meet.example.com': {
    extraModules: ['test_identity', 'short_lived_token', 'external_services'],
    options: {
      main_muc: 'conference.meet.example.com',
      short_lived_token: () => ({ issuer: SLT.issuer, accepted_audiences: [SLT.audience], key_path: join(tmp, 'slt-key.pem'),
        key_id: SLT.kid, ttl_seconds: SLT.ttl }),
    },
    component: {
      allowlist: ['allowed.example.com'],
      extraModules: ['access_token'],
      options: { access_token_key: ACCESS_KEY, access_token_rate_limit: ACCESS_RATE_LIMIT },
    },
  },
  'empty.example.com': { options: { allow_empty_token: true } },
  // Access tokens: mod_access_token loaded with no key, whose settings the daemon must refuse.
  'nodv.example.com': { options: { enable_domain_verification: false }, component: { extraModules: ['access_token'] } },
  'asap.example.com': { asap: true },
  // Case 16: accepted audiences {"jitsi"} only.
  'aud.example.com': { options: { asap_accepted_audiences: ['jitsi'] } },
  // Case 25: a key set beside the key server.
  'jwks.example.com': { asap: true, jwks: true },
  // Case 19: the key server URL ends with "/".
  'slash.example.com': { asap: true, slash: true },
};

function lua(v) {
  if (typeof v === 'string') return JSON.stringify(v); // ASCII paths and names: JSON quoting is Lua quoting
  if (typeof v === 'boolean' || typeof v === 'number') return String(v);
  if (Array.isArray(v)) return `{ ${v.map(lua).join(', ')} }`;
  if (typeof v === 'function') return lua(v()); // computed when the config is written (paths under tmp)
  if (v && typeof v === 'object') return `{ ${Object.entries(v).map(([k, x]) => `${k} = ${lua(x)}`).join('; ')} }`;
  throw new Error(`no Lua form for ${v}`);
}

function prosodyConfig() {
  const lines = [];
  const opt = (k, v, indent = '') => lines.push(`${indent}${k} = ${lua(v)}`);
  opt('run_as_root', true);
  opt('pidfile', join(tmp, 'prosody.pid'));
  opt('data_path', join(tmp, 'data'));
  opt('certificates', join(tmp, 'certs'));
  opt('plugin_paths', [shimDir, join(here, 'plugins')]);
  opt('interfaces', ['127.0.0.1']);
  opt('c2s_ports', [ports.c2s]);
  lines.push('c2s_direct_tls_ports = { }', 's2s_ports = { }', 'https_ports = { }', 'component_ports = { }');
  opt('http_interfaces', ['127.0.0.1']);
  opt('http_ports', [ports.http]);
  opt('http_default_host', 'meet.example.com');
  opt('c2s_require_encryption', false);
  opt('consider_bosh_secure', true);
  opt('consider_websocket_secure', true);
  opt('cross_domain_websocket', true);
  opt('cross_domain_bosh', true);
  opt('storage', 'internal');
  opt('token_sidecar_socket', join(tmp, 'ts.sock'));
  opt('token_sidecar_timeout', 1);
  opt('test_public_key_file', join(tmp, 'public-key.pem'));
  opt('admins', ['focus@auth.meet.example.com']);
  opt('muc_mapper_domain_base', 'meet.example.com');
  opt('modules_enabled', ['saslauth', 'bosh', 'websocket', 'ping']);
  lines.push(`log = { debug = ${lua(join(tmp, 'prosody-debug.log'))}, info = ${lua(join(tmp, 'prosody.log'))} }`);
  lines.push('');

  for (const [host, spec] of Object.entries(TOKEN_HOSTS)) {
    lines.push(`VirtualHost ${lua(host)}`);
    opt('authentication', 'token', '  ');
    opt('app_id', 'myapp', '  ');
    if (spec.asap) opt('asap_key_server', `http://127.0.0.1:${keyServer.port}/asap${spec.slash ? '/' : ''}`, '  ');
    else opt('app_secret', SECRET, '  ');
    if (spec.jwks) opt('cache_keys_url', `http://127.0.0.1:${keyServer.port}/jwks.json`, '  ');
    opt('muc_mapper_domain_base', host, '  ');
    for (const [k, v] of Object.entries(spec.options ?? {})) opt(k, v, '  ');
    opt('modules_enabled', ['test_events', ...(spec.extraModules ?? [])], '  ');
    lines.push('');
  }
  for (const [host, auth] of [
    ['auth.meet.example.com', 'internal_plain'], ['recorder.meet.example.com', 'internal_plain'],
    ['guest.meet.example.com', 'anonymous'], ['allowed.example.com', 'anonymous'], ['anon.example.com', 'anonymous'],
  ]) {
    lines.push(`VirtualHost ${lua(host)}`);
    opt('authentication', auth, '  ');
    lines.push('');
  }
  for (const [host, spec] of Object.entries(TOKEN_HOSTS)) {
    lines.push(`Component ${lua(`conference.${host}`)} "muc"`);
    opt('modules_enabled', ['token_verification', 'test_rooms', ...(spec.component?.extraModules ?? [])], '  ');
    opt('muc_room_locking', false, '  ');
    if (spec.component?.allowlist) opt('token_verification_allowlist', spec.component.allowlist, '  ');
    for (const [k, v] of Object.entries(spec.component?.options ?? {})) opt(k, v, '  ');
    lines.push('');
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Starting things

function waitForTcp(port, totalMs, isAlive) {
  const t0 = Date.now();
  return new Promise((ok, fail) => {
    const attempt = () => {
      if (isAlive && !isAlive()) return fail(new Error('process exited'));
      const s = netConnect({ host: '127.0.0.1', port });
      s.once('connect', () => { s.destroy(); ok(); });
      s.once('error', () => {
        s.destroy();
        if (Date.now() - t0 > totalMs) fail(new Error(`port ${port} did not answer in ${totalMs} ms`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

function waitForUnixSocket(path, totalMs, isAlive) {
  const t0 = Date.now();
  return new Promise((ok, fail) => {
    const attempt = () => {
      if (isAlive && !isAlive()) return fail(new Error('process exited'));
      const s = netConnect({ path });
      s.once('connect', () => { s.destroy(); ok(); });
      s.once('error', () => {
        s.destroy();
        if (Date.now() - t0 > totalMs) fail(new Error(`${path} did not accept connections in ${totalMs} ms`));
        else setTimeout(attempt, 20);
      });
    };
    attempt();
  });
}

async function httpGet(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  return { status: res.status, body: await res.text() };
}

// The daemon's TOML file ([http]: the introspection listener), when the daemon takes it.
let daemonConfig = null;
let daemonConfigProblem = 'not checked';

function startDaemon() {
  const argv = ['serve', '--socket', join(tmp, 'ts.sock')];
  if (daemonConfig) argv.push('--config', daemonConfig);
  daemon = spawnTracked(daemonBin, argv, join(tmp, 'daemon.log'));
  return daemon;
}

async function startProsody() {
  prosody = spawnTracked(prosodyBin, ['-F', '--config', join(tmp, 'prosody.cfg.lua')], join(tmp, 'prosody.out'));
  const alive = () => !prosody.exited;
  await waitForTcp(ports.http, 15000, alive);
  await waitForTcp(ports.c2s, 5000, alive);
  const bosh = await httpGet(`http://127.0.0.1:${ports.http}/http-bind`);
  if (bosh.status !== 200) throw new Error(`GET /http-bind answered ${bosh.status}`);
}

function prosodyctl(...argv) {
  return execFileSync(prosodyctlBin, ['--config', join(tmp, 'prosody.cfg.lua'), ...argv],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30000 });
}

// ---------------------------------------------------------------------------------------------
// XMPP client (strophe.js)

const openClients = new Set();

class Client {
  // transport 'ws' or 'bosh'; domain: the host to log in to; query: URL parameters; headers: WS
  // HTTP headers; jid/password: a non-anonymous login (PLAIN forced when `plain`).
  constructor({ transport = 'ws', domain = 'meet.example.com', query = {}, rawQuery, headers, jid, password, plain }) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, v);
    const qs = rawQuery ?? params.toString();
    const path = transport === 'bosh' ? 'http-bind' : 'xmpp-websocket';
    const scheme = transport === 'bosh' ? 'http' : 'ws';
    this.url = `${scheme}://127.0.0.1:${ports.http}/${path}${qs ? `?${qs}` : ''}`;
    this.transport = transport;
    this.domain = domain;
    this.loginJid = jid ?? domain;
    this.password = password ?? null;
    if (headers) wsHeaders.set(this.url, headers);
    const options = plain ? { mechanisms: [Strophe.SASLPlain] } : {};
    this.conn = new Strophe.Connection(this.url, options);
    this.stanzas = [];
    this.waiters = new Set();
    this.failure = undefined; // the <failure/> element as received (xmlInput hook)
    this.sentAuth = false;
    this.onAuthSent = null;
    this.conn.xmlInput = (el) => {
      const failure = findDeep(el, (e) => localName(e) === 'failure' && e.namespaceURI === NS.SASL);
      if (failure) this.failure = failure;
    };
    this.conn.xmlOutput = (el) => {
      // Built by strophe with an xmlns attribute, not a DOM namespace.
      if (!this.sentAuth && findDeep(el, (e) => localName(e) === 'auth' && e.getAttribute('xmlns') === NS.SASL)) {
        this.sentAuth = true;
        this.onAuthSent?.();
      }
    };
    openClients.add(this);
  }

  // Resolves { ok, status, jid, failure: { condition, text }, ms }. Never rejects.
  // A SASL answer is due within token_sidecar_timeout (1 s); 6 s means "no answer at all".
  login(timeoutMs = 6000) {
    const t0 = performance.now();
    return new Promise((resolveLogin) => {
      let settled = false;
      const finish = (result) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.result = { ...result, ms: ms(t0) };
        resolveLogin(this.result);
      };
      const timer = setTimeout(() => finish({ ok: false, status: 'TIMEOUT' }), timeoutMs);
      const S = Strophe.Status;
      const names = Object.fromEntries(Object.entries(S).map(([k, v]) => [v, k]));
      this.conn.connect(this.loginJid, this.password, (status, condition, elem) => {
        this.connected = status === S.CONNECTED;
        if (status === S.CONNECTED) {
          this.conn.addHandler((st) => { this.onStanza(st); return true; }, null, null, null, null, null);
          finish({ ok: true, status: 'CONNECTED', jid: this.conn.jid });
        } else if (status === S.AUTHFAIL) {
          const failureEl = this.failure ?? (elem && localName(elem) === 'failure' ? elem : undefined);
          finish({ ok: false, status: 'AUTHFAIL', failure: parseSaslFailure(failureEl) });
        } else if ([S.CONNFAIL, S.ERROR, S.CONNTIMEOUT, S.DISCONNECTED].includes(status)) {
          finish({ ok: false, status: `${names[status]}${condition ? ` (${condition})` : ''}`,
            failure: this.failure ? parseSaslFailure(this.failure) : undefined });
        }
      });
    });
  }

  onStanza(st) {
    this.stanzas.push(st);
    for (const w of [...this.waiters]) {
      if (w.pred(st)) {
        this.waiters.delete(w);
        clearTimeout(w.timer);
        w.resolve(st);
      }
    }
  }

  // The first stanza (already received or arriving within timeoutMs) matching pred.
  waitFor(pred, timeoutMs, what) {
    const seen = this.stanzas.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolveWait, rejectWait) => {
      const w = { pred, resolve: resolveWait };
      w.timer = setTimeout(() => { this.waiters.delete(w); rejectWait(new Error(`${what}: nothing in ${timeoutMs} ms`)); }, timeoutMs);
      this.waiters.add(w);
    });
  }

  send(stanza) { this.conn.send(stanza); }

  iq(stanza, timeoutMs = 5000) {
    return new Promise((ok, fail) => {
      this.conn.sendIQ(stanza, ok, (err) => fail(new Error(`IQ error: ${err ? serialize(err) : 'timeout'}`)), timeoutMs);
    });
  }

  // What the server-side test module says about this session (events fired, session fields).
  async report() {
    const res = await this.iq($iq({ type: 'get', to: this.domain }).c('query', { xmlns: NS.REPORT }));
    const json = findDeep(res, (e) => localName(e) === 'json');
    return JSON.parse(textOf(json));
  }

  // Sends a MUC join and resolves { ok: true, presence } on the self-presence, or
  // { ok: false, error: { type, condition, text, jitmeet } } on a presence error.
  async join(room, nick, { extra, timeoutMs = 5000 } = {}) {
    const to = `${room}/${nick}`;
    const pres = $pres({ to }).c('x', { xmlns: NS.MUC }).up();
    if (extra) extra(pres);
    const t0 = performance.now();
    const sameFull = (from) => from && from.toLowerCase() === to.toLowerCase();
    const reply = this.waitFor((st) => localName(st) === 'presence' && sameFull(st.getAttribute('from')),
      timeoutMs, `join ${to}`);
    this.send(pres.tree());
    const st = await reply;
    const elapsed = ms(t0);
    if (st.getAttribute('type') === 'error') return { ok: false, error: parsePresenceError(st), presence: st, ms: elapsed };
    return { ok: true, presence: st, ms: elapsed };
  }

  close() {
    openClients.delete(this);
    wsHeaders.delete(this.url);
    for (const w of this.waiters) clearTimeout(w.timer);
    this.waiters.clear();
    try { this.conn.disconnect(); } catch { /* already gone */ }
    const conn = this.conn;
    setTimeout(() => { try { conn._doDisconnect(); } catch { /* gone */ } }, 1000).unref();
  }
}

function parseSaslFailure(el) {
  if (!el) return undefined;
  const kids = elementChildren(el);
  const cond = kids.find((c) => localName(c) !== 'text');
  return { condition: cond ? localName(cond) : undefined, text: textOf(kids.find((c) => localName(c) === 'text')), raw: serialize(el) };
}

function parsePresenceError(st) {
  const err = findChild(st, 'error');
  if (!err) return { raw: serialize(st) };
  const kids = elementChildren(err);
  const cond = kids.find((c) => c.namespaceURI === NS.STANZAS && localName(c) !== 'text');
  const jitmeet = findDeep(st, (e) => e.namespaceURI === NS.JITMEET);
  return {
    type: err.getAttribute('type'),
    condition: cond ? localName(cond) : undefined,
    text: textOf(kids.find((c) => localName(c) === 'text')),
    jitmeet: jitmeet ? localName(jitmeet) : undefined,
    raw: serialize(st),
  };
}

// Logs in (fresh client); returns the client with .result set.
async function login(opts, timeoutMs) {
  const c = new Client(opts);
  await c.login(timeoutMs);
  return c;
}

function closeAll(keep = new Set()) {
  for (const c of [...openClients]) if (!keep.has(c)) c.close();
}

// ---------------------------------------------------------------------------------------------
// Assertions

class Failure extends Error {}
function check(cond, why) { if (!cond) throw new Failure(typeof why === 'function' ? why() : why); }

function describeLogin(r) {
  if (r.ok) return `logged in as ${r.jid}`;
  if (r.failure) return `${r.status} <${r.failure.condition}/> "${r.failure.text}"`;
  return r.status;
}

function expectLoginOk(c, what = 'login') {
  check(c.result.ok, `${what}: expected success, got ${describeLogin(c.result)}`);
}

function expectSaslFailure(c, text, condition = 'not-allowed') {
  const r = c.result;
  check(!r.ok, `expected <${condition}/> "${text}", but ${describeLogin(r)}`);
  check(r.failure, `expected a SASL <failure>, got ${r.status} and no <failure> element`);
  const textOk = text instanceof RegExp ? text.test(r.failure.text ?? '') : r.failure.text === text;
  check(r.failure.condition === condition && textOk,
    `expected <${condition}/> "${text}", got <${r.failure.condition}/> "${r.failure.text}"`);
}

function describeJoin(j) {
  if (j.ok) return 'joined';
  const e = j.error;
  return `refused ${e.type}/${e.condition} "${e.text}"${e.jitmeet ? ` <${e.jitmeet}/>` : ''}`;
}

function expectJoined(j, what = 'join') {
  check(j.ok, `${what}: expected to join, but ${describeJoin(j)}`);
}

function expectRefused(j, { type = 'cancel', condition = 'not-allowed', text, jitmeet }) {
  const want = `${type}/${condition} "${text}"${jitmeet ? ` <${jitmeet}/>` : ' (no jitmeet child)'}`;
  check(!j.ok, `expected refusal ${want}, but joined`);
  const e = j.error;
  const textOk = text instanceof RegExp ? text.test(e.text ?? '') : e.text === text;
  check(e.type === type && e.condition === condition && textOk && e.jitmeet === jitmeet,
    `expected ${want}, got ${describeJoin(j)}`);
}

// ---------------------------------------------------------------------------------------------
// Focus: the admin that creates rooms (stays connected for the whole run)

const FOCUS_PASSWORD = 'focus-pw-e2e';
const RECORDER_PASSWORD = 'recorder-pw-e2e';
let focus;
const rooms = new Set();

async function ensureRoom(roomJid) {
  const key = roomJid.toLowerCase();
  if (rooms.has(key)) return;
  const j = await focus.join(roomJid, 'focus');
  if (!j.ok) throw new Error(`focus could not create ${roomJid}: ${describeJoin(j)}`);
  rooms.add(key);
}
const ensureRooms = async (...jids) => { for (const j of jids) await ensureRoom(j); };
const MUC = (room, host = 'meet.example.com') => `${room}@conference.${host}`;

// A token login on meet.example.com (or `domain`) that must succeed.
async function tokenUser(token, { domain = 'meet.example.com', transport = 'ws', query = {} } = {}) {
  const c = await login({ transport, domain, query: { token, ...query } });
  expectLoginOk(c, 'token login');
  return c;
}

// ---------------------------------------------------------------------------------------------
// Cases

const RUN_BUDGET_MS = 120000; // a normal run takes about 10 s; past this, remaining cases are not started
const cases = [];
const test = (name, fn, { timeoutMs = 20000 } = {}) => cases.push({ name, fn, timeoutMs });
const notes = [];
const note = (s) => { notes.push(s); console.log(`# ${s}`); };

// --- SASL over WebSocket ---------------------------------------------------------------------

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function saslCases(transport) {
  const tag = transport === 'bosh' ? ' (BOSH)' : '';
  test(`case 1: base token T → success, <uuid>@meet.example.com, session room/domain/issuer${tag}`, async () => {
    const c = await tokenUser(T(), { transport });
    const [local, domain] = c.result.jid.split('/')[0].split('@');
    check(domain === 'meet.example.com', `JID domain ${domain}`);
    check(UUID.test(local), `JID local part "${local}" is not a UUID`);
    const r = await c.report();
    check(r.jitsi_meet_room === 'room1', `session jitsi_meet_room=${r.jitsi_meet_room}`);
    check(r.jitsi_meet_domain === 'meet.example.com', `session jitsi_meet_domain=${r.jitsi_meet_domain}`);
    check(r.jitsi_meet_auth_issuer === 'myapp', `session jitsi_meet_auth_issuer=${r.jitsi_meet_auth_issuer}`);
  });
  test(`case 2: no token → token required${tag}`, async () => {
    expectSaslFailure(await login({ transport, query: {} }), 'token required');
  });
  test(`case 9: wrong secret → Invalid signature${tag}`, async () => {
    expectSaslFailure(await login({ transport, query: { token: T({}, { secret: 'wrong' }) } }), 'Invalid signature');
  });
}

saslCases('ws');

test('case 3: allow_empty_token, no token → success, no jitsi_meet_* session fields', async () => {
  const c = await login({ domain: 'empty.example.com', query: {} });
  expectLoginOk(c);
  const r = await c.report();
  const fields = Array.isArray(r.jitsi_meet_fields) ? r.jitsi_meet_fields : [];
  check(fields.length === 0, `session has ${fields.join(', ')}`);
  check(!r.auth_token, 'session has an auth_token');
});

test('case 4: allow_empty_token, ?token= (empty) → Invalid token', async () => {
  expectSaslFailure(await login({ domain: 'empty.example.com', query: { token: '' } }), 'Invalid token');
});

test('a token that is not UTF-8 (?token=%ff…) → Invalid token at once, from the shim', async () => {
  const c = await login({ rawQuery: `token=%ff${T().slice(1)}` });
  expectSaslFailure(c, 'Invalid token');
  check(c.result.ms < 1000, `refusal took ${c.result.ms} ms`);
});

test('case 5: token "abc.def" → Invalid token', async () => {
  expectSaslFailure(await login({ query: { token: 'abc.def' } }), 'Invalid token');
});

test('case 6: typ "JOSE" → Invalid typ; difference 7: typ absent or "jwt" → success', async () => {
  expectSaslFailure(await login({ query: { token: T({}, { header: { typ: 'JOSE' } }) } }), 'Invalid typ');
  expectLoginOk(await login({ query: { token: T({}, { header: { typ: undefined } }) } }), 'no typ');
  expectLoginOk(await login({ query: { token: T({}, { header: { typ: 'jwt' } }) } }), 'typ "jwt"');
});

test('case 7: token signed HS512 → Invalid or incorrect alg', async () => {
  expectSaslFailure(await login({ query: { token: T({}, { header: { alg: 'HS512' } }) } }), 'Invalid or incorrect alg');
});

test('case 8: alg none, empty signature → Invalid token; non-empty → Invalid or incorrect alg', async () => {
  expectSaslFailure(await login({ query: { token: T({}, { header: { alg: 'none' }, signature: '' }) } }), 'Invalid token');
  expectSaslFailure(await login({ query: { token: T({}, { header: { alg: 'none' }, signature: 'c2ln' }) } }),
    'Invalid or incorrect alg');
});

test('case 10: exp=now-121, iat=exp-3600 → Not acceptable by exp (121 sec since expired, valid for:3600 sec)', async () => {
  const exp = now() - 121;
  const c = await login({ query: { token: T({ exp, iat: exp - 3600 }) } });
  expectSaslFailure(c, /^Not acceptable by exp \(12[12](\.0)? sec since expired, valid for:3600(\.0)? sec\)$/);
});

test('case 11: exp as a string → exp must be number', async () => {
  expectSaslFailure(await login({ query: { token: T({ exp: '9999999999' }) } }), 'exp must be number');
});

test('case 12: nbf=now+5 → Not acceptable by nbf', async () => {
  expectSaslFailure(await login({ query: { token: T({ nbf: now() + 5 }) } }), 'Not acceptable by nbf');
});

test('case 13: no exp → success', async () => {
  expectLoginOk(await login({ query: { token: T({ exp: undefined }) } }));
});

test("case 14: iss \"other\" → invalid 'iss' claim; no iss → 'iss' claim is missing", async () => {
  expectSaslFailure(await login({ query: { token: T({ iss: 'other' }) } }), "invalid 'iss' claim");
  expectSaslFailure(await login({ query: { token: T({ iss: undefined }) } }), "'iss' claim is missing");
});

test("case 15: no aud → 'aud' claim is missing", async () => {
  expectSaslFailure(await login({ query: { token: T({ aud: undefined }) } }), "'aud' claim is missing");
});

test("case 17 (difference 1): no room claim → 'room' claim is missing", async () => {
  expectSaslFailure(await login({ query: { token: T({ room: undefined }) } }), "'room' claim is missing");
});

test("case 16 (difference 7): accepted audiences {\"jitsi\"}: aud [\"jitsi\"] → success (the Lua never matches an array); [\"other\"] → invalid 'aud' claim", async () => {
  const aud = (v) => T({ aud: v, sub: 'aud.example.com' });
  expectLoginOk(await login({ domain: 'aud.example.com', query: { token: aud(['other', 'jitsi']) } }), 'array aud with an accepted member');
  expectSaslFailure(await login({ domain: 'aud.example.com', query: { token: aud(['other']) } }), "invalid 'aud' claim");
  expectSaslFailure(await login({ domain: 'aud.example.com', query: { token: aud('other') } }), "invalid 'aud' claim");
});

// --- Key server (asap.example.com) -----------------------------------------------------------

const rs = (claims = {}, header = {}) => T({ sub: 'asap.example.com', ...claims }, { header: { alg: 'RS256', kid: 'jitsi/key1', ...header } });

test('case 18: RS256 via the key server → success; same kid again → no second key-server request', async () => {
  keyServer.set('jitsi/key1', 'ok');
  const before = keyServer.count('jitsi/key1');
  const a = await login({ domain: 'asap.example.com', query: { token: rs(user('rs-a')) } });
  expectLoginOk(a, 'first RS256 login');
  const afterFirst = keyServer.count('jitsi/key1');
  check(afterFirst - before === 1, `key server got ${afterFirst - before} requests for ${keyServer.pathFor('jitsi/key1')}, expected 1`);
  const b = await login({ domain: 'asap.example.com', query: { token: rs(user('rs-b')) } });
  expectLoginOk(b, 'second RS256 login');
  const afterSecond = keyServer.count('jitsi/key1');
  check(afterSecond === afterFirst, `second login with the same kid made ${afterSecond - afterFirst} more key-server requests`);
  note(`case 18: key request path ${keyServer.pathFor('jitsi/key1')}, User-Agent "${keyServer.userAgents.get(keyServer.pathFor('jitsi/key1'))}"`);
});

test("case 20: key server host: HS256 token without kid → 'kid' claim is missing; HS256 + kid → 'kid' claim only support with RS family", async () => {
  expectSaslFailure(await login({ domain: 'asap.example.com', query: { token: T({ sub: 'asap.example.com' }) } }),
    "'kid' claim is missing");
  expectSaslFailure(await login({ domain: 'asap.example.com', query: { token: T({ sub: 'asap.example.com' }, { header: { kid: 'jitsi/key1' } }) } }),
    "'kid' claim only support with RS family");
});

test('case 19 (difference 3): key server URL ending in "/" → one slash in the request path; login succeeds', async () => {
  keyServer.set('jitsi/slash', 'ok');
  const c = await login({ domain: 'slash.example.com', query: { token: rs({ ...user('slash'), sub: 'slash.example.com' }, { kid: 'jitsi/slash' }) } });
  expectLoginOk(c, 'RS256 login with a trailing-slash key server URL');
  check(keyServer.count('jitsi/slash') === 1, `requests for ${keyServer.pathFor('jitsi/slash')}: ${keyServer.count('jitsi/slash')}`);
  const doubled = [...keyServer.counts.keys()].filter((p) => p.includes('//'));
  check(doubled.length === 0, `paths with "//" requested: ${doubled.join(', ')}`);
});

test('case 23: RS384 token with kid, signature_algorithm unset (RS256 only) → key fetched, then Invalid or incorrect alg', async () => {
  keyServer.set('jitsi/key384', 'ok');
  const c = await login({ domain: 'asap.example.com', query: { token: rs(user('rs384'), { alg: 'RS384', kid: 'jitsi/key384' }) } });
  expectSaslFailure(c, 'Invalid or incorrect alg');
  check(keyServer.count('jitsi/key384') === 1, `key server got ${keyServer.count('jitsi/key384')} requests for the RS384 kid, expected 1`);
});

test('case 25: cache_keys_url JWKS beside asap_key_server: RS256 kid "k1" → success with no per-kid fetch', async () => {
  const token = T({ ...user('jwks'), sub: 'jwks.example.com' }, { header: { alg: 'RS256', kid: 'k1' } });
  const perKid = () => keyServer.count('k1');
  expectLoginOk(await login({ domain: 'jwks.example.com', query: { token } }), 'RS256 login from the key set');
  check(perKid() === 0, `the key server got ${perKid()} request(s) for ${keyServer.pathFor('k1')}`);
  check((keyServer.counts.get('/jwks.json') ?? 0) >= 1, 'the key set was never fetched');
});

test('case 21: key server 404 → could not obtain public key (twice; at most 2 requests: difference 3 caches the 404 briefly)', async () => {
  keyServer.set('jitsi/missing', '404');
  for (const who of ['first', 'second']) {
    const c = await login({ domain: 'asap.example.com', query: { token: rs(user(`nokey-${who}`), { kid: 'jitsi/missing' }) } });
    expectSaslFailure(c, 'could not obtain public key');
  }
  const n = keyServer.count('jitsi/missing');
  check(n >= 1 && n <= 2, `key server got ${n} requests for the missing key, expected 1 or 2`);
  note(`case 21: ${n} key-server request(s) for two logins with a missing key`);
});

test('case 22 (ours): key server never answers → login refused (not let in), HS256 logins unaffected meanwhile', async () => {
  keyServer.set('jitsi/slow', 'hang');
  const t0 = performance.now();
  const slow = login({ domain: 'asap.example.com', query: { token: rs(user('hang'), { kid: 'jitsi/slow' }) } }, 15000);
  await sleep(100);
  const t1 = performance.now();
  const other = await login({ query: { token: T(user('during-hang')) } });
  expectLoginOk(other, 'HS256 login while the key server hangs');
  const otherMs = ms(t1);
  const c = await slow;
  const took = ms(t0);
  check(!c.result.ok, 'a token whose key cannot be fetched logged in');
  const f = c.result.failure;
  check(f && ((f.condition === 'not-allowed' && f.text === 'could not obtain public key') ||
    (f.condition === 'temporary-auth-failure' && /token service unavailable/.test(f.text ?? ''))),
  `expected "could not obtain public key" or temporary-auth-failure, got ${describeLogin(c.result)}`);
  note(`case 22: refused after ${took} ms with <${f.condition}/> "${f.text}"; an HS256 login meanwhile took ${otherMs} ms`);
}, { timeoutMs: 30000 });

// --- Events and session ---------------------------------------------------------------------

const EVENT_ORDER = ['pre-jitsi-authentication-fetch-key', 'jitsi-authentication-token-verified',
  'jitsi-access-ban-check', 'pre-jitsi-authentication', 'post-jitsi-authentication'];

test('events: a successful token login fires all five events in the order Jitsi fires them', async () => {
  const c = await tokenUser(T(user('events-user')));
  const r = await c.report();
  check(JSON.stringify(r.events) === JSON.stringify(EVENT_ORDER), `events fired: ${JSON.stringify(r.events)}`);
  check(r.claims?.room === 'room1', `token-verified claims.room=${r.claims?.room}`);
  check(r.jitsi_meet_context_user?.id === 'events-user', `context user ${JSON.stringify(r.jitsi_meet_context_user)}`);
});

test('case 26: ban-check handler returns false → user is banned', async () => {
  expectSaslFailure(await login({ query: { token: T(user('banned')) } }), 'user is banned');
});

test('events: pre-jitsi-authentication-fetch-key returns res=false → its reason', async () => {
  expectSaslFailure(await login({ query: { token: T(), room: 'prefail' } }), 'pre-fetch says no');
});

test('events: post-jitsi-authentication returns res=false → its reason', async () => {
  expectSaslFailure(await login({ query: { token: T(user('postfail')) } }), 'post-auth says no');
});

test('events: pre-jitsi-authentication returns a username → JID local part', async () => {
  const c = await tokenUser(T(user('custom', 'picked-by-hook')));
  const local = c.result.jid.split('@')[0];
  check(local === 'picked-by-hook', `JID ${c.result.jid}`);
});

test('session: previd is not required; an unknown previd still logs in with a fresh UUID', async () => {
  const c = await tokenUser(T(user('previd-user')), { query: { previd: 'no-such-session' } });
  check(UUID.test(c.result.jid.split('@')[0]), `JID ${c.result.jid}`);
  const r = await c.report();
  check(r.previd === 'no-such-session', `session previd=${r.previd}`);
});

test('session: context.user/group, room and prefix query params reach the session', async () => {
  const token = T({ context: { user: { id: 'u42', name: 'Ada', email: 'ada@example.com' }, group: 'g1' } });
  const c = await tokenUser(token, { query: { room: 'room1', prefix: '' } });
  const r = await c.report();
  check(r.jitsi_meet_context_user?.id === 'u42' && r.jitsi_meet_context_user?.name === 'Ada'
    && r.jitsi_meet_context_user?.email === 'ada@example.com', `context user ${JSON.stringify(r.jitsi_meet_context_user)}`);
  check(r.jitsi_meet_context_group === 'g1', `context group ${r.jitsi_meet_context_group}`);
  check(r.jitsi_web_query_room === 'room1', `query room ${r.jitsi_web_query_room}`);
  check(r.jitsi_web_query_prefix === '', `query prefix ${JSON.stringify(r.jitsi_web_query_prefix)}`);
});

test('session: the URL query is read as Prosody\'s formdecode reads it (+ and %XX decoded, the last token wins)', async () => {
  const c = await login({ rawQuery: `room=My+Room%21&prefix=Acme&token=garbage&token=${T(user('query-user'))}` });
  expectLoginOk(c, 'second token= of two');
  const r = await c.report();
  check(r.jitsi_web_query_room === 'My Room!', `query room ${JSON.stringify(r.jitsi_web_query_room)}`);
  check(r.jitsi_web_query_prefix === 'Acme', `query prefix ${JSON.stringify(r.jitsi_web_query_prefix)}`);
  const bad = await login({ rawQuery: `token=${T(user('query-user'))}&token=garbage` });
  check(!bad.result.ok && bad.result.failure?.text === 'Invalid token', `last token garbage: ${describeLogin(bad.result)}`);
});

test('case 27: Authorization: Bearer T (no query token) → success; header T + query garbage → query wins (Invalid token)', async () => {
  const a = await login({ query: {}, headers: { Authorization: `Bearer ${T(user('header-user'))}` } });
  expectLoginOk(a, 'header-only token');
  const r = await a.report();
  check(r.jitsi_meet_context_user?.id === 'header-user', `session user ${JSON.stringify(r.jitsi_meet_context_user)}`);
  const b = await login({ query: { token: 'garbage' }, headers: { Authorization: `Bearer ${T()}` } });
  expectSaslFailure(b, 'Invalid token');
});

// --- MUC -------------------------------------------------------------------------------------

test('case 28: room "Room1" joins room1 → allowed', async () => {
  await ensureRoom(MUC('room1'));
  const c = await tokenUser(T({ room: 'Room1' }));
  expectJoined(await c.join(MUC('room1'), 'c28'));
});

test('case 29: T joins room2 → cancel/not-allowed "Room and token mismatched", no jitmeet child', async () => {
  await ensureRoom(MUC('room2'));
  const c = await tokenUser(T());
  expectRefused(await c.join(MUC('room2'), 'c29'), { text: 'Room and token mismatched' });
});

test('case 30: room "*" joins room2 → allowed; with sub "other.com" → Room and token mismatched', async () => {
  await ensureRoom(MUC('room2'));
  const a = await tokenUser(T({ room: '*' }));
  expectJoined(await a.join(MUC('room2'), 'c30a'));
  const b = await tokenUser(T({ room: '*', sub: 'other.com' }));
  expectRefused(await b.join(MUC('room2'), 'c30b'), { text: 'Room and token mismatched' });
});

test('case 31: sub "ACME" joins [acme]room1 → allowed; sub "other" → mismatched; sub "*" → allowed', async () => {
  await ensureRoom(MUC('[acme]room1'));
  const a = await tokenUser(T({ sub: 'ACME' }));
  expectJoined(await a.join(MUC('[acme]room1'), 'c31a'), 'sub ACME');
  const b = await tokenUser(T({ sub: 'other' }));
  expectRefused(await b.join(MUC('[acme]room1'), 'c31b'), { text: 'Room and token mismatched' });
  const c = await tokenUser(T({ sub: '*' }));
  expectJoined(await c.join(MUC('[acme]room1'), 'c31c'), 'sub *');
});

test('case 32: regex room "^room%d+$" → room42 allowed; roomx → Room name cannot be matched… <room-name-does-not-match/>', async () => {
  await ensureRooms(MUC('room42'), MUC('roomx'));
  const token = T({ room: '^room%d+$', context: { room: { regex: true } } });
  const a = await tokenUser(token);
  expectJoined(await a.join(MUC('room42'), 'c32a'), 'room42');
  const b = await tokenUser(token);
  expectRefused(await b.join(MUC('roomx'), 'c32b'),
    { text: 'Room name cannot be matched to the one from token.', jitmeet: 'room-name-does-not-match' });
});

test('case 33: domain verification off, sub "nonsense" → [acme]room1 allowed; room2 → Room does not match the room from token <room-mismatch/>', async () => {
  const host = 'nodv.example.com';
  await ensureRooms(MUC('[acme]room1', host), MUC('room2', host));
  const token = T({ sub: 'nonsense' });
  const a = await tokenUser(token, { domain: host });
  expectJoined(await a.join(MUC('[acme]room1', host), 'c33a'), '[acme]room1');
  const b = await tokenUser(token, { domain: host });
  expectRefused(await b.join(MUC('room2', host), 'c33b'),
    { text: 'Room does not match the room from token', jitmeet: 'room-mismatch' });
});

test('case 34 (difference 2): token without sub, domain verification on → Room and token mismatched', async () => {
  await ensureRoom(MUC('room1'));
  const c = await tokenUser(T({ sub: undefined }));
  expectRefused(await c.join(MUC('room1'), 'c34'), { text: 'Room and token mismatched' });
});

test('case 35: focus (admin), recorder@recorder.meet.example.com and an allowlisted domain join without a token', async () => {
  await ensureRoom(MUC('room1'));
  const f = await focus.join(MUC('room35'), 'focus');
  expectJoined(f, 'focus creating room35');
  rooms.add(MUC('room35'));
  const rec = await login({ jid: 'recorder@recorder.meet.example.com', password: RECORDER_PASSWORD, domain: 'recorder.meet.example.com', plain: true });
  expectLoginOk(rec, 'recorder login');
  expectJoined(await rec.join(MUC('room1'), 'recorder'), 'recorder');
  const allowed = await login({ domain: 'allowed.example.com' });
  expectLoginOk(allowed, 'allowed.example.com login');
  expectJoined(await allowed.join(MUC('room1'), 'allowlisted'), 'allowlisted domain');
});

test('case 36: guest (no token) joins room1: domain verification on → room-name-does-not-match; off (nodv) → allowed', async () => {
  await ensureRooms(MUC('room1'), MUC('room1', 'nodv.example.com'));
  const g = await login({ domain: 'guest.meet.example.com' });
  expectLoginOk(g, 'guest login');
  expectRefused(await g.join(MUC('room1'), 'guest'),
    { text: 'Room name cannot be matched to the one from token.', jitmeet: 'room-name-does-not-match' });
  expectJoined(await g.join(MUC('room1', 'nodv.example.com'), 'guest'), 'guest on nodv');
});

test('case 37: allow_empty_token, no token: locked1 (allowUnauthenticatedAccess=false) → Authentication required; room1 → allowed', async () => {
  const host = 'empty.example.com';
  await ensureRooms(MUC('locked1', host), MUC('room1', host));
  const c = await login({ domain: host });
  expectLoginOk(c);
  expectRefused(await c.join(MUC('locked1', host), 'c37'),
    { text: 'Authentication required', jitmeet: 'authentication-required' });
  expectJoined(await c.join(MUC('room1', host), 'c37'), 'room1');
});

test('case 38 (difference 9): first presence to a nonexistent room: matching token creates it; token for room1 → Room and token mismatched', async () => {
  const a = await tokenUser(T({ room: 'newroom38' }));
  const j = await a.join(MUC('newroom38'), 'creator');
  expectJoined(j, 'matching token to newroom38');
  const codes = [...(findChild(j.presence, 'x', NS.MUC_USER)?.getElementsByTagName('status') ?? [])].map((s) => s.getAttribute('code'));
  check(codes.includes('201'), `self-presence status codes ${codes.join(',')} (201 = room created) `);
  const b = await tokenUser(T());
  expectRefused(await b.join(MUC('newroom38b'), 'c38'), { text: 'Room and token mismatched' });
});

test('case 39: context.tenant "Acme", sub "acme": prefix=acme → no mismatch; prefix=other → mismatch flag, allowed; flag false → Room and token mismatched', async () => {
  await ensureRooms(MUC('[acme]room1'), MUC('[acme]locked39'));
  const token = (room) => T({ sub: 'acme', room, context: { tenant: 'Acme', user: { id: `tenant-${room}` } } });
  const a = await tokenUser(token('room1'), { query: { prefix: 'acme' } });
  expectJoined(await a.join(MUC('[acme]room1'), 'c39a'), 'prefix=acme');
  check(!(await a.report()).jitsi_meet_tenant_mismatch, 'prefix=acme: tenant_mismatch set');
  const b = await tokenUser(token('room1'), { query: { prefix: 'other' } });
  expectJoined(await b.join(MUC('[acme]room1'), 'c39b'), 'prefix=other, flag nil');
  check((await b.report()).jitsi_meet_tenant_mismatch === true, 'prefix=other: tenant_mismatch not set');
  const c = await tokenUser(token('locked39'), { query: { prefix: 'other' } });
  expectRefused(await c.join(MUC('[acme]locked39'), 'c39c'), { text: 'Room and token mismatched' });
  const d = await tokenUser(token('locked39'), { query: { prefix: 'acme' } });
  expectJoined(await d.join(MUC('[acme]locked39'), 'c39d'), 'prefix=acme, flag false');
});

// --- Joins after login: the login's verdict, not the token's age ---------------------------------

// Leaves `room` and waits for the unavailable self-presence.
async function leave(c, room, nick) {
  const to = `${room}/${nick}`.toLowerCase();
  const gone = c.waitFor((st) => localName(st) === 'presence' && st.getAttribute('type') === 'unavailable'
    && st.getAttribute('from')?.toLowerCase() === to, 5000, `leave ${to}`);
  c.send($pres({ to: `${room}/${nick}`, type: 'unavailable' }).tree());
  await gone;
}

async function restartDaemon(label) {
  process.kill(daemon.pid, 'SIGKILL');
  await new Promise((r) => (daemon.exited ? r() : daemon.proc.once('exit', r)));
  const t0 = performance.now();
  startDaemon();
  return timeToRecovery(t0, 5000, label);
}

test('joins after login: a 5 s token logs in, 7 s later joins its room and is refused another; after a daemon restart (login forgotten) the same', async () => {
  await ensureRooms(MUC('room1'), MUC('room2'));
  const c = await tokenUser(T({ ...user('late-joiner'), exp: now() + 5, iat: now() }));
  await sleep(7000);
  expectJoined(await c.join(MUC('room1'), 'late'), 'room1 after the token expired');
  expectRefused(await c.join(MUC('room2'), 'late'), { text: 'Room and token mismatched' });
  await leave(c, MUC('room1'), 'late');
  note(`joins after login: the daemon restarted; first login ${await restartDaemon('after-forget')} ms later`);
  expectJoined(await c.join(MUC('room1'), 'late'), 'room1 again, the daemon having forgotten the login');
  expectRefused(await c.join(MUC('room2'), 'late'), { text: 'Room and token mismatched' });
}, { timeoutMs: 30000 });

test('joins after login: a session whose key came from a pre-jitsi-authentication-fetch-key handler (public_key) joins its room', async () => {
  await ensureRoom(MUC('room1', 'asap.example.com'));
  keyServer.set('jitsi/pubkey-only', '404');
  const token = rs({ ...user('pubkey-user'), room: 'room1' }, { kid: 'jitsi/pubkey-only' });
  const c = await tokenUser(token, { domain: 'asap.example.com', query: { room: 'pubkey' } });
  expectJoined(await c.join(MUC('room1', 'asap.example.com'), 'pubkey'), 'room1 on asap.example.com');
  expectRefused(await c.join(MUC('room2', 'asap.example.com'), 'pubkey'), { text: 'Room and token mismatched' });
  check(keyServer.count('jitsi/pubkey-only') === 0, `the key server was asked ${keyServer.count('jitsi/pubkey-only')} time(s)`);
});

test('joins after login: a session that logged in on another VirtualHost (RS256 on asap.example.com) joins a room under meet.example.com\'s rules', async () => {
  await ensureRooms(MUC('room1'), MUC('room2'));
  keyServer.set('jitsi/key1', 'ok');
  const c = await tokenUser(rs({ ...user('elsewhere'), sub: 'meet.example.com' }), { domain: 'asap.example.com' });
  expectJoined(await c.join(MUC('room1'), 'elsewhere'), 'room1@conference.meet.example.com');
  expectRefused(await c.join(MUC('room2'), 'elsewhere'), { text: 'Room and token mismatched' });
});

test('joins after login: a guest that sent ?token= to an anonymous host has a token but no claims → room-name-does-not-match (domain verification on), allowed (off)', async () => {
  await ensureRooms(MUC('room1'), MUC('room1', 'nodv.example.com'));
  const g = await login({ domain: 'guest.meet.example.com', query: { token: T(user('guest-with-token')) } });
  expectLoginOk(g, 'anonymous login carrying a token');
  expectRefused(await g.join(MUC('room1'), 'guest-token'),
    { text: 'Room name cannot be matched to the one from token.', jitmeet: 'room-name-does-not-match' });
  expectJoined(await g.join(MUC('room1', 'nodv.example.com'), 'guest-token'), 'nodv room1');
});

test('difference 6: jigasi initiator / transcriber feature in a non-admin presence is no bypass', async () => {
  await ensureRooms(MUC('room1'), MUC('room2'));
  const jigasi = (p) => p.c('initiator', { xmlns: NS.JIGASI }).up();
  const transcriber = (p) => p.c('features').c('feature', { var: NS.TRANSCRIBER }).up().up();
  const g = await login({ domain: 'guest.meet.example.com' });
  expectLoginOk(g, 'guest login');
  expectRefused(await g.join(MUC('room1'), 'fake-jigasi', { extra: jigasi }),
    { text: 'Room name cannot be matched to the one from token.', jitmeet: 'room-name-does-not-match' });
  expectRefused(await g.join(MUC('room1'), 'fake-transcriber', { extra: transcriber }),
    { text: 'Room name cannot be matched to the one from token.', jitmeet: 'room-name-does-not-match' });
  const t = await tokenUser(T());
  expectRefused(await t.join(MUC('room2'), 'fake-jigasi', { extra: jigasi }), { text: 'Room and token mismatched' });
});

test('identity: occupants see each other\'s token identity (context.user id/name); a client-written <identity> is dropped', async () => {
  await ensureRoom(MUC('room1'));
  const room = MUC('room1');
  const a = await tokenUser(T(user('alice', 'Alice')));
  const spoof = (p) => p.c('identity').c('user').c('id').t('mallory').up().c('name').t('Mallory').up().up().up();
  expectJoined(await a.join(room, 'alice', { extra: spoof }), 'alice');
  const b = await tokenUser(T(user('bob', 'Bob')));
  expectJoined(await b.join(room, 'bob'), 'bob');
  const identityOf = (st) => {
    const idEl = findChild(st, 'identity');
    const u = idEl && findChild(idEl, 'user');
    return u ? { id: textOf(findChild(u, 'id')), name: textOf(findChild(u, 'name')), count: elementChildren(st).filter((e) => localName(e) === 'identity').length } : undefined;
  };
  const fromNick = (nick) => (st) => localName(st) === 'presence' && st.getAttribute('from')?.toLowerCase() === `${room}/${nick}`
    && st.getAttribute('type') !== 'unavailable';
  const aSeenByB = identityOf(await b.waitFor(fromNick('alice'), 4000, 'bob sees alice'));
  const bSeenByA = identityOf(await a.waitFor(fromNick('bob'), 4000, 'alice sees bob'));
  check(aSeenByB?.id === 'alice' && aSeenByB?.name === 'Alice' && aSeenByB.count === 1, `bob sees alice as ${JSON.stringify(aSeenByB)}`);
  check(bSeenByA?.id === 'bob' && bSeenByA?.name === 'Bob' && bSeenByA.count === 1, `alice sees bob as ${JSON.stringify(bSeenByA)}`);
});

// --- BOSH ------------------------------------------------------------------------------------

saslCases('bosh');

test('case 28 (BOSH): T joins room1 → allowed; room2 → Room and token mismatched', async () => {
  await ensureRooms(MUC('room1'), MUC('room2'));
  const c = await tokenUser(T(user('bosh-user')), { transport: 'bosh' });
  expectJoined(await c.join(MUC('room1'), 'bosh1'), 'room1');
  expectRefused(await c.join(MUC('room2'), 'bosh1'), { text: 'Room and token mismatched' });
});

// --- Native client over c2s TCP (tokio-xmpp) ---------------------------------------------------
// examples/xmpp_login.rs (built by `cargo test` / `cargo build --examples`): plain TCP, SASL
// ANONYMOUS, bind; no URL, so no ?token=. Prints one JSON line. Skipped when not built.

const xmppLoginBin = resolve(args['xmpp-login'] ?? [join(dirname(daemonBin), 'examples/xmpp_login'),
  join(repo, 'target/debug/examples/xmpp_login')].find((p) => existsSync(p)) ?? join(repo, 'target/debug/examples/xmpp_login'));

// Resolves the client's JSON ({ ok, jid } or { ok: false, condition, text } or { ok: false, error }).
function rustLogin(domain) {
  return new Promise((done) => {
    execFile(xmppLoginBin, ['--server', `127.0.0.1:${ports.c2s}`, '--domain', domain], { timeout: 15000 }, (err, stdout, stderr) => {
      const exit = err ? (err.code ?? err.signal) : 0;
      try {
        done({ ...JSON.parse(stdout.trim().split('\n').pop()), exit });
      } catch {
        done({ ok: false, exit, error: `no JSON line (exit ${exit}): ${`${stdout}${stderr}`.trim()}` });
      }
    });
  });
}

const describeRust = (r) => (r.ok ? `logged in as ${r.jid}`
  : r.condition ? `<${r.condition}/> "${r.text}"` : `error: ${r.error}`);

function expectRustJid(r, domain) {
  check(r.ok && r.exit === 0, `expected success on ${domain}, got ${describeRust(r)} (exit ${r.exit})`);
  const [local, host] = r.jid.split('/')[0].split('@');
  check(host === domain && UUID.test(local), `JID ${r.jid}`);
}

function rustTest(name, fn) {
  if (existsSync(xmppLoginBin)) test(name, fn);
  else test(`${name} # skipped: ${xmppLoginBin} not built (cargo test --no-run or cargo build --examples)`, async () => {});
}

rustTest('native client (tokio-xmpp, c2s TCP): anonymous host anon.example.com → logs in (the shim\'s ANONYMOUS leaves anonymous hosts alone)', async () => {
  expectRustJid(await rustLogin('anon.example.com'), 'anon.example.com');
});

rustTest('native client (tokio-xmpp, c2s TCP): token host, no token possible over TCP → <not-allowed/> token required', async () => {
  const r = await rustLogin('meet.example.com');
  check(!r.ok && r.condition === 'not-allowed' && r.text === 'token required' && r.exit === 1,
    `expected <not-allowed/> "token required" (exit 1), got ${describeRust(r)} (exit ${r.exit})`);
});

rustTest('native client (tokio-xmpp, c2s TCP): allow_empty_token host empty.example.com → logs in', async () => {
  expectRustJid(await rustLogin('empty.example.com'), 'empty.example.com');
});

// --- Access tokens (issue 9): mod_access_token (muc#access-token IQ) and mod_short_lived_token --
// (XEP-0215 credentials), issued by the daemon; introspection on its HTTP listener.

const ACCESS_NS = 'http://jabber.org/protocol/muc#access-token';
const EXTDISCO = 'urn:xmpp:extdisco:2';
const ROOM1 = MUC('room1');
const FOCUS_MUC_JID = `${ROOM1}/focus`; // the plugin README's focusMucJid

let iqSeq = 0;
const accessIq = (to, type = 'get') => $iq({ type, to, id: `at-${++iqSeq}` }).c('query', { xmlns: ACCESS_NS });
const credentialsIq = (...hosts) => {
  const iq = $iq({ type: 'get', to: 'meet.example.com', id: `slt-${++iqSeq}` }).c('credentials', { xmlns: EXTDISCO });
  for (const host of hosts) iq.c('service', { type: 'short-lived-token', host }).up();
  return iq;
};

// Sends an IQ and resolves { reply, replies }: its first answer, and how many answers (results and
// errors with its id) arrived by `settleMs` after the first.
async function ask(c, builder, { settleMs = 0, timeoutMs = 5000 } = {}) {
  const tree = builder.tree();
  const id = tree.getAttribute('id');
  const mine = (st) => localName(st) === 'iq' && st.getAttribute('id') === id && ['result', 'error'].includes(st.getAttribute('type'));
  const first = c.waitFor(mine, timeoutMs, `answer to IQ ${id}`);
  c.send(tree);
  const reply = await first;
  if (settleMs) await sleep(settleMs);
  return { reply, replies: c.stanzas.filter(mine).length };
}

function iqError(st) {
  const err = findChild(st, 'error');
  if (st.getAttribute('type') !== 'error' || !err) return undefined;
  const cond = elementChildren(err).find((c) => c.namespaceURI === NS.STANZAS && localName(c) !== 'text');
  return { type: err.getAttribute('type'), condition: cond ? localName(cond) : undefined,
    text: textOf(elementChildren(err).find((c) => localName(c) === 'text')) };
}
const describeIq = (st) => (iqError(st) ? `error ${JSON.stringify(iqError(st))}` : serialize(st));

function expectIqError(st, type, condition) {
  const e = iqError(st);
  check(e && e.type === type && e.condition === condition, `expected ${type}/${condition}, got ${describeIq(st)}`);
}

// The README's browser code: $(result).find("token").attr("data").
function tokenOf(result) {
  check(result.getAttribute('type') === 'result', `expected a result, got ${describeIq(result)}`);
  const el = findDeep(result, (e) => localName(e) === 'token');
  check(el?.getAttribute('data'), `no <token data=…/> in ${serialize(result)}`);
  return { alg: el.getAttribute('alg'), token: el.getAttribute('data') };
}

function shortLivedOf(result) {
  check(result.getAttribute('type') === 'result', `expected a result, got ${describeIq(result)}`);
  return findDeep(result, (e) => localName(e) === 'service' && e.getAttribute('type') === 'short-lived-token');
}

function decodeJwt(token) {
  const [h, p, sig] = token.split('.');
  return { header: JSON.parse(Buffer.from(h, 'base64url')), payload: JSON.parse(Buffer.from(p, 'base64url')), input: `${h}.${p}`, sig };
}

// A token signed like the short-lived ones (ES256), for the refusals of the example service.
function es256(header, payload, key = sltKeys.privateKey) {
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(payload))}`;
  return `${input}.${rsaSign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

// A token login on meet.example.com whose URL names room1, joined to room1 as `nick`.
async function occupant(nick, query = { room: 'room1' }) {
  await ensureRoom(ROOM1);
  const c = await tokenUser(T(user(nick)), { query });
  expectJoined(await c.join(ROOM1, nick), `${nick} joining room1`);
  return c;
}

function requireHttp() {
  check(daemonConfig, `the daemon has no HTTP listener: ${daemonConfigProblem}`);
}

async function introspect(token, secret = INTROSPECT_SECRET) {
  const res = await fetch(`http://127.0.0.1:${ports.api}/v1/introspect`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }).toString(),
    signal: AbortSignal.timeout(2000),
  });
  const text = await res.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: res.status, body };
}

// Polls introspection every 100 ms until `active` is `want`; returns ms taken, or throws after limitMs.
async function introspectUntil(token, want, limitMs, what) {
  const t0 = performance.now();
  let last;
  for (;;) {
    try { last = await introspect(token); } catch (e) { last = { error: e.message }; }
    if (last.body?.active === want) return ms(t0);
    if (performance.now() - t0 > limitMs) throw new Failure(`${what}: active is not ${want} after ${limitMs} ms (last: ${JSON.stringify(last)})`);
    await sleep(100);
  }
}

test('access tokens: an occupant asks focusMucJid and gets <token alg="HS256" data=JWT/>; claims userJid, host, room, exp, iss, iat, jti, occupant', async () => {
  const c = await occupant('at-claims');
  const { reply, replies } = await ask(c, accessIq(FOCUS_MUC_JID), { settleMs: 300 });
  const { alg, token } = tokenOf(reply);
  check(replies === 1, `${replies} answers to one IQ`);
  check(alg === 'HS256', `alg="${alg}"`);
  check(reply.getAttribute('from') === FOCUS_MUC_JID && reply.getAttribute('to') === c.result.jid,
    `result from ${reply.getAttribute('from')} to ${reply.getAttribute('to')}`);
  const { header, payload, input, sig } = decodeJwt(token);
  check(header.alg === 'HS256' && header.typ === 'JWT', `header ${JSON.stringify(header)}`);
  check(createHmac('sha256', ACCESS_KEY).update(input).digest('base64url') === sig, 'signature does not verify with access_token_key');
  check(payload.userJid === c.result.jid, `userJid ${payload.userJid}, sender ${c.result.jid}`);
  check(payload.host === 'meet.example.com' && payload.room === 'room1', `host ${payload.host}, room ${payload.room}`);
  check(payload.iss === 'conference.meet.example.com', `iss ${payload.iss}`);
  check(Number.isInteger(payload.iat) && Math.abs(payload.iat - now()) <= 5 && payload.exp - payload.iat === 60,
    `iat ${payload.iat}, exp ${payload.exp} (access_token_exp 60)`);
  check(typeof payload.jti === 'string' && payload.jti.length >= 8, `jti ${payload.jti}`);
  const o = payload.occupant ?? {};
  check(o.room === ROOM1 && o.jid === c.result.jid && o.nick === 'at-claims' && o.role === 'participant' && o.affiliation === 'none',
    `occupant ${JSON.stringify(o)}`);
});

test('access tokens: the IQ to the bare room JID gets a token as well', async () => {
  const c = await occupant('at-bare');
  const { reply } = await ask(c, accessIq(ROOM1));
  const { payload } = decodeJwt(tokenOf(reply).token);
  check(payload.room === 'room1' && payload.occupant?.jid === c.result.jid, `payload ${JSON.stringify(payload)}`);
});

test('difference 4: access tokens only for occupants: a non-occupant gets exactly one <forbidden/> (auth); a room that does not exist → <item-not-found/>', async () => {
  await ensureRoom(ROOM1);
  const c = await tokenUser(T(user('at-outsider')), { query: { room: 'room1' } });
  const a = await ask(c, accessIq(FOCUS_MUC_JID), { settleMs: 500 });
  expectIqError(a.reply, 'auth', 'forbidden');
  check(a.replies === 1, `${a.replies} answers to one IQ`);
  const b = await ask(c, accessIq(ROOM1), { settleMs: 300 });
  expectIqError(b.reply, 'auth', 'forbidden');
  check(b.replies === 1, `bare room JID: ${b.replies} answers to one IQ`);
  const d = await ask(c, accessIq(`${MUC('nosuchroom-at')}/focus`), { settleMs: 300 });
  expectIqError(d.reply, 'cancel', 'item-not-found');
  check(d.replies === 1, `nonexistent room: ${d.replies} answers to one IQ`);
});

test('access tokens: type set with the same payload goes to mod_muc untouched (routed to the occupant, or its own error), never a token', async () => {
  const c = await occupant('at-set');
  const seenByFocus = focus.stanzas.length;
  const toFocus = accessIq(FOCUS_MUC_JID, 'set');
  const id = toFocus.tree().getAttribute('id');
  c.send(toFocus.tree());
  const routed = await focus.waitFor((st) => localName(st) === 'iq' && st.getAttribute('type') === 'set'
    && st.getAttribute('from') === `${ROOM1}/at-set` && focus.stanzas.indexOf(st) >= seenByFocus, 3000, 'the set IQ routed to focus');
  check(findChild(routed, 'query', ACCESS_NS), `focus got ${serialize(routed)}`);
  await sleep(300);
  const answers = c.stanzas.filter((st) => st.getAttribute('id') === id && localName(st) === 'iq');
  check(!answers.some((st) => findDeep(st, (e) => localName(e) === 'token')), `the sender got a token: ${answers.map(serialize).join(' ')}`);
  const { reply } = await ask(c, accessIq(`${ROOM1}/nobody-here`, 'set'));
  const e = iqError(reply);
  check(e?.condition === 'item-not-found' && e.text === 'Recipient not in room', `set to an absent nick: ${describeIq(reply)} (mod_muc says "Recipient not in room")`);
});

test(`access tokens: per-occupant rate limit (access_token_rate_limit = ${ACCESS_RATE_LIMIT}): request ${ACCESS_RATE_LIMIT + 1} in a row → wait/resource-constraint`, async () => {
  const c = await occupant('at-rate');
  for (let i = 1; i <= ACCESS_RATE_LIMIT; i++) tokenOf((await ask(c, accessIq(FOCUS_MUC_JID))).reply);
  const { reply, replies } = await ask(c, accessIq(FOCUS_MUC_JID), { settleMs: 300 });
  expectIqError(reply, 'wait', 'resource-constraint');
  check(replies === 1, `${replies} answers to one IQ`);
});

test('difference 13: access tokens: mod_short_lived_token runs on this Prosody (0.12 too): an occupant (?room=room1, joined) gets <service type="short-lived-token" host="file-sharing" username="token" password=JWT …/>', async () => {
  const c = await occupant('slt-occupant');
  const { reply, replies } = await ask(c, credentialsIq(SLT.audience), { settleMs: 300 });
  check(replies === 1, `${replies} answers to one IQ`);
  const srv = shortLivedOf(reply);
  check(srv, `no short-lived-token service in ${serialize(reply)}`);
  const attr = (n) => srv.getAttribute(n);
  check(attr('host') === SLT.audience && attr('username') === 'token' && attr('transport') === 'https' && attr('port') === '443'
    && ['1', 'true'].includes(attr('restricted')), `service ${serialize(srv)}`);
  const expires = Date.parse(attr('expires')) / 1000;
  check(Math.abs(expires - (now() + SLT.ttl)) <= 5, `expires ${attr('expires')} (ttl ${SLT.ttl} s)`);
  const { header, payload, input, sig } = decodeJwt(attr('password'));
  check(header.alg === 'ES256' && header.kid === SLT.kid, `header ${JSON.stringify(header)}`);
  check(cryptoVerify('sha256', Buffer.from(input), { key: sltKeys.publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig, 'base64url')),
    'signature does not verify with the short_lived_token key');
  check(payload.iss === SLT.issuer && payload.aud === SLT.audience && payload.sub === 'meet.example.com' && payload.room === 'room1',
    `iss ${payload.iss}, aud ${payload.aud}, sub ${payload.sub}, room ${payload.room}`);
  check(payload.exp - payload.nbf === SLT.ttl, `nbf ${payload.nbf}, exp ${payload.exp}`);
  check(payload.context?.user?.id === 'slt-occupant', `context ${JSON.stringify(payload.context)}`);
  check(payload.occupant?.room === ROOM1 && payload.occupant?.jid === c.result.jid, `occupant ${JSON.stringify(payload.occupant)}`);
});

test('difference 12: access tokens: short-lived, a non-occupant gets exactly one cancel/not-allowed; so does a session without ?room=', async () => {
  await ensureRoom(ROOM1);
  for (const [who, query] of [['slt-outsider', { room: 'room1' }], ['slt-roomless', {}]]) {
    const c = await tokenUser(T(user(who)), { query });
    const { reply, replies } = await ask(c, credentialsIq(SLT.audience), { settleMs: 500 });
    expectIqError(reply, 'cancel', 'not-allowed');
    check(replies === 1, `${who}: ${replies} answers to one IQ (Jitsi's module sends two)`);
  }
});

test('access tokens: short-lived: a service host not in accepted_audiences is left to mod_external_services (a result, no token)', async () => {
  const c = await occupant('slt-other-aud');
  const { reply, replies } = await ask(c, credentialsIq('not-accepted'), { settleMs: 300 });
  check(replies === 1, `${replies} answers to one IQ`);
  check(reply.getAttribute('type') === 'result', `expected mod_external_services's result, got ${describeIq(reply)}`);
  const creds = findDeep(reply, (e) => localName(e) === 'credentials');
  check(creds && elementChildren(creds).length === 0, `credentials ${serialize(creds)}`);
});

test('access tokens: introspection: active while the holder is in the room, inactive within 1 s of leaving; a wrong secret never sees active', async () => {
  requireHttp();
  const c = await occupant('at-intro');
  const { token } = tokenOf((await ask(c, accessIq(FOCUS_MUC_JID))).reply);
  const live = await introspect(token);
  check(live.status === 200 && live.body?.active === true, `introspection while in the room: ${live.status} ${JSON.stringify(live.body)}`);
  check(live.body.userJid === c.result.jid && live.body.occupant?.room === ROOM1, `claims ${JSON.stringify(live.body)}`);
  const wrong = await introspect(token, 'not-the-secret');
  check(wrong.body?.active !== true, `wrong secret: ${wrong.status} ${JSON.stringify(wrong.body)}`);
  await leave(c, ROOM1, 'at-intro');
  const took = await introspectUntil(token, false, 1000, 'after leaving');
  note(`introspection: inactive ${took} ms after the leave was acknowledged`);
});

test('access tokens: after a daemon restart, an occupant who joined before it is still active (the shim re-sends the occupancy)', async () => {
  requireHttp();
  const c = await occupant('at-restart');
  const { token } = tokenOf((await ask(c, accessIq(FOCUS_MUC_JID))).reply);
  check((await introspect(token)).body?.active === true, 'not active before the restart');
  const gone = await occupant('at-gone-before-restart');
  const goneToken = tokenOf((await ask(gone, accessIq(FOCUS_MUC_JID))).reply).token;
  await leave(gone, ROOM1, 'at-gone-before-restart');
  process.kill(daemon.pid, 'SIGKILL');
  await new Promise((r) => (daemon.exited ? r() : daemon.proc.once('exit', r)));
  startDaemon();
  const took = await introspectUntil(token, true, 5000, 'after the restart');
  note(`daemon restart: the occupant's token active again ${took} ms after the daemon was spawned`);
  check((await introspect(goneToken)).body?.active === false, 'a holder who left before the restart is active after it');
}, { timeoutMs: 30000 });

test('access tokens: one user in two sessions under one nick: when one session leaves its token goes inactive, the other stays active', async () => {
  requireHttp();
  await ensureRoom(ROOM1);
  const sessions = [];
  for (const resource of ['a', 'b']) {
    const c = await login({ jid: `recorder@recorder.meet.example.com/at-multi-${resource}`, password: RECORDER_PASSWORD,
      domain: 'recorder.meet.example.com', plain: true });
    expectLoginOk(c, `recorder session ${resource}`);
    expectJoined(await c.join(ROOM1, 'at-multi'), `session ${resource} joining room1 as at-multi`);
    sessions.push(c);
  }
  const [a, b] = sessions;
  const tokenA = tokenOf((await ask(a, accessIq(FOCUS_MUC_JID))).reply).token;
  const tokenB = tokenOf((await ask(b, accessIq(FOCUS_MUC_JID))).reply).token;
  check((await introspect(tokenA)).body?.active === true && (await introspect(tokenB)).body?.active === true, 'both sessions active');
  await leave(a, ROOM1, 'at-multi');
  await introspectUntil(tokenA, false, 1000, 'the session that left');
  check((await introspect(tokenB)).body?.active === true, 'the session still in the room is no longer active');
  await leave(b, ROOM1, 'at-multi');
  await introspectUntil(tokenB, false, 1000, 'the last session, after it left');
});

test('access tokens: mod_access_token without a key (conference.nodv.example.com): settings refused, the option named in the log; requests get cancel/service-unavailable, never a token', async () => {
  const room = MUC('room1', 'nodv.example.com');
  await ensureRoom(room);
  const c = await tokenUser(T(user('at-nokey'), { sub: 'nodv.example.com' }), { domain: 'nodv.example.com' });
  expectJoined(await c.join(room, 'at-nokey'), 'joining room1 on nodv');
  const { reply, replies } = await ask(c, accessIq(`${room}/focus`), { settleMs: 300 });
  expectIqError(reply, 'cancel', 'service-unavailable');
  check(replies === 1, `${replies} answers to one IQ`);
  const log = readFileSync(join(tmp, 'prosody.log'), 'utf8').split('\n')
    .filter((l) => l.includes('conference.nodv.example.com') && /\terror\t/.test(l));
  check(log.some((l) => l.includes('access_token_key')), `no error naming access_token_key in Prosody's log: ${log.join(' | ')}`);
});

const apiServiceBin = resolve(args['api-service'] ?? [join(dirname(daemonBin), 'examples/api_service'),
  join(repo, 'target/debug/examples/api_service')].find((p) => existsSync(p)) ?? join(dirname(daemonBin), 'examples/api_service'));

const apiServiceCase = 'access tokens: the example API service: an occupant with a short-lived ES256 token → 200; for another room → 403; after leaving → 403; garbage, expired, other-key and HS256 tokens → 401';
if (!existsSync(apiServiceBin)) test(`${apiServiceCase} # skipped: ${apiServiceBin} not built (cargo build --examples)`, async () => {});
else test(apiServiceCase, async () => {
  requireHttp();
  const port = await freePort();
  const api = spawnTracked(apiServiceBin, ['--listen', `127.0.0.1:${port}`,
    '--jwks', `http://127.0.0.1:${ports.api}/.well-known/jwks.json`, '--introspect', `http://127.0.0.1:${ports.api}/v1/introspect`,
    '--introspect-secret-file', join(tmp, 'introspect-secret')], join(tmp, 'api-service.log'));
  try {
    await waitForTcp(port, 10000, () => !api.exited);
    const whoami = async (token, query = '') => (await fetch(`http://127.0.0.1:${port}/whoami${query}`,
      { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(3000) })).status;
    const c = await occupant('api-user');
    const srv = shortLivedOf((await ask(c, credentialsIq(SLT.audience))).reply);
    check(srv, 'no short-lived token');
    const token = srv.getAttribute('password');
    check(await whoami(token) === 200, `current participant: /whoami answered ${await whoami(token)}`);
    const own = `?room=${encodeURIComponent(ROOM1)}`;
    check(await whoami(token, own) === 200, `its own room: /whoami${own} answered ${await whoami(token, own)}`);
    const other = `?room=${encodeURIComponent(ROOM1.replace(/^[^@]+/, 'room2'))}`;
    check(await whoami(token, other) === 403, `another room: /whoami${other} answered ${await whoami(token, other)}`);
    const { header, payload } = decodeJwt(token);
    const expired = es256(header, { ...payload, nbf: now() - 120, exp: now() - 60 });
    const otherKey = es256(header, payload, generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey);
    const hs = tokenOf((await ask(c, accessIq(FOCUS_MUC_JID))).reply).token;
    for (const [what, t] of [['garbage', 'not.a.token'], ['expired', expired], ['signed by another key', otherKey], ['HS256 (contrib) token', hs]]) {
      const status = await whoami(t);
      check(status === 401, `${what}: /whoami answered ${status}, expected 401`);
    }
    await leave(c, ROOM1, 'api-user');
    let status;
    for (let i = 0; i < 15 && (status = await whoami(token)) !== 403; i++) await sleep(100);
    check(status === 403, `after leaving: /whoami answered ${status}, expected 403`);
  } finally {
    await stopTracked(api);
  }
}, { timeoutMs: 30000 });

// --- Metrics (GET /metrics on the daemon's HTTP listener, docs/METRICS.md) ----------------------

// The daemon's GET /metrics in the Prometheus text format: { samples: Map('name{labels}' → value), text }.
async function scrapeMetrics() {
  const res = await fetch(`http://127.0.0.1:${ports.api}/metrics`, { signal: AbortSignal.timeout(2000) });
  const text = await res.text();
  check(res.status === 200, `GET /metrics answered ${res.status}: ${text.slice(0, 200)}`);
  const type = res.headers.get('content-type') ?? '';
  check(type.startsWith('text/plain; version=0.0.4'), `GET /metrics content type "${type}"`);
  const samples = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    samples.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return { samples, text };
}

test('metrics: GET /metrics counts real logins, joins, key fetches, access tokens and an introspection by result and reason, exactly; no label value comes from a client', async () => {
  requireHttp();
  await ensureRoom(ROOM1);
  const marker = 'Mx9probe';
  const missingKid = `${marker}/missing-${process.pid}-${Date.now()}`;
  const okKid = `${marker}/ok-${process.pid}-${Date.now()}`;
  keyServer.set(missingKid, '404');
  keyServer.set(okKid, 'ok');
  const before = await scrapeMetrics();

  // Logins: 3 accepted, 4 refused for known reasons.
  const a = await tokenUser(T(user(`${marker}-a`)), { query: { room: 'room1' } });
  expectSaslFailure(await login({ query: { token: T(user(`${marker}-b`), { secret: 'wrong' }) } }), 'Invalid signature');
  expectSaslFailure(await login({ query: {} }), 'token required');
  expectSaslFailure(await login({ query: { token: T({ ...user(`${marker}-c`), exp: now() - 100 }) } }), /^Not acceptable by exp/);
  expectSaslFailure(await login({ domain: 'asap.example.com',
    query: { token: rs({ ...user(`${marker}-d`), room: `${marker}-room` }, { kid: missingKid }), room: `${marker}-url` } }),
  'could not obtain public key');
  expectLoginOk(await login({ domain: 'asap.example.com', query: { token: rs(user(`${marker}-e`), { kid: okKid }) } }), 'RS256 login, a fresh kid');
  const nosub = await tokenUser(T({ ...user(`${marker}-f`), sub: undefined }));
  // Joins: one allowed, one refused.
  expectJoined(await a.join(ROOM1, `${marker}-a`), 'joining room1');
  expectRefused(await nosub.join(ROOM1, `${marker}-f`), { text: 'Room and token mismatched' });
  // Access tokens through both doors: issued to the occupant, refused to the other session.
  const { token } = tokenOf((await ask(a, accessIq(FOCUS_MUC_JID))).reply);
  check(shortLivedOf((await ask(a, credentialsIq(SLT.audience))).reply), 'no short-lived token for the occupant');
  expectIqError((await ask(nosub, accessIq(FOCUS_MUC_JID))).reply, 'auth', 'forbidden');
  expectIqError((await ask(nosub, credentialsIq(SLT.audience))).reply, 'cancel', 'not-allowed');
  const live = await introspect(token);
  check(live.body?.active === true, `introspection: ${live.status} ${JSON.stringify(live.body)}`);

  const after = await scrapeMetrics();
  const expected = {
    'token_sidecar_logins_total{result="accepted"}': 3,
    'token_sidecar_logins_total{result="anonymous"}': 0,
    'token_sidecar_logins_total{result="refused",reason="signature"}': 1,
    'token_sidecar_logins_total{result="refused",reason="token_required"}': 1,
    'token_sidecar_logins_total{result="refused",reason="exp"}': 1,
    'token_sidecar_logins_total{result="refused",reason="key_unavailable"}': 1,
    'token_sidecar_logins_total{result="refused",reason="key_busy"}': 0,
    'token_sidecar_logins_total{result="error",reason="unknown_host"}': 0,
    'token_sidecar_requests_total{op="auth",result="ok"}': 3,
    'token_sidecar_requests_total{op="auth",result="refused"}': 4,
    'token_sidecar_room_checks_total{result="allowed"}': 1,
    'token_sidecar_room_checks_total{result="refused",reason="mismatched"}': 1,
    'token_sidecar_requests_total{op="room",result="ok"}': 1,
    'token_sidecar_requests_total{op="room",result="refused"}': 1,
    'token_sidecar_verify_cache_lookups_total{op="auth",result="miss"}': 6,
    'token_sidecar_verify_cache_lookups_total{op="auth",result="hit"}': 0,
    'token_sidecar_verify_cache_lookups_total{op="room",result="hit"}': 2,
    'token_sidecar_key_fetches_total{source="key_server",result="not_found"}': 1,
    'token_sidecar_key_fetches_total{source="key_server",result="ok"}': 1,
    'token_sidecar_key_fetch_duration_seconds_count{source="key_server"}': 2,
    'token_sidecar_access_tokens_total{door="muc",result="issued"}': 1,
    'token_sidecar_access_tokens_total{door="muc",result="refused",reason="not_occupant"}': 1,
    'token_sidecar_access_tokens_total{door="extdisco",result="issued"}': 1,
    'token_sidecar_access_tokens_total{door="extdisco",result="refused",reason="not_occupant"}': 1,
    'token_sidecar_introspections_total{result="active"}': 1,
  };
  const wrong = [];
  for (const [series, delta] of Object.entries(expected)) {
    const b = before.samples.get(series);
    const n = after.samples.get(series);
    if (b === undefined || n === undefined) wrong.push(`${series}: missing (before ${b}, after ${n})`);
    else if (n - b !== delta) wrong.push(`${series}: moved by ${n - b}, expected ${delta}`);
  }
  check(wrong.length === 0, wrong.join('; '));
  const leaked = after.text.toLowerCase().includes(marker.toLowerCase());
  check(!leaked, `a client's value in /metrics: ${after.text.split('\n').filter((l) => l.toLowerCase().includes(marker.toLowerCase())).join(' | ')}`);
  check(after.samples.get('token_sidecar_inflight_requests_limit') > 0, 'no in-flight limit');
  note(`metrics: ${after.samples.size} series, ${after.text.length} bytes; logins accepted ${after.samples.get('token_sidecar_logins_total{result="accepted"}')} since the daemon's last start`);
});

test('access tokens: the daemon down → wait/service-unavailable, one reply (both doors); back once it restarts', async () => {
  const c = await occupant('at-down');
  process.kill(daemon.pid, 'SIGKILL');
  await new Promise((r) => (daemon.exited ? r() : daemon.proc.once('exit', r)));
  try {
    for (const [door, iq] of [['muc#access-token', accessIq(FOCUS_MUC_JID)], ['short-lived', credentialsIq(SLT.audience)]]) {
      const { reply, replies } = await ask(c, iq, { settleMs: 500 });
      expectIqError(reply, 'wait', 'service-unavailable');
      check(iqError(reply).text === 'token service unavailable', `${door}: text "${iqError(reply).text}"`);
      check(replies === 1, `${door}: ${replies} answers to one IQ`);
    }
  } finally {
    startDaemon();
  }
  note(`access tokens, daemon down: token logins back ${await timeToRecovery(performance.now(), 5000, 'after-at-down')} ms after the restart`);
  tokenOf((await ask(c, accessIq(FOCUS_MUC_JID))).reply);
}, { timeoutMs: 30000 });

// --- Load and daemon failures ----------------------------------------------------------------

test('load: 200 concurrent token logins over WebSocket all succeed', async () => {
  const t0 = performance.now();
  const clients = await Promise.all(Array.from({ length: 200 }, (_, i) =>
    login({ query: { token: T(user(`load-${i}`)) } }, 30000)));
  const took = ms(t0);
  const failed = clients.filter((c) => !c.result.ok);
  note(`load: 200 concurrent WebSocket token logins in ${took} ms (${failed.length} failed)`);
  check(failed.length === 0, () => `${failed.length} of 200 failed, e.g. ${describeLogin(failed[0].result)}`);
  closeAll(new Set([focus]));
  await sleep(300);
}, { timeoutMs: 45000 });

// Every thread of `pid` stopped (state T)? A stop signal is taken by one thread, which then stops
// the others, so until it has run on a busy machine the process's other threads keep serving.
function allThreadsStopped(pid) {
  try {
    return readdirSync(`/proc/${pid}/task`).every((t) => {
      const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      return /^[Tt]$/.test(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]);
    });
  } catch { return false; }
}

// SIGSTOP, then wait (bounded) until the whole process is frozen.
async function freeze(pid) {
  process.kill(pid, 'SIGSTOP');
  for (let i = 0; i < 500 && !allThreadsStopped(pid); i++) await sleep(2);
  if (!allThreadsStopped(pid)) throw new Failure(`process ${pid} did not stop within 1 s of SIGSTOP`);
}

test('daemon hung (SIGSTOP): token login → temporary-auth-failure in ~timeout; anonymous login fast; token-checked join → wait/service-unavailable; recovers on SIGCONT', async () => {
  await ensureRoom(MUC('room1'));
  const u = await tokenUser(T(user('before-hang')));
  try {
    await freeze(daemon.pid);
    const t0 = performance.now();
    const tokenLogin = login({ query: { token: T(user('during-stop')) } }, 10000);
    const joinP = u.join(MUC('room1'), 'hung', { timeoutMs: 8000 }).then((j) => ({ ...j, ms: ms(t0) }));
    const anon = await login({ domain: 'anon.example.com' });
    const anonMs = ms(t0);
    expectLoginOk(anon, 'anonymous login while the daemon is stopped');
    const c = await tokenLogin;
    const j = await joinP;
    note(`daemon hung: token login refused after ${c.result.ms} ms, anonymous login took ${anonMs} ms, join refused after ${j.ms} ms`);
    expectSaslFailure(c, /token service unavailable/, 'temporary-auth-failure');
    check(c.result.ms <= 1000 + 2500, `token login took ${c.result.ms} ms (timeout 1 s + slack)`);
    check(anonMs < 1500, `anonymous login took ${anonMs} ms while the daemon was stopped`);
    expectRefused(j, { type: 'wait', condition: 'service-unavailable', text: /token service unavailable/ });
  } finally {
    process.kill(daemon.pid, 'SIGCONT');
  }
  const t1 = performance.now();
  let after;
  for (let i = 0; i < 20; i++) {
    after = await login({ query: { token: T(user('after-cont')) } });
    if (after.result.ok) break;
    await sleep(100);
  }
  expectLoginOk(after, 'token login after SIGCONT');
  note(`daemon hung: token login succeeded ${ms(t1)} ms after SIGCONT`);
}, { timeoutMs: 30000 });

// Repeats token logins until one succeeds; returns ms from t0 to that success.
async function timeToRecovery(t0, limitMs, label) {
  let last;
  while (performance.now() - t0 < limitMs) {
    last = await login({ query: { token: T(user(label)) } }, 5000);
    if (last.result.ok) return ms(t0);
    last.close();
    await sleep(20);
  }
  throw new Failure(`no token login succeeded within ${limitMs} ms (last: ${last ? describeLogin(last.result) : 'none'})`);
}

test('daemon killed (SIGKILL) during 50 logins: no invalid login succeeds; valid ones succeed or get temporary-auth-failure; restart recovers < 5 s', async () => {
  // The logins are fast (milliseconds each), so to be sure requests are in flight when the daemon
  // dies it is frozen (SIGSTOP) once 25 clients have sent their SASL <auth>, and killed (SIGKILL)
  // once all 50 have, or 400 ms later (before the shim's 1 s timeout): the shim then holds
  // unanswered requests and must see the connection drop. Logins that finished before the
  // freeze are the "succeed" half of the assertion.
  const N = 50;
  let authSent = 0;
  let freeze;
  let allSent;
  const tenSent = new Promise((r) => { freeze = r; });
  const everySent = new Promise((r) => { allSent = r; });
  const clients = Array.from({ length: N }, (_, i) => {
    const valid = i % 2 === 0;
    const c = new Client({ query: { token: T(user(`kill-${i}`), valid ? {} : { secret: 'wrong' }) } });
    c.valid = valid;
    c.onAuthSent = () => {
      authSent++;
      if (authSent === N / 2) freeze();
      if (authSent === N) allSent();
    };
    return c;
  });
  // Staggered 4 ms apart, so that some logins are done, some waiting on the daemon, and some not
  // yet at SASL when it freezes.
  const results = Promise.all(clients.map(async (c, i) => { await sleep(4 * i); return c.login(10000); }));
  await Promise.race([tenSent, sleep(3000)]);
  await freeze(daemon.pid);
  const sentAtStop = authSent;
  await Promise.race([everySent, sleep(400)]);
  const sentAtKill = authSent;
  process.kill(daemon.pid, 'SIGKILL');
  await new Promise((r) => (daemon.exited ? r() : daemon.proc.once('exit', r)));
  await results;
  const invalidIn = clients.filter((c) => !c.valid && c.result.ok);
  const validBad = clients.filter((c) => c.valid && !c.result.ok && c.result.failure?.condition !== 'temporary-auth-failure');
  const invalidBad = clients.filter((c) => !c.valid && !c.result.ok
    && !(c.result.failure?.condition === 'temporary-auth-failure' || c.result.failure?.text === 'Invalid signature'));
  const count = (pred) => clients.filter(pred).length;
  note(`daemon stopped after ${sentAtStop} and killed after ${sentAtKill} of ${N} SASL requests were sent: valid ${count((c) => c.valid && c.result.ok)} ok / `
    + `${count((c) => c.valid && !c.result.ok)} refused; invalid ${count((c) => !c.valid && c.result.ok)} ok / `
    + `${count((c) => !c.valid && c.result.failure?.text === 'Invalid signature')} Invalid signature / `
    + `${count((c) => !c.valid && c.result.failure?.condition === 'temporary-auth-failure')} temporary-auth-failure`);
  check(invalidIn.length === 0, `${invalidIn.length} logins with a wrong signature succeeded`);
  check(validBad.length === 0, `valid logins got ${describeLogin(validBad[0]?.result ?? {})}`);
  check(invalidBad.length === 0, `invalid logins got ${describeLogin(invalidBad[0]?.result ?? {})}`);
  closeAll(new Set([focus]));

  const t0 = performance.now();
  startDaemon();
  const recovered = await timeToRecovery(t0, 5000, 'after-restart');
  note(`daemon killed: first token login succeeded ${recovered} ms after the restart (expect < 1000 ms)`);
}, { timeoutMs: 40000 });

test('Prosody config reload (SIGHUP): the shim re-sends the host options and the daemon applies them', async () => {
  const token = T({ ...user('reloaded'), iss: 'reloaded' });
  const cfg = join(tmp, 'prosody.cfg.lua');
  const tryLogin = async () => { const c = await login({ domain: 'nodv.example.com', query: { token } }); c.close(); return c; };
  const reload = async () => {
    const before = readFileSync(join(tmp, 'daemon.log'), 'utf8').length;
    process.kill(prosody.pid, 'SIGHUP');
    // The daemon logs each host the shim registers anew; wait for that (or 5 s).
    for (let i = 0; i < 100 && readFileSync(join(tmp, 'daemon.log'), 'utf8').length === before; i++) await sleep(50);
    await sleep(100);
  };
  expectSaslFailure(await tryLogin(), "invalid 'iss' claim");
  const spec = TOKEN_HOSTS['nodv.example.com'];
  const saved = spec.options;
  spec.options = { ...saved, asap_accepted_issuers: ['myapp', 'reloaded'] };
  try {
    writeFileSync(cfg, prosodyConfig());
    await reload();
    expectLoginOk(await tryLogin(), 'iss "reloaded" after the reload');
  } finally {
    spec.options = saved;
    writeFileSync(cfg, prosodyConfig());
    await reload();
  }
  expectSaslFailure(await tryLogin(), "invalid 'iss' claim");
}, { timeoutMs: 20000 });

test('a daemon that lies (ok:"yes", a condition that is no XML name, garbage, a wrong id): never a success, always temporary-auth-failure; the real daemon back → logins work', async () => {
  // A stand-in daemon on the same socket answers hello properly and each auth with the lie of the moment.
  process.kill(daemon.pid, 'SIGKILL');
  await new Promise((r) => (daemon.exited ? r() : daemon.proc.once('exit', r)));
  const path = join(tmp, 'ts.sock');
  rmSync(path, { force: true });
  let lie = null;
  const conns = new Set();
  const liar = createTcpServer((sock) => {
    conns.add(sock);
    let buf = '';
    sock.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const req = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (req.op === 'hello') sock.write(`${JSON.stringify({ id: req.id, ok: true, version: 1, accepted: Object.keys(req.hosts ?? {}), errors: {}, warnings: [] })}\n`);
        else sock.write(lie(req));
      }
    });
    sock.on('error', () => {});
  });
  await new Promise((r) => liar.listen(path, r));
  try {
    const lies = {
      'ok is "yes"': (req) => `${JSON.stringify({ id: req.id, ok: 'yes', session: { jitsi_meet_room: 'room1' } })}\n`,
      'condition is not an XML name': (req) => `${JSON.stringify({ id: req.id, ok: false, condition: "'room' claim is missing", text: 'x' })}\n`,
      'refusal without a text': (req) => `${JSON.stringify({ id: req.id, ok: false, condition: 'not-allowed' })}\n`,
      'a line that is not JSON': () => 'HTTP/1.1 200 OK\n',
      'the reply carries another id': (req) => `${JSON.stringify({ id: req.id + 1000, ok: true })}\n`,
    };
    for (const [name, reply] of Object.entries(lies)) {
      lie = reply;
      const c = await login({ query: { token: T(user('lied-to')) } }, 8000);
      try {
        expectSaslFailure(c, 'token service unavailable', 'temporary-auth-failure');
      } catch (e) {
        throw new Failure(`${name}: ${e.message}`);
      }
      c.close();
    }
  } finally {
    for (const sock of conns) sock.destroy(); // close() alone waits for the shim to hang up
    await new Promise((r) => liar.close(r));
    rmSync(path, { force: true });
  }
  const t0 = performance.now();
  startDaemon();
  const recovered = await timeToRecovery(t0, 5000, 'after-liar');
  note(`a lying daemon replaced by the real one: first token login succeeded ${recovered} ms after its start`);
}, { timeoutMs: 40000 });

// --- Hardening (issue 10) ---------------------------------------------------------------------

test('bytes that are not UTF-8 in ?room= and ?prefix= → a normal login, well under a second (the shim cleans the line; before, the daemon could not read it and the login waited out the timeout)', async () => {
  await ensureRoom(MUC('room1'));
  const c = await login({ rawQuery: `room=%ff&prefix=%fe%80&token=${T(user('room-ff'))}` });
  expectLoginOk(c, '?room=%ff&prefix=%fe%80');
  check(c.result.ms < 500, `login took ${c.result.ms} ms`);
  const d = await login({ rawQuery: `room=%ff&token=${T(user('room-ff-join'))}` });
  expectLoginOk(d, '?room=%ff');
  expectJoined(await d.join(MUC('room1'), 'room-ff-join'), 'join room1 after ?room=%ff');
});

test('a User-Agent that is not UTF-8 (Latin-1 bytes) → a normal login, well under a second', async () => {
  const c = await login({ query: { token: T(user('latin1-agent')) }, headers: { 'User-Agent': 'Mozilla/5.0 (\xe9t\xe9) \xff' } });
  expectLoginOk(c, 'Latin-1 User-Agent');
  check(c.result.ms < 500, `login took ${c.result.ms} ms`);
});

test('settings refused on reload (a rotated app_secret plus a typo in another option): tokens with the old and the new secret → temporary-auth-failure, the rejection logged at error level by the shim and the daemon; valid settings → logins work', async () => {
  const cfg = join(tmp, 'prosody.cfg.lua');
  const spec = TOKEN_HOSTS['nodv.example.com'];
  const saved = spec.options;
  const tryLogin = async (token) => { const c = await login({ domain: 'nodv.example.com', query: { token } }); c.close(); return c; };
  const [oldToken, newToken] = [T(user('rotated')), T(user('rotated'), { secret: 'rotated-secret' })];
  const reload = async (seen) => {
    process.kill(prosody.pid, 'SIGHUP');
    // Wait until the daemon has logged what the shim sent (or 5 s).
    for (let i = 0; i < 100 && !seen(readFileSync(join(tmp, 'daemon.log'), 'utf8')); i++) await sleep(50);
    await sleep(100);
  };
  const logSize = () => readFileSync(join(tmp, 'prosody.log'), 'utf8').length;
  expectLoginOk(await tryLogin(oldToken), 'before the reload');
  const prosodyLogFrom = logSize();
  const daemonLogFrom = readFileSync(join(tmp, 'daemon.log'), 'utf8').length;
  try {
    spec.options = { ...saved, app_secret: 'rotated-secret', allow_empty_token: 'yes' };
    writeFileSync(cfg, prosodyConfig());
    await reload((log) => log.slice(daemonLogFrom).includes('allow_empty_token'));
    for (const [what, token] of [['old secret', oldToken], ['new secret', newToken], ['no token', undefined]]) {
      const c = await tryLogin(token);
      try {
        expectSaslFailure(c, 'token service unavailable', 'temporary-auth-failure');
      } catch (e) {
        throw new Failure(`${what}: ${e.message}`);
      }
    }
    const shimLog = readFileSync(join(tmp, 'prosody.log'), 'utf8').slice(prosodyLogFrom);
    check(/error\s.*token service rejected the settings of nodv\.example\.com: .*allow_empty_token/.test(shimLog),
      'the shim logs the rejection at error level');
    check(/error\s.*settings-refused: .*allow_empty_token/.test(shimLog), 'the shim logs each refused login at error level with the reason');
    const daemonLog = readFileSync(join(tmp, 'daemon.log'), 'utf8').slice(daemonLogFrom);
    check(/ERROR.*nodv\.example\.com.*allow_empty_token/.test(daemonLog), 'the daemon logs the rejection at error level');

    spec.options = { ...saved, app_secret: 'rotated-secret' };
    writeFileSync(cfg, prosodyConfig());
    const from = readFileSync(join(tmp, 'daemon.log'), 'utf8').length;
    await reload((log) => log.slice(from).includes('registered'));
    expectLoginOk(await tryLogin(newToken), 'new secret after valid settings');
    expectSaslFailure(await tryLogin(oldToken), 'Invalid signature');
  } finally {
    spec.options = saved;
    writeFileSync(cfg, prosodyConfig());
    const from = readFileSync(join(tmp, 'daemon.log'), 'utf8').length;
    await reload((log) => log.slice(from).includes('registered'));
  }
  expectLoginOk(await tryLogin(oldToken), 'the original settings back');
}, { timeoutMs: 30000 });

// ---------------------------------------------------------------------------------------------
// Main

let passed = 0;
let failed = 0;

async function main() {
  tmp = mkdtempSync(join(tmpdir(), 'ts-e2e-'));
  mkdirSync(join(tmp, 'certs'));
  mkdirSync(join(tmp, 'data'));
  ports = { http: await freePort(), c2s: await freePort(), api: await freePort() };
  keyServer = new KeyServer();
  await keyServer.start();
  writeFileSync(join(tmp, 'prosody.cfg.lua'), prosodyConfig());
  writeFileSync(join(tmp, 'public-key.pem'), rsaPublicPem);
  writeFileSync(join(tmp, 'slt-key.pem'), sltKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(join(tmp, 'introspect-secret'), INTROSPECT_SECRET);
  const toml = join(tmp, 'daemon.toml');
  writeFileSync(toml, `[http]\nlisten = "127.0.0.1:${ports.api}"\nintrospect_secret = "${INTROSPECT_SECRET}"\n`);
  try {
    execFileSync(daemonBin, ['serve', '--config', toml, '--check-config'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30000 });
    daemonConfig = toml;
  } catch (e) {
    daemonConfigProblem = `${daemonBin} serve --config ${toml} --check-config failed: ${`${e.stderr ?? ''}`.trim() || e.message}`;
    console.log(`# ${daemonConfigProblem}; the daemon runs without it (no HTTP listener)`);
  }

  let version = '(unknown)';
  try { version = prosodyctl('about').split('\n')[0]; } catch (e) { version = `(prosodyctl about failed: ${e.message})`; }
  console.log(`# prosody: ${version} (${prosodyBin})`);
  console.log(`# daemon: ${daemonBin}; shim: ${shimDir}; temp dir: ${tmp}`);
  console.log(`# ports: http ${ports.http}, c2s ${ports.c2s}, key server ${keyServer.port}, daemon http ${ports.api}`);

  prosodyctl('register', 'focus', 'auth.meet.example.com', FOCUS_PASSWORD);
  prosodyctl('register', 'recorder', 'recorder.meet.example.com', RECORDER_PASSWORD);

  const report = (ok, name, why) => {
    if (ok) { passed++; console.log(`ok - ${name}`); } else { failed++; console.log(`not ok - ${name}: ${why}`); }
  };
  const selected = (name) => !filter || name.toLowerCase().includes(filter);

  // Prosody starts first, without the daemon: the shim must refuse, then recover when it starts.
  await startProsody();
  const startName = 'daemon not running at Prosody start: token login → temporary-auth-failure; logins recover once it starts';
  try {
    const early = await login({ query: { token: T(user('early')) } });
    early.close();
    const t0 = performance.now();
    startDaemon();
    await waitForUnixSocket(join(tmp, 'ts.sock'), 10000, () => !daemon.exited);
    const recovered = await timeToRecovery(t0, 10000, 'after-start');
    if (selected(startName)) {
      note(`daemon started after Prosody: first token login succeeded ${recovered} ms after the daemon was spawned`);
      expectSaslFailure(early, /token service unavailable/, 'temporary-auth-failure');
      check(early.result.ms < 2500, `refusal took ${early.result.ms} ms`);
      check(recovered < 5000, `recovery took ${recovered} ms`);
      report(true, startName);
    }
  } catch (e) {
    report(false, startName, e instanceof Failure || !verbose ? (e?.message ?? String(e)) : (e?.stack ?? String(e)));
  }
  if (!daemon || daemon.exited) throw new Error(`the daemon did not start (exited ${JSON.stringify(daemon?.exited)})`);

  focus = await login({ jid: 'focus@auth.meet.example.com', password: FOCUS_PASSWORD, domain: 'auth.meet.example.com', plain: true });
  if (!focus.result.ok) throw new Error(`focus could not log in: ${describeLogin(focus.result)}`);

  const tRun = performance.now();
  for (const c of cases) {
    if (!selected(c.name)) continue;
    if (performance.now() - tRun > RUN_BUDGET_MS) {
      report(false, c.name, `not run: the cases already took over ${RUN_BUDGET_MS / 1000} s (something hangs; see above)`);
      continue;
    }
    const t0 = performance.now();
    try {
      if (daemon.exited) throw new Error(`daemon is not running (exited ${JSON.stringify(daemon.exited)})`);
      await withTimeout(c.fn(), c.timeoutMs, 'case');
      report(true, c.name);
    } catch (e) {
      report(false, c.name, e instanceof Failure || !verbose ? (e?.message ?? String(e)) : (e?.stack ?? String(e)));
    } finally {
      closeAll(new Set([focus]));
      if (verbose) console.log(`#   (${ms(t0)} ms)`);
    }
  }
  console.log(`# cases took ${Math.round((performance.now() - tRun) / 100) / 10} s`);

  if (failed > 0) printDiagnostics();
  console.log(`${passed} passed, ${failed} failed`);

  focus.close();
  await sleep(200);
  await stopTracked(prosody);
  await stopTracked(daemon);
  await keyServer.stop();
  if (failed === 0 && !args.flags.has('keep')) rmSync(tmp, { recursive: true, force: true });
  else console.log(`# logs kept in ${tmp}`);
  process.exitCode = failed > 0 ? 1 : 0;
  setTimeout(() => process.exit(process.exitCode), 500).unref();
}

main().catch((e) => {
  console.log(`not ok - setup: ${e?.message ?? e}`);
  if (verbose) console.log(`# ${e?.stack}`);
  printDiagnostics();
  console.log(`${passed} passed, ${failed + 1} failed`);
  killAll();
  process.exit(1);
});
