#!/usr/bin/env node
// Chaos, end to end: a real Prosody with the shim, the daemon, a key server on 127.0.0.1 and
// strophe.js clients, while things go wrong on purpose (docs/RELIABILITY.md has the figures).
//
//   (a) the daemon is killed (SIGKILL) every 2 s and started again, while clients log in and join
//       rooms in a loop, a forged-signature client and a wrong-room client run throughout: no
//       wrongful accept, every refusal is temporary-auth-failure / service-unavailable or the right
//       refusal, and logins succeed again soon after each restart;
//   (b) the key server hangs, resets, answers 500, answers garbage, trickles its body a byte a second,
//       during HS256 and RS256 load: cached keys keep serving, HS256 logins are unaffected, new kids
//       are refused with a clear text, nothing hangs;
//   (c) a client of the daemon's socket that never reads its replies: logins through Prosody go on;
//   (d) the socket's directory is read-only at start: the daemon exits 1 with the cause.
//
//   node tests/e2e/chaos.mjs --prosody /usr/bin/prosody --daemon target/debug/token-sidecar \
//        [--shim prosody-shim] [--seconds 60] [--clients 200] [--concurrency 200] [--keep]
//
// Prints '# ' lines with figures and one line per check (`ok - …` / `not ok - …`), then
// `N passed, N failed`; exits 1 on any failure. No check fails on a time below its hard bound
// (a login or join must be answered, one way or the other, within 15 s).

import { spawn } from 'node:child_process';
import { createHash, createHmac, generateKeyPairSync, sign as rsaSign } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer, connect as netConnect } from 'node:net';
import { freePort } from './net.mjs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

import { Strophe, $pres } from 'strophe.js';
import WS from 'ws';

const here = dirname(fileURLToPath(import.meta.url));
const args = {};
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i].replace(/^--/, '');
  if (a === 'keep') args.keep = true;
  else args[a] = process.argv[++i];
}
const prosodyBin = resolve(args.prosody ?? '/usr/bin/prosody');
const daemonBin = resolve(args.daemon ?? join(here, '../../target/debug/token-sidecar'));
const shim = resolve(args.shim ?? join(here, '../../prosody-shim'));
const SECONDS = Number(args.seconds ?? 60);
const CLIENTS = Number(args.clients ?? 200);
const CONCURRENCY = Number(args.concurrency ?? 200);
const KILL_EVERY_MS = 2000;
const ANSWER_WITHIN_MS = 15000; // the shim's own timeout is 10 s

// A connection the rig gives up on may close before its handshake; strophe has its own error path,
// so the socket's 'error' event must not end the process.
globalThis.WebSocket = class QuietWebSocket extends WS {
  constructor(...a) { super(...a); this.on('error', () => {}); }
};
Strophe.setLogLevel(Strophe.LogLevel.FATAL);

const HS = 'meet.example.com';
const RS = 'rs.example.com';
const SECRET = 'chaos-s3cret';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => Math.floor(Date.now() / 1000);
const b64u = (b) => Buffer.from(b).toString('base64url');
const median = (xs) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] : NaN);

// --- Checks and output ------------------------------------------------------------------------

let passed = 0;
let failed = 0;
function check(ok, name, why = '') {
  if (ok) { passed++; console.log(`ok - ${name}`); }
  else { failed++; console.log(`not ok - ${name}${why ? `: ${why}` : ''}`); }
}

// --- Tokens -----------------------------------------------------------------------------------

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' });
function jwt(header, claims, signer) {
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}`;
  return `${input}.${b64u(signer(input))}`;
}
const hmac = (secret) => (input) => createHmac('sha256', secret).update(input).digest();
const rsaSigner = (input) => rsaSign('sha256', Buffer.from(input), rsa.privateKey);
const claims = (host, room, id) => ({ iss: 'chaos', aud: 'jitsi', sub: host, room, exp: now() + 3600,
  context: { user: { id, name: id } } });
const hsToken = (room, id, secret = SECRET) => jwt({ alg: 'HS256', typ: 'JWT' }, claims(HS, room, id), hmac(secret));
const rsToken = (kid, room, id) => jwt({ alg: 'RS256', typ: 'JWT', kid }, claims(RS, room, id), rsaSigner);

// --- Processes (ours only, by PID) and the key server -------------------------------------------

const dir = mkdtempSync(join(tmpdir(), 'ts-chaos-'));
const children = new Set();
process.on('exit', () => {
  for (const c of children) { try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ } }
  if (!args.keep && failed === 0) rmSync(dir, { recursive: true, force: true });
  else console.log(`# files kept in ${dir}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));


