//! An issuer's settings, read from the options of the Prosody module that hands out access
//! tokens — jitsi-contrib's `mod_access_token` on a MUC component, or Jitsi's
//! `mod_short_lived_token` on a VirtualHost — under the names those modules read.
//!
//! The same reader serves the shim's `hello` (which forwards what Prosody's config says, plus
//! the contents of the key files it could read) and the TOML file's `[issuers."…"]` tables.
//! There is no default key: a module enabled without one is refused, naming the option to set.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::keys::{SigningError, SigningKey, is_hmac, parse_algorithm};

/// The shortest HMAC key accepted: 256 bits, as RFC 7518 asks for HS256.
pub const MIN_HMAC_KEY_BYTES: usize = 32;

/// jitsi-contrib's default `access_token_key`, published in its source: never a key.
const CONTRIB_DEFAULT_KEY: &str = "mysecretkey";

/// Which Prosody module an issuer stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerModule {
    /// jitsi-contrib's `mod_access_token`: the `muc#access-token` IQ on a MUC component.
    AccessToken,
    /// Jitsi's `mod_short_lived_token`: XEP-0215 `short-lived-token` credentials on a VirtualHost.
    ShortLivedToken,
}

impl IssuerModule {
    /// The module's name (without `mod_`), as `hello` and the TOML file give it.
    pub fn name(self) -> &'static str {
        match self {
            IssuerModule::AccessToken => "access_token",
            IssuerModule::ShortLivedToken => "short_lived_token",
        }
    }

    fn parse(name: &str) -> Option<IssuerModule> {
        match name {
            "access_token" => Some(IssuerModule::AccessToken),
            "short_lived_token" => Some(IssuerModule::ShortLivedToken),
            _ => None,
        }
    }
}

/// Why an issuer's settings were refused. `Display` names the option to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerProblem {
    /// `module` names no module we stand in for.
    #[error("`module`: expected \"access_token\" or \"short_lived_token\", found {0:?}")]
    UnknownModule(String),
    /// A required option is missing.
    #[error("`{0}` is required")]
    Missing(&'static str),
    /// An option has the wrong type.
    #[error("`{option}`: expected {expected}, found {found}")]
    WrongType {
        /// The option.
        option: String,
        /// What it takes.
        expected: &'static str,
        /// What it was.
        found: &'static str,
    },
    /// A number out of range.
    #[error("`{option}`: expected a whole number from {min} to {max}, found {found}")]
    OutOfRange {
        /// The option.
        option: String,
        /// Least allowed.
        min: u64,
        /// Greatest allowed.
        max: u64,
        /// What it was.
        found: String,
    },
    /// No key: we never sign with a default one.
    #[error(
        "no signing key: set {0} (access tokens are never signed with a built-in default key; see docs/MIGRATING.md)"
    )]
    NoKey(&'static str),
    /// jitsi-contrib's published default key.
    #[error("`{0}` is jitsi-contrib's published default key \"mysecretkey\"; set a secret of your own")]
    DefaultKey(&'static str),
    /// An HMAC key too short to be a secret.
    #[error("`{option}`: an HMAC key must be at least {MIN_HMAC_KEY_BYTES} bytes, found {len}")]
    ShortKey {
        /// The option the key came from.
        option: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A key file the daemon could not read (and the shim did not send).
    #[error("`{option}`: cannot read {path}: {error}")]
    KeyFile {
        /// The option naming the file.
        option: String,
        /// The file.
        path: String,
        /// The system's error.
        error: String,
    },
    /// A key that does not parse, or does not sign the algorithm.
    #[error("`{option}`: {source}")]
    BadKey {
        /// The option the key came from.
        option: String,
        /// What is wrong with it.
        source: SigningError,
    },
    /// An algorithm we do not sign with.
    #[error(
        "`{option}`: {found:?} is not an algorithm access tokens are signed with (HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, EdDSA)"
    )]
    Algorithm {
        /// The option.
        option: &'static str,
        /// What it was.
        found: String,
    },
    /// A previous (verify-only) key that is not an asymmetric key in PEM.
    #[error("`{option}`: a previous key must be an RSA, EC or Ed25519 key in PEM (public or private): {detail}")]
    PreviousKey {
        /// The option naming the file.
        option: String,
        /// What is wrong with it.
        detail: String,
    },
    /// An option the module does not read (a typo, most likely).
    #[error("unknown option `{0}`")]
    UnknownOption(String),
    /// The first key cannot sign (not expected: the reader checks each key against its algorithm).
    #[error("the signing key: {0}")]
    Signer(#[from] crate::token::MintError),
    /// A key whose public half could not be published (not expected with a key that parsed).
    #[error("publishing the public key: {0}")]
    Publish(String),
    /// A `kid` that is not a plain token.
    #[error("`{option}`: a key id must be 1 to 128 printable characters, found {found:?}")]
    KeyId {
        /// The option.
        option: String,
        /// What it was.
        found: String,
    },
}

/// The key an issuer signs with.
pub struct IssuerKey {
    /// The `kid` header of tokens it signs; always set for asymmetric keys.
    pub kid: Option<String>,
    /// The algorithm it signs with.
    pub alg: Algorithm,
    /// The key.
    pub key: SigningKey,
}

impl fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("key", &self.key)
            .finish()
    }
}

