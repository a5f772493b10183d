//! The issuer: one per Prosody module that hands out access tokens. It decides who gets a token
//! (a current occupant of that room, whose user is not revoked, within the rate limit), writes the
//! claims each reference module writes plus ours, signs with a key parsed once, and builds the
//! reply stanza.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::revocation::{Revocations, Revoked};
use super::settings::{IssuerKey, IssuerModule, IssuerPolicy, IssuerProblem, IssuerSettings, PreviousKey};
use super::stanza::{self, Ask, Credential, ErrorKind, StanzaProblem};
use super::verify::{AccessRefusal, AccessVerifier};
use crate::keys::{PublicJwk, SigningKey, VerifyingKey};
use crate::token::{MintError, Minter};

/// Which front door a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Door {
    /// jitsi-contrib's `muc#access-token` IQ, on the MUC component.
    Muc,
    /// XEP-0215 `short-lived-token` credentials, on the VirtualHost.
    Extdisco,
}

impl Door {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Door::Muc => "muc",
            Door::Extdisco => "extdisco",
        }
    }
}

/// What Prosody alone knows about the sender, sent by the shim with the stanza.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IssueRequest {
    /// The issuer: the Prosody host the module is loaded on.
    pub issuer: String,
    /// The door.
    pub door: Option<Door>,
    /// The IQ as Prosody serialised it.
    pub stanza: String,
    /// The room the shim looked at (bare JID); `None` when the session has none.
    #[serde(default)]
    pub room: Option<String>,
    /// Whether that room exists.
    #[serde(default)]
    pub room_exists: bool,
    /// The room's `meetingId`.
    #[serde(default)]
    pub meeting_id: Option<String>,
    /// The sender's occupant in that room, found by real JID; `None`: not an occupant.
    #[serde(default)]
    pub occupant: Option<OccupantInfo>,
    /// The session's fields: what its login set, its URL's room and tenant, its join presence.
    #[serde(default)]
    pub session: SessionInfo,
}

/// The sender's occupant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OccupantInfo {
    /// The occupant JID, `room@muc/nick`.
    pub nick: String,
    /// `moderator`, `participant`, `visitor`.
    #[serde(default)]
    pub role: Option<String>,
    /// `owner`, `admin`, `member`, `none`.
    #[serde(default)]
    pub affiliation: Option<String>,
}

/// The session fields the claims are made of; JSON null is the same as absent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionInfo {
    /// `context.user` of the login token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_context_user: Option<Value>,
    /// `context.group` of the login token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_context_group: Option<Value>,
    /// `context.features` of the login token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_context_features: Option<Value>,
    /// Set by Jitsi's token-grant modules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_jitsi_meet_context_user_id: Option<Value>,
    /// Set by Jitsi's token-grant modules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_jitsi_meet_context_group_id: Option<Value>,
    /// The user's region (`user_region`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_region: Option<Value>,
    /// The login token's `sub`: the user a revocation names when `context.user` has no id. Never
    /// put in a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_domain: Option<Value>,
    /// The connection URL's `room`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitsi_web_query_room: Option<Value>,
    /// The connection URL's tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitsi_web_query_prefix: Option<Value>,
    /// `<nick xmlns='http://jabber.org/protocol/nick'>` of the join presence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_nick: Option<Value>,
    /// `<email>` of the join presence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_email: Option<Value>,
}

/// The answer to an access-token IQ.
#[derive(Debug, Clone, PartialEq)]
pub enum Issued {
    /// Not for this door (another payload, `type='set'`, no accepted audience): let it go on.
    Pass,
    /// Tokens issued: the result stanza.
    Tokens {
        /// The result IQ.
        stanza: String,
        /// The sender's occupant (for logs: presence comes from the shim's reports).
        occupant: super::Occupant,
    },
    /// Refused: the error stanza.
    Refused {
        /// The error.
        kind: ErrorKind,
        /// Its text.
        text: String,
        /// The error IQ.
        stanza: String,
        /// Because the sender's user is revoked (the error is the one a non-occupant gets).
        revoked: bool,
    },
}