async function waitFor(opts, ms, alive = () => true) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && alive()) {
    const up = await new Promise((r) => {
      const c = netConnect(opts);
      c.once('connect', () => { c.destroy(); r(true); });
      c.once('error', () => r(false));
    });
    if (up) return true;
    await sleep(20);
  }
  throw new Error(`nothing listening on ${JSON.stringify(opts)} after ${ms} ms`);
}

// The key server: `mode` says how it answers `/asap/<sha256hex(kid)>.pem`.
let mode = 'ok';
const keyServerRequests = { total: 0 };
const hanging = new Set();
const keyServer = createHttpServer((req, res) => {
  keyServerRequests.total++;
  switch (mode) {
    case 'hang': hanging.add(res); return;
    case 'reset': req.socket.destroy(); return;
    case '500': res.writeHead(500).end('internal error'); return;
    case 'garbage': res.writeHead(200, { 'content-type': 'application/x-pem-file' }).end('this is not a key\n'); return;
    case 'trickle': {
      res.writeHead(200, { 'content-type': 'application/x-pem-file' });
      let i = 0;
      const t = setInterval(() => { if (i < rsaPem.length && !res.destroyed) res.write(rsaPem[i++]); else { clearInterval(t); res.end(); } }, 1000);
      res.on('close', () => clearInterval(t));
      return;
    }
    default: res.writeHead(200, { 'content-type': 'application/x-pem-file' }).end(rsaPem);
  }
});

const socket = join(dir, 'ts.sock');
let daemon = null;
function startDaemon() {
  const child = spawn(daemonBin, ['serve', '--socket', socket], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
  child.stderr.on('data', () => {}); // drained; the kills make noise by design
  children.add(child);
  child.once('exit', () => children.delete(child));
  daemon = child;
  return child;
}
const rssKb = (pid) => { try { return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]); } catch { return 0; } };

// --- Clients ----------------------------------------------------------------------------------

let httpPort;
// Logs in with `token` on `domain` and, when `room` is given, joins it; then leaves. Resolves with
// { login: 'ok' | <condition> [text], join: 'ok' | <condition> [text] | undefined, ms, saslAt }
// (saslAt: when the SASL success arrived, the moment the daemon's answer is known to have come).
function attempt(domain, token, room) {
  const started = performance.now();
  return new Promise((done) => {
    const conn = new Strophe.Connection(`ws://127.0.0.1:${httpPort}/xmpp-websocket?token=${token}`);
    let failure = null;
    let saslAt;
    conn.xmlInput = (el) => {
      if (el.nodeName === 'success') saslAt = performance.now();
      if (el.nodeName === 'failure') {
        const cond = [...el.childNodes].find((n) => n.nodeType === 1 && n.nodeName !== 'text');
        const text = el.getElementsByTagName('text')[0];
        failure = `${cond ? cond.nodeName : '?'}${text ? ` "${text.textContent}"` : ''}`;
      }
    };
    let settled = false;
    const finish = (result) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try { conn.reset(); conn.disconnect(); } catch { /* closed */ }
      done({ ...result, ms: performance.now() - started, saslAt });
    };
    // No answer before SASL began is the test rig's own overload (Prosody did not get to the
    // WebSocket handshake); no answer after it would be the token service hanging a login.
    let authenticating = false;
    const timer = setTimeout(() => finish({ login: authenticating ? 'no answer' : 'rig: not connected in time', join: undefined }),
      ANSWER_WITHIN_MS);
    conn.connect(domain, null, (status) => {
      const S = Strophe.Status;
      if (status === S.AUTHENTICATING) authenticating = true;
      if (status === S.CONNECTED) {
        if (!room) return finish({ login: 'ok' });
        const to = `${room}/n${Math.floor(Math.random() * 1e9)}`;
        conn.addHandler((st) => {
          if (st.getAttribute('from') !== to) return true;
          const error = st.getElementsByTagName('error')[0];
          if (st.getAttribute('type') === 'error' && error) {
            const cond = [...error.childNodes].find((n) => n.nodeType === 1 && n.nodeName !== 'text');
            const text = error.getElementsByTagName('text')[0];
            finish({ login: 'ok', join: `${cond ? cond.nodeName : '?'}${text ? ` "${text.textContent}"` : ''}` });
          } else finish({ login: 'ok', join: 'ok' });
          return false;
        }, null, 'presence');
        conn.send($pres({ to }).c('x', { xmlns: 'http://jabber.org/protocol/muc' }).tree());
      } else if ([S.AUTHFAIL, S.CONNFAIL, S.ERROR, S.CONNTIMEOUT, S.DISCONNECTED].includes(status)) {
        finish({ login: failure ?? `status ${status}`, join: undefined });
      }
    });
  });
}