/// A key that only verifies: a previous signing key, kept so that tokens it signed stay valid and
/// its public half stays in the JWKS. Its private half is not needed.
#[derive(Debug, Clone)]
pub struct PreviousKey {
    /// Its `kid`.
    pub kid: String,
    /// The algorithm it signed with.
    pub alg: Algorithm,
    /// Its public key, SPKI DER.
    pub spki: Vec<u8>,
}

/// An issuer's settings: its keys, parsed, and what it puts in tokens and who may get them.
#[derive(Debug)]
pub struct IssuerSettings {
    /// The key tokens are signed with.
    pub signing: IssuerKey,
    /// Keys that only verify (earlier signing keys, during a rotation).
    pub previous: Vec<PreviousKey>,
    /// Everything else.
    pub policy: IssuerPolicy,
}

/// What an issuer puts in tokens and who may get them.
#[derive(Debug, Clone)]
pub struct IssuerPolicy {
    /// The Prosody host the module is loaded on (the MUC component, or the VirtualHost).
    pub name: String,
    /// Which module.
    pub module: IssuerModule,
    /// `iss` of its tokens: the MUC host (contrib), or `short_lived_token.issuer`.
    pub issuer: String,
    /// Lifetime of a token, seconds.
    pub ttl: u64,
    /// contrib: `access_token_audience`, the `aud` claim.
    pub audience: Option<String>,
    /// short-lived: `short_lived_token.accepted_audiences`, the services a token may be asked for.
    pub accepted_audiences: Vec<String>,
    /// short-lived: `region_name`, the `backend_region` claim.
    pub region: Option<String>,
    /// Tokens per minute one occupant may get (0: no limit).
    pub rate_per_minute: u32,
}

/// Reads an issuer table of the TOML file: as [`read_issuer`], and an option the module does not
/// read is an error (in `hello` it is a warning: the shim forwards what Prosody has).
pub fn read_issuer_table(name: &str, entry: &Map<String, Value>) -> Result<IssuerSettings, IssuerProblem> {
    if let Some(unknown) = unknown_issuer_options(entry).into_iter().next() {
        return Err(IssuerProblem::UnknownOption(unknown));
    }
    read_issuer(name, entry)
}

/// Reads an issuer entry of `hello` or of the TOML file: `{"module": …, "options": {…},
/// "files": {path: contents}}`. A key file not in `files` is read from disk.
pub fn read_issuer(name: &str, entry: &Map<String, Value>) -> Result<IssuerSettings, IssuerProblem> {
    let module = match entry.get("module") {
        Some(Value::String(m)) => IssuerModule::parse(m).ok_or_else(|| IssuerProblem::UnknownModule(m.clone()))?,
        None | Some(Value::Null) => return Err(IssuerProblem::Missing("module")),
        Some(other) => return Err(wrong("module", "a string", other)),
    };
    let empty = Map::new();
    let options = match entry.get("options") {
        Some(Value::Object(o)) => o,
        None | Some(Value::Null) => &empty,
        Some(other) => return Err(wrong("options", "a table", other)),
    };
    let files = match entry.get("files") {
        Some(Value::Object(files)) => files
            .iter()
            .filter_map(|(path, text)| Some((path.clone(), text.as_str()?.to_owned())))
            .collect(),
        _ => BTreeMap::new(),
    };
    let reader = Reader { files: &files };
    match module {
        IssuerModule::AccessToken => reader.access_token(name, options),
        IssuerModule::ShortLivedToken => reader.short_lived_token(name, options),
    }
}

