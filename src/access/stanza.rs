//! The IQ stanzas of both front doors, read and written with xmpp-parsers and minidom: the daemon
//! owns the XML, the shim only forwards the stanza's text and sends back what it gets.
//!
//! - `muc#access-token` (jitsi-contrib): `<iq type='get'><query
//!   xmlns='http://jabber.org/protocol/muc#access-token'/></iq>`, answered
//!   `<iq type='result'><token alg='…' data='JWT'/></iq>` (no namespace of its own, no wrapper).
//! - XEP-0215 credentials (Jitsi's `short-lived-token`): `<iq type='get'><credentials
//!   xmlns='urn:xmpp:extdisco:2'><service type='short-lived-token' host='AUD'/></credentials></iq>`,
//!   answered with one `<service/>` per accepted audience.

use minidom::Element;
use minidom::rxml::NcName;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

/// jitsi-contrib's namespace.
pub const NS_ACCESS_TOKEN: &str = "http://jabber.org/protocol/muc#access-token";
/// XEP-0215's namespace.
pub const NS_EXTDISCO: &str = "urn:xmpp:extdisco:2";
/// The XEP-0215 service type Jitsi's module answers.
pub const SHORT_LIVED_TOKEN: &str = "short-lived-token";
const NS_CLIENT: &str = "jabber:client";

/// Why a stanza could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StanzaProblem {
    /// Not XML, or not an IQ.
    #[error("the stanza is not an IQ: {0}")]
    NotAnIq(String),
    /// An IQ without `from`: Prosody always stamps it.
    #[error("the IQ has no 'from'")]
    NoFrom,
    /// An IQ without `to`, or to another host than the issuer's.
    #[error("the IQ is addressed to {to:?}, not to {issuer}")]
    WrongHost {
        /// Its `to`.
        to: String,
        /// The issuer's host.
        issuer: String,
    },
}

/// An IQ a door may answer: who sent it, where to, and its id.
#[derive(Debug, Clone)]
pub struct Request {
    /// The sender's full JID.
    pub from: Jid,
    /// The addressee.
    pub to: Jid,
    /// The IQ's id.
    pub id: String,
    /// What it asks for.
    pub ask: Ask,
}

/// What an IQ asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// A `muc#access-token` query (a `get`).
    AccessToken,
    /// XEP-0215 credentials: the hosts of the requested `short-lived-token` services.
    Credentials(Vec<String>),
    /// Anything else: not ours to answer.
    Other,
}

/// Reads an IQ as Prosody serialised it (a client's stanza has no `xmlns` of its own: the
/// stream's default namespace applies).
pub fn read(text: &str, issuer_host: &str) -> Result<Request, StanzaProblem> {
    let element = parse_stanza(text)?;
    let iq = Iq::try_from(element).map_err(|e| StanzaProblem::NotAnIq(e.to_string()))?;
    let (from, to, id, payload) = match iq {
        Iq::Get { from, to, id, payload } => (from, to, id, Some(payload)),
        Iq::Set { from, to, id, .. } | Iq::Result { from, to, id, .. } | Iq::Error { from, to, id, .. } => {
            (from, to, id, None)
        }
    };
    let from = from.ok_or(StanzaProblem::NoFrom)?;
    let to = match to {
        Some(to) if to.domain().as_str() == issuer_host => to,
        other => {
            return Err(StanzaProblem::WrongHost {
                to: other.map(|j| j.to_string()).unwrap_or_default(),
                issuer: issuer_host.to_owned(),
            });
        }
    };
    let ask = match payload {
        Some(p) if p.is("query", NS_ACCESS_TOKEN) => Ask::AccessToken,
        Some(p) if p.is("credentials", NS_EXTDISCO) => Ask::Credentials(
            p.children()
                .filter(|s| s.is("service", NS_EXTDISCO) && s.attr("type") == Some(SHORT_LIVED_TOKEN))
                .filter_map(|s| s.attr("host").map(str::to_owned))
                .collect(),
        ),
        _ => Ask::Other,
    };
    Ok(Request { from, to, id, ask })
}

/// An attribute name: these are constants, all valid XML names.
fn name(name: &'static str) -> NcName {
    NcName::try_from(name).expect("a constant XML attribute name")
}

