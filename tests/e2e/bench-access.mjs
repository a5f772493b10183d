// What a participant access token (mod_access_token's muc#access-token IQ, issue 9) costs Prosody,
// against the cheapest IQ taking the same route: an XMPP ping to the same room JID, which mod_muc
// answers itself. C token clients (strophe.js over WebSocket, ?token=) log in to a freshly started
// Prosody and join rooms; then rounds of two phases, in alternating order, each sending N IQs
// spread over the clients with W in flight: (a) <ping xmlns='urn:xmpp:ping'/> to room@conference/focus
// (no occupant has that nick: mod_muc answers cancel/item-not-found "Recipient not in room";
// `--ping-to self` pings the sender's own occupant JID instead, which mod_muc answers with a result,
// XEP-0410), and (b) <query xmlns='http://jabber.org/protocol/muc#access-token'/> to the same JID,
// which the shim hooks before mod_muc and the daemon answers with an HS256 token. Prosody's CPU is
// utime + stime from /proc/PID/stat (fields 14 and 15) over each phase. Figures go to
// docs/PERFORMANCE.md; nothing here fails on a time.
//
//   node tests/e2e/bench-access.mjs --prosody /usr/bin/prosody --daemon target/release/token-sidecar \
//        [--shim prosody-shim] [--clients 20] [--rooms 4] [--iqs 5000] [--inflight 20] [--rounds 3] \
//        [--warmup 500] [--ping-to focus|self] [--keep]

import { spawn, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { freePort, waitFor } from './net.mjs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Strophe, $iq, $pres } from 'strophe.js';
import WS from 'ws';

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const args = {};
for (let i = 0; i < argv.length; i++) {
  const name = argv[i].replace(/^--/, '');
  if (name === 'keep') args.keep = true;
  else args[name] = argv[++i];
}
const prosodyBin = resolve(args.prosody ?? '/usr/bin/prosody');
const daemonBin = resolve(args.daemon ?? join(here, '../../target/release/token-sidecar'));
const shim = resolve(args.shim ?? join(here, '../../prosody-shim'));
const CLIENTS = Number(args.clients ?? 20);
const ROOMS = Math.min(Number(args.rooms ?? 4), CLIENTS);
const IQS = Number(args.iqs ?? 5000);
const INFLIGHT = Number(args.inflight ?? 20);
const ROUNDS = Number(args.rounds ?? 3);
const WARMUP = Number(args.warmup ?? 500);
const PING_TO = args['ping-to'] ?? 'focus';
if (!['focus', 'self'].includes(PING_TO)) throw new Error('--ping-to is focus or self');
for (const [what, path] of [['--prosody', prosodyBin], ['--daemon', daemonBin], ['--shim', join(shim, 'mod_access_token.lua')]]) {
  if (!existsSync(path)) { console.error(`bench-access.mjs: ${what}: ${path} does not exist`); process.exit(2); }
}

const DOMAIN = 'meet.example.com';
const MUC_HOST = `conference.${DOMAIN}`;
const APP_SECRET = 's3cret';
const ACCESS_KEY = 'bench-access-token-key-0123456789abcdef'; // ≥ 32 bytes, HS256
const ACCESS_NS = 'http://jabber.org/protocol/muc#access-token';
const PING_NS = 'urn:xmpp:ping';

Strophe.setLogLevel(Strophe.LogLevel.FATAL);
globalThis.WebSocket = WS; // strophe opens `new WebSocket(url, 'xmpp')` on the global

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const b64u = (b) => Buffer.from(b).toString('base64url');
function hs256(payload) {
  const input = `${b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64u(JSON.stringify(payload))}`;
  return `${input}.${createHmac('sha256', APP_SECRET).update(input).digest('base64url')}`;
}

function stat(pid) { return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); }
const cpuTicks = (pid) => { const f = stat(pid); return Number(f[11]) + Number(f[12]); }; // utime + stime (fields 14, 15)
const sysTicks = (pid) => Number(stat(pid)[12]);
// Nanoseconds on a CPU, summed over the process's threads (finer than the ticks above).
const runNs = (pid) => readdirSync(`/proc/${pid}/task`).reduce((sum, t) => {
  try { return sum + Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]); } catch { return sum; }
}, 0);
// Jiffies the whole machine spent busy (all CPUs; not idle, not iowait), from /proc/stat.
const machineBusy = () => {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
  return f.reduce((a, b) => a + b, 0) - f[3] - f[4];
};
const rssKb = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