/// The options `mod_access_token` reads.
pub const ACCESS_TOKEN_OPTIONS: &[&str] = &[
    "access_token_key",
    "access_token_key_file",
    "access_token_alg",
    "access_token_exp",
    "access_token_key_id",
    "access_token_audience",
    "access_token_previous_keys",
    "access_token_rate_limit",
];

/// The options `mod_short_lived_token` reads.
pub const SHORT_LIVED_TOKEN_OPTIONS: &[&str] = &["short_lived_token", "main_muc", "region_name"];

/// The fields of its `short_lived_token` table.
pub const SHORT_LIVED_TOKEN_FIELDS: &[&str] = &[
    "issuer",
    "accepted_audiences",
    "key_path",
    "key_id",
    "ttl_seconds",
    "previous_keys",
    "rate_limit",
];

/// The options of an issuer entry that its module does not read (typos, most likely), as
/// messages name them (`short_lived_token.ttl` for a field of the table).
pub fn unknown_issuer_options(entry: &Map<String, Value>) -> Vec<String> {
    let Some(Value::Object(options)) = entry.get("options") else {
        return Vec::new();
    };
    let known = match entry
        .get("module")
        .and_then(Value::as_str)
        .and_then(IssuerModule::parse)
    {
        Some(IssuerModule::AccessToken) => ACCESS_TOKEN_OPTIONS,
        Some(IssuerModule::ShortLivedToken) => SHORT_LIVED_TOKEN_OPTIONS,
        None => return Vec::new(),
    };
    let mut unknown: Vec<String> = options
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .cloned()
        .collect();
    if let Some(Value::Object(table)) = options.get("short_lived_token") {
        unknown.extend(
            table
                .keys()
                .filter(|k| !SHORT_LIVED_TOKEN_FIELDS.contains(&k.as_str()))
                .map(|k| format!("short_lived_token.{k}")),
        );
    }
    unknown
}

struct Reader<'a> {
    files: &'a BTreeMap<String, String>,
}

/// Default tokens per minute per occupant: enough for a page that asks again now and then, too
/// few to farm tokens.
pub const DEFAULT_RATE_PER_MINUTE: u64 = 6;

