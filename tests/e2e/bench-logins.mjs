// Login throughput and Prosody CPU per 1,000 logins: token logins through the shim (HS256, RS256
// with the key cached) against anonymous logins on the same Prosody (the floor). Each measurement
// runs on a freshly started Prosody (0.12 keeps heap per websocket login). Figures go to
// docs/PERFORMANCE.md; nothing here fails on a time.
//
//   node tests/e2e/bench-logins.mjs --prosody /usr/bin/prosody --daemon target/release/token-sidecar \
//        [--shim prosody-shim] [--logins 2000] [--concurrency 20] [--rounds 2]

import { spawn, execFileSync } from 'node:child_process';
import { createHash, createHmac, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, writeFileSync, readFileSync, readdirSync, mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { freePort } from './net.mjs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const here = dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) =>
  (a.startsWith('--') ? acc.concat([[a.slice(2), all[i + 1]]]) : acc), []));
const prosodyBin = args.prosody ?? '/usr/bin/prosody';
const daemonBin = resolve(args.daemon ?? 'target/release/token-sidecar');
const shim = resolve(args.shim ?? join(here, '../../prosody-shim'));
const LOGINS = Number(args.logins ?? 2000);
const CONCURRENCY = Number(args.concurrency ?? 20);
const ROUNDS = Number(args.rounds ?? 2);
const CALLGRIND = 'callgrind' in args;
const WARMUP = 100;

const b64u = (b) => Buffer.from(b).toString('base64url');
function jwt(header, payload, signer) {
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(payload))}`;
  return `${input}.${signer(input).toString('base64url')}`;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function cpuTicks(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime (fields 14 and 15)
}
// The Lua script behind a launcher (scripts/install-prosody's for 13 is `exec lua5.4 'PATH' "$@"`).
function luaScript(bin) {
  const m = /^exec lua5\.4 '([^']+)'/m.exec(readFileSync(bin, 'utf8'));
  return m ? m[1] : bin;
}
function sysTicks(pid) {
  return Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[12]);
}

// One login over RFC 7395 WebSocket framing: ANONYMOUS, then resource binding.
function login(url, domain) {
  return new Promise((resolveLogin, reject) => {
    const ws = new WebSocket(url, 'xmpp');
    let step = 0;
    const open = `<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="${domain}" version="1.0"/>`;
    const fail = (why) => { ws.terminate(); reject(new Error(why)); };
    ws.on('open', () => ws.send(open));
    ws.on('error', (e) => fail(String(e)));
    ws.on('message', (data) => {
      const s = data.toString();
      if (s.startsWith('<open') || s.startsWith('<close')) return;
      if (step === 0 && s.includes('<stream:features')) {
        step = 1; ws.send('<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="ANONYMOUS"/>');
      } else if (step === 1) {
        if (!s.startsWith('<success')) return fail(`SASL: ${s}`);
        step = 2; ws.send(open);
      } else if (step === 2 && s.includes('<stream:features')) {
        step = 3; ws.send('<iq type="set" id="b1" xmlns="jabber:client"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"/></iq>');
      } else if (step === 3 && s.includes('id="b1"') || step === 3 && s.includes("id='b1'")) {
        if (!s.includes('result')) return fail(`bind: ${s}`);
        ws.send('<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>');
        ws.close();
        resolveLogin();
      }
    });
  });
}

async function run(n, makeUrl, domain) {
  let next = 0;
  const worker = async () => { while (next < n) { const i = next++; await login(makeUrl(i), domain); } };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'ts-bench-'));
  const children = [];
  const cleanup = () => { for (const c of children) { try { c.kill('SIGKILL'); } catch {} } if ('keep' in args) console.log(`kept ${dir}`); else rmSync(dir, { recursive: true, force: true }); };
  process.on('exit', cleanup);
  process.on('SIGINT', () => process.exit(130));

  // RS256 key server: /asap/<sha256hex(kid)>.pem
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = 'bench/key1';
  const pemPath = `/asap/${createHash('sha256').update(kid).digest('hex')}.pem`;
  const pem = publicKey.export({ type: 'spki', format: 'pem' });
  let keyRequests = 0;
  const keyServer = createServer((req, res) => {
    keyRequests++;
    if (req.url === pemPath) { res.writeHead(200, { 'content-type': 'application/x-pem-file' }); res.end(pem); }
    else { res.writeHead(404); res.end(); }
  });
  await new Promise((r) => keyServer.listen(0, '127.0.0.1', r));
  const keyPort = keyServer.address().port;

  const socket = join(dir, 'ts.sock');
  const daemon = spawn(daemonBin, ['serve', '--socket', socket], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, RUST_LOG: 'warn' } });
  children.push(daemon);
  for (let i = 0; i < 100; i++) { try { readFileSync(socket); } catch (e) { if (e.code === 'ENXIO' || e.code === 'EOPNOTSUPP') break; } await sleep(50); }

  const now = Math.floor(Date.now() / 1000);
  const hsToken = (i) => jwt({ alg: 'HS256', typ: 'JWT' },
    { iss: 'myapp', aud: 'jitsi', sub: 'hs.example.com', room: '*', exp: now + 3600, context: { user: { id: `u${i}`, name: `User ${i}` } } },
    (input) => createHmac('sha256', 's3cret').update(input).digest());
  const rsToken = (i) => jwt({ alg: 'RS256', typ: 'JWT', kid },
    { iss: 'myapp', aud: 'jitsi', sub: 'rs.example.com', room: '*', exp: now + 3600, context: { user: { id: `u${i}`, name: `User ${i}` } } },
    (input) => sign('sha256', Buffer.from(input), privateKey));
  // Tokens are minted before timing so the client's signing does not count.
  const total = WARMUP + LOGINS;
  const tokens = { hs: Array.from({ length: total }, (_, i) => hsToken(i)), rs: Array.from({ length: total }, (_, i) => rsToken(i)) };

  const kinds = [
    { name: 'anonymous', domain: 'anon.example.com', token: () => null },
    { name: 'anonymous, RS256 token in URL (ignored)', domain: 'anon.example.com', token: (i) => tokens.rs[i] },
    { name: 'token HS256', domain: 'hs.example.com', token: (i) => tokens.hs[i] },
    { name: 'token RS256', domain: 'rs.example.com', token: (i) => tokens.rs[i] },
  ];
  const results = Object.fromEntries(kinds.map((k) => [k.name, []]));
  const version = execFileSync(join(dirname(prosodyBin), 'prosodyctl'), ['about'], { encoding: 'utf8' }).split('\n')[0];

  for (let round = 0; round < ROUNDS; round++) {
    for (const kind of kinds) {
      const run_dir = join(dir, `p${round}-${kind.name.replace(/\W/g, '')}`);
      mkdirSync(join(run_dir, 'certs'), { recursive: true });
      const http = await freePort();
      const c2s = await freePort();
      const cfg = join(run_dir, 'prosody.cfg.lua');
      writeFileSync(cfg, `
