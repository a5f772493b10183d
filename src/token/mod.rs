//! Tokens: verifying a login's token ([`Verifier`]), what a verified token gives the session
//! ([`VerifiedToken`]), why a token is refused ([`Reason`]), and minting tokens ([`Minter`]).
//!
//! No socket I/O: fetching keys (through [`crate::keys`]) is the only I/O a verification does.

mod mint;
mod reason;
mod request;
mod session;
mod verdict;
mod verify;

pub use mint::{MintError, Minter, base64url, default_claims, encode, set_claim, unset_claim};
pub use reason::Reason;
pub use request::{AuthRequest, MAX_TOKEN_BYTES, Purpose};
pub use session::{ContextUser, SessionView, VerifiedToken};
pub use verdict::{Accepted, Check, Rejection, Trace, Verdict};
pub use verify::Verifier;