/// A user id as revocation names it: a JSON string as it is, a number as its JSON text; `None`
/// for anything else (and for null).
pub fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The id of a login's user: `id` of its `context.user` (the session's `jitsi_meet_context_user`,
/// which is `{"id": user_id}` for a Firebase-style token), by [`id_text`].
pub fn user_id(context_user: &Value) -> Option<String> {
    context_user.get("id").and_then(id_text)
}

/// The user of a session, as a revocation names it: the id of its `jitsi_meet_context_user`, else
/// its `jitsi_meet_domain` (the token's `sub`); the same user a login's token names.
pub fn session_user(context_user: Option<&Value>, sub: Option<&Value>) -> Option<String> {
    context_user.and_then(user_id).or_else(|| sub.and_then(id_text))
}

/// Why an access-token request could not be answered with a stanza at all.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The stanza could not be read.
    #[error(transparent)]
    Stanza(#[from] StanzaProblem),
    /// The shim's room is not the stanza's.
    #[error("the request names room {shim:?} but the IQ is addressed to {stanza:?}")]
    RoomMismatch {
        /// What the shim said.
        shim: String,
        /// What the stanza says.
        stanza: String,
    },
    /// The request came through a door this issuer does not have.
    #[error("issuer {issuer} ({module}) has no {} door", door.name())]
    WrongDoor {
        /// The issuer.
        issuer: String,
        /// Its module.
        module: &'static str,
        /// The door asked for.
        door: Door,
    },
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] MintError),
}

/// An issuer ready to sign.
pub struct Issuer {
    settings: IssuerPolicy,
    minter: Minter,
    alg_name: String,
    /// Verify its tokens: one verifier for HMAC keys, one for public keys (a rotation from one
    /// kind to the other has both).
    verifiers: Vec<AccessVerifier>,
    /// The public JWKs of its asymmetric keys.
    jwks: Vec<Value>,
    limiter: RateLimiter,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").field("settings", &self.settings).finish()
    }
}

impl Issuer {
    /// Takes the keys, parsed once: the signing key signs; it and the previous keys verify, and
    /// the asymmetric ones are published.
    pub fn new(settings: IssuerSettings) -> Result<Issuer, IssuerProblem> {
        let IssuerSettings {
            signing,
            previous,
            policy,
        } = settings;
        let (verifiers, jwks) = publish(&signing, &previous)?;
        let alg_name = format!("{:?}", signing.alg);
        let minter = Minter::new(signing.key, signing.alg, signing.kid)?;
        let limiter = RateLimiter::new(policy.rate_per_minute);
        Ok(Issuer {
            settings: policy,
            minter,
            alg_name,
            verifiers,
            jwks,
            limiter,
        })
    }

    /// What it puts in tokens and who may get them.
    pub fn policy(&self) -> &IssuerPolicy {
        &self.settings
    }

    /// Checks the signature and times of a token this issuer may have signed.
    pub fn verify(&self, token: &str, now: i64) -> Result<Map<String, Value>, AccessRefusal> {
        let mut refusal = AccessRefusal::BadSignature;
        for verifier in &self.verifiers {
            match verifier.verify(token, now) {
                Ok(claims) => return Ok(claims),
                Err(AccessRefusal::AlgNotAccepted { .. }) if self.verifiers.len() > 1 => {}
                Err(e) => refusal = e,
            }
        }
        Err(refusal)
    }

    /// The public JWKs of its asymmetric keys (the signing key first).
    pub fn jwks(&self) -> &[Value] {
        &self.jwks
    }