const tally = (map, key) => map.set(key, (map.get(key) ?? 0) + 1);
const show = (map) => [...map].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}: ${n}`).join('; ') || 'none';

// --- (a) the daemon killed every 2 s ------------------------------------------------------------

async function killLoop() {
  const valid = new Map(); // outcome → count, for valid tokens
  const joins = new Map();
  const forged = new Map();
  const wrongRoom = new Map();
  const unexpected = [];
  let wrongful = 0;
  let attempted = 0;
  const restarts = []; // performance.now() of each respawn
  const firstSuccessAfter = [];
  const successes = []; // when each valid login's SASL success arrived
  let peakRss = 0;
  let stop = false;

  const validWorker = async (w) => {
    for (let n = 0; !stop; n++) {
      const id = `u${(w * 7919 + n) % CLIENTS}`;
      const rs = n % 4 === 3; // a quarter RS256 (the key is fetched again after each restart)
      const room = `chaos${(w + n) % 20}@conference.${rs ? RS : HS}`;
      const token = rs ? rsToken('chaos-1', '*', id) : hsToken('*', id);
      const r = await attempt(rs ? RS : HS, token, room);
      attempted++;
      tally(valid, r.login === 'ok' ? 'logged in' : r.login);
      if (r.login === 'ok') {
        successes.push(r.saslAt);
        tally(joins, r.join);
        if (r.join !== 'ok' && !/^service-unavailable/.test(r.join ?? '')) unexpected.push(`valid join refused: ${r.join}`);
      } else if (!/^(temporary-auth-failure|rig: )/.test(r.login)) unexpected.push(`valid login refused: ${r.login}`);
    }
  };
  const forgedWorker = async () => {
    for (let n = 0; !stop; n++) {
      const r = await attempt(HS, hsToken('*', `forger${n}`, 'not-the-secret'), null);
      attempted++;
      tally(forged, r.login);
      if (r.login === 'ok') wrongful++;
      else if (!/^(temporary-auth-failure|not-allowed "Invalid signature"|rig: )/.test(r.login)) unexpected.push(`forged: ${r.login}`);
    }
  };
  const wrongRoomWorker = async () => {
    for (let n = 0; !stop; n++) {
      const r = await attempt(HS, hsToken('rooma', `w${n}`), `roomb@conference.${HS}`);
      attempted++;
      tally(wrongRoom, r.login === 'ok' ? `join: ${r.join}` : `login: ${r.login}`);
      if (r.join === 'ok') wrongful++;
      else if (r.login === 'ok' && !/^(service-unavailable|not-allowed "Room and token mismatched")/.test(r.join ?? '')) unexpected.push(`wrong room: ${r.join}`);
    }
  };
  const killer = async () => {
    const end = performance.now() + SECONDS * 1000;
    while (performance.now() < end) {
      await sleep(KILL_EVERY_MS);
      peakRss = Math.max(peakRss, rssKb(daemon.pid));
      const old = daemon;
      const gone = new Promise((r) => old.once('exit', r));
      process.kill(old.pid, 'SIGKILL');
      await gone;
      startDaemon();
      restarts.push(performance.now());
    }
    stop = true;
  };
  const sampler = setInterval(() => { peakRss = Math.max(peakRss, rssKb(daemon.pid)); }, 200);
  await Promise.all([
    killer(),
    forgedWorker(),
    wrongRoomWorker(),
    ...Array.from({ length: CONCURRENCY }, (_, w) => validWorker(w)),
  ]);
  clearInterval(sampler);
  // Recovery: from each restart to the first SASL success after it (a login the new daemon answered).
  for (const t of restarts) {
    const first = successes.filter((at) => at >= t).sort((a, b) => a - b)[0];
    if (first !== undefined) firstSuccessAfter.push(first - t);
  }
  const rec = firstSuccessAfter;
  console.log(`# (a) ${SECONDS} s, daemon SIGKILLed every ${KILL_EVERY_MS / 1000} s (${restarts.length} restarts), ${CLIENTS} client ids, ${CONCURRENCY} in flight + a forger + a wrong-room client`);
  console.log(`# (a) attempts ${attempted}; valid logins: ${show(valid)}`);
  console.log(`# (a) joins after a valid login: ${show(joins)}`);
  console.log(`# (a) forged: ${show(forged)}; wrong room: ${show(wrongRoom)}`);
  console.log(`# (a) recovery after a restart (to the first SASL success after it), ms: min ${Math.min(...rec).toFixed(0)} median ${median(rec).toFixed(0)} max ${Math.max(...rec).toFixed(0)} over ${rec.length} restarts`);
  console.log(`# (a) daemon peak RSS ${peakRss} KiB`);
  check(wrongful === 0, '(a) daemon killed every 2 s: no wrongful accept (forged signature, wrong room)', `${wrongful} wrongful`);
  check(unexpected.length === 0, '(a) every refusal of a valid token is temporary-auth-failure (login) or service-unavailable (join); the others get their own refusal texts',
    [...new Set(unexpected)].slice(0, 5).join(' | '));
  check(rec.length >= restarts.length - 1 && Math.max(...rec) < 5000, '(a) logins succeed again after every restart (hard bound 5 s; the figure is above)',
    `${rec.length} of ${restarts.length} restarts recovered, max ${Math.max(...rec).toFixed(0)} ms`);
  check((valid.get('no answer') ?? 0) === 0 && (forged.get('no answer') ?? 0) === 0, '(a) every login is answered within 15 s', show(valid));
}

