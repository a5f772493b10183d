//! Counters for `GET /metrics` (docs/METRICS.md) beyond those `stats` reports
//! ([`super::state::Stats`]): logins and room checks by result and reason, access tokens by door
//! and result, introspections, revocations, and the key sources' fetches and lookups.
//!
//! Every label value is a fixed name: the result names here, [`Reason::IDS`], [`RoomDenial::IDS`],
//! the key sources' [`FetchOutcome`] and [`LookupEvent`] names. Never a token, kid, user, room,
//! host or text: a refused request cannot make a new series. Each counter is an atomic in an array
//! made at start, so counting costs one relaxed add; [`Metrics::encode`] reads them at a scrape,
//! every series from start (at 0 until something happens), so that alerts see them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;

use crate::access::Door;
use crate::access::introspect::Inactive;
use crate::access::stanza::ErrorKind;
use crate::access::verify::AccessRefusal;
use crate::keys::{FetchOutcome, KeyObserver, LookupEvent, SourceKind};
use crate::room::RoomDenial;
use crate::token::Reason;

/// A label set as the encoder takes it.
type Labels<'a> = &'a [(&'static str, &'static str)];

/// Counters in a fixed array.
#[derive(Debug)]
struct Tally<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for Tally<N> {
    fn default() -> Self {
        Tally(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl<const N: usize> Tally<N> {
    fn bump(&self, slot: usize) {
        if let Some(counter) = self.0.get(slot) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn get(&self, slot: usize) -> u64 {
        self.0.get(slot).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// Writes one counter family: `series` gives each label set with its slot in `tally`.
fn encode_counters<const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    tally: &Tally<N>,
    series: &[(Vec<(&'static str, &'static str)>, usize)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, slot) in series {
        let labels: Labels = labels;
        ConstCounter::new(tally.get(*slot)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Why a login or room check was answered with an error about its host rather than a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// No host of that name.
    UnknownHost,
    /// The host's settings from `hello` were refused.
    SettingsRefused,
}

impl HostError {
    const IDS: [&'static str; 2] = ["unknown_host", "settings_refused"];

    fn index(self) -> usize {
        self as usize
    }
}

/// How a login (`auth`) ended.
#[derive(Debug, Clone, Copy)]
pub enum Login<'a> {
    /// A token was accepted (verified now, or a remembered login).
    Accepted,
    /// No token, on a host that allows that.
    Anonymous,
    /// Refused.
    Refused(&'a Reason),
    /// Not judged: the host cannot answer.
    Error(HostError),
}

const LOGIN_REFUSED: usize = 2;
const LOGIN_ERROR: usize = LOGIN_REFUSED + Reason::IDS.len();
const LOGIN_SLOTS: usize = LOGIN_ERROR + HostError::IDS.len();

impl Login<'_> {
    fn slot(self) -> usize {
        match self {
            Login::Accepted => 0,
            Login::Anonymous => 1,
            Login::Refused(reason) => LOGIN_REFUSED + reason.index(),
            Login::Error(error) => LOGIN_ERROR + error.index(),
        }
    }

    fn series() -> Vec<(Vec<(&'static str, &'static str)>, usize)> {
        let mut out = vec![
            (vec![("result", "accepted")], Login::Accepted.slot()),
            (vec![("result", "anonymous")], Login::Anonymous.slot()),
        ];
        for (n, id) in Reason::IDS.iter().enumerate() {
            out.push((vec![("result", "refused"), ("reason", *id)], LOGIN_REFUSED + n));
        }
        for (n, id) in HostError::IDS.iter().enumerate() {
            out.push((vec![("result", "error"), ("reason", *id)], LOGIN_ERROR + n));
        }
        out
    }
}

/// Why a room check was answered with an error rather than a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomError {
    /// The host cannot answer.
    Host(HostError),
    /// A `token_sha256` that is not 64 hex digits.
    BadRequest,
    /// A `token_sha256` of no remembered login, without the token.
    UnknownToken,
}

/// How a room check (`room`) ended.
#[derive(Debug, Clone, Copy)]
pub enum RoomCheck<'a> {
    /// The session may join.
    Allowed,
    /// Refused by the room rules.
    Denied(&'a RoomDenial),
    /// Refused because the session's token, verified again, does not verify.
    TokenRefused(&'a Reason),
    /// Not judged.
    Error(RoomError),
}

const ROOM_DENIED: usize = 1;
const ROOM_TOKEN: usize = ROOM_DENIED + RoomDenial::IDS.len();
const ROOM_ERROR: usize = ROOM_TOKEN + Reason::IDS.len();
const ROOM_ERROR_IDS: [&str; 4] = ["unknown_host", "settings_refused", "bad_request", "unknown_token"];
const ROOM_SLOTS: usize = ROOM_ERROR + ROOM_ERROR_IDS.len();

impl RoomCheck<'_> {
    fn slot(self) -> usize {
        match self {
            RoomCheck::Allowed => 0,
            RoomCheck::Denied(denial) => ROOM_DENIED + denial.index(),
            RoomCheck::TokenRefused(reason) => ROOM_TOKEN + reason.index(),
            RoomCheck::Error(RoomError::Host(error)) => ROOM_ERROR + error.index(),
            RoomCheck::Error(RoomError::BadRequest) => ROOM_ERROR + 2,
            RoomCheck::Error(RoomError::UnknownToken) => ROOM_ERROR + 3,
        }
    }

    fn series() -> Vec<(Vec<(&'static str, &'static str)>, usize)> {
        let mut out = vec![(vec![("result", "allowed")], 0)];
        let refused = RoomDenial::IDS
            .iter()
            .enumerate()
            .map(|(n, id)| (*id, ROOM_DENIED + n))
            .chain(Reason::IDS.iter().enumerate().map(|(n, id)| (*id, ROOM_TOKEN + n)));
        for (id, slot) in refused {
            out.push((vec![("result", "refused"), ("reason", id)], slot));
        }
        for (n, id) in ROOM_ERROR_IDS.iter().enumerate() {
            out.push((vec![("result", "error"), ("reason", *id)], ROOM_ERROR + n));
        }
        out
    }
}

/// How an access-token request (`access_token`) ended.
#[derive(Debug, Clone, Copy)]
pub enum AccessToken {
    /// A token issued.
    Issued,
    /// Not for the daemon (another payload, `type='set'`, no accepted audience): passed on.
    Passed,
    /// Refused with this error.
    Refused(ErrorKind),
    /// Refused because the sender's user is revoked (with the error a non-occupant gets).
    Revoked,
    /// Not answered with a stanza (a request that cannot be read, a door the issuer lacks).
    Error,
}

const ACCESS_REFUSED_IDS: [&str; 6] = [
    "not_occupant",
    "no_room",
    "rate_limited",
    "issuer_unavailable",
    "bad_request",
    "revoked",
];
const ACCESS_SLOTS: usize = 3 + ACCESS_REFUSED_IDS.len();

impl AccessToken {
    fn slot(self) -> usize {
        match self {
            AccessToken::Issued => 0,
            AccessToken::Passed => 1,
            AccessToken::Error => 2,
            AccessToken::Refused(kind) => {
                3 + match kind {
                    // The muc door's "not an occupant"; the credentials door's, or a session without a room.
                    ErrorKind::Forbidden | ErrorKind::NotAllowed => 0,
                    ErrorKind::ItemNotFound => 1,
                    ErrorKind::ResourceConstraint => 2,
                    ErrorKind::Misconfigured => 3,
                    ErrorKind::BadRequest => 4,
                }
            }
            AccessToken::Revoked => 3 + 5,
        }
    }

    fn series(door: &'static str) -> Vec<(Vec<(&'static str, &'static str)>, usize)> {
        let mut out = vec![
            (vec![("door", door), ("result", "issued")], 0),
            (vec![("door", door), ("result", "passed")], 1),
            (vec![("door", door), ("result", "error")], 2),
        ];
        for (n, id) in ACCESS_REFUSED_IDS.iter().enumerate() {
            out.push((vec![("door", door), ("result", "refused"), ("reason", *id)], 3 + n));
        }
        out
    }
}

/// How an introspection (`POST /v1/introspect`) ended.
#[derive(Debug, Clone, Copy)]
pub enum Introspected<'a> {
    /// `active: true`.
    Active,
    /// `active: false`, and why.
    Inactive(&'a Inactive),
    /// 401 or 403: no secret, a wrong one, or introspection not enabled.
    Unauthorized,
    /// 400: no token in the form.
    BadRequest,
}

const INACTIVE_IDS: [&str; 8] = [
    "no_iss",
    "unknown_iss",
    "expired",
    "invalid",
    "no_occupant",
    "left",
    "store_error",
    "revoked",
];
const INTROSPECTION_SLOTS: usize = 3 + INACTIVE_IDS.len();

impl Introspected<'_> {
    fn slot(self) -> usize {
        match self {
            Introspected::Active => 0,
            Introspected::Unauthorized => 1,
            Introspected::BadRequest => 2,
            Introspected::Inactive(why) => {
                3 + match why {
                    Inactive::NoIssuer => 0,
                    Inactive::UnknownIssuer(_) => 1,
                    Inactive::Refused(AccessRefusal::Expired) => 2,
                    Inactive::Refused(_) => 3,
                    Inactive::NoOccupant => 4,
                    Inactive::Left { .. } => 5,
                    Inactive::Store(_) => 6,
                    Inactive::Revoked(_) => 7,
                }
            }
        }
    }

    fn series() -> Vec<(Vec<(&'static str, &'static str)>, usize)> {
        let mut out = vec![
            (vec![("result", "active")], 0),
            (vec![("result", "unauthorized")], 1),
            (vec![("result", "bad_request")], 2),
        ];
        for (n, id) in INACTIVE_IDS.iter().enumerate() {
            out.push((vec![("result", "inactive"), ("reason", *id)], 3 + n));
        }
        out
    }
}

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedKind {
    /// A token id (`jti=`).
    TokenId,
    /// A user (`user=`).
    User,
}

/// How a revocation (`POST /v1/revoke`) ended.
#[derive(Debug, Clone, Copy)]
pub enum Revocation {
    /// In force on every daemon that shares the store.
    Shared(RevokedKind),
    /// In force on this daemon only: no shared store, or it could not take it.
    Local(RevokedKind),
    /// 401 or 403, as for introspection.
    Unauthorized,
    /// 400: a request that cannot be read, or values out of bounds.
    BadRequest,
    /// 503: not in force anywhere (the list is full).
    Unavailable,
}

const REVOCATION_SLOTS: usize = 7;

impl Revocation {
    fn slot(self) -> usize {
        let kind = |k| match k {
            RevokedKind::TokenId => 0,
            RevokedKind::User => 1,
        };
        match self {
            Revocation::Shared(k) => kind(k),
            Revocation::Local(k) => 2 + kind(k),
            Revocation::Unauthorized => 4,
            Revocation::BadRequest => 5,
            Revocation::Unavailable => 6,
        }
    }

    fn series() -> Vec<(Vec<(&'static str, &'static str)>, usize)> {
        vec![
            (vec![("result", "shared"), ("kind", "jti")], 0),
            (vec![("result", "shared"), ("kind", "user")], 1),
            (vec![("result", "local"), ("kind", "jti")], 2),
            (vec![("result", "local"), ("kind", "user")], 3),
            (vec![("result", "unauthorized")], 4),
            (vec![("result", "bad_request")], 5),
            (vec![("result", "unavailable")], 6),
        ]
    }
}

/// The buckets of the key-fetch duration, in seconds: 1 ms to 10 s (a fetch gives up after
/// `asap_key_fetch_timeout` × tries, 9.3 s by default).
pub const FETCH_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

const SOURCES: usize = SourceKind::ALL.len();

/// What the key sources of every host did, summed over hosts (a host's counters are not lost when
/// its settings change). No host label: per-host figures are in `stats` and the logs.
#[derive(Debug)]
pub struct KeyMetrics {
    fetches: [Tally<{ FetchOutcome::ALL.len() }>; SOURCES],
    durations: [Histogram; SOURCES],
    lookups: [Tally<{ LookupEvent::ALL.len() }>; SOURCES],
}

impl Default for KeyMetrics {
    fn default() -> Self {
        KeyMetrics {
            fetches: Default::default(),
            durations: std::array::from_fn(|_| Histogram::new(FETCH_BUCKETS)),
            lookups: Default::default(),
        }
    }
}

impl KeyObserver for KeyMetrics {
    fn fetched(&self, source: SourceKind, outcome: FetchOutcome, took: Duration) {
        self.fetches[source.index()].bump(outcome.index());
        self.durations[source.index()].observe(took.as_secs_f64());
    }

    fn counted(&self, source: SourceKind, event: LookupEvent) {
        self.lookups[source.index()].bump(event.index());
    }
}

impl KeyMetrics {
    /// Fetches from a `source` that ended with `outcome` so far.
    pub fn fetches(&self, source: SourceKind, outcome: FetchOutcome) -> u64 {
        self.fetches[source.index()].get(outcome.index())
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut fetches = encoder.encode_descriptor(
            "key_fetches",
            "Key fetches (all tries of one fetch) by key source and outcome.",
            None,
            MetricType::Counter,
        )?;
        for source in SourceKind::ALL {
            for outcome in FetchOutcome::ALL {
                let labels: Labels = &[("source", source.name()), ("result", outcome.name())];
                ConstCounter::new(self.fetches(source, outcome)).encode(fetches.encode_family(&labels)?)?;
            }
        }
        let mut durations = encoder.encode_descriptor(
            "key_fetch_duration",
            "How long key fetches took, tries and backoff included, by key source.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for source in SourceKind::ALL {
            let labels: Labels = &[("source", source.name())];
            self.durations[source.index()].encode(durations.encode_family(&labels)?)?;
        }
        let mut lookups = encoder.encode_descriptor(
            "key_cache_lookups",
            "Key lookups by key source and what they counted (as stats counts them: a stale key served is also a hit).",
            None,
            MetricType::Counter,
        )?;
        for source in SourceKind::ALL {
            for event in LookupEvent::ALL {
                let labels: Labels = &[("source", source.name()), ("result", event.name())];
                let n = self.lookups[source.index()].get(event.index());
                ConstCounter::new(n).encode(lookups.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The counters only `/metrics` reports: logins and room checks by result and reason, access tokens,
/// introspections, and the key sources'.
#[derive(Debug)]
pub struct Metrics {
    logins: Tally<LOGIN_SLOTS>,
    room_checks: Tally<ROOM_SLOTS>,
    /// By door: muc, extdisco.
    access_tokens: [Tally<ACCESS_SLOTS>; 2],
    introspections: Tally<INTROSPECTION_SLOTS>,
    revocations: Tally<REVOCATION_SLOTS>,
    /// The key sources'.
    pub keys: Arc<KeyMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            logins: Tally::default(),
            room_checks: Tally::default(),
            access_tokens: Default::default(),
            introspections: Tally::default(),
            revocations: Tally::default(),
            keys: Arc::new(KeyMetrics::default()),
        }
    }
}

const DOORS: [Door; 2] = [Door::Muc, Door::Extdisco];

impl Metrics {
    /// Counts a login.
    pub fn login(&self, login: Login<'_>) {
        self.logins.bump(login.slot());
    }

    /// Counts a room check.
    pub fn room_check(&self, check: RoomCheck<'_>) {
        self.room_checks.bump(check.slot());
    }

    /// Counts an access-token request through `door`.
    pub fn access_token(&self, door: Door, result: AccessToken) {
        let door = match door {
            Door::Muc => 0,
            Door::Extdisco => 1,
        };
        self.access_tokens[door].bump(result.slot());
    }

    /// Counts an introspection.
    pub fn introspection(&self, result: Introspected<'_>) {
        self.introspections.bump(result.slot());
    }

    /// Counts a revocation request.
    pub fn revocation(&self, result: Revocation) {
        self.revocations.bump(result.slot());
    }

    /// Writes every series of these counters.
    pub fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_counters(
            encoder,
            "logins",
            "Logins (auth requests) by result, and reason for refusals and errors.",
            &self.logins,
            &Login::series(),
        )?;
        encode_counters(
            encoder,
            "room_checks",
            "Room joins checked (room requests) by result, and reason for refusals and errors.",
            &self.room_checks,
            &RoomCheck::series(),
        )?;
        let mut access = encoder.encode_descriptor(
            "access_tokens",
            "Access-token requests by door, result, and reason for refusals.",
            None,
            MetricType::Counter,
        )?;
        for (tally, door) in self.access_tokens.iter().zip(DOORS) {
            for (labels, slot) in AccessToken::series(door.name()) {
                let labels: Labels = &labels;
                ConstCounter::new(tally.get(slot)).encode(access.encode_family(&labels)?)?;
            }
        }
        encode_counters(
            encoder,
            "introspections",
            "Introspections (POST /v1/introspect) by result, and reason for inactive tokens.",
            &self.introspections,
            &Introspected::series(),
        )?;
        encode_counters(
            encoder,
            "revocations",
            "Revocations (POST /v1/revoke) by result (shared: on every daemon of the store; local: on this one only) and kind.",
            &self.revocations,
            &Revocation::series(),
        )?;
        self.keys.encode(encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every slot is named once, and every series has a slot of its own.
    fn check_series(series: &[(Vec<(&'static str, &'static str)>, usize)], slots: usize) {
        let mut seen: Vec<usize> = series.iter().map(|(_, slot)| *slot).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..slots).collect::<Vec<_>>());
        let mut labels: Vec<_> = series.iter().map(|(labels, _)| labels.clone()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), series.len(), "a label set named twice");
    }

    #[test]
    fn every_slot_is_a_series() {
        check_series(&Login::series(), LOGIN_SLOTS);
        check_series(&RoomCheck::series(), ROOM_SLOTS);
        check_series(&AccessToken::series("muc"), ACCESS_SLOTS);
        check_series(&Introspected::series(), INTROSPECTION_SLOTS);
        check_series(&Revocation::series(), REVOCATION_SLOTS);
    }

    #[test]
    fn results_land_in_their_series() {
        let metrics = Metrics::default();
        metrics.login(Login::Refused(&Reason::Expired {
            since: 3,
            valid_for: None,
        }));
        metrics.login(Login::Error(HostError::SettingsRefused));
        metrics.room_check(RoomCheck::TokenRefused(&Reason::InvalidSignature));
        metrics.room_check(RoomCheck::Error(RoomError::UnknownToken));
        metrics.access_token(Door::Extdisco, AccessToken::Refused(ErrorKind::ResourceConstraint));
        metrics.introspection(Introspected::Inactive(&Inactive::Refused(AccessRefusal::Expired)));
        let value = |series: Vec<(Vec<(&'static str, &'static str)>, usize)>,
                     tally: &dyn Fn(usize) -> u64,
                     want: &[(&str, &str)]| {
            let (_, slot) = series.into_iter().find(|(l, _)| l == want).expect("series");
            tally(slot)
        };
        let logins = |s| metrics.logins.get(s);
        assert_eq!(
            value(Login::series(), &logins, &[("result", "refused"), ("reason", "exp")]),
            1
        );
        assert_eq!(
            value(
                Login::series(),
                &logins,
                &[("result", "error"), ("reason", "settings_refused")]
            ),
            1
        );
        assert_eq!(value(Login::series(), &logins, &[("result", "accepted")]), 0);
        let rooms = |s| metrics.room_checks.get(s);
        assert_eq!(
            value(
                RoomCheck::series(),
                &rooms,
                &[("result", "refused"), ("reason", "signature")]
            ),
            1
        );
        assert_eq!(
            value(
                RoomCheck::series(),
                &rooms,
                &[("result", "error"), ("reason", "unknown_token")]
            ),
            1
        );
        let extdisco = |s| metrics.access_tokens[1].get(s);
        assert_eq!(
            value(
                AccessToken::series("extdisco"),
                &extdisco,
                &[("door", "extdisco"), ("result", "refused"), ("reason", "rate_limited")]
            ),
            1
        );
        metrics.access_token(Door::Muc, AccessToken::Revoked);
        let muc = |s| metrics.access_tokens[0].get(s);
        assert_eq!(
            value(
                AccessToken::series("muc"),
                &muc,
                &[("door", "muc"), ("result", "refused"), ("reason", "revoked")]
            ),
            1
        );
        metrics.revocation(Revocation::Local(RevokedKind::User));
        let revocations = |s| metrics.revocations.get(s);
        assert_eq!(
            value(
                Revocation::series(),
                &revocations,
                &[("result", "local"), ("kind", "user")]
            ),
            1
        );
        let intro = |s| metrics.introspections.get(s);
        assert_eq!(
            value(
                Introspected::series(),
                &intro,
                &[("result", "inactive"), ("reason", "expired")]
            ),
            1
        );
    }
}