    /// Answers an access-token IQ, at `now` (unix seconds). A sender whose user ([`session_user`]:
    /// the id of the session's `jitsi_meet_context_user`, else its `sub`) is revoked in
    /// `revocations` gets the error a non-occupant gets.
    pub fn issue(&self, req: &IssueRequest, now: i64, revocations: &dyn Revocations) -> Result<Issued, IssueError> {
        let door = req.door.unwrap_or(match self.settings.module {
            IssuerModule::AccessToken => Door::Muc,
            IssuerModule::ShortLivedToken => Door::Extdisco,
        });
        let expected = match self.settings.module {
            IssuerModule::AccessToken => Door::Muc,
            IssuerModule::ShortLivedToken => Door::Extdisco,
        };
        if door != expected {
            return Err(IssueError::WrongDoor {
                issuer: self.settings.name.clone(),
                module: self.settings.module.name(),
                door,
            });
        }
        let iq = stanza::read(&req.stanza, &self.settings.name)?;
        let asker = Asker {
            user: session_user(
                req.session.jitsi_meet_context_user.as_ref(),
                req.session.jitsi_meet_domain.as_ref(),
            ),
            revocations,
            now,
        };
        match (&iq.ask, door) {
            (Ask::AccessToken, Door::Muc) => self.muc(req, &iq, &asker),
            (Ask::Credentials(hosts), Door::Extdisco) => {
                let audiences: Vec<&String> = hosts
                    .iter()
                    .filter(|h| self.settings.accepted_audiences.contains(h))
                    .collect();
                if audiences.is_empty() {
                    return Ok(Issued::Pass);
                }
                self.extdisco(req, &iq, &audiences, &asker)
            }
            _ => Ok(Issued::Pass),
        }
    }

    fn refuse(iq: &stanza::Request, kind: ErrorKind, text: &str) -> Issued {
        Issued::Refused {
            kind,
            text: text.to_owned(),
            stanza: iq.error(kind, text),
            revoked: false,
        }
    }

    /// Occupancy, revocation and rate checks shared by both doors; `Err` is the refusal.
    fn admit(
        &self,
        req: &IssueRequest,
        iq: &stanza::Request,
        room: Option<&str>,
        not_occupant: ErrorKind,
        asker: &Asker<'_>,
    ) -> Result<(super::Occupant, OccupantInfo), Issued> {
        let Some(room) = room else {
            return Err(Self::refuse(iq, not_occupant, "the session has no room"));
        };
        if !req.room_exists {
            return Err(Self::refuse(iq, ErrorKind::ItemNotFound, "no such room"));
        }
        let Some(occupant) = &req.occupant else {
            return Err(Self::refuse(
                iq,
                not_occupant,
                "only occupants of the room get access tokens",
            ));
        };
        if let Some(user) = &asker.user
            && asker.revocations.is_revoked(&Revoked::User(user.clone()), asker.now)
        {
            let mut refused = Self::refuse(iq, not_occupant, "access tokens are revoked for this user");
            if let Issued::Refused { revoked, .. } = &mut refused {
                *revoked = true;
            }
            return Err(refused);
        }
        let from = iq.from.to_string();
        if !self.limiter.allow(&format!("{room}\n{from}")) {
            return Err(Self::refuse(
                iq,
                ErrorKind::ResourceConstraint,
                "too many access tokens asked for; try again in a minute",
            ));
        }
        Ok((
            super::Occupant {
                room: room.to_owned(),
                jid: from,
                nick: occupant.nick.clone(),
            },
            occupant.clone(),
        ))
    }

    fn muc(&self, req: &IssueRequest, iq: &stanza::Request, asker: &Asker<'_>) -> Result<Issued, IssueError> {
        let room = iq.to.to_bare().to_string();
        if let Some(shim) = &req.room
            && *shim != room
        {
            return Err(IssueError::RoomMismatch {
                shim: shim.clone(),
                stanza: room,
            });
        }
        let (occupant, info) = match self.admit(req, iq, Some(&room), ErrorKind::Forbidden, asker) {
            Ok(admitted) => admitted,
            Err(refused) => return Ok(refused),
        };
        let mut claims = Map::new();
        claims.insert("userJid".into(), Value::from(occupant.jid.as_str()));
        claims.insert("host".into(), Value::from(iq.from.domain().as_str()));
        claims.insert(
            "room".into(),
            Value::from(iq.to.node().map(|n| n.as_str()).unwrap_or_default()),
        );
        claims.insert("iss".into(), Value::from(self.settings.issuer.as_str()));
        if let Some(aud) = &self.settings.audience {
            claims.insert("aud".into(), Value::from(aud.as_str()));
        }
        self.common_claims(&mut claims, &occupant, &info, asker);
        let token = self.minter.sign(&claims)?;
        Ok(Issued::Tokens {
            stanza: iq.token_result(&self.alg_name, &token),
            occupant,
        })
    }

