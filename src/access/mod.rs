//! Participant access tokens: the issuer behind both front doors (jitsi-contrib's
//! `muc#access-token` IQ and Jitsi's XEP-0215 `short-lived-token` credentials), the occupancy
//! store introspection reads, and verifying access tokens.
//!
//! - [`settings`]: an issuer's options, under the names of the module it stands in for;
//! - [`issuer`]: who gets a token, its claims, signing, the reply stanza;
//! - [`stanza`]: reading and writing the IQs (xmpp-parsers, minidom);
//! - [`occupancy`]: who is in which room now (the store interface, and the in-memory store);
//! - [`revocation`]: token ids and users shut out until a time;
//! - [`verify`]: checking an access token's signature and times, offline;
//! - [`introspect`]: RFC 7662 introspection: signature, times, and presence now.
//!
//! Like `token/` and `keys/`, this module does no socket I/O.

pub mod introspect;
pub mod issuer;
pub mod occupancy;
pub mod revocation;
pub mod settings;
pub mod stanza;
pub mod verify;

pub use issuer::{Door, IssueError, IssueRequest, Issued, Issuer, OccupantInfo, SessionInfo};
pub use occupancy::{MemoryStore, OccupancyCounts, OccupancyStore, Occupant, Reporter, StoreError};
pub use revocation::{MemoryRevocations, Revocations, Revoked};
pub use settings::{IssuerKey, IssuerModule, IssuerPolicy, IssuerProblem, IssuerSettings, PreviousKey, read_issuer};
