//! `token-sidecar verify-access`: an access token checked offline, as an API service would —
//! signature by the issuer's JWKS, a public key file or the shared secret, then `exp`, `nbf`,
//! `iat` and optionally `aud`. Presence in the room is not checked (that is introspection).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args};
use serde_json::{Value, json};
use token_sidecar::access::verify::{AccessKeyError, AccessVerifier};
use token_sidecar::cause_chain::cause_chain;
use token_sidecar::clock::unix_now;
use token_sidecar::keys::{KeySourceError, parse_http_url};
use token_sidecar::token::MAX_TOKEN_BYTES;

use super::failure::Failure;

/// The largest JWKS read: a few keys are a few KiB.
const MAX_JWKS_BYTES: usize = 256 * 1024;

#[derive(Args)]
#[command(group(ArgGroup::new("verifier").required(true).args(["jwks", "key", "secret_file"])))]
pub(super) struct VerifyAccessArgs {
    /// Fetch the issuer's keys from this JWKS URL, e.g. http://127.0.0.1:5290/.well-known/jwks.json.
    #[arg(long, value_name = "URL")]
    jwks: Option<String>,
    /// Verify with this PEM key: public (SPKI, PKCS#1, certificate) or private (RSA, EC, Ed25519).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Verify HS256/384/512 with the secret in this file: the whole file, a trailing newline
    /// included (as access_token_key_file reads it).
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// Also require this audience in `aud`.
    #[arg(long, value_name = "AUDIENCE")]
    aud: Option<String>,
    /// Check as if the clock said this (seconds since 1970) instead of now.
    #[arg(long, value_name = "UNIX_TIME")]
    at: Option<i64>,
    /// Seconds to wait for the JWKS.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    timeout: u64,
    /// The token, or `-` (or nothing) to read it from stdin (safer: arguments show in the
    /// process list).
    #[arg(value_name = "TOKEN")]
    token: Option<String>,
}

/// Why the check could not be made (exit 2).
#[derive(Debug, thiserror::Error)]
enum VerifyAccessError {
    #[error("cannot read the token from stdin: {0}")]
    Stdin(std::io::Error),
    #[error("no token given (pass it as an argument, or on stdin with `-`)")]
    NoToken,
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Keys { path: PathBuf, source: AccessKeyError },
    #[error("{} holds a PEM key, not a secret: use --key", .0.display())]
    PemAsSecret(PathBuf),
    #[error("--jwks: {0}")]
    Url(#[from] KeySourceError),
    #[error("--jwks {url}: {detail}")]
    Fetch { url: String, detail: String },
    #[error("--jwks {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("--jwks {url}: the answer is not JSON: {source}")]
    NotJson { url: String, source: serde_json::Error },
    #[error("--jwks {url}: {source}")]
    Jwks { url: String, source: AccessKeyError },
}

pub(super) fn run(args: VerifyAccessArgs) -> Result<ExitCode, Failure> {
    let token = read_token(args.token.as_deref()).map_err(Failure::usage)?;
    let verifier = if let Some(url) = &args.jwks {
        let jwks = fetch_jwks(url, Duration::from_secs(args.timeout.max(1))).map_err(Failure::usage)?;
        AccessVerifier::from_jwks(&jwks).map_err(|source| {
            Failure::usage(VerifyAccessError::Jwks {
                url: url.clone(),
                source,
            })
        })?
    } else if let Some(path) = &args.key {
        let pem = read_file(path).map_err(Failure::usage)?;
        AccessVerifier::from_pem(&pem).map_err(|source| key_error(path, source))?
    } else if let Some(path) = &args.secret_file {
        let secret = read_file(path).map_err(Failure::usage)?;
        if secret.trim_ascii_start().starts_with(b"-----BEGIN ") {
            return Err(Failure::usage(VerifyAccessError::PemAsSecret(path.clone())));
        }
        AccessVerifier::from_secret(&secret).map_err(|source| key_error(path, source))?
    } else {
        // clap requires one of the three.
        return Err(Failure::usage(VerifyAccessError::NoToken));
    };
    let verifier = match args.aud {
        Some(aud) => verifier.with_audience(aud),
        None => verifier,
    };
    match verifier.verify(&token, args.at.unwrap_or_else(unix_now)) {
        Ok(claims) => {
            println!("{}", json!({"ok": true, "claims": claims}));
            Ok(ExitCode::SUCCESS)
        }
        Err(refusal) => {
            println!("{}", json!({"ok": false, "text": refusal.to_string()}));
            Ok(ExitCode::from(1))
        }
    }
}

fn key_error(path: &Path, source: AccessKeyError) -> Failure {
    Failure::usage(VerifyAccessError::Keys {
        path: path.to_owned(),
        source,
    })
}

/// The token from the argument, or from stdin for `-` or none; surrounding whitespace removed.
fn read_token(arg: Option<&str>) -> Result<String, VerifyAccessError> {
    let text = match arg {
        Some("-") | None => {
            let mut text = String::new();
            // One byte over the limit is enough for the verifier to refuse it as too large.
            std::io::stdin()
                .take(MAX_TOKEN_BYTES as u64 + 1024)
                .read_to_string(&mut text)
                .map_err(VerifyAccessError::Stdin)?;
            text
        }
        Some(token) => token.to_owned(),
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(VerifyAccessError::NoToken);
    }
    Ok(token.to_owned())
}

fn read_file(path: &Path) -> Result<Vec<u8>, VerifyAccessError> {
    std::fs::read(path).map_err(|source| VerifyAccessError::Read {
        path: path.to_owned(),
        source,
    })
}

/// GETs the JWKS: one try, bounded in time and size, no redirects, no proxy for loopback.
fn fetch_jwks(url: &str, timeout: Duration) -> Result<Value, VerifyAccessError> {
    let parsed = parse_http_url(url)?;
    let url = parsed.to_string();
    let fetch_error = |e: &reqwest::Error| VerifyAccessError::Fetch {
        url: url.clone(),
        detail: if e.is_timeout() {
            format!("no answer within {} s", timeout.as_secs())
        } else {
            cause_chain(e)
        },
    };
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("token-sidecar/", env!("CARGO_PKG_VERSION")));
    if is_loopback(&parsed) {
        builder = builder.no_proxy();
    }
    let client = builder.build().map_err(|e| fetch_error(&e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| VerifyAccessError::Fetch {
            url: url.clone(),
            detail: e.to_string(),
        })?;
    let body = runtime.block_on(async {
        let mut response = client.get(parsed.clone()).send().await.map_err(|e| fetch_error(&e))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(VerifyAccessError::Status {
                url: url.clone(),
                status: response.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fetch_error(&e))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(VerifyAccessError::Fetch {
                    url: url.clone(),
                    detail: format!("the answer is larger than {} KiB", MAX_JWKS_BYTES / 1024),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    })?;
    serde_json::from_slice(&body).map_err(|source| VerifyAccessError::NotJson { url, source })
}

/// Whether `url` names this machine (so no proxy may see the request).
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