    fn extdisco(
        &self,
        req: &IssueRequest,
        iq: &stanza::Request,
        audiences: &[&String],
        asker: &Asker<'_>,
    ) -> Result<Issued, IssueError> {
        let now = asker.now;
        let (occupant, info) = match self.admit(req, iq, req.room.as_deref(), ErrorKind::NotAllowed, asker) {
            Ok(admitted) => admitted,
            Err(refused) => return Ok(refused),
        };
        let s = &req.session;
        let prefix = s
            .jitsi_web_query_prefix
            .as_ref()
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty());
        let group = s
            .jitsi_meet_context_group
            .clone()
            .or_else(|| s.granted_jitsi_meet_context_group_id.clone());
        let nick = occupant.nick.rsplit_once('/').map(|(_, n)| n).unwrap_or_default();
        let user = s.jitsi_meet_context_user.clone().unwrap_or_else(|| {
            let mut user = Map::new();
            user.insert("id".into(), Value::from(occupant.jid.as_str()));
            if let Some(name) = &s.presence_nick {
                user.insert("name".into(), name.clone());
            }
            if let Some(email) = &s.presence_email {
                user.insert("email".into(), email.clone());
            }
            user.insert("nick".into(), Value::from(nick));
            Value::Object(user)
        });
        let mut context = Map::new();
        put(&mut context, "group", group.clone());
        context.insert("user".into(), user);
        put(&mut context, "features", s.jitsi_meet_context_features.clone());
        // As Jitsi's: a vpaas tenant's id, else the context group.
        let room_node = occupant.room.split_once('@').map_or("", |(node, _)| node);
        let customer = room_node
            .strip_prefix('[')
            .and_then(|rest| rest.split_once(']'))
            .and_then(|(tenant, _)| tenant.strip_prefix("vpaas-magic-cookie-"))
            .map(Value::from)
            .or(group);
        let mut services = Vec::with_capacity(audiences.len());
        for aud in audiences {
            let mut claims = Map::new();
            claims.insert("iss".into(), Value::from(self.settings.issuer.as_str()));
            claims.insert("aud".into(), Value::from(aud.as_str()));
            claims.insert("nbf".into(), Value::from(now));
            claims.insert("sub".into(), Value::from(prefix.unwrap_or(self.settings.name.as_str())));
            claims.insert("context".into(), Value::Object(context.clone()));
            put(&mut claims, "room", s.jitsi_web_query_room.clone());
            put(&mut claims, "meeting_id", req.meeting_id.clone().map(Value::from));
            put(
                &mut claims,
                "granted_from",
                s.granted_jitsi_meet_context_user_id.clone(),
            );
            put(&mut claims, "customer_id", customer.clone());
            put(
                &mut claims,
                "backend_region",
                self.settings.region.clone().map(Value::from),
            );
            put(&mut claims, "user_region", s.user_region.clone());
            self.common_claims(&mut claims, &occupant, &info, asker);
            services.push(Credential {
                audience: (*aud).clone(),
                token: self.minter.sign(&claims)?,
                expires: now + self.ttl(),
            });
        }
        Ok(Issued::Tokens {
            stanza: iq.credentials_result(&services),
            occupant,
        })
    }

    fn ttl(&self) -> i64 {
        i64::try_from(self.settings.ttl).unwrap_or(i64::MAX / 2)
    }

    /// `iat`, `exp`, `jti` and `occupant`, in both doors' tokens.
    fn common_claims(
        &self,
        claims: &mut Map<String, Value>,
        o: &super::Occupant,
        info: &OccupantInfo,
        asker: &Asker<'_>,
    ) {
        let now = asker.now;
        claims.insert("iat".into(), Value::from(now));
        claims.insert("exp".into(), Value::from(now + self.ttl()));
        claims.insert("jti".into(), Value::from(new_jti()));
        let nick = o.nick.rsplit_once('/').map(|(_, n)| n).unwrap_or_default();
        let mut occupant = Map::new();
        occupant.insert("room".into(), Value::from(o.room.as_str()));
        occupant.insert("jid".into(), Value::from(o.jid.as_str()));
        occupant.insert("nick".into(), Value::from(nick));
        put(&mut occupant, "role", info.role.clone().map(Value::from));
        put(&mut occupant, "affiliation", info.affiliation.clone().map(Value::from));
        // What `POST /v1/revoke user=` names, so that introspection can refuse a revoked user's tokens.
        put(&mut occupant, "user_id", asker.user.clone().map(Value::from));
        claims.insert("occupant".into(), Value::Object(occupant));
    }
}

