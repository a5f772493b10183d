// Small network helpers the end-to-end scripts share: a free loopback port, and waiting until
// something accepts connections (a TCP port or a Unix socket).
import { createServer, connect } from 'node:net';

/** A loopback TCP port nothing listens on (as far as can be told before binding it). */
export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on('error', fail);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)); });
  });
}

/**
 * Resolves once `connectOpts` ({host, port} or {path}) accepts a connection; rejects after
 * `totalMs`, or as soon as `alive()` says the process that should listen has exited.
 */
export function waitFor(connectOpts, totalMs, alive = () => true, everyMs = 30) {
  const t0 = Date.now();
  return new Promise((ok, fail) => {
    const attempt = () => {
      if (!alive()) return fail(new Error(`process exited while waiting for ${JSON.stringify(connectOpts)}`));
      const s = connect(connectOpts);
      s.once('connect', () => { s.destroy(); ok(); });
      s.once('error', () => {
        s.destroy();
        if (Date.now() - t0 > totalMs) fail(new Error(`${JSON.stringify(connectOpts)}: nothing after ${totalMs} ms`));
        else setTimeout(attempt, everyMs);
      });
    };
    attempt();
  });
}