impl Reader<'_> {
    fn access_token(&self, name: &str, o: &Map<String, Value>) -> Result<IssuerSettings, IssuerProblem> {
        let alg_name = string(o, "access_token_alg")?.unwrap_or("HS256");
        let alg = parse_algorithm(alg_name).ok_or_else(|| IssuerProblem::Algorithm {
            option: "access_token_alg",
            found: alg_name.to_owned(),
        })?;
        // As contrib: the file, when set, replaces the key.
        let (option, text) = match string(o, "access_token_key_file")? {
            Some(path) => ("access_token_key_file", self.read("access_token_key_file", path)?),
            None => match string(o, "access_token_key")? {
                Some(key) => ("access_token_key", key.to_owned()),
                None => return Err(IssuerProblem::NoKey("`access_token_key` or `access_token_key_file`")),
            },
        };
        if text == CONTRIB_DEFAULT_KEY {
            return Err(IssuerProblem::DefaultKey(option));
        }
        let kid = key_id(o, "access_token_key_id")?;
        let signing = signing_key(option, text.as_bytes(), alg, kid)?;
        let previous = match o.get("access_token_previous_keys") {
            Some(list) => self.previous_keys("access_token_previous_keys", list, "key_file")?,
            None => Vec::new(),
        };
        let policy = IssuerPolicy {
            name: name.to_owned(),
            module: IssuerModule::AccessToken,
            issuer: name.to_owned(),
            ttl: count(o, "access_token_exp", 1, 86_400)?.unwrap_or(60),
            audience: string(o, "access_token_audience")?.map(str::to_owned),
            accepted_audiences: Vec::new(),
            region: None,
            rate_per_minute: rate(o, "access_token_rate_limit")?,
        };
        Ok(IssuerSettings {
            signing,
            previous,
            policy,
        })
    }

    fn short_lived_token(&self, name: &str, o: &Map<String, Value>) -> Result<IssuerSettings, IssuerProblem> {
        let table = match o.get("short_lived_token") {
            Some(Value::Object(t)) => t,
            None | Some(Value::Null) => return Err(IssuerProblem::Missing("short_lived_token")),
            Some(other) => return Err(wrong("short_lived_token", "a table", other)),
        };
        let field = |f: &'static str| format!("short_lived_token.{f}");
        let required = |f: &'static str, v: Option<&str>| {
            v.map(str::to_owned).ok_or(IssuerProblem::Missing(match f {
                "issuer" => "short_lived_token.issuer",
                "key_path" => "short_lived_token.key_path",
                _ => "short_lived_token.key_id",
            }))
        };
        let issuer = required("issuer", string_in(table, &field("issuer"), "issuer")?)?;
        let key_path = required("key_path", string_in(table, &field("key_path"), "key_path")?)?;
        let key_id = required("key_id", string_in(table, &field("key_id"), "key_id")?)?;
        check_kid(&field("key_id"), &key_id)?;
        let accepted_audiences = match table.get("accepted_audiences") {
            None | Some(Value::Null) => return Err(IssuerProblem::Missing("short_lived_token.accepted_audiences")),
            Some(v) => strings(&field("accepted_audiences"), v)?,
        };
        if accepted_audiences.is_empty() {
            return Err(IssuerProblem::Missing("short_lived_token.accepted_audiences"));
        }
        let ttl = count(table, "ttl_seconds", 1, 86_400)
            .map_err(|e| prefixed(e, "short_lived_token."))?
            .ok_or(IssuerProblem::Missing("short_lived_token.ttl_seconds"))?;
        if string(o, "main_muc")?.is_none() {
            return Err(IssuerProblem::Missing("main_muc"));
        }
        let pem = self.read(&field("key_path"), &key_path)?;
        let key = SigningKey::from_pem(pem.as_bytes()).map_err(|source| IssuerProblem::BadKey {
            option: field("key_path"),
            source,
        })?;
        // Jitsi's signs RS256 only; an EC or Ed25519 key signs its own algorithm.
        let alg = key.pick_algorithm(&[Algorithm::RS256]);
        let signing = IssuerKey {
            kid: Some(key_id),
            alg,
            key,
        };
        let previous = match table.get("previous_keys") {
            Some(list) => self.previous_keys(&field("previous_keys"), list, "key_path")?,
            None => Vec::new(),
        };
        let policy = IssuerPolicy {
            name: name.to_owned(),
            module: IssuerModule::ShortLivedToken,
            issuer,
            ttl,
            audience: None,
            accepted_audiences,
            region: string(o, "region_name")?.map(str::to_owned),
            rate_per_minute: rate(table, "rate_limit").map_err(|e| prefixed(e, "short_lived_token."))?,
        };
        Ok(IssuerSettings {
            signing,
            previous,
            policy,
        })
    }

    /// `{ { <path_field> = "…", key_id = "…" }, … }`: verify-only asymmetric keys, from public or
    /// private PEM files.
    fn previous_keys(&self, option: &str, list: &Value, path_field: &str) -> Result<Vec<PreviousKey>, IssuerProblem> {
        let items: &[Value] = match list {
            Value::Array(items) => items,
            Value::Object(o) if o.is_empty() => &[], // Prosody's JSON writes an empty table as {}
            Value::Null => &[],
            other => return Err(wrong(option, "a list of { key_id, key file } tables", other)),
        };
        let mut keys = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("{option}[{}]", i + 1);
            let Value::Object(item) = item else {
                return Err(wrong(&at, "a table", item));
            };
            let file_option = format!("{at}.{path_field}");
            let path = string_in(item, &file_option, path_field)?.ok_or_else(|| IssuerProblem::PreviousKey {
                option: file_option.clone(),
                detail: "no file given".into(),
            })?;
            let pem = self.read(&file_option, path)?;
            let (alg, spki) = previous_key(&file_option, pem.as_bytes())?;
            let kid = match string_in(item, &format!("{at}.key_id"), "key_id")? {
                Some(kid) => {
                    check_kid(&format!("{at}.key_id"), kid)?;
                    kid.to_owned()
                }
                None => crate::keys::default_kid(&spki),
            };
            keys.push(PreviousKey { kid, alg, spki });
        }
        Ok(keys)
    }

    fn read(&self, option: &str, path: &str) -> Result<String, IssuerProblem> {
        if let Some(text) = self.files.get(path) {
            return Ok(text.clone());
        }
        std::fs::read_to_string(Path::new(path)).map_err(|e| IssuerProblem::KeyFile {
            option: option.to_owned(),
            path: path.to_owned(),
            error: e.to_string(),
        })
    }
}