/// Who asks, beyond the request: the session's user, the revocations, the time.
struct Asker<'a> {
    user: Option<String>,
    revocations: &'a dyn Revocations,
    now: i64,
}

fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value.filter(|v| !v.is_null()) {
        map.insert(key.into(), v);
    }
}

/// 128 random bits, base64url.
fn new_jti() -> String {
    let mut bytes = [0u8; 16];
    // The system RNG does not fail on Linux; a zero id would still be a valid (if poor) jti.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    crate::token::base64url(&bytes)
}

/// The verifiers and public JWKs of an issuer's keys.
fn publish(signing: &IssuerKey, previous: &[PreviousKey]) -> Result<(Vec<AccessVerifier>, Vec<Value>), IssuerProblem> {
    let failed = |e: &dyn std::fmt::Display| IssuerProblem::Publish(e.to_string());
    let mut secrets = Vec::new();
    let mut public = Vec::new();
    let mut jwks = Vec::new();
    let mut add_public = |kid: &str, alg, spki: &[u8]| -> Result<(), IssuerProblem> {
        let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", spki.to_vec()));
        let key = VerifyingKey::from_pem(pem.as_bytes()).map_err(|e| failed(&e))?;
        let jwk = PublicJwk::from_spki_der(spki, kid, alg).map_err(|e| failed(&e))?;
        public.push((Some(kid.to_owned()), alg, key));
        jwks.push(jwk.to_value());
        Ok(())
    };
    match &signing.key {
        SigningKey::Hmac(secret) => secrets.push((signing.kid.clone(), signing.alg, VerifyingKey::hmac(secret))),
        asymmetric => {
            let spki = asymmetric.public_key_der().unwrap_or_default();
            add_public(signing.kid.as_deref().unwrap_or_default(), signing.alg, &spki)?;
        }
    }
    for k in previous {
        add_public(&k.kid, k.alg, &k.spki)?;
    }
    let mut verifiers = Vec::new();
    for group in [secrets, public] {
        if !group.is_empty() {
            verifiers.push(AccessVerifier::from_keys(group).map_err(|e| failed(&e))?);
        }
    }
    Ok((verifiers, jwks))
}

/// A token bucket per occupant: `per_minute` tokens, refilled evenly.
struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Buckets kept before full ones are dropped.
const MAX_BUCKETS: usize = 100_000;

