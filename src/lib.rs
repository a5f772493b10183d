//! token-sidecar: Jitsi-compatible JWT verification for Prosody, as a library and a daemon.
//!
//! - [`token`]: whether a token is accepted for a host ([`token::Verifier`]), and minting tokens;
//! - [`room`]: whether a verified session may join a room ([`room::verify_room`]);
//! - [`keys`]: verifying and signing keys, the key server and key sets;
//! - [`config`]: host settings under Prosody's option names, and the daemon's own settings;
//! - [`protocol`]: the socket protocol, and a client of it;
//! - [`daemon`]: `token-sidecar serve`, the daemon the Prosody shim talks to;
//! - [`store`]: occupancy and revocations in memory or shared by the shards (Valkey/Redis);
//! - [`digest`], [`clock`], [`json`], [`cause_chain`]: SHA-256 and fingerprints, the clock, naming
//!   JSON values, errors on one line.
//!
//! `token`, `room` and `keys` do no socket I/O (fetching keys is their only network I/O); the
//! daemon and the command-line tool sit on top of them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod cause_chain;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod digest;
pub mod json;
pub mod keys;
pub mod protocol;
pub mod room;
pub mod store;
pub mod token;
