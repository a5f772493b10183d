//! A native XMPP client login for the end-to-end suite (`tests/e2e/run.mjs`).
//!
//! Native clients reach Prosody over plain c2s TCP, where there is no URL and so no `?token=`:
//! this logs in to `--domain` on `--server` (plaintext TCP, SASL ANONYMOUS), binds a resource
//! and prints ONE JSON line:
//!
//! ```text
//! {"ok":true,"jid":"3f2c…@guest.meet.example.com/…"}                       exit 0
//! {"ok":false,"condition":"not-allowed","text":"token required"}           exit 1
//! {"ok":false,"error":"…"}                                                 exit 1 (no SASL answer)
//! ```
//!
//! `condition` and `text` are the SASL `<failure>`'s as the server sent them (`text` is absent
//! when the server sent none). Everything is bounded by a 10 s timeout.
//!
//! It uses tokio-xmpp's low-level stream API (connector, `XmlStream`, stream reset), not its
//! `Client`, which retries a failed login forever, nor its `auth()`, which keeps only a typed
//! SASL condition: it drops the `<text>`, and its condition enum (RFC 6120's list) has no
//! `not-allowed`, Jitsi's condition, so such a `<failure>` becomes a bare parse error. The
//! stream here is read as raw `minidom` elements instead.
//!
//! ```sh
//! cargo run --example xmpp_login -- --server 127.0.0.1:5222 --domain guest.meet.example.com
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncBufRead, AsyncWrite};
use tokio_xmpp::connect::{DnsConfig, ServerConnector, TcpServerConnector};
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::bind::{BindQuery, BindResponse};
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::sasl::{Auth, Mechanism};
use tokio_xmpp::xmlstream::{ReadError, StreamHeader, Timeouts, XmlStream};

const TIMEOUT: Duration = Duration::from_secs(10);
const BIND_ID: &str = "bind-1";

#[derive(Parser)]
#[command(about = "Log in to an XMPP server over plain TCP with SASL ANONYMOUS; print one JSON line")]
struct Args {
    /// The server's c2s address, IP:PORT (plaintext TCP, no TLS).
    #[arg(long)]
    server: String,
    /// The XMPP host (VirtualHost) to log in to.
    #[arg(long)]
    domain: String,
    /// The SASL mechanism; only ANONYMOUS is supported.
    #[arg(long, default_value = "ANONYMOUS")]
    mechanism: String,
}

/// The JSON line printed, members in this order (`ok` first), absent ones left out.
#[derive(Serialize, Default)]
struct Line {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    jid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    condition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// How a login ended, short of a success.
enum Refused {
    /// The server's SASL `<failure>`: condition element name and `<text>`, if any.
    Sasl { condition: String, text: Option<String> },
    /// Anything else (connection, protocol, bind, timeout).
    Other(String),
}

impl<E: std::fmt::Display> From<E> for Refused {
    fn from(e: E) -> Self {
        Refused::Other(e.to_string())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    if !args.mechanism.eq_ignore_ascii_case("ANONYMOUS") {
        eprintln!(
            "xmpp_login: --mechanism {}: only ANONYMOUS is supported",
            args.mechanism
        );
        return ExitCode::from(2);
    }
    let outcome = match tokio::time::timeout(TIMEOUT, login(&args.server, &args.domain)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Refused::Other(format!("no result within {} s", TIMEOUT.as_secs()))),
    };
    let line = match outcome {
        Ok(jid) => Line {
            ok: true,
            jid: Some(jid),
            ..Line::default()
        },
        Err(Refused::Sasl { condition, text }) => Line {
            condition: Some(condition),
            text,
            ..Line::default()
        },
        Err(Refused::Other(error)) => Line {
            error: Some(error),
            ..Line::default()
        },
    };
    println!("{}", serde_json::to_string(&line).expect("a JSON line"));
    if line.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Connects, authenticates with SASL ANONYMOUS, binds; returns the bound full JID.
async fn login(server: &str, domain: &str) -> Result<String, Refused> {
    // Only the domain goes on the wire (the stream header's `to`); no local part is needed since
    // tokio-xmpp's `client_auth` (which unwraps it) is not used.
    let jid = Jid::from(BareJid::new(domain)?);
    let connector = TcpServerConnector(DnsConfig::Addr {
        addr: server.to_owned(),
    });
    let (pending, _binding) = connector.connect(&jid, ns::JABBER_CLIENT, Timeouts::tight()).await?;
    let (features, mut stream) = pending.recv_features::<Element>().await?;
    if !features.sasl_mechanisms.contains("ANONYMOUS") {
        return Err(Refused::Other(format!(
            "server offers no ANONYMOUS (offers {:?})",
            features.sasl_mechanisms
        )));
    }

    stream
        .send(&Auth {
            mechanism: Mechanism::Anonymous,
            data: Vec::new(),
        })
        .await?;
    let answer = next_element(&mut stream).await?;
    match (answer.ns().as_str(), answer.name()) {
        (ns::SASL, "success") => {}
        (ns::SASL, "failure") => {
            let condition = answer
                .children()
                .find(|c| c.name() != "text")
                .map(|c| c.name().to_owned())
                .unwrap_or_default();
            let text = answer.children().find(|c| c.name() == "text").map(Element::text);
            return Err(Refused::Sasl { condition, text });
        }
        _ => return Err(Refused::Other(format!("unexpected SASL answer: {answer:?}"))),
    }

    // SASL success: restart the stream, then bind a resource the server picks.
    let pending = stream
        .initiate_reset()
        .send_header(StreamHeader {
            to: Some(domain.to_owned().into()),
            from: None,
            id: None,
        })
        .await?;
    let (features, mut stream) = pending.recv_features::<Element>().await?;
    if !features.can_bind() {
        return Err(Refused::Other("server offers no resource binding".into()));
    }
    stream.send(&Iq::from_set(BIND_ID, BindQuery::new(None))).await?;
    let jid = loop {
        let el = next_element(&mut stream).await?;
        if el.name() != "iq" || el.attr("id") != Some(BIND_ID) {
            continue;
        }
        match Iq::try_from(el)? {
            Iq::Result {
                payload: Some(payload), ..
            } => break BindResponse::try_from(payload)?.jid.to_string(),
            other => return Err(Refused::Other(format!("bind refused: {other:?}"))),
        }
    };
    let _ = stream.shutdown().await;
    Ok(jid)
}

/// The next element from the stream (soft read timeouts are waited out).
async fn next_element<Io: AsyncBufRead + AsyncWrite + Unpin>(
    stream: &mut XmlStream<Io, Element>,
) -> Result<Element, Refused> {
    loop {
        match stream.next().await {
            Some(Ok(el)) => return Ok(el),
            Some(Err(ReadError::SoftTimeout)) => continue,
            Some(Err(ReadError::HardError(e))) => return Err(e.into()),
            Some(Err(ReadError::ParseError(e))) => return Err(e.into()),
            Some(Err(ReadError::StreamFooterReceived)) | None => {
                return Err(Refused::Other("the server closed the stream".into()));
            }
        }
    }
}
