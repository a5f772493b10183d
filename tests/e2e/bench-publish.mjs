// How many occupancy updates one daemon publishes to the shared store per second
// (docs/PERFORMANCE.md, "Shared store"): a valkey-server on a free loopback port, one daemon with
// [store] pointing at it, N joins sent over the socket as fast as the daemon reads them, timed
// until the store holds N occupant keys; then N leaves, timed until it holds none.
//
//   node tests/e2e/bench-publish.mjs --daemon target/release/token-sidecar [--n 50000] [--valkey-server PATH --valkey-cli PATH]
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './net.mjs';

const arg = (name, dflt) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : dflt; };
const daemonBin = arg('daemon', 'target/release/token-sidecar');
const n = Number(arg('n', '50000'));
const server = arg('valkey-server', 'valkey-server');
const cli = arg('valkey-cli', 'valkey-cli');
const tmp = mkdtempSync(join(tmpdir(), 'ts-bench-publish-'));
const children = [];
const stop = () => { for (const c of children) { try { c.kill('SIGKILL'); } catch {} } };
process.on('exit', stop);

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
const port = await freePort();
children.push(spawn(server, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmp], { stdio: 'ignore' }));
const dbsize = () => { try { return Number(execFileSync(cli, ['-p', String(port), 'DBSIZE'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim()); } catch { return -1; } };
while (dbsize() < 0) await sleep(20);

const socket = join(tmp, 'ts.sock');
writeFileSync(join(tmp, 'ts.toml'), `[server]\nsocket = ${JSON.stringify(socket)}\nmax_inflight_per_connection = 1024\n\n[store]\nkind = "valkey"\nurl = "redis://127.0.0.1:${port}/0"\nshard = "bench"\nlease_seconds = 300\n`);
children.push(spawn(daemonBin, ['serve', '--config', join(tmp, 'ts.toml')], { stdio: 'ignore', env: { ...process.env, RUST_LOG: 'warn' } }));
let conn;
for (;;) {
  try { conn = await new Promise((ok, ko) => { const c = createConnection(socket, () => ok(c)); c.on('error', ko); }); break; } catch { await sleep(20); }
}
let replies = 0;
conn.on('data', (d) => { for (const b of d) if (b === 10) replies++; });

async function send(event) {
  let id = 0;
  const lines = [];
  for (let i = 0; i < n; i++) {
    const room = `room${i % 1000}@conference.bench.example.com`;
    lines.push(JSON.stringify({ id: ++id, op: 'occupant', event, room, jid: `u${i}@bench.example.com/r`, nick: `${room}/n${i}` }));
  }
  const t0 = process.hrtime.bigint();
  const base = replies;
  for (let i = 0; i < lines.length; i += 1000) {
    if (!conn.write(lines.slice(i, i + 1000).join('\n') + '\n')) await new Promise((ok) => conn.once('drain', ok));
  }
  while (replies - base < n) await sleep(5);
  const answered = Number(process.hrtime.bigint() - t0) / 1e9;
  const want = event === 'join' ? n : 0;
  while (dbsize() !== want) await sleep(10);
  const stored = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`${n} ${event}s: answered in ${answered.toFixed(2)} s, all in the store after ${stored.toFixed(2)} s: ${Math.round(n / stored)} published/s`);
}
await send('join');
await send('leave');
stop();
process.exit(0);
