//! `token-sidecar keygen`: a new access-token signing key, as `DIR/KID.pem` (private, mode 0600)
//! and `DIR/KID.pub.pem`, and a one-line JSON summary with the public JWK.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use jsonwebtoken::Algorithm;
use serde_json::json;
use token_sidecar::keys::{self, GenerateError, PublicJwk, PublicJwkError, SigningKey};

use super::failure::Failure;

#[derive(Args)]
pub(super) struct KeygenArgs {
    /// The algorithm the key signs: ES256 (EC P-256), EdDSA (Ed25519) or RS256 (RSA-2048).
    #[arg(long, value_name = "ALG", value_parser = ["ES256", "EdDSA", "RS256"])]
    alg: String,
    /// The key id: the `kid` of the tokens and of the JWK, and the file name (no `/` or `..`).
    #[arg(long, value_name = "KID")]
    kid: String,
    /// The directory to write KID.pem and KID.pub.pem in (made, mode 0700, if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
    /// Replace existing key files.
    #[arg(long)]
    force: bool,
}

/// Why no key was written.
#[derive(Debug, thiserror::Error)]
enum KeygenError {
    #[error("--kid {0:?} cannot be a file name: use letters, digits, '-', '_' or '.' without '/' or '..'")]
    BadKid(String),
    #[error("{} already exists (pass --force to replace it)", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error("the new key cannot be read back: {0}")]
    Reload(#[from] token_sidecar::keys::SigningError),
    #[error("the new key has no public JWK: {0}")]
    Jwk(#[from] PublicJwkError),
}

pub(super) fn run(args: KeygenArgs) -> Result<ExitCode, Failure> {
    check_kid(&args.kid).map_err(Failure::usage)?;
    let alg = match args.alg.as_str() {
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        _ => Algorithm::RS256,
    };
    let private_path = args.out.join(format!("{}.pem", args.kid));
    let public_path = args.out.join(format!("{}.pub.pem", args.kid));
    // Both refused before either is written, so a refusal never leaves half a pair.
    if !args.force {
        for path in [&private_path, &public_path] {
            if fs::symlink_metadata(path).is_ok() {
                return Err(Failure::usage(KeygenError::Exists(path.clone())));
            }
        }
    }

    let generated = keys::generate(alg).map_err(|e| Failure::runtime(KeygenError::from(e)))?;
    let key =
        SigningKey::from_pem(generated.private_pem().as_bytes()).map_err(|e| Failure::runtime(KeygenError::from(e)))?;
    let jwk = PublicJwk::from_signing_key(&key, &args.kid, alg).map_err(|e| Failure::runtime(KeygenError::from(e)))?;

    make_dir(&args.out).map_err(Failure::usage)?;
    write_new(&private_path, generated.private_pem(), 0o600, args.force).map_err(Failure::usage)?;
    write_new(&public_path, generated.public_pem(), 0o644, args.force).map_err(Failure::usage)?;

    let summary = json!({
        "kid": args.kid,
        "alg": args.alg,
        "private_key": private_path.to_string_lossy(),
        "public_key": public_path.to_string_lossy(),
        "jwk": jwk.to_value(),
    });
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

/// The kid becomes a file name: nothing that leaves the directory or hides the file.
fn check_kid(kid: &str) -> Result<(), KeygenError> {
    let bad = kid.is_empty()
        || kid.len() > 128
        || kid.starts_with('.')
        || kid.contains("..")
        || kid.chars().any(|c| matches!(c, '/' | '\\') || c.is_control());
    if bad {
        Err(KeygenError::BadKid(kid.to_owned()))
    } else {
        Ok(())
    }
}

fn make_dir(dir: &Path) -> Result<(), KeygenError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| KeygenError::Write {
        path: dir.to_owned(),
        source,
    })
}

/// Writes `text` to a file that did not exist, with `mode` from the start (so a private key is
/// never readable by others, not even briefly). With `force` an existing file is removed first;
/// a symlink in its place is never followed.
fn write_new(path: &Path, text: &str, mode: u32, force: bool) -> Result<(), KeygenError> {
    let failed = |source| KeygenError::Write {
        path: path.to_owned(),
        source,
    };
    if force {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(failed(e)),
        }
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            KeygenError::Exists(path.to_owned())
        } else {
            failed(e)
        }
    })?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kids_that_are_not_plain_file_names_are_refused() {
        for bad in ["", "../k", "a/b", "..", "a..b", ".hidden", "a\\b", "a\nb"] {
            assert!(check_kid(bad).is_err(), "{bad:?}");
        }
        for good in ["k1", "2025-01-access", "key.v2", "a_b"] {
            assert!(check_kid(good).is_ok(), "{good:?}");
        }
    }
}
