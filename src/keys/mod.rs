//! Keys: verifying keys and where they come from — the host's shared secret, the ASAP key server
//! (`asap_key_server`, one PEM per kid at `sha256(kid).pem`) and a pre-fetched key set
//! (`cache_keys_url`: JWKS or a Firebase-style `{kid: certificate}` map) — and signing keys.
//!
//! A key's type decides which algorithms it can verify: an HMAC secret only HS*, an RSA key only
//! RS*, a P-256 key only ES256, a P-384 key only ES384, an Ed25519 key only EdDSA. So `none` and
//! algorithm confusion cannot happen: nothing ever turns a public key into an HMAC secret.
//!
//! Fetching keys is this module's only I/O. Lookups that wait for it are bounded per host in
//! number and time (`wait.rs`).

mod algorithm;
mod der;
mod fetch;
mod generate;
mod jwks;
mod kid;
mod material;
mod observe;
mod public_jwk;
mod server;
mod signing;
mod wait;

pub use algorithm::{ALGORITHM_NAMES, is_hmac, parse_algorithm};
pub use fetch::{FetchSettings, KeyError, KeySourceError, KeySourceStats, parse_http_url};
pub use generate::{GENERATED_ALGORITHMS, GenerateError, GeneratedKey, generate};
pub use jwks::{JwksSource, JwksTiming, KeySetAnswer};
pub use kid::{KID_SHOWN_CHARS, ShortKid};
pub use material::{KeyKind, VerifyingKey};
pub use observe::{FetchOutcome, KeyObserver, LookupEvent, SourceKind};
pub use public_jwk::{PublicJwk, PublicJwkError, default_kid, jwk_set, public_jwk};
pub use server::KeyServer;
pub use signing::{SigningError, SigningKey};
pub use wait::{KEY_WAIT_LIMIT, KEY_WAITS_PER_HOST, KeyWait, KeyWaitBudget, SHIM_TIMEOUT, UNKNOWN_KID_WAIT};
