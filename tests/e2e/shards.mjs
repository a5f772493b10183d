#!/usr/bin/env node
// Several Jitsi shards on one machine sharing one store (issue 12, docs/SCALING.md): a valkey-server
// on a free 127.0.0.1 port, then 3 Prosody + token-sidecar pairs (one per shard: own ports, data dir,
// socket, `[store] shard = "shard-N"`, `[http]` on its own loopback port), each with the same
// meet.example.com, its MUC conference.meet.example.com and mod_access_token (one HS256 key for all
// shards, as a deployment shares it). strophe.js clients join rooms on different shards and ask for
// access tokens; an API client introspects each token at a shard other than its own, revokes tokens
// and logins with POST /v1/revoke, while the store is killed and restarted; then the same against a
// 3-node Valkey Cluster, one of whose nodes is killed.
//
//   scripts/install-valkey        # valkey-server + valkey-cli (or redis-server + redis-cli)
//   node tests/e2e/shards.mjs --prosody /usr/bin/prosody --daemon target/debug/token-sidecar \
//        --shim prosody-shim [--valkey-server PATH] [--valkey-cli PATH] [--rate 1000] [--seconds 5] [--rounds 1] \
//        [--logs DIR] [--keep] [--verbose]
//
// Prints '# ' lines with figures and one line per check (`ok - …` / `not ok - …`), then
// `N passed, N failed`; exits 1 on any failure. Every process it starts (the valkey servers, the
// Prosodys, the daemons) is stopped by its PID at the end, on failure and on a signal as well. The
// processes' output goes to DIR/e2e-shards-<name>.log (DIR: the repo's target/).

import { spawn, execFileSync } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { freePort, waitFor } from './net.mjs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

import { Strophe, $iq, $pres } from 'strophe.js';
import WS from 'ws';

// ---------------------------------------------------------------------------------------------
// Arguments

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const args = { flags: new Set() };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].replace(/^--/, '');
    if (['keep', 'verbose', 'help'].includes(name)) args.flags.add(name);
    else if (i + 1 < argv.length) args[name] = argv[++i];
    else { console.error(`shards.mjs: ${argv[i]} needs a value`); process.exit(2); }
  }
}
if (args.flags.has('help')) {
  console.log('usage: node tests/e2e/shards.mjs [--prosody PATH] [--daemon PATH] [--shim DIR] [--valkey-server PATH] [--valkey-cli PATH] [--rate N] [--seconds N] [--rounds N] [--logs DIR] [--keep] [--verbose]');
  process.exit(0);
}
const which = (...names) => {
  for (const n of names) for (const d of ['/usr/bin', '/usr/local/bin']) if (existsSync(join(d, n))) return join(d, n);
  return join('/usr/bin', names[0]);
};
const prosodyBin = resolve(args.prosody ?? '/usr/bin/prosody');
const daemonBin = resolve(args.daemon ?? join(repo, 'target/debug/token-sidecar'));
const shimDir = resolve(args.shim ?? join(repo, 'prosody-shim'));
const valkeyServer = resolve(args['valkey-server'] ?? which('valkey-server', 'redis-server'));
const valkeyCli = resolve(args['valkey-cli'] ?? which('valkey-cli', 'redis-cli'));
const logDir = resolve(args.logs ?? join(repo, 'target'));
const RATE = Number(args.rate ?? 1000);          // introspections per second, for the latency figure
const BENCH_SECONDS = Number(args.seconds ?? 5);
const BENCH_ROUNDS = Number(args.rounds ?? 1);   // rounds of the latency measurement (each: other shard, then own)
const verbose = args.flags.has('verbose');
for (const [what, path] of [['--prosody', prosodyBin], ['--daemon', daemonBin], ['--shim', join(shimDir, 'mod_access_token.lua')],
  ['--valkey-server', valkeyServer], ['--valkey-cli', valkeyCli]]) {
  if (!existsSync(path)) {
    console.error(`shards.mjs: ${what}: ${path} does not exist${what.startsWith('--valkey') ? ' (scripts/install-valkey installs it)' : ''}`);
    process.exit(2);
  }
}

// ---------------------------------------------------------------------------------------------
// Constants

const DOMAIN = 'meet.example.com';
const MUC = `conference.${DOMAIN}`;
const APP_ID = 'myapp';
const APP_SECRET = 'shards-app-s3cret';
const ACCESS_KEY = 'shards-e2e-access-token-key-0123456789abcdef'; // HS256, ≥ 32 bytes, on every shard
const INTROSPECT_SECRET = 'shards-e2e-introspect-secret';
const ACCESS_NS = 'http://jabber.org/protocol/muc#access-token';
const SHARDS = 3;
const LEAVE_BOUND_MS = 1000;      // a holder who left is inactive everywhere within this (issue 12, item 2)
// A revocation is in force at once on the shard that took it, and on every other shard within
// this: each daemon reads the shared list into its local copy every second.
const REVOKE_BOUND_MS = 2000;
const RECOVER_BOUND_MS = 10000;   // after the store returns, cross-shard introspection is back within this
const ANSWER_BOUND_MS = 3000;     // while the store (or a cluster node) is down, every introspection answers within this
// The reason of an inactive answer when the shared store could not be asked.
const UNREACHABLE = /unreachable/i;

