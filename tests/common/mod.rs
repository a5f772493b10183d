//! Shared test support: `mod common;` in a test file, then `common::http::TestServer` (a
//! programmable HTTP/1.1 server on loopback), `common::keys::TestKey` (generated RSA, EC and
//! Ed25519 keys as PEM, JWK and certificate, and signed JWTs), and `common::valkey` (real Valkey or
//! Redis servers and clusters on loopback, killed by PID when dropped).

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

pub mod cli;
pub mod daemon;
pub mod http;
pub mod keys;
pub mod valkey;
