// The quick start's client (scripts/demo): logs in to Prosody over WebSocket with ?token= using
// strophe.js (the XMPP library lib-jitsi-meet uses), joins a room, and says what happened.
//
//   node tests/e2e/demo.mjs WS_URL DOMAIN TOKEN ROOM_JID NICK
// Prints one line per step; exits 0 when the login and the join succeeded, 1 when refused.

import { Strophe, $pres } from 'strophe.js';
import WebSocket from 'ws';
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';

globalThis.WebSocket = WebSocket;
globalThis.DOMParser = DOMParser;
globalThis.XMLSerializer = XMLSerializer;
Strophe.setLogLevel(Strophe.LogLevel.FATAL);

const [url, domain, token, roomJid, nick] = process.argv.slice(2);
const say = (line) => console.log(`   ${line}`);
const first = (el, name) => el.getElementsByTagName(name)[0];
const failureOf = (el) => {
  const condition = [...el.childNodes].find((n) => n.nodeType === 1 && n.nodeName !== 'text');
  const text = first(el, 'text');
  return `${condition ? condition.nodeName : '?'} "${text ? text.textContent : ''}"`;
};

const conn = new Strophe.Connection(`${url}${token ? `?token=${encodeURIComponent(token)}` : ''}`);
let saslFailure = null;
conn.xmlInput = (el) => {
  for (const child of el.nodeName === 'failure' ? [el] : [...(el.childNodes || [])]) {
    if (child.nodeName === 'failure') saslFailure = failureOf(child);
  }
  if (el.nodeName === 'failure') saslFailure = failureOf(el);
};
const done = (code) => { try { conn.disconnect(); } catch {} setTimeout(() => process.exit(code), 100); };
setTimeout(() => { say('no answer within 10 s'); process.exit(2); }, 10000).unref();

conn.connect(domain, null, (status) => {
  if (status === Strophe.Status.CONNECTED) {
    say(`login: SASL ANONYMOUS succeeded, JID ${conn.jid}`);
    conn.addHandler((presence) => {
      if (Strophe.getBareJidFromJid(presence.getAttribute('from')) !== roomJid) return true;
      const error = first(presence, 'error');
      if (presence.getAttribute('type') === 'error' && error) {
        const jitmeet = [...error.childNodes].find((n) => n.nodeType === 1 && n.namespaceURI === 'http://jitsi.org/jitmeet');
        say(`join ${roomJid}: refused (${error.getAttribute('type')}): ${failureOf(error)}${jitmeet ? ` <${jitmeet.nodeName}/>` : ''}`);
        done(1);
      } else {
        const item = first(presence, 'item');
        say(`join ${roomJid}: joined as ${nick} (role ${item ? item.getAttribute('role') : '?'})`);
        done(0);
      }
      return false;
    }, null, 'presence');
    conn.send($pres({ to: `${roomJid}/${nick}` }).c('x', { xmlns: 'http://jabber.org/protocol/muc' }));
  } else if (status === Strophe.Status.AUTHFAIL || status === Strophe.Status.CONNFAIL) {
    say(`login: refused: ${saslFailure ?? 'connection failed'}`);
    done(1);
  }
});
