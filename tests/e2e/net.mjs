// Small network helpers the end-to-end scripts share: a free loopback port, and waiting until
// something accepts connections (a TCP port or a Unix socket).
import { createServer, connect } from 'node:net';

// Ports handed out by this process: the kernel may offer a port again once the probe closed it,
// before whoever asked for it binds it, so one run could give two servers the same port.
const given = new Set();

function probePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on('error', fail);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)); });
  });
}

/** A loopback TCP port nothing listens on (as far as can be told before binding it), and not
 * handed out before by this process. */
export async function freePort() {
  for (;;) {
    const port = await probePort();
    if (!given.has(port)) {
      given.add(port);
      return port;
    }
  }
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