// --- Processes (ours only, by PID) ------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), 'ts-bench-access-'));
const children = [];
let cleaned = false;
function cleanup() {
  if (cleaned) return;
  cleaned = true;
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) { try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ } }
  }
  if (args.keep) console.log(`# kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => process.exit(130));

async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  try { process.kill(child.pid, 'SIGTERM'); } catch { /* gone */ }
  const t = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } }, 3000);
  await gone;
  clearTimeout(t);
}

// --- Clients ----------------------------------------------------------------------------------

function connect(url) {
  const conn = new Strophe.Connection(url);
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error('login: no answer in 10 s')), 10000);
    conn.connect(DOMAIN, null, (status, condition) => {
      const S = Strophe.Status;
      if (status === S.CONNECTED) { clearTimeout(timer); ok(conn); }
      else if ([S.AUTHFAIL, S.CONNFAIL, S.ERROR, S.CONNTIMEOUT].includes(status)) {
        clearTimeout(timer); fail(new Error(`login: status ${status} ${condition ?? ''}`));
      }
    });
  });
}

function join_(conn, room, nick) {
  const to = `${room}/${nick}`;
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`join ${to}: no presence in 10 s`)), 10000);
    conn.addHandler((st) => {
      if (st.getAttribute('from') !== to) return true;
      clearTimeout(timer);
      if (st.getAttribute('type') === 'error') fail(new Error(`join ${to}: ${Strophe.serialize(st)}`));
      else ok();
      return false;
    }, null, 'presence');
    conn.send($pres({ to }).c('x', { xmlns: 'http://jabber.org/protocol/muc' }).tree());
  });
}

// One IQ; resolves with the reply stanza (a result or an error: both are one answer).
function iq(conn, builder) {
  return new Promise((ok, fail) => {
    conn.sendIQ(builder.tree(), ok, (st) => (st ? ok(st) : fail(new Error('IQ: no answer in 10 s'))), 10000);
  });
}

const kinds = {
  ping: {
    label: PING_TO === 'focus' ? 'XMPP ping to room/focus (mod_muc answers)' : 'XMPP ping to own occupant JID (mod_muc answers, XEP-0410)',
    build: (c) => $iq({ type: 'get', to: PING_TO === 'focus' ? `${c.room}/focus` : `${c.room}/${c.nick}` }).c('ping', { xmlns: PING_NS }),
    // What the reply must be, so that every measured IQ took the path we think it took.
    expect: (st) => (PING_TO === 'focus'
      ? st.getAttribute('type') === 'error' && st.getElementsByTagName('item-not-found').length === 1
      : st.getAttribute('type') === 'result'),
  },
  access: {
    label: 'muc#access-token to room/focus (HS256 token issued)',
    build: (c) => $iq({ type: 'get', to: `${c.room}/focus` }).c('query', { xmlns: ACCESS_NS }),
    expect: (st) => st.getAttribute('type') === 'result' && /^[\w-]+\.[\w-]+\.[\w-]+$/.test(st.getElementsByTagName('token')[0]?.getAttribute('data') ?? ''),
  },
};

// n IQs of `kind`, request i from client i % C, `INFLIGHT` outstanding at any time.
async function burst(clients, kind, n) {
  let next = 0;
  let unexpected = null;
  const worker = async () => {
    while (next < n) {
      const c = clients[next++ % clients.length];
      const reply = await iq(c.conn, kinds[kind].build(c));
      if (!kinds[kind].expect(reply) && !unexpected) unexpected = Strophe.serialize(reply);
    }
  };
  await Promise.all(Array.from({ length: Math.min(INFLIGHT, n) }, worker));
  if (unexpected) throw new Error(`${kind}: unexpected reply ${unexpected}`);
}

// --- Main -------------------------------------------------------------------------------------

async function main() {
  const version = execFileSync(join(dirname(prosodyBin), 'prosodyctl'), ['about'], { encoding: 'utf8' }).split('\n')[0].trim();
  const load0 = loadavg();

  const socket = join(dir, 'ts.sock');
  const daemon = spawn(daemonBin, ['serve', '--socket', socket], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, RUST_LOG: 'warn' } });
  children.push(daemon);
  await waitFor({ path: socket }, 10000, () => daemon.exitCode === null);

  mkdirSync(join(dir, 'certs'), { recursive: true });
  const http = await freePort();
  const c2s = await freePort();
  const cfg = join(dir, 'prosody.cfg.lua');
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
component_ports = { }
http_interfaces = { "127.0.0.1" }
http_ports = { ${http} }
https_ports = { }
http_default_host = "${DOMAIN}"
c2s_require_encryption = false
consider_websocket_secure = true
storage = "memory"
log = { warn = "${dir}/prosody.log" }
token_sidecar_socket = "${socket}"
modules_enabled = { "saslauth", "websocket" }
VirtualHost "${DOMAIN}"
  authentication = "token"
  app_id = "myapp"
  app_secret = "${APP_SECRET}"
  muc_mapper_domain_base = "${DOMAIN}"
Component "${MUC_HOST}" "muc"
  modules_enabled = { "token_verification", "access_token" }
  muc_room_locking = false
  access_token_key = "${ACCESS_KEY}"
  access_token_rate_limit = 0
`);
  const prosody = spawn(prosodyBin, ['-F', '--config', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(prosody);
  let prosodyErr = '';
  prosody.stderr.on('data', (d) => { prosodyErr += d; });
  await waitFor({ host: '127.0.0.1', port: http }, 20000, () => prosody.exitCode === null)
    .catch((e) => { throw new Error(`${e.message}\n${prosodyErr}`); });
  const ticksStart = cpuTicks(prosody.pid);
  const rssStart = rssKb(prosody.pid);

  // Log in and join: client k is nick u<k> in room bench<k % ROOMS> (the first to join creates it).
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const clients = [];
  for (let k = 0; k < CLIENTS; k++) {
    const token = hs256({ iss: 'myapp', aud: 'jitsi', sub: DOMAIN, room: '*', exp, context: { user: { id: `u${k}`, name: `User ${k}` } } });
    const conn = await connect(`ws://127.0.0.1:${http}/xmpp-websocket?token=${token}`);
    const c = { conn, room: `bench${k % ROOMS}@${MUC_HOST}`, nick: `u${k}` };
    await join_(conn, c.room, c.nick);
    clients.push(c);
  }

  // What each IQ gets (shown once), then the warm-up.
  const samples = {};
  for (const kind of Object.keys(kinds)) {
    const reply = await iq(clients[0].conn, kinds[kind].build(clients[0]));
    if (!kinds[kind].expect(reply)) throw new Error(`${kind}: unexpected reply ${Strophe.serialize(reply)}`);
    samples[kind] = Strophe.serialize(reply).replace(/data="[^"]{40,}"/, (m) => `${m.slice(0, 30)}…"`);
  }
  for (const kind of Object.keys(kinds)) await burst(clients, kind, WARMUP);

  const results = { ping: [], access: [] };
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? ['ping', 'access'] : ['access', 'ping'];
    for (const kind of order) {
      await sleep(200); // let the previous phase's stragglers (timers, GC) settle outside the window
      const p0 = cpuTicks(prosody.pid), s0 = sysTicks(prosody.pid), d0 = cpuTicks(daemon.pid), ns0 = runNs(prosody.pid), m0 = machineBusy();
      const n0 = process.cpuUsage(), t0 = process.hrtime.bigint();
      await burst(clients, kind, IQS);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const n1 = process.cpuUsage(n0);
      const p1 = cpuTicks(prosody.pid), d1 = cpuTicks(daemon.pid), m1 = machineBusy();
      // Everything else on the machine during the phase, in % of one core (other builds, tests…).
      const others = ((m1 - m0) * TICK_MS - ((p1 - p0) + (d1 - d0)) * TICK_MS - (n1.user + n1.system) / 1000) / (seconds * 1000) * 100;
      const per1k = (ticks) => (ticks * TICK_MS * 1000) / IQS; // ms of CPU per 1,000 IQs
      results[kind].push({
        round, rate: IQS / seconds,
        cpu: per1k(p1 - p0), sys: per1k(sysTicks(prosody.pid) - s0),
        sched: ((runNs(prosody.pid) - ns0) / 1e6) * 1000 / IQS,
        daemon: per1k(d1 - d0), node: ((n1.user + n1.system) / 1000) * 1000 / IQS,
        others, busy: ((m1 - m0) * TICK_MS) / (seconds * 1000) * 100,
      });
    }
  }
  const rss = rssKb(prosody.pid);
  const totalTicks = cpuTicks(prosody.pid) - ticksStart;
  const load1 = loadavg();
  const logPath = join(dir, 'prosody.log'); // read before stopping (the stop itself logs a warning)
  const warnings = existsSync(logPath) ? readFileSync(logPath, 'utf8').trim().split('\n').filter(Boolean) : [];

  for (const c of clients) { try { c.conn.disconnect(); } catch { /* gone */ } }
  await sleep(300);
  await stop(prosody);
  await stop(daemon);

  // --- Report ---------------------------------------------------------------------------------
  const sorted = (xs) => [...xs].sort((a, b) => a - b);
  const median = (xs) => { const s = sorted(xs); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
  const f0 = (x) => x.toFixed(0), f1 = (x) => x.toFixed(1), f2 = (x) => x.toFixed(2);
  const ratios = results.access.map((a, i) => a.cpu / results.ping[i].cpu);
  const rel = (xs) => `${f2(Math.min(...xs))} / ${f2(median(xs))} / ${f2(Math.max(...xs))}`;
  const list = (xs, f) => xs.map(f).join(' / ');

  console.log(`# command: node tests/e2e/bench-access.mjs ${argv.join(' ')}`);
  console.log(`# ${version} (${prosodyBin}), fresh; daemon ${daemonBin}; ${CLIENTS} token clients (WebSocket, HS256 ?token=) in ${ROOMS} rooms;`);
  console.log(`# ${IQS} IQs per phase, ${INFLIGHT} in flight, ${ROUNDS} rounds alternating (${results.ping.map((_, r) => (r % 2 === 0 ? 'ping→access' : 'access→ping')).join(', ')}), after ${WARMUP} warm-up IQs of each kind`);
  console.log(`# load average (1/5/15 min) at start ${load0.map(f2).join(' ')}, at end ${load1.map(f2).join(' ')}`);
  console.log(`# machine CPU busy during each phase, % of one core (of ${cpus().length * 100} % on ${cpus().length} cores): ping ${list(results.ping, (r) => f0(r.busy))}, access ${list(results.access, (r) => f0(r.busy))}; of which not Prosody, the daemon or this tool (other processes, interrupts): ping ${list(results.ping, (r) => f0(r.others))}, access ${list(results.access, (r) => f0(r.others))}`);
  const disturbed = ['ping', 'access'].flatMap((k) => results[k].filter((r) => r.others > 25).map((r) => `${k} round ${r.round + 1} (${f0(r.others)} %)`));
  console.log(`# phases with more than 25 % of a core used by others: ${disturbed.length ? `${disturbed.join(', ')} (re-run for clean figures)` : 'none'}`);
  console.log(`# ping reply:   ${samples.ping}`);
  console.log(`# access reply: ${samples.access}`);
  console.log('');
  console.log(`| ${version}: IQ | IQs/s (per round) | Prosody CPU ms / 1,000 IQs (per round) | median | of which kernel (median) | daemon CPU ms / 1,000 (median) | load tool CPU ms / 1,000 (median) |`);
  console.log('|---|---|---|---|---|---|---|');
  for (const kind of ['ping', 'access']) {
    const rs = results[kind];
    console.log(`| ${kinds[kind].label} | ${list(rs, (r) => f0(r.rate))} | ${list(rs, (r) => f1(r.cpu))} | ${f1(median(rs.map((r) => r.cpu)))} | ${f1(median(rs.map((r) => r.sys)))} | ${f1(median(rs.map((r) => r.daemon)))} | ${f1(median(rs.map((r) => r.node)))} |`);
  }
  console.log(`| **ratio access ÷ ping** (Prosody CPU, per round) | | ${list(ratios, f2)} | min / median / max **${rel(ratios)}** | | | |`);
  const schedRatios = results.access.map((a, i) => a.sched / results.ping[i].sched);
  console.log('');
  console.log(`# cross-check from /proc/PID/task/*/schedstat (ns on CPU): Prosody ms / 1,000 IQs ping ${list(results.ping, (r) => f1(r.sched))}, access ${list(results.access, (r) => f1(r.sched))}; ratio per round ${list(schedRatios, f2)} (min / median / max ${rel(schedRatios)})`);
  console.log(`# Prosody: ${f1(totalTicks * TICK_MS / 1000)} CPU s from first login to the end; RSS after the logins ${(rssStart / 1024).toFixed(1)} MB, at the end ${(rss / 1024).toFixed(1)} MB; ${warnings.length} warning line(s) in its log${warnings.length ? `, first: ${warnings[0]}` : ''}`);
  process.exit(0);
}

main().catch((e) => { console.error(e?.stack ?? e); process.exit(1); });