fn parse_stanza(text: &str) -> Result<Element, StanzaProblem> {
    let bad = |e: minidom::Error| StanzaProblem::NotAnIq(e.to_string());
    match text.parse::<Element>() {
        Ok(element) => Ok(element),
        // minidom wants a namespace on the root; a client stanza inherits the stream's.
        Err(minidom::Error::MissingNamespace) => {
            let wrapped: Element = format!("<w xmlns='{NS_CLIENT}'>{text}</w>").parse().map_err(bad)?;
            let mut children = wrapped.children().cloned();
            match (children.next(), children.next()) {
                (Some(only), None) => Ok(only),
                _ => Err(StanzaProblem::NotAnIq("expected exactly one element".into())),
            }
        }
        Err(e) => Err(bad(e)),
    }
}

impl Request {
    /// `<iq type='result'>` with `<token alg='…' data='…'/>`, from the addressee to the sender.
    pub fn token_result(&self, alg: &str, token: &str) -> String {
        let payload = Element::builder("token", NS_CLIENT)
            .attr(name("alg"), alg)
            .attr(name("data"), token)
            .build();
        self.result(payload)
    }

    /// `<iq type='result'>` with `<credentials>` and one `short-lived-token` service per entry.
    pub fn credentials_result(&self, services: &[Credential]) -> String {
        let mut credentials = Element::builder("credentials", NS_EXTDISCO);
        for s in services {
            credentials = credentials.append(
                Element::builder("service", NS_EXTDISCO)
                    .attr(name("type"), SHORT_LIVED_TOKEN)
                    .attr(name("host"), s.audience.as_str())
                    .attr(name("username"), "token")
                    .attr(name("password"), s.token.as_str())
                    .attr(name("expires"), xep0082(s.expires))
                    .attr(name("restricted"), "true")
                    .attr(name("transport"), "https")
                    .attr(name("port"), "443")
                    .build(),
            );
        }
        self.result(credentials.build())
    }

    fn result(&self, payload: Element) -> String {
        let iq = Iq::Result {
            from: Some(self.to.clone()),
            to: Some(self.from.clone()),
            id: self.id.clone(),
            payload: Some(payload),
        };
        String::from(&Element::from(iq))
    }

    /// An error reply from the addressee to the sender.
    pub fn error(&self, kind: ErrorKind, text: &str) -> String {
        let (type_, condition) = kind.parts();
        let iq = Iq::Error {
            from: Some(self.to.clone()),
            to: Some(self.from.clone()),
            id: self.id.clone(),
            error: StanzaError::new(type_, condition, "en", text),
            payload: None,
        };
        String::from(&Element::from(iq))
    }
}

/// One `short-lived-token` credential.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The service it is for (`host`, the token's `aud`).
    pub audience: String,
    /// The JWT.
    pub token: String,
    /// When it expires, unix seconds.
    pub expires: i64,
}

/// The stanza errors the doors answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `auth/forbidden`: not an occupant (muc door).
    Forbidden,
    /// `cancel/not-allowed`: not an occupant, or no room (credentials door, as Jitsi's).
    NotAllowed,
    /// `cancel/item-not-found`: no such room.
    ItemNotFound,
    /// `wait/resource-constraint`: the per-occupant rate limit.
    ResourceConstraint,
    /// `cancel/service-unavailable`: the issuer's settings were refused.
    Misconfigured,
    /// `modify/bad-request`.
    BadRequest,
}

impl ErrorKind {
    fn parts(self) -> (ErrorType, DefinedCondition) {
        match self {
            ErrorKind::Forbidden => (ErrorType::Auth, DefinedCondition::Forbidden),
            ErrorKind::NotAllowed => (ErrorType::Cancel, DefinedCondition::NotAllowed),
            ErrorKind::ItemNotFound => (ErrorType::Cancel, DefinedCondition::ItemNotFound),
            ErrorKind::ResourceConstraint => (ErrorType::Wait, DefinedCondition::ResourceConstraint),
            ErrorKind::Misconfigured => (ErrorType::Cancel, DefinedCondition::ServiceUnavailable),
            ErrorKind::BadRequest => (ErrorType::Modify, DefinedCondition::BadRequest),
        }
    }