// --- (b) a misbehaving key server ---------------------------------------------------------------

async function keyServerChaos() {
  mode = 'ok';
  const warm = await attempt(RS, rsToken('chaos-1', '*', 'warm'), null);
  check(warm.login === 'ok', '(b) RS256 login with the key server answering (the key is cached from here on)', warm.login);
  let fresh = 0;
  for (const m of ['hang', 'reset', '500', 'garbage', 'trickle', 'ok']) {
    mode = m;
    const results = { hs: new Map(), cached: new Map(), fresh: new Map() };
    let maxFreshMs = 0;
    const stopAt = performance.now() + 4000;
    const worker = async (kind) => {
      while (performance.now() < stopAt) {
        const token = kind === 'hs' ? hsToken('*', 'h') : rsToken(kind === 'cached' ? 'chaos-1' : `chaos-new-${++fresh}`, '*', 'r');
        const r = await attempt(kind === 'hs' ? HS : RS, token, null);
        tally(results[kind], r.login === 'ok' ? 'logged in' : r.login);
        if (kind === 'fresh') maxFreshMs = Math.max(maxFreshMs, r.ms);
      }
    };
    await Promise.all([worker('hs'), worker('hs'), worker('cached'), worker('cached'), worker('fresh'), worker('fresh')]);
    for (const res of hanging) res.destroy();
    hanging.clear();
    console.log(`# (b) key server ${m}: HS256 ${show(results.hs)}; RS256 cached kid ${show(results.cached)}; RS256 new kids ${show(results.fresh)} (slowest answer ${maxFreshMs.toFixed(0)} ms)`);
    const onlyOk = (map) => map.size === 1 && map.has('logged in');
    check(onlyOk(results.hs), `(b) key server ${m}: HS256 logins unaffected`, show(results.hs));
    check(onlyOk(results.cached), `(b) key server ${m}: RS256 with a cached key keeps logging in`, show(results.cached));
    if (m === 'ok') {
      check(results.fresh.has('logged in'), '(b) key server back: new kids log in again', show(results.fresh));
    } else {
      const clear = [...results.fresh.keys()].every((k) => /^(not-allowed "could not obtain public key"|temporary-auth-failure)/.test(k));
      check(!results.fresh.has('logged in') && clear, `(b) key server ${m}: new kids refused with a clear text, never let in`, show(results.fresh));
      check(maxFreshMs < ANSWER_WITHIN_MS, `(b) key server ${m}: every new-kid login answered within 15 s`, `${maxFreshMs.toFixed(0)} ms`);
    }
  }
  mode = 'ok';
}

// --- (c) a socket client that never reads -------------------------------------------------------

async function neverReads() {
  const rssBefore = rssKb(daemon.pid);
  const client = netConnect({ path: socket });
  await new Promise((r) => client.once('connect', r));
  client.pause(); // never read a reply
  const line = `${JSON.stringify({ id: 1, op: 'auth', host: HS, token: hsToken('*', 'greedy') })}\n`;
  let written = 0;
  const end = performance.now() + 5000;
  const writer = (async () => {
    while (performance.now() < end) {
      if (client.write(line)) written++;
      else {
        await new Promise((r) => {
          const resume = () => { clearTimeout(t); client.off('drain', resume); r(); };
          const t = setTimeout(resume, 200);
          client.once('drain', resume);
        });
      }
    }
  })();
  const outcomes = new Map();
  while (performance.now() < end) {
    const r = await attempt(HS, hsToken('*', 'polite'), `calm@conference.${HS}`);
    tally(outcomes, r.login === 'ok' ? `login ok, join ${r.join}` : r.login);
  }
  await writer;
  const rssAfter = rssKb(daemon.pid);
  client.destroy();
  console.log(`# (c) a socket client that never reads: ${written} requests written before its writes blocked; logins meanwhile: ${show(outcomes)}; daemon RSS ${rssBefore} → ${rssAfter} KiB`);
  check(outcomes.size === 1 && outcomes.has('login ok, join ok'), '(c) a client that never reads its replies: Prosody logins and joins go on', show(outcomes));
  check(rssAfter < rssBefore + 64 * 1024, '(c) the daemon does not grow for it (< 64 MB more)', `${rssBefore} → ${rssAfter} KiB`);
}

