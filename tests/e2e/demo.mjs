// The quick start's client (scripts/demo): logs in to Prosody over WebSocket with ?token= using
// strophe.js (the XMPP library lib-jitsi-meet uses), joins a room, and says what happened.
//
//   node tests/e2e/demo.mjs WS_URL DOMAIN TOKEN ROOM_JID NICK [ACCESS_TOKEN_FILE]
// Prints one line per step; exits 0 when the login and the join succeeded, 1 when refused.
// With ACCESS_TOKEN_FILE, once in the room it asks for a participant access token as jitsi-contrib's
// README does (an IQ to the room's focus JID), writes it to that file, and stays in the room until
// the file ACCESS_TOKEN_FILE.leave appears (at most 30 s).

import { existsSync, writeFileSync } from 'node:fs';
import { Strophe, $pres, $iq } from 'strophe.js';
import WebSocket from 'ws';
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';

globalThis.WebSocket = WebSocket;
globalThis.DOMParser = DOMParser;
globalThis.XMLSerializer = XMLSerializer;
Strophe.setLogLevel(Strophe.LogLevel.FATAL);

const [url, domain, token, roomJid, nick, accessTokenFile] = process.argv.slice(2);
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
const deadline = setTimeout(() => { say('no answer within 10 s'); process.exit(2); }, 10000);
deadline.unref();

// jitsi-contrib's README: $iq({type: "get", to: focusMucJid}).c("query", {xmlns: "…#access-token"}),
// then $(result).find("token").attr("data").
function askForAccessToken() {
  const iq = $iq({ type: 'get', to: `${roomJid}/focus` }).c('query', { xmlns: 'http://jabber.org/protocol/muc#access-token' });
  conn.sendIQ(iq, (result) => {
    const el = first(result, 'token');
    const jwt = el && el.getAttribute('data');
    const claims = JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
    say(`access token: <token alg="${el.getAttribute('alg')}" data="…"/>, for ${claims.occupant.jid} in ${claims.occupant.room} (${claims.occupant.role}), expires in ${claims.exp - Math.floor(Date.now() / 1000)} s`);
    writeFileSync(accessTokenFile, jwt, { mode: 0o600 });
    clearTimeout(deadline);
    const since = Date.now();
    const wait = setInterval(() => {
      if (existsSync(`${accessTokenFile}.leave`) || Date.now() - since > 30000) {
        clearInterval(wait);
        say(`left ${roomJid}`);
        done(0);
      }
    }, 100);
  }, (error) => {
    const e = error && first(error, 'error');
    say(`access token: refused: ${e ? failureOf(e) : 'no answer'}`);
    done(1);
  }, 10000);
}

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
        if (accessTokenFile) askForAccessToken();
        else done(0);
      }
      return false;
    }, null, 'presence');
    conn.send($pres({ to: `${roomJid}/${nick}` }).c('x', { xmlns: 'http://jabber.org/protocol/muc' }));
  } else if (status === Strophe.Status.AUTHFAIL || status === Strophe.Status.CONNFAIL) {
    say(`login: refused: ${saslFailure ?? 'connection failed'}`);
    done(1);
  }
});