    /// The condition's element name, as replies name it.
    pub fn condition(self) -> &'static str {
        match self {
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotAllowed => "not-allowed",
            ErrorKind::ItemNotFound => "item-not-found",
            ErrorKind::ResourceConstraint => "resource-constraint",
            ErrorKind::Misconfigured => "service-unavailable",
            ErrorKind::BadRequest => "bad-request",
        }
    }
}

/// A unix time as an XEP-0082 UTC date-time (`2026-12-01T10:00:00Z`).
pub fn xep0082(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MUC: &str = "conference.meet.example.com";

    #[test]
    fn a_client_stanza_without_xmlns_reads() {
        let r = read(
            "<iq type='get' id='a1' from='u@meet.example.com/r' to='room1@conference.meet.example.com/focus'>\
             <query xmlns='http://jabber.org/protocol/muc#access-token'/></iq>",
            MUC,
        )
        .unwrap();
        assert_eq!(r.ask, Ask::AccessToken);
        assert_eq!(
            (r.id.as_str(), r.from.to_string()),
            ("a1", "u@meet.example.com/r".to_owned())
        );
        let reply = r.token_result("HS256", "a.b.c");
        assert!(reply.contains("type='result'"), "{reply}");
        assert!(reply.contains("<token alg='HS256' data='a.b.c'/>"), "{reply}");
        assert!(reply.contains("to='u@meet.example.com/r'"), "{reply}");
        assert!(
            reply.contains("from='room1@conference.meet.example.com/focus'"),
            "{reply}"
        );
    }

    #[test]
    fn set_and_other_payloads_are_not_ours() {
        let r = read(
            "<iq type='set' id='a' from='u@h/r' to='room1@conference.meet.example.com'>\
             <query xmlns='http://jabber.org/protocol/muc#access-token'/></iq>",
            MUC,
        )
        .unwrap();
        assert_eq!(r.ask, Ask::Other);
        let r = read(
            "<iq type='get' id='a' from='u@h/r' to='room1@conference.meet.example.com'><ping xmlns='urn:xmpp:ping'/></iq>",
            MUC,
        )
        .unwrap();
        assert_eq!(r.ask, Ask::Other);
    }

    #[test]
    fn refusals() {
        assert!(matches!(read("<message/>", MUC), Err(StanzaProblem::NotAnIq(_))));
        assert!(matches!(read("not xml", MUC), Err(StanzaProblem::NotAnIq(_))));
        assert!(matches!(
            read(
                "<iq type='get' id='a' to='r@conference.meet.example.com'><x xmlns='y'/></iq>",
                MUC
            ),
            Err(StanzaProblem::NoFrom)
        ));
        assert!(matches!(
            read(
                "<iq type='get' id='a' from='u@h/r' to='r@elsewhere'><x xmlns='y'/></iq>",
                MUC
            ),
            Err(StanzaProblem::WrongHost { .. })
        ));
    }

    #[test]
    fn credentials_and_errors() {
        let r = read(
            "<iq type='get' id='c' from='u@meet.example.com/r' to='meet.example.com'>\
             <credentials xmlns='urn:xmpp:extdisco:2'><service type='short-lived-token' host='file-sharing'/>\
             <service type='turn' host='turn.example.com'/></credentials></iq>",
            "meet.example.com",
        )
        .unwrap();
        assert_eq!(r.ask, Ask::Credentials(vec!["file-sharing".into()]));
        let reply = r.credentials_result(&[Credential {
            audience: "file-sharing".into(),
            token: "x.y.z".into(),
            expires: 1_764_547_200,
        }]);
        assert!(reply.contains("expires='2025-12-01T00:00:00Z'"), "{reply}");
        assert!(reply.contains("xmlns='urn:xmpp:extdisco:2'"), "{reply}");
        let error = r.error(ErrorKind::NotAllowed, "not an occupant");
        assert!(error.contains("type='error'"), "{error}");
        assert!(
            error.contains("<not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"),
            "{error}"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(xep0082(0), "1970-01-01T00:00:00Z");
        assert_eq!(xep0082(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(xep0082(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