Strophe.setLogLevel(Strophe.LogLevel.FATAL);
// A connection the test gives up on may close before its handshake: its 'error' must not end the process.
globalThis.WebSocket = class QuietWebSocket extends WS {
  constructor(...a) { super(...a); this.on('error', () => {}); }
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => Math.floor(Date.now() / 1000);
const ms = (t0) => Math.round(performance.now() - t0);
const b64u = (b) => Buffer.from(b).toString('base64url');
const decode = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url'));

// A login token for `user` (context.user.id), any room, with its own jti. With `bySub`, the
// token has no context and `user` is its sub (the user a revocation then names).
function loginToken(user, { jti = randomUUID(), room = '*', bySub = false } = {}) {
  const payload = bySub
    ? { iss: APP_ID, aud: 'jitsi', sub: user, room, exp: now() + 3600, jti }
    : { iss: APP_ID, aud: 'jitsi', sub: DOMAIN, room, exp: now() + 3600, jti, context: { user: { id: user, name: user } } };
  const input = `${b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64u(JSON.stringify(payload))}`;
  return `${input}.${createHmac('sha256', APP_SECRET).update(input).digest('base64url')}`;
}

// ---------------------------------------------------------------------------------------------
// Checks and output

let passed = 0;
let failed = 0;
class Failure extends Error {}
const need = (cond, why) => { if (!cond) throw new Failure(typeof why === 'function' ? why() : why); };
const note = (s) => console.log(`# ${s}`);
async function check(name, fn) {
  const t0 = performance.now();
  try {
    const detail = await fn();
    passed++;
    console.log(`ok - ${name}${detail ? ` (${detail})` : ''}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}: ${e instanceof Failure || !verbose ? (e?.message ?? e) : (e?.stack ?? e)}`);
  }
  if (verbose) note(`  (${ms(t0)} ms)`);
}

// ---------------------------------------------------------------------------------------------
// Processes: ours only, by PID; all stopped on exit, exceptions and signals.

const children = new Set();
function killAll() {
  for (const c of children) {
    try { process.kill(c.pid, 'SIGCONT'); } catch { /* gone */ }
    try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  children.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => { console.log(`# interrupted (${sig}); stopping`); killAll(); process.exit(130); });
}
process.on('uncaughtException', (e) => { console.log(`# uncaught exception: ${e?.stack ?? e}`); killAll(); process.exit(1); });
process.on('unhandledRejection', (e) => { console.log(`# unhandled rejection: ${e?.stack ?? e}`); killAll(); process.exit(1); });

const logsOpened = new Set();
const logPath = (name) => join(logDir, `e2e-shards-${name}.log`);
function spawnTracked(name, cmd, argv, env = {}) {
  const path = logPath(name);
  const fd = openSync(path, logsOpened.has(path) ? 'a' : 'w'); // fresh per run, appended across restarts
  logsOpened.add(path);
  const proc = spawn(cmd, argv, { stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
  closeSync(fd);
  const entry = { name, proc, pid: proc.pid, exited: null };
  children.add(entry);
  proc.on('exit', (code, signal) => { entry.exited = { code, signal }; children.delete(entry); });
  return entry;
}
async function stopTracked(entry, { signal = 'SIGTERM', graceMs = 3000 } = {}) {
  if (!entry || entry.exited) return;
  const done = new Promise((r) => entry.proc.once('exit', r));
  try { process.kill(entry.pid, signal); } catch { /* gone */ }
  const timer = setTimeout(() => { try { process.kill(entry.pid, 'SIGKILL'); } catch { /* gone */ } }, graceMs);
  await done;
  clearTimeout(timer);
}
const killTracked = (entry) => stopTracked(entry, { signal: 'SIGKILL' });

function tail(path, lines) {
  try { return readFileSync(path, 'utf8').split('\n').slice(-lines - 1).join('\n'); } catch (e) { return `(cannot read ${path}: ${e.message})`; }
}

// ---------------------------------------------------------------------------------------------
// Valkey: one server, or a cluster of three. No persistence: a restarted server is empty, so
// what comes back after an outage is what the daemons re-publish.

const valkeyName = /redis/.test(valkeyServer) ? 'redis' : 'valkey';
let tmp;

function startValkey(name, port, extra = []) {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  const entry = spawnTracked(name, valkeyServer, ['--bind', '127.0.0.1', '--port', String(port), '--dir', dir,
    '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--daemonize', 'no', ...extra]);
  entry.port = port;
  return entry;
}
async function valkeyUp(entry) {
  await waitFor({ host: '127.0.0.1', port: entry.port }, 10000, () => !entry.exited);
  for (let i = 0; i < 100; i++) {
    if (cli(entry.port, 'PING').trim() === 'PONG') return;
    await sleep(50);
  }
  throw new Error(`${entry.name} on ${entry.port} does not answer PING`);
}
function cli(port, ...command) {
  try {
    return execFileSync(valkeyCli, ['-h', '127.0.0.1', '-p', String(port), ...command], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10000 });
  } catch (e) {
    return `${e.stdout ?? ''}${e.stderr ?? ''}` || e.message;
  }
}

// ---------------------------------------------------------------------------------------------
// Shards: Prosody + daemon each

const shards = []; // { n, name, c2s, http, api, dir, socket, prosody, daemon, toml }

function prosodyConfig(s) {
  return `-- shard ${s.n}, written by tests/e2e/shards.mjs
run_as_root = true
pidfile = "${s.dir}/prosody.pid"
data_path = "${s.dir}/data"
certificates = "${s.dir}/certs"
plugin_paths = { "${shimDir}" }
interfaces = { "127.0.0.1" }
c2s_ports = { ${s.c2s} }
c2s_direct_tls_ports = { }
s2s_ports = { }
https_ports = { }
component_ports = { }
http_interfaces = { "127.0.0.1" }
http_ports = { ${s.http} }
http_default_host = "${DOMAIN}"
c2s_require_encryption = false
consider_websocket_secure = true
cross_domain_websocket = true
storage = "memory"
token_sidecar_socket = "${s.socket}"
token_sidecar_timeout = 2
modules_enabled = { "saslauth", "websocket", "ping" }
log = { info = "${logPath(`prosody-${s.n}`)}" }

VirtualHost "${DOMAIN}"
  authentication = "token"
  app_id = "${APP_ID}"
  app_secret = "${APP_SECRET}"
  muc_mapper_domain_base = "${DOMAIN}"

Component "${MUC}" "muc"
  modules_enabled = { "token_verification", "access_token" }
  muc_room_locking = false
  access_token_key = "${ACCESS_KEY}"
  access_token_exp = 600
  access_token_rate_limit = 0
`;
}

// store: { url } or { nodes: [urls] }
function daemonToml(s, store) {
  const target = store.nodes
    ? `cluster_nodes = [${store.nodes.map((u) => JSON.stringify(u)).join(', ')}]`
    : `url = ${JSON.stringify(store.url)}`;
  return `# shard ${s.n}, written by tests/e2e/shards.mjs
[http]
listen = "127.0.0.1:${s.api}"
introspect_secret = "${INTROSPECT_SECRET}"

[store]
kind = "${valkeyName}"
${target}
shard = "${s.name}"
lease_seconds = 30
`;
}

function checkDaemonConfig(s) {
  try {
    execFileSync(daemonBin, ['serve', '--socket', s.socket, '--config', s.toml, '--check-config'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30000 });
  } catch (e) {
    throw new Error(`${daemonBin} serve --config ${s.toml} --check-config refused it: ${`${e.stderr ?? ''}${e.stdout ?? ''}`.trim() || e.message}`);
  }
}

async function startDaemon(s) {
  s.daemon = spawnTracked(`daemon-${s.n}`, daemonBin, ['serve', '--socket', s.socket, '--config', s.toml]);
  await waitFor({ path: s.socket }, 15000, () => !s.daemon.exited);
  await waitFor({ host: '127.0.0.1', port: s.api }, 5000, () => !s.daemon.exited);
}

async function startProsody(s) {
  s.prosody = spawnTracked(`prosody-${s.n}-stdout`, prosodyBin, ['-F', '--config', join(s.dir, 'prosody.cfg.lua')]);
  await waitFor({ host: '127.0.0.1', port: s.http }, 20000, () => !s.prosody.exited);
}

// Until a token login succeeds on shard s (the shim has said hello to its daemon).
async function loginsWork(s, limitMs = 15000) {
  const t0 = performance.now();
  let last;
  for (;;) {
    const c = new Client(s, loginToken('probe'));
    last = await c.login();
    c.close();
    if (last.ok) return ms(t0);
    if (performance.now() - t0 > limitMs) throw new Error(`shard ${s.n}: no token login in ${limitMs} ms (last: ${describeLogin(last)})`);
    await sleep(200);
  }
}

// ---------------------------------------------------------------------------------------------
// XMPP clients (strophe.js over WebSocket, ?token=, SASL ANONYMOUS: as lib-jitsi-meet)

const openClients = new Set();
let iqSeq = 0;

function elementChildren(el) {
  const out = [];
  for (let n = el?.firstChild; n; n = n.nextSibling) if (n.nodeType === 1) out.push(n);
  return out;
}
const localName = (el) => el.localName ?? el.tagName;
function findDeep(el, pred) {
  if (!el) return undefined;
  if (el.nodeType === 1 && pred(el)) return el;
  for (const c of elementChildren(el)) { const hit = findDeep(c, pred); if (hit) return hit; }
  return undefined;
}
// { condition, text } of a SASL <failure/> or a stanza <error/>.
function conditionOf(el) {
  if (!el) return undefined;
  const kids = elementChildren(el);
  const cond = kids.find((c) => localName(c) !== 'text');
  const text = kids.find((c) => localName(c) === 'text');
  return { type: el.getAttribute('type') ?? undefined, condition: cond ? localName(cond) : undefined, text: text ? text.textContent : undefined };
}
function describeLogin(r) {
  if (!r) return '(none)';
  if (r.ok) return `logged in as ${r.jid}`;
  return r.failure ? `${r.status} <${r.failure.condition}/> "${r.failure.text}"` : r.status;
}

class Client {
  constructor(shard, token) {
    this.shard = shard;
    this.token = token;
    this.conn = new Strophe.Connection(`ws://127.0.0.1:${shard.http}/xmpp-websocket?token=${encodeURIComponent(token)}`);
    this.stanzas = [];
    this.waiters = new Set();
    this.conn.xmlInput = (el) => {
      const f = findDeep(el, (e) => localName(e) === 'failure');
      if (f) this.failure = conditionOf(f);
    };
    openClients.add(this);
  }

  login(timeoutMs = 8000) {
    return new Promise((done) => {
      let settled = false;
      const finish = (r) => { if (!settled) { settled = true; clearTimeout(timer); this.result = r; done(r); } };
      const timer = setTimeout(() => finish({ ok: false, status: 'TIMEOUT' }), timeoutMs);
      const S = Strophe.Status;
      this.conn.connect(DOMAIN, null, (status, condition) => {
        if (status === S.CONNECTED) {
          this.jid = this.conn.jid;
          this.conn.addHandler((st) => { this.onStanza(st); return true; }, null, null, null, null, null);
          finish({ ok: true, jid: this.conn.jid });
        } else if (status === S.AUTHFAIL) finish({ ok: false, status: 'AUTHFAIL', failure: this.failure });
        else if ([S.CONNFAIL, S.ERROR, S.CONNTIMEOUT, S.DISCONNECTED].includes(status)) {
          finish({ ok: false, status: `status ${status}${condition ? ` (${condition})` : ''}`, failure: this.failure });
        }
      });
    });
  }

  onStanza(st) {
    this.stanzas.push(st);
    for (const w of [...this.waiters]) if (w.pred(st)) { this.waiters.delete(w); clearTimeout(w.timer); w.resolve(st); }
  }

  waitFor(pred, timeoutMs, what) {
    const seen = this.stanzas.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((ok, fail) => {
      const w = { pred, resolve: ok };
      w.timer = setTimeout(() => { this.waiters.delete(w); fail(new Failure(`${what}: nothing in ${timeoutMs} ms`)); }, timeoutMs);
      this.waiters.add(w);
    });
  }

  async join(room, nick) {
    const to = `${room}/${nick}`;
    const reply = this.waitFor((st) => localName(st) === 'presence' && st.getAttribute('from')?.toLowerCase() === to.toLowerCase()
      && st.getAttribute('type') !== 'unavailable', 8000, `join ${to}`);
    this.conn.send($pres({ to }).c('x', { xmlns: 'http://jabber.org/protocol/muc' }).tree());
    const st = await reply;
    need(st.getAttribute('type') !== 'error', () => `join ${to}: refused ${JSON.stringify(conditionOf(findDeep(st, (e) => localName(e) === 'error')))}`);
    this.room = room;
    this.nick = nick;
  }

  // A join that must be refused: the error's { type, condition, text }.
  async refusedJoin(room, nick) {
    const to = `${room}/${nick}`;
    const reply = this.waitFor((st) => localName(st) === 'presence' && st.getAttribute('from')?.toLowerCase() === to.toLowerCase(), 8000, `join ${to}`);
    this.conn.send($pres({ to }).c('x', { xmlns: 'http://jabber.org/protocol/muc' }).tree());
    const st = await reply;
    need(st.getAttribute('type') === 'error', `join ${to}: let in`);
    return conditionOf(findDeep(st, (e) => localName(e) === 'error'));
  }

  // Leaves the room; resolves when the unavailable self-presence arrives. Returns when it was sent.
  async leave() {
    const to = `${this.room}/${this.nick}`.toLowerCase();
    const gone = this.waitFor((st) => localName(st) === 'presence' && st.getAttribute('type') === 'unavailable'
      && st.getAttribute('from')?.toLowerCase() === to, 8000, `leave ${to}`);
    const sentAt = performance.now();
    this.conn.send($pres({ to: `${this.room}/${this.nick}`, type: 'unavailable' }).tree());
    await gone;
    return sentAt;
  }

  // jitsi-contrib's README: an IQ to the room's focus JID; { token } or { error }.
  async accessToken() {
    const id = `at-${++iqSeq}`;
    const mine = (st) => localName(st) === 'iq' && st.getAttribute('id') === id;
    const reply = this.waitFor(mine, 8000, `access token IQ ${id}`);
    this.conn.send($iq({ type: 'get', to: `${this.room}/focus`, id }).c('query', { xmlns: ACCESS_NS }).tree());
    const st = await reply;
    if (st.getAttribute('type') !== 'result') return { error: conditionOf(findDeep(st, (e) => localName(e) === 'error')) ?? { raw: Strophe.serialize(st) } };
    const el = findDeep(st, (e) => localName(e) === 'token');
    return { token: el?.getAttribute('data') };
  }

  close() {
    openClients.delete(this);
    for (const w of this.waiters) clearTimeout(w.timer);
    this.waiters.clear();
    try { this.conn.disconnect(); } catch { /* gone */ }
    const conn = this.conn;
    setTimeout(() => { try { conn._doDisconnect(); } catch { /* gone */ } }, 1000).unref();
  }
}
const closeAll = () => { for (const c of [...openClients]) c.close(); };

// A participant: logged in on `shard` as `user`, in `room` (a bare room name on MUC), with an access token.
async function participant(shard, user, room, { bySub = false } = {}) {
  const token = loginToken(user, { bySub });
  const c = new Client(shard, token);
  const r = await c.login();
  need(r.ok, () => `${user} on shard ${shard.n}: login ${describeLogin(r)}`);
  await c.join(`${room}@${MUC}`, user);
  const at = await c.accessToken();
  need(at.token, () => `${user} on shard ${shard.n}: no access token: ${JSON.stringify(at.error)}`);
  c.user = user;
  c.loginJti = decode(token).jti;
  c.access = at.token;
  c.accessJti = decode(at.token).jti;
  return c;
}
const others = (c) => shards.filter((s) => s !== c.shard);

// ---------------------------------------------------------------------------------------------
// The API client: introspection and revocation over HTTP/1.1 keep-alive

const agent = new Agent({ keepAlive: true, maxSockets: 64 });
function post(s, path, form, timeoutMs = 5000) {
  const body = new URLSearchParams(form).toString();
  return new Promise((ok) => {
    const t0 = performance.now();
    const req = httpRequest({ host: '127.0.0.1', port: s.api, path, method: 'POST', agent, timeout: timeoutMs,
      headers: { authorization: `Bearer ${INTROSPECT_SECRET}`, 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        ok({ status: res.statusCode, body: json ?? text, ms: performance.now() - t0 });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', (e) => ok({ status: 0, error: e.message, ms: performance.now() - t0 }));
    req.end(body);
  });
}
const introspect = (s, token, timeoutMs) => post(s, '/v1/introspect', { token }, timeoutMs);
// The value of `token_sidecar_store_up` in shard s's GET /metrics.
async function storeUp(s) {
  const res = await fetch(`http://127.0.0.1:${s.api}/metrics`, { signal: AbortSignal.timeout(2000) });
  const m = /^token_sidecar_store_up (\d+)$/m.exec(await res.text());
  return m ? Number(m[1]) : undefined;
}
// Polls every shard's metrics until token_sidecar_store_up is `want`; the slowest ms from t0.
async function storeUpIs(want, t0, limitMs) {
  const times = await Promise.all(shards.map(async (s) => {
    let last;
    for (;;) {
      last = await storeUp(s).catch((e) => e.message);
      if (last === want) return ms(t0);
      if (performance.now() - t0 > limitMs) throw new Failure(`shard ${s.n}: token_sidecar_store_up is ${last}, not ${want}, after ${limitMs} ms`);
      await sleep(100);
    }
  }));
  return Math.max(...times);
}
const show = (r) => (r.error ? `error ${r.error}` : `${r.status} ${typeof r.body === 'string' ? r.body : JSON.stringify(r.body)}`);
const shortShow = (r) => {
  if (r.error || r.status !== 200 || typeof r.body !== 'object') return show(r);
  return r.body.active ? `${r.status} active` : `${r.status} ${JSON.stringify(r.body)}`;
};
const isActive = (r) => r.status === 200 && r.body?.active === true;
const isInactive = (r) => r.status === 200 && r.body?.active === false;

async function expectActive(c, at) {
  const r = await introspect(at, c.access);
  need(isActive(r), () => `${c.user} (shard ${c.shard.n}) at shard ${at.n}: ${shortShow(r)}`);
}
// Polls every 20 ms until the answer's `active` is `want` at every shard in `at`; returns the slowest ms
// from t0, or fails past limitMs (measured from t0).
async function until(token, at, want, t0, limitMs, what) {
  const times = await Promise.all(at.map(async (s) => {
    let last;
    for (;;) {
      last = await introspect(s, token, 2000);
      if (last.status === 200 && last.body?.active === want) return ms(t0);
      if (performance.now() - t0 > limitMs) throw new Failure(`${what} at shard ${s.n}: active is not ${want} after ${limitMs} ms (last: ${shortShow(last)})`);
      await sleep(20);
    }
  }));
  return Math.max(...times);
}
// POST /v1/revoke at shard s; the answer must say whether it reached the shared store.
async function revoke(s, form, shared = true) {
  const r = await post(s, '/v1/revoke', form);
  need(r.status === 200 && r.body?.shared === shared, () => `POST /v1/revoke ${new URLSearchParams(form)} at shard ${s.n}: ${show(r)} (expected 200 with "shared":${shared})`);
  return r;
}
// A fresh login with `token` at shard s: { ok, failure, … }.
async function tryLogin(s, token) {
  const c = new Client(s, token);
  const r = await c.login();
  c.close();
  return r;
}
function expectRefusedLogin(r, where) {
  need(!r.ok, `${where}: a revoked login token logged in (${describeLogin(r)})`);
  need(r.failure?.condition === 'not-allowed' && r.failure?.text, `${where}: expected <not-allowed/> with a text, got ${describeLogin(r)}`);
  return r.failure.text;
}

// ---------------------------------------------------------------------------------------------
// Introspection latency at a steady rate, open loop (each request sent at its scheduled time,
// whether or not earlier ones have answered; latency counted from the scheduled time).

// Jiffies the whole machine spent busy (all CPUs; not idle, not iowait), from /proc/stat.
function machineBusy() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
  return f.reduce((a, b) => a + b, 0) - f[3] - f[4];
}
const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

function percentile(sorted, p) { return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN; }

async function steadyIntrospection(pairs, rate, seconds) {
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const lat = [];
  let inactive = 0;
  let errors = 0;
  let firstBad;
  let sent = 0;
  let late = 0; // sent more than 5 ms after its scheduled time (the load tool itself fell behind)
  const pending = new Set();
  const cpu0 = process.cpuUsage();
  const busy0 = machineBusy();
  const t0 = performance.now() + 20;
  await new Promise((done) => {
    const tick = () => {
      const t = performance.now();
      while (sent < total && t0 + sent * interval <= t) {
        const due = t0 + sent * interval;
        if (t - due > 5) late++;
        const [s, token] = pairs[sent % pairs.length];
        sent++;
        const p = introspect(s, token, 5000).then((r) => {
          lat.push(performance.now() - due);
          if (!isActive(r)) { if (r.status === 200) inactive++; else errors++; firstBad ??= shortShow(r); }
          pending.delete(p);
          if (sent >= total && pending.size === 0) done();
        });
        pending.add(p);
      }
      if (sent < total) setTimeout(tick, Math.max(0, Math.min(1, t0 + sent * interval - performance.now())));
    };
    tick();
  });
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const busy = (machineBusy() - busy0) * TICK_MS / 1000 / elapsed; // cores busy, whole machine
  lat.sort((a, b) => a - b);
  return { total, elapsed, p50: percentile(lat, 50), p90: percentile(lat, 90), p99: percentile(lat, 99), max: lat[lat.length - 1],
    inactive, errors, firstBad, late, nodeCpu: ((cpu.user + cpu.system) / 1e6) / elapsed, busy };
}

// ---------------------------------------------------------------------------------------------
// The run

async function setupShards(store) {
  for (const s of shards) {
    writeFileSync(s.toml, daemonToml(s, store));
    checkDaemonConfig(s);
  }
  await Promise.all(shards.map(startDaemon));
}

async function phaseSingle(vk) {
  note(`--- one ${valkeyName}-server on 127.0.0.1:${vk.entry.port}`);
  // One participant per shard, each in a room of its shard; a second token for p2 (its first gets revoked).
  const p = [];
  for (const s of shards) p.push(await participant(s, `user-${s.n}`, `room${s.n}`));

  await check('cross-shard: each participant\'s access token introspects active at both shards other than its own (and at its own)', async () => {
    for (const c of p) for (const s of shards) await expectActive(c, s);
    const first = await introspect(shards[1], p[0].access);
    return `e.g. shard 2 on user-1's token: ${JSON.stringify(first.body).slice(0, 140)}…`;
  });

  await check(`cross-shard: a holder who leaves is inactive at the other shards within ${LEAVE_BOUND_MS} ms (one leaver per shard)`, async () => {
    const times = [];
    for (const s of shards) {
      const c = await participant(s, `leaver-${s.n}`, `room${s.n}`);
      await until(c.access, others(c), true, performance.now(), 3000, `${c.user} before leaving`);
      const sentAt = await c.leave();
      times.push(await until(c.access, shards, false, sentAt, LEAVE_BOUND_MS, `${c.user} after leaving`));
    }
    note(`leave → inactive at every shard (from sending the leave presence, polled every 20 ms): ${times.map((t, i) => `shard ${i + 1}'s leaver ${t} ms`).join(', ')}`);
    return `slowest ${Math.max(...times)} ms`;
  });

  // The figure: introspection answered from another shard's data at a steady rate.
  await check(`introspection at a shard other than the holder's, ${RATE}/s for ${BENCH_SECONDS} s (open loop, keep-alive): every answer active`, async () => {
    const pairs = [];
    for (const c of p) for (const s of others(c)) pairs.push([s, c.access]);
    const own = p.map((c) => [c.shard, c.access]);
    await steadyIntrospection(pairs, RATE, 1); // warm-up: connections open, caches filled
    const f = (x) => x.toFixed(2);
    const line = (r) => `${r.total} in ${r.elapsed.toFixed(2)} s (${Math.round(r.total / r.elapsed)}/s): p50 ${f(r.p50)} ms, p90 ${f(r.p90)} ms, p99 ${f(r.p99)} ms, max ${f(r.max)} ms; `
      + `${r.late} sent > 5 ms late (the load tool fell behind); machine ${Math.round(r.busy * 100)} % busy of 200, the load tool ${Math.round(r.nodeCpu * 100)} %`;
    const rounds = [];
    for (let i = 0; i < BENCH_ROUNDS; i++) {
      const r = await steadyIntrospection(pairs, RATE, BENCH_SECONDS);
      note(`introspection at another shard than the holder's, round ${i + 1}: ${line(r)}`);
      const o = await steadyIntrospection(own, RATE, BENCH_SECONDS);
      note(`  for comparison, at the holder's own shard:   ${line(o)}`);
      need(r.inactive + r.errors === 0 && o.inactive + o.errors === 0,
        `other shard: ${r.inactive} inactive, ${r.errors} errors; own shard: ${o.inactive} inactive, ${o.errors} errors (first: ${r.firstBad ?? o.firstBad})`);
      rounds.push(r);
    }
    return rounds.map((r) => `p50 ${f(r.p50)} ms, p99 ${f(r.p99)} ms`).join('; ');
  });

  // Revocation of an access token's jti at one shard: inactive at every shard; the holder's other token is not.
  const p2b = await p[1].accessToken();
  await check('revocation: POST /v1/revoke jti=<access token jti> at shard 1 → that token inactive at every shard; the holder\'s other token stays active', async () => {
    need(p2b.token, `user-2's second access token: ${JSON.stringify(p2b.error)}`);
    const t0 = performance.now();
    const r = await revoke(shards[0], { jti: p[1].accessJti });
    note(`POST /v1/revoke jti=… answered ${show(r)} in ${r.ms.toFixed(1)} ms`);
    const took = await until(p[1].access, shards, false, t0, REVOKE_BOUND_MS, 'the revoked access token');
    for (const s of shards) {
      const a = await introspect(s, p2b.token);
      need(isActive(a), `user-2's other token at shard ${s.n}: ${shortShow(a)}`);
    }
    const why = await introspect(shards[2], p[1].access);
    return `inactive everywhere ${took} ms after the request; shard 3 says ${JSON.stringify(why.body)}`;
  });
  const revokedAccess = p[1].access;
  p[1].access = p2b.token;

  // Revocation of a login token's jti: a new login with it is refused on every shard.
  let refusedText;
  await check(`revocation: POST /v1/revoke jti=<login token jti> at shard 2 → a new login with that token is refused (not-allowed) there at once, and at every shard within ${REVOKE_BOUND_MS} ms; another token logs in`, async () => {
    const t0 = performance.now();
    await revoke(shards[1], { jti: p[2].loginJti });
    refusedText = expectRefusedLogin(await tryLogin(shards[1], p[2].token), 'shard 2, where it was revoked, at once');
    const seen = await Promise.all([shards[0], shards[2]].map(async (s) => {
      let letIn = 0;
      for (;;) {
        const r = await tryLogin(s, p[2].token);
        if (!r.ok) { expectRefusedLogin(r, `shard ${s.n}`); return { n: s.n, ms: ms(t0), letIn }; }
        letIn++;
        need(performance.now() - t0 < REVOKE_BOUND_MS, `shard ${s.n}: the revoked login token still logs in ${ms(t0)} ms after the revoke`);
        await sleep(50);
      }
    }));
    note(`login token revoked at shard 2: refused at ${seen.map((x) => `shard ${x.n} from ${x.ms} ms (${x.letIn} login(s) let in before)`).join(', ')}`);
    for (const s of shards) {
      const ok = await tryLogin(s, loginToken('user-3'));
      need(ok.ok, `shard ${s.n}: a fresh token of the same user: ${describeLogin(ok)}`);
    }
    return `"${refusedText}"`;
  });

  await check('revocation: POST /v1/revoke user=<context.user.id> at shard 3 → that user\'s token inactive at every shard, no new access token on shard 1 (others still get one), a new login of that user refused at every shard', async () => {
    const u = await participant(shards[0], 'banned-user', 'room1');
    await until(u.access, others(u), true, performance.now(), 3000, 'banned-user before the revocation');
    const t0 = performance.now();
    await revoke(shards[2], { user: 'banned-user' });
    const took = await until(u.access, shards, false, t0, REVOKE_BOUND_MS, 'banned-user\'s token after the revocation');
    for (const s of shards) {
      const r = await introspect(s, u.access);
      need(r.body?.reason === 'revoked', `banned-user's token at shard ${s.n}: ${shortShow(r)} (expected reason "revoked")`);
    }
    const at = await u.accessToken();
    need(!at.token, `banned-user still got an access token ${ms(t0)} ms after the revocation`);
    const other = await p[0].accessToken();
    need(other.token, `user-1 (not revoked): ${JSON.stringify(other.error)}`);
    for (const s of shards) expectRefusedLogin(await tryLogin(s, loginToken('banned-user')), `shard ${s.n}, a fresh token of banned-user`);
    u.close();
    return `inactive everywhere ${took} ms after the request; a new one refused ${JSON.stringify(at.error)}`;
  });

  await check('revocation by sub: a login token without context.user names its user by sub; POST /v1/revoke user=<sub> at shard 1 → its access token inactive, no new one on shard 2; after shard 2\'s daemon restarts (the login forgotten), that session joins no other room', async () => {
    const s = shards[1];
    // Its sub is a tenant: it joins that tenant's rooms.
    const u = await participant(s, 'tenant-by-sub', '[tenant-by-sub]room2', { bySub: true });
    const userId = decode(u.access).occupant?.user_id;
    need(userId === 'tenant-by-sub', `the access token's occupant.user_id is ${JSON.stringify(userId)}, not the login's sub`);
    const t0 = performance.now();
    await revoke(shards[0], { user: 'tenant-by-sub' });
    await until(u.access, shards, false, t0, REVOKE_BOUND_MS, 'the sub-named user\'s access token');
    let at;
    for (;;) {
      at = await u.accessToken();
      if (!at.token) break;
      need(performance.now() - t0 < REVOKE_BOUND_MS, `tenant-by-sub still gets access tokens ${ms(t0)} ms after the revocation`);
      await sleep(100);
    }
    // Shard 2's daemon restarts: the shim reconnects and re-reports its rooms; the new daemon does
    // not remember the login, so the join below is judged by the session's fields.
    await stopTracked(s.daemon);
    await startDaemon(s);
    await loginsWork(s);
    const t1 = performance.now();
    for (;;) { // the new daemon has read the shared list once a fresh login of that user is refused
      if (!(await tryLogin(s, loginToken('tenant-by-sub', { bySub: true }))).ok) break;
      need(performance.now() - t1 < REVOKE_BOUND_MS, `shard 2's new daemon lets tenant-by-sub log in ${ms(t1)} ms after it started`);
      await sleep(100);
    }
    const refused = await u.refusedJoin(`[tenant-by-sub]room2b@${MUC}`, 'tenant-by-sub');
    need(refused?.condition === 'not-allowed' && refused?.text === 'token revoked', `the join after the restart: ${JSON.stringify(refused)}`);
    // The others on shard 2 are re-reported by the shim and stay introspectable everywhere.
    await until(p[1].access, shards, true, t1, 10000, 'user-2 after its daemon restarted');
    u.close();
    return `access token refused ${JSON.stringify(at.error)}; join after the restart ${JSON.stringify(refused)}`;
  });
  return { p, revokedLogin: p[2].token, revokedAccess };
}

async function phaseOutage(vkRef, { p, revokedLogin: revokedLoginToken, revokedAccess: revokedAccessToken }) {
  note(`--- the whole ${valkeyName} killed (SIGKILL), then started again on the same port (empty)`);
  const leaver = await participant(shards[1], 'outage-leaver', 'room2');
  await until(leaver.access, others(leaver), true, performance.now(), 3000, 'outage-leaver before the outage');
  // What the checks below rely on: the revocations made above are in every shard's local copy.
  const t0 = performance.now();
  for (const s of shards) {
    for (;;) {
      const r = await tryLogin(s, revokedLoginToken);
      if (!r.ok) break;
      need(performance.now() - t0 < 3000, `before the outage: the revoked login token still logs in at shard ${s.n}`);
      await sleep(100);
    }
  }
  const port = vkRef.entry.port;
  await killTracked(vkRef.entry);
  const killedAt = performance.now();

  await check('store down: GET /metrics says token_sidecar_store_up 0 on every shard within 3 s', async () => `${await storeUpIs(0, killedAt, 3000)} ms`);

  await check('store down: each shard still introspects its own current occupants active', async () => {
    const t = [];
    for (const c of p) {
      const r = await introspect(c.shard, c.access, ANSWER_BOUND_MS);
      need(isActive(r), () => `${c.user} at its own shard ${c.shard.n}: ${shortShow(r)}`);
      t.push(r.ms);
    }
    return `slowest answer ${Math.max(...t).toFixed(1)} ms`;
  });

  await check(`store down: other shards answer {"active":false} with a reason saying the store is unreachable, within ${ANSWER_BOUND_MS} ms`, async () => {
    let sample;
    const t = [];
    for (const c of p) for (const s of others(c)) {
      const r = await introspect(s, c.access, ANSWER_BOUND_MS);
      need(isInactive(r) && UNREACHABLE.test(`${r.body?.reason ?? ''}`), () => `${c.user} (shard ${c.shard.n}) at shard ${s.n}: ${shortShow(r)}`);
      sample ??= r.body;
      t.push(r.ms);
    }
    return `${JSON.stringify(sample)}, slowest ${Math.max(...t).toFixed(1)} ms`;
  });

  await check(`store down: a holder who leaves during the outage is inactive at every shard within ${LEAVE_BOUND_MS} ms, never active`, async () => {
    const sentAt = await leaver.leave();
    const took = await until(leaver.access, shards, false, sentAt, LEAVE_BOUND_MS, 'outage-leaver after leaving');
    for (let i = 0; i < 5; i++) for (const s of shards) {
      const r = await introspect(s, leaver.access, ANSWER_BOUND_MS);
      need(!isActive(r), `outage-leaver active again at shard ${s.n}`);
    }
    return `${took} ms`;
  });

  let newcomer;
  await check('store down: logins keep working on every shard; a newcomer on shard 3 joins, gets an access token, introspects active at shard 3', async () => {
    for (const s of shards) {
      const r = await tryLogin(s, loginToken(`outage-login-${s.n}`));
      need(r.ok, `shard ${s.n}: ${describeLogin(r)}`);
    }
    newcomer = await participant(shards[2], 'outage-newcomer', 'room3');
    await expectActive(newcomer, shards[2]);
  });

  let revokedInOutage;
  await check('store down: POST /v1/revoke jti=<access token jti> at shard 1 → 200 "shared":false, inactive (reason "revoked") at shard 1 at once', async () => {
    revokedInOutage = await participant(shards[0], 'outage-revoked', 'room1');
    const r = await revoke(shards[0], { jti: revokedInOutage.accessJti }, false);
    const a = await introspect(shards[0], revokedInOutage.access, ANSWER_BOUND_MS);
    need(isInactive(a) && a.body?.reason === 'revoked', `at shard 1: ${shortShow(a)}`);
    return JSON.stringify(r.body).replace(revokedInOutage.accessJti, '…');
  });

  await check('store down: the revoked login token stays refused at every shard; the revoked access token stays inactive', async () => {
    for (const s of shards) expectRefusedLogin(await tryLogin(s, revokedLoginToken), `shard ${s.n}`);
    for (const s of shards) {
      const r = await introspect(s, revokedAccessToken, ANSWER_BOUND_MS);
      need(!isActive(r), `shard ${s.n}: the revoked access token is active`);
    }
  });
  note(`the store was down for ${ms(killedAt)} ms`);

  vkRef.entry = startValkey(vkRef.entry.name, port);
  const restartedAt = performance.now();
  await valkeyUp(vkRef.entry);

  await check(`store back: GET /metrics says token_sidecar_store_up 1 on every shard within ${RECOVER_BOUND_MS} ms`, async () => `${await storeUpIs(1, restartedAt, RECOVER_BOUND_MS)} ms`);

  await check(`store back (empty, same port): cross-shard introspection active again within ${RECOVER_BOUND_MS} ms, the newcomer who joined during the outage too`, async () => {
    const times = [];
    for (const c of [...p, newcomer].filter(Boolean)) times.push(await until(c.access, others(c), true, restartedAt, RECOVER_BOUND_MS, `${c.user} after the store came back`));
    note(`after the store came back: cross-shard introspection active again ${Math.max(...times)} ms after ${valkeyName}-server was started`);
    return `${Math.max(...times)} ms`;
  });

  await check(`store back: the access token revoked during the outage (at shard 1 only) is inactive at every shard within ${REVOKE_BOUND_MS} ms (published when the store returned)`, async () => {
    need(revokedInOutage, 'no token was revoked during the outage');
    // Its holder is still in the room, so once re-published it would be active elsewhere: it must
    // say "revoked" instead, and never active meanwhile.
    const t0 = performance.now();
    const times = await Promise.all(shards.map(async (s) => {
      for (;;) {
        const r = await introspect(s, revokedInOutage.access, ANSWER_BOUND_MS);
        need(!isActive(r), `shard ${s.n}: the token revoked during the outage is active ${ms(restartedAt)} ms after the store came back`);
        if (r.body?.reason === 'revoked') return ms(restartedAt);
        need(performance.now() - t0 < REVOKE_BOUND_MS, `shard ${s.n}: not "revoked" ${ms(t0)} ms into this check (last: ${shortShow(r)})`);
        await sleep(50);
      }
    }));
    return `"revoked" at every shard ${Math.max(...times)} ms after ${valkeyName}-server was started`;
  });

  await check('store back: the holder who left during the outage is still inactive everywhere; the revoked login token is still refused and the revoked access token still inactive at every shard', async () => {
    for (const s of shards) {
      const r = await introspect(s, leaver.access);
      need(isInactive(r), `outage-leaver at shard ${s.n}: ${shortShow(r)}`);
      const a = await introspect(s, revokedAccessToken);
      need(isInactive(a), `the revoked access token at shard ${s.n}: ${shortShow(a)}`);
      expectRefusedLogin(await tryLogin(s, revokedLoginToken), `shard ${s.n}`);
    }
  });
  leaver.close();
}

async function phaseCluster(nodes) {
  note(`--- a ${nodes.length}-node ${valkeyName} Cluster on 127.0.0.1:${nodes.map((n) => n.port).join(',')}`);
  const p = [];
  for (const s of shards) for (const k of ['a', 'b']) p.push(await participant(s, `cl-${s.n}${k}`, `cluster-room-${s.n}${k}`));

  await check('cluster: every participant\'s access token (6, in 6 rooms) introspects active at the shards other than its own', async () => {
    for (const c of p) await until(c.access, others(c), true, performance.now(), 3000, c.user);
  });

  await check(`cluster: a holder who leaves is inactive at every shard within ${LEAVE_BOUND_MS} ms (one per shard)`, async () => {
    const times = [];
    for (const s of shards) {
      const c = p.find((x) => x.shard === s && x.user.endsWith('b'));
      await until(c.access, others(c), true, performance.now(), 3000, `${c.user} before leaving`);
      const sentAt = await c.leave();
      times.push(await until(c.access, shards, false, sentAt, LEAVE_BOUND_MS, `${c.user} after leaving`));
      c.left = true;
    }
    note(`cluster: leave → inactive at every shard: ${times.join(', ')} ms`);
    return `slowest ${Math.max(...times)} ms`;
  });

  // More occupants, in more rooms, so that some keys live on the node that dies.
  for (const s of shards) for (const k of ['c', 'd']) p.push(await participant(s, `cl-${s.n}${k}`, `cluster-room-${s.n}${k}`));
  for (const c of p.filter((x) => !x.left)) await until(c.access, others(c), true, performance.now(), 3000, c.user);

  const victim = nodes[nodes.length - 1];
  await killTracked(victim.entry);
  note(`cluster: node 127.0.0.1:${victim.port} killed (SIGKILL)`);

  await check(`cluster, one node down: every introspection answers within ${ANSWER_BOUND_MS} ms; own occupants active at their own shard; elsewhere active or store-unreachable; never active for a holder who left`, async () => {
    // One more leaver per shard, after the kill.
    for (const s of shards) {
      const c = p.find((x) => x.shard === s && x.user.endsWith('d'));
      await c.leave();
      c.left = true;
    }
    await sleep(LEAVE_BOUND_MS);
    const counts = { active: 0, unreachable: 0, left: 0 };
    const unreachableRooms = new Set();
    for (let round = 0; round < 2; round++) {
      for (const c of p) for (const s of shards) {
        const r = await introspect(s, c.access, ANSWER_BOUND_MS);
        need(r.status === 200, () => `${c.user} at shard ${s.n}: ${show(r)}`);
        if (c.left) {
          need(isInactive(r), () => `${c.user} left, yet shard ${s.n} says ${shortShow(r)}`);
          counts.left++;
        } else if (s === c.shard) {
          need(isActive(r), () => `${c.user} at its own shard ${s.n}: ${shortShow(r)}`);
          counts.active++;
        } else if (isActive(r)) counts.active++;
        else {
          need(UNREACHABLE.test(`${r.body?.reason ?? ''}`), () => `${c.user} (present, shard ${c.shard.n}) at shard ${s.n}: ${shortShow(r)} (expected active, or a store-unreachable reason)`);
          counts.unreachable++;
          unreachableRooms.add(c.room.split('@')[0]);
        }
      }
      if (round === 0) await sleep(3000); // and again once the cluster has marked the node failed
    }
    return `${counts.active} active, ${counts.unreachable} store-unreachable (rooms ${[...unreachableRooms].join(', ') || 'none'}), ${counts.left} inactive for holders who left`;
  });

  await check('cluster, one node down: logins keep working on every shard', async () => {
    for (const s of shards) {
      const r = await tryLogin(s, loginToken(`cl-login-${s.n}`));
      need(r.ok, `shard ${s.n}: ${describeLogin(r)}`);
    }
  });
}

async function main() {
  mkdirSync(logDir, { recursive: true });
  tmp = mkdtempSync(join(tmpdir(), 'ts-shards-'));
  for (let n = 1; n <= SHARDS; n++) {
    const dir = join(tmp, `shard-${n}`);
    mkdirSync(join(dir, 'certs'), { recursive: true });
    mkdirSync(join(dir, 'data'));
    const s = { n, name: `shard-${n}`, dir, socket: join(dir, 'ts.sock'), toml: join(dir, 'daemon.toml'),
      c2s: await freePort(), http: await freePort(), api: await freePort() };
    writeFileSync(join(dir, 'prosody.cfg.lua'), prosodyConfig(s));
    shards.push(s);
  }
  const version = (() => { try { return execFileSync(join(dirname(prosodyBin), 'prosodyctl'), ['about'], { encoding: 'utf8', timeout: 30000 }).split('\n')[0]; } catch { return '(prosodyctl about failed)'; } })();
  note(`${version} (${prosodyBin}); daemon ${daemonBin}; ${execFileSync(valkeyServer, ['--version'], { encoding: 'utf8' }).trim()}`);
  note(`shards: ${shards.map((s) => `${s.name} c2s ${s.c2s}, http ${s.http}, daemon http ${s.api}`).join('; ')}; temp dir ${tmp}; logs ${logPath('*')}`);

  // Phase 1 and 2: one server.
  const vk = { entry: startValkey(valkeyName, await freePort()) };
  await valkeyUp(vk.entry);
  await setupShards({ url: `redis://127.0.0.1:${vk.entry.port}/0` });
  await Promise.all(shards.map(startProsody));
  const ready = await Promise.all(shards.map((s) => loginsWork(s)));
  note(`token logins work on every shard (${ready.join(', ')} ms after Prosody's port opened)`);

  const single = await phase('one store', () => phaseSingle(vk));
  if (single) await phase('store outage', () => phaseOutage(vk, single));
  closeAll();

  // Phase 3: the cluster. The daemons are restarted against it; Prosody stays (the shims reconnect).
  await Promise.all(shards.map((s) => stopTracked(s.daemon)));
  await stopTracked(vk.entry);
  const nodes = [];
  for (let i = 1; i <= 3; i++) {
    const port = await freePort();
    const entry = startValkey(`cluster-${i}`, port, ['--cluster-enabled', 'yes', '--cluster-config-file', join(tmp, `cluster-${i}`, 'nodes.conf'),
      '--cluster-node-timeout', '2000', '--cluster-require-full-coverage', 'no']);
    nodes.push({ port, entry });
  }
  for (const n of nodes) await valkeyUp(n.entry);
  const created = cli(nodes[0].port, '--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes');
  writeFileSync(logPath('cluster-create'), created.replace(/\x1b\[[0-9;]*m/g, ''));
  let state = '';
  for (let i = 0; i < 100 && !nodes.every((n) => /cluster_state:ok/.test(state = cli(n.port, 'CLUSTER', 'INFO'))); i++) await sleep(100);
  if (!/cluster_state:ok/.test(state)) throw new Error(`the cluster did not reach cluster_state:ok: ${created.split('\n').slice(-5).join(' | ')}`);
  await setupShards({ nodes: nodes.map((n) => `redis://127.0.0.1:${n.port}`) });
  for (const s of shards) await loginsWork(s);
  await phase('cluster', () => phaseCluster(nodes));
  closeAll();
}

// Runs a phase whose steps outside checks (joins, preconditions) may fail: that failure is
// counted, and the run goes on with the next phase.
async function phase(name, fn) {
  try {
    return await fn();
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}: ${e instanceof Failure || !verbose ? (e?.message ?? e) : (e?.stack ?? e)}`);
    return undefined;
  }
}

async function finish(code) {
  await sleep(200);
  for (const s of shards) { await stopTracked(s.prosody); await stopTracked(s.daemon); }
  for (const c of [...children]) await stopTracked(c); // the valkey servers
  agent.destroy();
  if (failed === 0 && !args.flags.has('keep')) rmSync(tmp, { recursive: true, force: true });
  else if (tmp) note(`files kept in ${tmp}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = code || (failed > 0 ? 1 : 0);
  setTimeout(() => process.exit(process.exitCode), 300).unref();
}

main().then(() => finish(0), (e) => {
  failed++;
  console.log(`not ok - setup: ${e?.message ?? e}`);
  if (verbose) note(e?.stack);
  for (const s of shards) {
    note(`---- daemon ${s.n} (last 15 lines of ${logPath(`daemon-${s.n}`)})`);
    console.log(tail(logPath(`daemon-${s.n}`), 15).replace(/^/gm, '#   '));
  }
  closeAll();
  return finish(1);
});