// --- (d) the socket directory read-only at start -------------------------------------------------

async function readOnlyDirectory() {
  const ro = join(dir, 'ro');
  mkdirSync(ro);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', ro], { stdio: 'ignore' });
  } catch {
    check(true, '(d) the socket directory read-only at start # skipped: cannot mount a read-only tmpfs here');
    return;
  }
  try {
    const child = spawn(daemonBin, ['serve', '--socket', join(ro, 'ts.sock')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    const code = await new Promise((r) => {
      const t = setTimeout(() => { child.kill('SIGKILL'); r('still running after 5 s'); }, 5000);
      child.once('exit', (c) => { clearTimeout(t); r(c); });
    });
    const line = err.trim().split('\n').pop();
    console.log(`# (d) read-only socket directory: exit ${code}, "${line}"`);
    check(code === 1 && /Read-only file system/.test(err), '(d) the socket directory read-only at start: exit 1 naming the path and the cause', `exit ${code}: ${line}`);
  } finally {
    try { execFileSync('umount', [ro], { stdio: 'ignore' }); } catch { /* left mounted: the temp dir stays */ }
  }
}

// --- Main -------------------------------------------------------------------------------------

async function main() {
  const keyPort = await freePort();
  await new Promise((r) => keyServer.listen(keyPort, '127.0.0.1', r));
  httpPort = await freePort();
  const c2s = await freePort();
  mkdirSync(join(dir, 'certs'));
  const cfg = join(dir, 'prosody.cfg.lua');
  const component = (host) => `
Component "conference.${host}" "muc"
  modules_enabled = { "token_verification" }
  muc_room_locking = false
`;
  writeFileSync(cfg, `
run_as_root = true
pidfile = "${dir}/prosody.pid"
data_path = "${dir}"
plugin_paths = { "${shim}" }
certificates = "${dir}/certs"
interfaces = { "127.0.0.1" }
c2s_ports = { ${c2s} }
c2s_direct_tls_ports = { }
s2s_ports = { }
http_interfaces = { "127.0.0.1" }
http_ports = { ${httpPort} }
https_ports = { }
http_default_host = "${HS}"
c2s_require_encryption = false
consider_websocket_secure = true
storage = "memory"
log = { warn = "${dir}/prosody.log" }
token_sidecar_socket = "${socket}"
modules_enabled = { "saslauth", "websocket" }
VirtualHost "${HS}"
  authentication = "token"
  app_id = "chaos"
  app_secret = "${SECRET}"
  muc_mapper_domain_base = "${HS}"
VirtualHost "${RS}"
  authentication = "token"
  app_id = "chaos"
  asap_key_server = "http://127.0.0.1:${keyPort}/asap"
  asap_key_fetch_timeout = 1
  asap_key_fetch_retries = 1
  muc_mapper_domain_base = "${RS}"
${component(HS)}${component(RS)}`);
  startDaemon();
  await waitFor({ path: socket }, 10000, () => daemon.exitCode === null);
  const prosody = spawn(prosodyBin, ['-F', '--config', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(prosody);
  let prosodyErr = '';
  prosody.stderr.on('data', (d) => { prosodyErr += d; });
  await waitFor({ host: '127.0.0.1', port: httpPort }, 20000, () => prosody.exitCode === null)
    .catch((e) => { throw new Error(`${e.message}\n${prosodyErr}`); });
  const version = execFileSync(join(dirname(prosodyBin), 'prosodyctl'), ['about'], { encoding: 'utf8' }).split('\n')[0].trim();
  console.log(`# ${version}; daemon ${daemonBin}`);
  for (let i = 0; i < 50; i++) { // the shim's first hello
    if ((await attempt(HS, hsToken('*', 'first'), null)).login === 'ok') break;
    await sleep(100);
  }

  await keyServerChaos();
  await neverReads();
  await killLoop();
  await readOnlyDirectory();
  keyServer.close();
  for (const res of hanging) res.destroy();
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((e) => {
  console.log(`not ok - chaos run: ${e.stack ?? e}`);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
});