/// The key of `text` (an HMAC secret, or PEM private key text) for `alg`.
fn signing_key(option: &str, text: &[u8], alg: Algorithm, kid: Option<String>) -> Result<IssuerKey, IssuerProblem> {
    if is_hmac(alg) {
        if text.len() < MIN_HMAC_KEY_BYTES {
            return Err(IssuerProblem::ShortKey {
                option: option.to_owned(),
                len: text.len(),
            });
        }
        return Ok(IssuerKey {
            kid,
            alg,
            key: SigningKey::hmac(text),
        });
    }
    let bad = |source| IssuerProblem::BadKey {
        option: option.to_owned(),
        source,
    };
    let key = SigningKey::from_pem(text).map_err(bad)?;
    if !key.signs(alg) {
        return Err(bad(SigningError::WrongAlgorithm { kind: key.kind(), alg }));
    }
    let kid = kid.unwrap_or_else(|| derived_kid(&key));
    Ok(IssuerKey {
        kid: Some(kid),
        alg,
        key,
    })
}

/// The algorithm and public key (SPKI DER) of a previous key's PEM, private or public.
fn previous_key(option: &str, pem: &[u8]) -> Result<(Algorithm, Vec<u8>), IssuerProblem> {
    if let Ok(key) = SigningKey::from_pem(pem)
        && let Some(spki) = key.public_key_der()
    {
        return Ok((key.pick_algorithm(&[Algorithm::RS256]), spki));
    }
    let bad = |detail: String| IssuerProblem::PreviousKey {
        option: option.to_owned(),
        detail,
    };
    let public = crate::keys::VerifyingKey::from_pem(pem).map_err(|e| bad(e.to_string()))?;
    let alg = match public.kind() {
        crate::keys::KeyKind::Rsa { .. } => Algorithm::RS256,
        crate::keys::KeyKind::EcP256 => Algorithm::ES256,
        crate::keys::KeyKind::EcP384 => Algorithm::ES384,
        crate::keys::KeyKind::Ed25519 => Algorithm::EdDSA,
        crate::keys::KeyKind::Hmac => return Err(bad("an HMAC secret cannot be published".into())),
    };
    let block = pem::parse(pem).map_err(|e| bad(e.to_string()))?;
    if block.tag() != "PUBLIC KEY" {
        return Err(bad(format!("expected PUBLIC KEY, found {}", block.tag())));
    }
    Ok((alg, block.contents().to_vec()))
}

/// A key id for an asymmetric key the admin gave none ([`crate::keys::default_kid`]).
fn derived_kid(key: &SigningKey) -> String {
    crate::keys::default_kid(&key.public_key_der().unwrap_or_default())
}

fn check_kid(option: &str, kid: &str) -> Result<(), IssuerProblem> {
    if kid.is_empty() || kid.len() > 128 || kid.chars().any(|c| c.is_control()) {
        return Err(IssuerProblem::KeyId {
            option: option.to_owned(),
            found: kid.to_owned(),
        });
    }
    Ok(())
}

fn key_id(o: &Map<String, Value>, name: &'static str) -> Result<Option<String>, IssuerProblem> {
    let kid = string(o, name)?.map(str::to_owned);
    if let Some(kid) = &kid {
        check_kid(name, kid)?;
    }
    Ok(kid)
}

fn wrong(option: &str, expected: &'static str, found: &Value) -> IssuerProblem {
    IssuerProblem::WrongType {
        option: option.to_owned(),
        expected,
        found: crate::json::kind(found),
    }
}

fn prefixed(problem: IssuerProblem, prefix: &str) -> IssuerProblem {
    match problem {
        IssuerProblem::WrongType {
            option,
            expected,
            found,
        } => IssuerProblem::WrongType {
            option: format!("{prefix}{option}"),
            expected,
            found,
        },
        IssuerProblem::OutOfRange {
            option,
            min,
            max,
            found,
        } => IssuerProblem::OutOfRange {
            option: format!("{prefix}{option}"),
            min,
            max,
            found,
        },
        other => other,
    }
}

fn string<'a>(o: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, IssuerProblem> {
    string_in(o, name, name)
}

/// The string `key` of `o`, or None; `option` is how messages name it.
fn string_in<'a>(o: &'a Map<String, Value>, option: &str, key: &str) -> Result<Option<&'a str>, IssuerProblem> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong(option, "a string", other)),
    }
}

fn strings(option: &str, v: &Value) -> Result<Vec<String>, IssuerProblem> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| wrong(option, "a list of strings", item))
            })
            .collect(),
        Value::Object(o) if o.is_empty() => Ok(Vec::new()),
        other => Err(wrong(option, "a list of strings", other)),
    }
}