run_as_root = true
pidfile = "${run_dir}/prosody.pid"
data_path = "${run_dir}"
plugin_paths = { "${shim}" }
certificates = "${run_dir}/certs"
interfaces = { "127.0.0.1" }
c2s_ports = { ${c2s} }
c2s_direct_tls_ports = { }
s2s_ports = { }
http_interfaces = { "127.0.0.1" }
http_ports = { ${http} }
https_ports = { }
http_default_host = "anon.example.com"
c2s_require_encryption = false
consider_websocket_secure = true
storage = "memory"
log = { warn = "${run_dir}/prosody.log" }
token_sidecar_socket = "${socket}"
modules_enabled = { "saslauth", "websocket" }
VirtualHost "anon.example.com"
  authentication = "anonymous"
VirtualHost "hs.example.com"
  authentication = "token"
  app_id = "myapp"
  app_secret = "s3cret"
  muc_mapper_domain_base = "hs.example.com"
VirtualHost "rs.example.com"
  authentication = "token"
  app_id = "myapp"
  asap_key_server = "http://127.0.0.1:${keyPort}/asap"
  muc_mapper_domain_base = "rs.example.com"
`);
      // --callgrind: Prosody's Lua under valgrind; instructions are counted only for the measured
      // logins (counters zeroed after the warm-up, dumped after), so the figure repeats run to run.
      const prosody = CALLGRIND
        ? spawn('valgrind', ['--tool=callgrind', `--callgrind-out-file=${run_dir}/callgrind.out`, '--collect-atstart=yes',
          'lua5.4', luaScript(prosodyBin), '-F', '--config', cfg], { stdio: 'ignore' })
        : spawn(prosodyBin, ['-F', '--config', cfg], { stdio: 'ignore' });
      children.push(prosody);
      const url = (i) => { const t = kind.token(i); return `ws://127.0.0.1:${http}/xmpp-websocket${t ? `?token=${t}` : ''}`; };
      for (let i = 0; ; i++) { // until Prosody answers
        try { await login(url(0), kind.domain); break; } catch (e) { if (i > (CALLGRIND ? 900 : 100)) throw e; await sleep(100); }
      }
      await run(WARMUP, url, kind.domain);
      if (CALLGRIND) execFileSync('callgrind_control', ['-z', String(prosody.pid)], { stdio: 'ignore' });
      const ticks0 = cpuTicks(prosody.pid), sys0 = sysTicks(prosody.pid), daemonTicks0 = cpuTicks(daemon.pid), t0 = process.hrtime.bigint();
      await run(LOGINS, (i) => url(WARMUP + i), kind.domain);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const ticks = cpuTicks(prosody.pid) - ticks0, sys = sysTicks(prosody.pid) - sys0, daemonTicks = cpuTicks(daemon.pid) - daemonTicks0;
      let instructions = null;
      if (CALLGRIND) {
        execFileSync('callgrind_control', ['-d', String(prosody.pid)], { stdio: 'ignore' });
        await sleep(500);
        const dumps = readdirSync(run_dir).filter((f) => f.startsWith('callgrind.out')).sort();
        const last = readFileSync(join(run_dir, dumps[dumps.length - 1]), 'utf8');
        instructions = Number(/^(?:summary|totals): (\d+)/m.exec(last)[1]) / LOGINS;
      }
      results[kind.name].push({ instructions, sys: (sys / 100) * 1000 / LOGINS, rate: LOGINS / seconds, cpu: (ticks / 100) * 1000 / LOGINS, daemon: (daemonTicks / 100) * 1000 / LOGINS });
      prosody.kill('SIGKILL');
      await new Promise((r) => prosody.once('exit', r));
    }
  }

  const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };
  if (CALLGRIND) console.log('(under valgrind: the time and CPU columns are valgrind\'s, compare only the instructions table)');
  console.log(`${version}; ${LOGINS} logins per run after ${WARMUP} warm-up, ${CONCURRENCY} at a time, ${ROUNDS} rounds (median), fresh Prosody per run`);
  console.log('| Login | logins/s | Prosody CPU s / 1,000 logins | × anonymous (median of per-round ratios) | daemon CPU s / 1,000 |');
  console.log('|---|---|---|---|---|');
  for (const kind of kinds) {
    const rs = results[kind.name];
    const cpu = median(rs.map((r) => r.cpu));
    // Kinds run back to back within a round, so the ratio is taken per round, then the median.
    const ratio = median(rs.map((r, round) => r.cpu / results.anonymous[round].cpu));
    console.log(`| ${kind.name} | ${median(rs.map((r) => r.rate)).toFixed(0)} | ${cpu.toFixed(2)} | ${ratio.toFixed(2)} | ${median(rs.map((r) => r.daemon)).toFixed(2)} |`);
  }
  for (const kind of kinds) {
    console.log(`# ${kind.name}: CPU s / 1,000 per run ${results[kind.name].map((r) => r.cpu.toFixed(2)).join(' ')} (of which kernel ${results[kind.name].map((r) => r.sys.toFixed(2)).join(' ')}); logins/s ${results[kind.name].map((r) => r.rate.toFixed(0)).join(' ')}`);
  }
  if (CALLGRIND) {
    const floorI = median(results.anonymous.map((r) => r.instructions));
    console.log('| Login | Prosody instructions per login (callgrind) | × anonymous |');
    console.log('|---|---|---|');
    for (const kind of kinds) {
      const i = median(results[kind.name].map((r) => r.instructions));
      console.log(`| ${kind.name} | ${(i / 1e6).toFixed(2)} M | ${(i / floorI).toFixed(3)} |`);
    }
  }
  console.log(`key server requests: ${keyRequests}`);
  process.exit(0);
}

main().catch((e) => { console.error(e); process.exit(1); });