impl RateLimiter {
    fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn allow(&self, who: &str) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, (left, at)| *left + now.duration_since(*at).as_secs_f64() * per_second < capacity);
        }
        let (left, at) = buckets.entry(who.to_owned()).or_insert((capacity, now));
        *left = (*left + now.duration_since(*at).as_secs_f64() * per_second).min(capacity);
        *at = now;
        if *left >= 1.0 {
            *left -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::Algorithm;
    use serde_json::json;

    use super::*;
    use crate::access::MemoryRevocations;
    use crate::access::settings::read_issuer;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const IQ: &str = "<iq type='get' id='q1' from='u@meet.example.com/r1' to='room1@conference.meet.example.com/focus'>\
                      <query xmlns='http://jabber.org/protocol/muc#access-token'/></iq>";

    fn contrib(extra: Value) -> Issuer {
        let mut options = json!({"access_token_key": SECRET, "access_token_rate_limit": 3});
        options
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let entry = json!({"module": "access_token", "options": options});
        Issuer::new(read_issuer("conference.meet.example.com", entry.as_object().unwrap()).unwrap()).unwrap()
    }

    fn occupant_request() -> IssueRequest {
        IssueRequest {
            issuer: "conference.meet.example.com".into(),
            door: Some(Door::Muc),
            stanza: IQ.into(),
            room: Some("room1@conference.meet.example.com".into()),
            room_exists: true,
            occupant: Some(OccupantInfo {
                nick: "room1@conference.meet.example.com/abcd".into(),
                role: Some("moderator".into()),
                affiliation: Some("owner".into()),
            }),
            ..Default::default()
        }
    }

    fn claims_of(stanza: &str) -> Map<String, Value> {
        let data = stanza.split("data='").nth(1).unwrap().split('\'').next().unwrap();
        let payload = data.split('.').nth(1).unwrap();
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn an_occupant_gets_contribs_claims_and_ours() {
        let issuer = contrib(json!({"access_token_audience": "api"}));
        let Issued::Tokens { stanza, occupant } = issuer
            .issue(&occupant_request(), 1000, &MemoryRevocations::default())
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(occupant.jid, "u@meet.example.com/r1");
        let c = claims_of(&stanza);
        assert_eq!(c["userJid"], "u@meet.example.com/r1");
        assert_eq!(c["host"], "meet.example.com");
        assert_eq!(c["room"], "room1");
        assert_eq!(c["exp"], 1060);
        assert_eq!(c["iat"], 1000);
        assert_eq!(c["iss"], "conference.meet.example.com");
        assert_eq!(c["aud"], "api");
        assert_eq!(c["jti"].as_str().unwrap().len(), 22);
        assert_eq!(
            c["occupant"],
            json!({"room": "room1@conference.meet.example.com", "jid": "u@meet.example.com/r1",
                   "nick": "abcd", "role": "moderator", "affiliation": "owner"})
        );
        assert!(stanza.contains("alg='HS256'"));
    }

    #[test]
    fn a_previous_key_verifies_and_is_published_from_its_public_pem_alone() {
        use crate::keys::generate;
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (generate(Algorithm::EdDSA).unwrap(), generate(Algorithm::ES256).unwrap());
        let (old_pub, new_key) = (dir.path().join("old.pub.pem"), dir.path().join("new.pem"));
        std::fs::write(&old_pub, old.public_pem()).unwrap();
        std::fs::write(&new_key, new.private_pem()).unwrap();
        let entry = json!({"module": "access_token", "options": {
            "access_token_key_file": new_key, "access_token_alg": "ES256", "access_token_key_id": "new",
            "access_token_previous_keys": [{"key_file": old_pub, "key_id": "old"}]}});
        let issuer = Issuer::new(read_issuer("c.example", entry.as_object().unwrap()).unwrap()).unwrap();
        let kids: Vec<&str> = issuer.jwks().iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert_eq!(kids, ["new", "old"]);
        let old_signer = SigningKey::from_pem(old.private_pem().as_bytes()).unwrap();
        let claims = json!({"iss": "c.example", "exp": 2000, "iat": 1000});
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": "old"});
        let token = crate::token::encode(&header, &claims, &old_signer, Algorithm::EdDSA).unwrap();
        assert!(issuer.verify(&token, 1500).is_ok());
        assert!(issuer.verify(&token, 2000).is_err());
        let hs = crate::token::encode(
            &json!({"alg": "HS256"}),
            &claims,
            &SigningKey::hmac(SECRET.as_bytes()),
            Algorithm::HS256,
        )
        .unwrap();
        assert!(issuer.verify(&hs, 1500).is_err(), "an HS token against public keys");
    }

    #[test]
    fn refusals_name_the_condition() {
        let issuer = contrib(json!({}));
        let none = MemoryRevocations::default();
        let kind = |req: &IssueRequest| match issuer.issue(req, 1000, &none).unwrap() {
            Issued::Refused { kind, .. } => Some(kind),
            _ => None,
        };
        let mut r = occupant_request();
        r.occupant = None;
        assert_eq!(kind(&r), Some(ErrorKind::Forbidden));
        r.room_exists = false;
        assert_eq!(kind(&r), Some(ErrorKind::ItemNotFound));
        let r = occupant_request();
        assert_eq!(kind(&r), None);
        assert_eq!(kind(&r), None);
        assert_eq!(kind(&r), None);
        assert_eq!(kind(&r), Some(ErrorKind::ResourceConstraint));
        let mut set = occupant_request();
        set.stanza = IQ.replace("type='get'", "type='set'");
        assert_eq!(issuer.issue(&set, 1000, &none).unwrap(), Issued::Pass);
        let mut other_room = occupant_request();
        other_room.room = Some("room2@conference.meet.example.com".into());
        assert!(matches!(
            issuer.issue(&other_room, 1000, &none),
            Err(IssueError::RoomMismatch { .. })
        ));
    }

    #[test]
    fn a_revoked_user_gets_what_a_non_occupant_gets_and_others_carry_their_user_id() {
        let issuer = contrib(json!({"access_token_rate_limit": 0}));
        let revocations = MemoryRevocations::default();
        revocations.insert(Revoked::User("alice".into()), 2000, 1000).unwrap();
        let mut alice = occupant_request();
        alice.session.jitsi_meet_context_user = Some(json!({"id": "alice", "name": "Alice"}));
        let Issued::Refused {
            kind, text, revoked, ..
        } = issuer.issue(&alice, 1000, &revocations).unwrap()
        else {
            panic!("a token for a revoked user")
        };
        assert_eq!(
            (kind, text.as_str(), revoked),
            (ErrorKind::Forbidden, "access tokens are revoked for this user", true)
        );
        // Once the revocation ends, alice gets one, and it names her.
        let Issued::Tokens { stanza, .. } = issuer.issue(&alice, 2000, &revocations).unwrap() else {
            panic!("no token after the revocation ended")
        };
        assert_eq!(claims_of(&stanza)["occupant"]["user_id"], "alice");
        let mut bob = occupant_request();
        bob.session.jitsi_meet_context_user = Some(json!({"id": 42}));
        let Issued::Tokens { stanza, .. } = issuer.issue(&bob, 1000, &revocations).unwrap() else {
            panic!("bob is not revoked")
        };
        assert_eq!(
            claims_of(&stanza)["occupant"]["user_id"],
            "42",
            "a numeric id as its JSON text"
        );
        // Requests that are not ours pass, revoked or not.
        alice.stanza = IQ.replace("type='get'", "type='set'");
        assert_eq!(issuer.issue(&alice, 1000, &revocations).unwrap(), Issued::Pass);

        // A login token without context.user names its user by `sub` (the session's
        // jitsi_meet_domain), as a login does; a context.user id comes first.
        revocations.insert(Revoked::User("acme".into()), 2000, 1000).unwrap();
        let mut by_sub = occupant_request();
        by_sub.session.jitsi_meet_domain = Some(json!("acme"));
        assert!(matches!(
            issuer.issue(&by_sub, 1000, &revocations).unwrap(),
            Issued::Refused { revoked: true, .. }
        ));
        let mut carol = occupant_request();
        carol.session.jitsi_meet_domain = Some(json!("acme"));
        carol.session.jitsi_meet_context_user = Some(json!({"id": "carol"}));
        let Issued::Tokens { stanza, .. } = issuer.issue(&carol, 1000, &revocations).unwrap() else {
            panic!("carol's user is carol, not her token's sub")
        };
        let claims = claims_of(&stanza);
        assert_eq!(claims["occupant"]["user_id"], "carol");
        let text = Value::Object(claims.clone()).to_string();
        assert!(
            !text.contains("acme"),
            "the login's sub is never put in a token: {text}"
        );
    }
}