fn count(o: &Map<String, Value>, name: &str, min: u64, max: u64) -> Result<Option<u64>, IssuerProblem> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64))
            .filter(|n| (min..=max).contains(n))
            .map(Some)
            .ok_or_else(|| IssuerProblem::OutOfRange {
                option: name.to_owned(),
                min,
                max,
                found: v.to_string(),
            }),
    }
}

fn rate(o: &Map<String, Value>, name: &str) -> Result<u32, IssuerProblem> {
    Ok(count(o, name, 0, 10_000)?.unwrap_or(DEFAULT_RATE_PER_MINUTE) as u32)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn contrib(options: Value) -> Result<IssuerSettings, IssuerProblem> {
        let entry = json!({"module": "access_token", "options": options});
        read_issuer("conference.meet.example.com", entry.as_object().unwrap())
    }

    #[test]
    fn contrib_defaults_and_refusals() {
        let s = contrib(json!({"access_token_key": SECRET})).unwrap();
        assert_eq!(
            (s.policy.issuer.as_str(), s.policy.ttl, s.previous.len()),
            ("conference.meet.example.com", 60, 0)
        );
        assert_eq!(s.signing.alg, Algorithm::HS256);
        assert_eq!(s.policy.rate_per_minute, 6);
        assert_eq!(
            contrib(json!({})).unwrap_err(),
            IssuerProblem::NoKey("`access_token_key` or `access_token_key_file`")
        );
        assert_eq!(
            contrib(json!({"access_token_key": "mysecretkey"})).unwrap_err(),
            IssuerProblem::DefaultKey("access_token_key")
        );
        assert!(matches!(
            contrib(json!({"access_token_key": "short"})).unwrap_err(),
            IssuerProblem::ShortKey { len: 5, .. }
        ));
        assert!(matches!(
            contrib(json!({"access_token_key": SECRET, "access_token_alg": "none"})).unwrap_err(),
            IssuerProblem::Algorithm { .. }
        ));
        assert!(matches!(
            contrib(json!({"access_token_key": SECRET, "access_token_alg": "RS256"})).unwrap_err(),
            IssuerProblem::BadKey { .. }
        ));
        assert!(matches!(
            contrib(json!({"access_token_key": SECRET, "access_token_exp": 0})).unwrap_err(),
            IssuerProblem::OutOfRange { .. }
        ));
    }

    #[test]
    fn the_file_replaces_the_key_and_the_shim_may_send_its_contents() {
        let entry = json!({"module": "access_token",
            "options": {"access_token_key": "ignored", "access_token_key_file": "/nonexistent/k"},
            "files": {"/nonexistent/k": format!("{SECRET}\n")}});
        let s = read_issuer("c", entry.as_object().unwrap()).unwrap();
        assert!(matches!(&s.signing.key, SigningKey::Hmac(k) if k.len() == 33));
        let e = contrib(json!({"access_token_key_file": "/nonexistent/k"})).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("`access_token_key_file`: cannot read /nonexistent/k")
        );
    }

    #[test]
    fn unknown_options_are_named() {
        let entry = json!({"module": "short_lived_token", "options": {"main_muc": "m", "main_mucc": "x",
            "short_lived_token": {"issuer": "i", "ttl": 3}}});
        assert_eq!(
            unknown_issuer_options(entry.as_object().unwrap()),
            ["main_mucc", "short_lived_token.ttl"]
        );
        let entry = json!({"module": "access_token", "options": {"access_token_key": SECRET}});
        assert!(unknown_issuer_options(entry.as_object().unwrap()).is_empty());
    }

    #[test]
    fn short_lived_needs_what_jitsi_needs() {
        let e = read_issuer(
            "h",
            json!({"module": "short_lived_token", "options": {}})
                .as_object()
                .unwrap(),
        );
        assert_eq!(e.unwrap_err(), IssuerProblem::Missing("short_lived_token"));
        let e = read_issuer(
            "h",
            json!({"module": "short_lived_token", "options": {"short_lived_token": {"issuer": "i"}}})
                .as_object()
                .unwrap(),
        );
        assert_eq!(e.unwrap_err().to_string(), "`short_lived_token.key_path` is required");
        let e = read_issuer("h", json!({"module": "other"}).as_object().unwrap());
        assert!(matches!(e, Err(IssuerProblem::UnknownModule(_))));
    }
}
