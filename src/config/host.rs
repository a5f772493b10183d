//! One Prosody VirtualHost's token settings, built from its options.

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::error::{ConfigError, HostProblem, ValueProblem};
use super::options::{self as o, Options, unknown_options};
use crate::keys::{FetchSettings, KEY_WAIT_LIMIT, SHIM_TIMEOUT, parse_algorithm};
use crate::room::RoomPolicy;

/// Token settings of one Prosody VirtualHost. `Debug` never shows `app_secret` (nor a password in
/// a key URL).
#[derive(Clone, PartialEq)]
pub struct HostSettings {
    /// The VirtualHost.
    pub host: String,
    /// `app_id`: the application id, and the default accepted issuer.
    pub app_id: String,
    /// `app_secret`: the HMAC secret, as raw bytes of the string.
    pub app_secret: Option<String>,
    /// `asap_key_server`: base URL of the per-kid public key server.
    pub asap_key_server: Option<String>,
    /// `cache_keys_url`: URL of a key set fetched up front.
    pub cache_keys_url: Option<String>,
    /// The algorithms a token's `alg` may name (Jitsi's plugins accept exactly one).
    pub signature_algorithms: Vec<Algorithm>,
    /// `allow_empty_token`: a login without a token is anonymous.
    pub allow_empty_token: bool,
    /// `asap_accepted_issuers`.
    pub accepted_issuers: Vec<String>,
    /// `asap_accepted_audiences`.
    pub accepted_audiences: Vec<String>,
    /// `asap_require_room_claim`.
    pub require_room_claim: bool,
    /// `enable_domain_verification`.
    pub enable_domain_verification: bool,
    /// `muc_mapper_domain_base`.
    pub muc_mapper_domain_base: Option<String>,
    /// `muc_mapper_domain_prefix`.
    pub muc_mapper_domain_prefix: String,
    /// `muc_mapper_domain`.
    pub muc_mapper_domain: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf` (Jitsi's plugins allow none).
    pub leeway: u64,
    /// Refuse tokens without `exp` (Jitsi's plugins accept them: they never expire).
    pub require_exp: bool,
    /// How keys are fetched and cached.
    pub fetch: FetchSettings,
}

impl std::fmt::Debug for HostSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field by name, so that a new one must be placed here (and judged secret or not).
        let HostSettings {
            host,
            app_id,
            app_secret,
            asap_key_server,
            cache_keys_url,
            signature_algorithms,
            allow_empty_token,
            accepted_issuers,
            accepted_audiences,
            require_room_claim,
            enable_domain_verification,
            muc_mapper_domain_base,
            muc_mapper_domain_prefix,
            muc_mapper_domain,
            leeway,
            require_exp,
            fetch,
        } = self;
        f.debug_struct("HostSettings")
            .field("host", host)
            .field("app_id", app_id)
            .field("app_secret", &app_secret.as_ref().map(|_| Redacted))
            .field("asap_key_server", &asap_key_server.as_deref().map(without_password))
            .field("cache_keys_url", &cache_keys_url.as_deref().map(without_password))
            .field("signature_algorithms", signature_algorithms)
            .field("allow_empty_token", allow_empty_token)
            .field("accepted_issuers", accepted_issuers)
            .field("accepted_audiences", accepted_audiences)
            .field("require_room_claim", require_room_claim)
            .field("enable_domain_verification", enable_domain_verification)
            .field("muc_mapper_domain_base", muc_mapper_domain_base)
            .field("muc_mapper_domain_prefix", muc_mapper_domain_prefix)
            .field("muc_mapper_domain", muc_mapper_domain)
            .field("leeway", leeway)
            .field("require_exp", require_exp)
            .field("fetch", fetch)
            .finish()
    }
}

/// Shown in place of a secret.
struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `url` without the user information of its authority (`https://user:password@host/` →
/// `https://<redacted>@host/`).
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://<redacted>{}", &rest[at..]),
        None => url.to_owned(),
    }
}

impl HostSettings {
    /// Builds one host's settings from its options. `strict` refuses unknown option names (a TOML
    /// file is ours, so a typo there is an error; a shim forwards whatever Prosody has).
    ///
    /// Options from a shim (not `strict`) are also refused when one key fetch may take longer than
    /// a login through the shim waits for keys ([`HostProblem::KeyFetchTooLong`]): the login would
    /// fail as `token service unavailable` while the daemon still waited. A TOML file's host gets a
    /// warning instead ([`HostSettings::warnings`]): the file also serves `token-sidecar verify`
    /// and socket clients that wait as long as they like.
    pub fn from_options(host: &str, map: &Map<String, Value>, strict: bool) -> Result<HostSettings, ConfigError> {
        Self::read(host, map, strict).map_err(|problem| ConfigError::Host {
            host: host.to_owned(),
            problem,
        })
    }

    fn read(host: &str, map: &Map<String, Value>, strict: bool) -> Result<HostSettings, HostProblem> {
        if strict && let Some(unknown) = unknown_options(map).next() {
            return Err(HostProblem::UnknownOption(unknown.to_owned()));
        }
        let r = Options::new(map);
        let invalid = |option: &o::HostOption, problem| HostProblem::Invalid {
            option: option.name,
            problem,
        };

        let app_id = r
            .string(&o::APP_ID)?
            .filter(|s| !s.is_empty())
            .ok_or(HostProblem::AppIdMissing)?;
        let app_secret = r.string(&o::APP_SECRET)?;
        if app_secret.as_deref() == Some("") {
            return Err(invalid(&o::APP_SECRET, ValueProblem::EmptySecret));
        }
        let asap_key_server = r.url(&o::ASAP_KEY_SERVER)?;
        let cache_keys_url = r.url(&o::CACHE_KEYS_URL)?;
        if app_secret.is_none() && asap_key_server.is_none() && cache_keys_url.is_none() {
            return Err(HostProblem::NoKeySource);
        }

        let signature_algorithms = match r.strings(&o::SIGNATURE_ALGORITHM)? {
            Some(names) if names.is_empty() => return Err(invalid(&o::SIGNATURE_ALGORITHM, ValueProblem::EmptyList)),
            Some(names) => names
                .iter()
                .map(|name| {
                    parse_algorithm(name).ok_or_else(|| {
                        invalid(
                            &o::SIGNATURE_ALGORITHM,
                            ValueProblem::UnsupportedAlgorithm(name.clone()),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None if asap_key_server.is_some() || cache_keys_url.is_some() => vec![Algorithm::RS256],
            None => vec![Algorithm::HS256],
        };

        let fetch = FetchSettings {
            ttl: r.seconds(&o::ASAP_KEY_TTL)?,
            stale_if_error: r.seconds(&o::ASAP_KEY_STALE_IF_ERROR)?,
            negative_ttl: r.seconds(&o::ASAP_KEY_NEGATIVE_TTL)?,
            timeout: r.seconds(&o::ASAP_KEY_FETCH_TIMEOUT)?,
            retries: u32::try_from(r.count(&o::ASAP_KEY_FETCH_RETRIES)?).unwrap_or(u32::MAX),
            cache_size: r.count(&o::JWT_PUBKEY_CACHE_SIZE)?,
            unknown_kid_rate: u32::try_from(r.count(&o::ASAP_KEY_FETCH_RATE)?).unwrap_or(u32::MAX),
        };
        let fetches = asap_key_server.is_some() || cache_keys_url.is_some();
        if !strict
            && fetches
            && let Some(problem) = key_fetch_too_long(&fetch)
        {
            return Err(problem);
        }

        Ok(HostSettings {
            host: host.to_owned(),
            accepted_issuers: r
                .strings(&o::ASAP_ACCEPTED_ISSUERS)?
                .unwrap_or_else(|| vec![app_id.clone()]),
            accepted_audiences: r.strings(&o::ASAP_ACCEPTED_AUDIENCES)?.unwrap_or_default(),
            app_id,
            app_secret,
            asap_key_server,
            cache_keys_url,
            signature_algorithms,
            allow_empty_token: r.boolean(&o::ALLOW_EMPTY_TOKEN)?,
            require_room_claim: r.boolean(&o::ASAP_REQUIRE_ROOM_CLAIM)?,
            enable_domain_verification: r.boolean(&o::ENABLE_DOMAIN_VERIFICATION)?,
            muc_mapper_domain_base: r.string(&o::MUC_MAPPER_DOMAIN_BASE)?.filter(|s| !s.is_empty()),
            muc_mapper_domain_prefix: r.string(&o::MUC_MAPPER_DOMAIN_PREFIX)?.unwrap_or_default(),
            muc_mapper_domain: r.string(&o::MUC_MAPPER_DOMAIN)?.filter(|s| !s.is_empty()),
            leeway: r.seconds(&o::TOKEN_LEEWAY)?.as_secs(),
            require_exp: r.boolean(&o::TOKEN_REQUIRE_EXP)?,
            fetch,
        })
    }

    /// Things that load but will not work as the admin probably means, for a warning at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let asymmetric = self.asap_key_server.is_some() || self.cache_keys_url.is_some();
        if asymmetric && self.app_secret.is_some() {
            out.push(format!(
                "host {:?}: both a key server and app_secret are set; the key server wins and HS tokens are refused",
                self.host
            ));
        }
        if (self.asap_key_server.is_some() || self.cache_keys_url.is_some())
            && let Some(problem) = key_fetch_too_long(&self.fetch)
        {
            out.push(format!(
                "host {:?}: {problem}; logins through the Prosody shim would time out first",
                self.host
            ));
        }
        if self.allow_empty_token {
            out.push(format!(
                "host {:?}: allow_empty_token is on: clients without a token log in anonymously",
                self.host
            ));
        }
        if self.enable_domain_verification && self.muc_mapper_domain_base.is_none() {
            out.push(format!(
                "host {:?}: enable_domain_verification is on but muc_mapper_domain_base is not set: \
                 tenant rooms and sub \"*\" are refused as a server misconfiguration",
                self.host
            ));
        }
        out
    }

    /// The real MUC domain: `muc_mapper_domain`, else `<prefix>.<base>`; none without a base.
    pub fn muc_domain(&self) -> Option<String> {
        let base = self.muc_mapper_domain_base.as_ref()?;
        Some(
            self.muc_mapper_domain
                .clone()
                .unwrap_or_else(|| format!("{}.{}", self.muc_mapper_domain_prefix, base)),
        )
    }

    /// What the room rules need of these settings.
    pub fn room_policy(&self) -> RoomPolicy {
        RoomPolicy {
            enable_domain_verification: self.enable_domain_verification,
            require_room_claim: self.require_room_claim,
            allow_empty_token: self.allow_empty_token,
            muc_domain_base: self.muc_mapper_domain_base.clone(),
            muc_domain_prefix: self.muc_mapper_domain_prefix.clone(),
            muc_domain: self.muc_domain(),
        }
    }
}

/// [`HostProblem::KeyFetchTooLong`] when one fetch under `fetch` may outlast [`KEY_WAIT_LIMIT`].
fn key_fetch_too_long(fetch: &FetchSettings) -> Option<HostProblem> {
    let longest = fetch.longest_fetch();
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    (longest > KEY_WAIT_LIMIT).then(|| HostProblem::KeyFetchTooLong {
        timeout_ms: ms(fetch.timeout),
        retries: fetch.retries,
        longest_ms: ms(longest),
        limit_ms: ms(KEY_WAIT_LIMIT),
        shim_ms: ms(SHIM_TIMEOUT),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::keys::KeySourceError;

    fn host(toml_body: &str) -> Result<HostSettings, ConfigError> {
        let text = format!("[hosts.\"meet.example.com\"]\n{toml_body}");
        Config::from_toml(&text).map(|c| c.hosts["meet.example.com"].clone())
    }

    fn problem(toml_body: &str) -> HostProblem {
        match host(toml_body) {
            Err(ConfigError::Host { host, problem }) => {
                assert_eq!(host, "meet.example.com");
                problem
            }
            other => panic!("{toml_body:?}: expected a host problem, got {other:?}"),
        }
    }

    const BASE: &str = "app_id = \"a\"\napp_secret = \"s\"\n";

    #[test]
    fn defaults_come_from_the_option_table() {
        let h = host("app_id = \"myapp\"\napp_secret = \"s3cret\"").unwrap();
        assert_eq!(h.signature_algorithms, vec![Algorithm::HS256]);
        assert_eq!(h.accepted_issuers, vec!["myapp"]);
        assert_eq!(h.accepted_audiences, vec!["*"]);
        assert!(h.require_room_claim && h.enable_domain_verification && !h.allow_empty_token);
        assert_eq!(h.muc_mapper_domain_prefix, "conference");
        assert_eq!(h.fetch.cache_size, 128);
        assert_eq!(h.fetch.ttl, Duration::from_secs(3600));
        assert_eq!(h.fetch.stale_if_error, Duration::from_secs(86_400));
        assert_eq!(h.fetch.negative_ttl, Duration::from_secs(10));
        assert_eq!(h.fetch.timeout, Duration::from_secs(3));
        assert_eq!((h.fetch.retries, h.fetch.unknown_kid_rate), (2, 10));
        assert_eq!(h.leeway, 0);
        assert!(!h.require_exp);
        assert_eq!(h.muc_domain(), None);

        let h = host("app_id = \"a\"\nasap_key_server = \"https://keys.example.com/asap\"").unwrap();
        assert_eq!(h.signature_algorithms, vec![Algorithm::RS256]);
        let h = host("app_id = \"a\"\ncache_keys_url = \"https://keys.example.com/jwks\"").unwrap();
        assert_eq!(h.signature_algorithms, vec![Algorithm::RS256]);
    }

    #[test]
    fn a_bare_string_is_a_one_item_array() {
        let h = host(&format!(
            "{BASE}asap_accepted_issuers = \"x\"\nasap_accepted_audiences = [\"y\", \"z\"]"
        ))
        .unwrap();
        assert_eq!(h.accepted_issuers, vec!["x"]);
        assert_eq!(h.accepted_audiences, vec!["y", "z"]);
    }

    #[test]
    fn muc_domain_is_derived_from_base_and_prefix() {
        let h = host(&format!(
            "{BASE}muc_mapper_domain_base = \"example.com\"\nmuc_mapper_domain_prefix = \"muc\""
        ))
        .unwrap();
        assert_eq!(h.muc_domain().as_deref(), Some("muc.example.com"));
        let h = host(&format!(
            "{BASE}muc_mapper_domain_base = \"example.com\"\nmuc_mapper_domain = \"rooms.example.net\""
        ))
        .unwrap();
        assert_eq!(h.muc_domain().as_deref(), Some("rooms.example.net"));
    }

    #[test]
    fn problems_name_the_option() {
        use HostProblem as P;
        use ValueProblem as V;
        assert_eq!(problem("app_secret = \"s\""), P::AppIdMissing);
        assert_eq!(problem("app_id = \"a\""), P::NoKeySource);
        assert_eq!(
            problem("app_id = 5\napp_secret = \"s\""),
            P::WrongType {
                option: "app_id",
                expected: "a string",
                found: "an integer"
            }
        );
        assert_eq!(
            problem(&format!("{BASE}allow_empty_token = \"yes\"")),
            P::WrongType {
                option: "allow_empty_token",
                expected: "a boolean (true or false)",
                found: "a string"
            }
        );
        assert!(matches!(
            problem(&format!("{BASE}asap_accepted_issuers = [1]")),
            P::WrongType {
                option: "asap_accepted_issuers",
                found: "an integer",
                ..
            }
        ));
        assert_eq!(
            problem(&format!("{BASE}signature_algorithm = \"none\"")),
            P::Invalid {
                option: "signature_algorithm",
                problem: V::UnsupportedAlgorithm("none".into())
            }
        );
        assert_eq!(
            problem(&format!("{BASE}signature_algorithm = []")),
            P::Invalid {
                option: "signature_algorithm",
                problem: V::EmptyList
            }
        );
        assert_eq!(
            problem("app_id = \"a\"\nasap_key_server = \"file:///etc/keys\""),
            P::KeySource {
                option: "asap_key_server",
                error: KeySourceError::Scheme { scheme: "file".into() }
            }
        );
        assert!(matches!(
            problem("app_id = \"a\"\nasap_key_server = \"\""),
            P::KeySource {
                option: "asap_key_server",
                error: KeySourceError::NotAUrl { .. }
            }
        ));
        assert_eq!(
            problem("app_id = \"a\"\napp_secret = \"\""),
            P::Invalid {
                option: "app_secret",
                problem: V::EmptySecret
            }
        );
        assert!(matches!(
            problem(&format!("{BASE}jwt_pubkey_cache_size = 0")),
            P::Invalid {
                option: "jwt_pubkey_cache_size",
                problem: V::OutOfRange { min: 1, .. }
            }
        ));
        assert!(matches!(
            problem(&format!("{BASE}jwt_pubkey_cache_size = 1.5")),
            P::WrongType {
                option: "jwt_pubkey_cache_size",
                ..
            }
        ));
        assert!(matches!(
            problem(&format!("{BASE}asap_key_ttl = -1")),
            P::WrongType {
                option: "asap_key_ttl",
                ..
            }
        ));
        assert_eq!(
            problem(&format!("{BASE}asap_key_fetch_timeout = 0")),
            P::Invalid {
                option: "asap_key_fetch_timeout",
                problem: V::Zero
            }
        );
        assert!(matches!(
            problem(&format!("{BASE}asap_key_fetch_retries = 11")),
            P::Invalid {
                option: "asap_key_fetch_retries",
                problem: V::OutOfRange { max: 10, .. }
            }
        ));
        assert!(matches!(
            problem(&format!("{BASE}token_leeway = 86401")),
            P::Invalid {
                option: "token_leeway",
                problem: V::OutOfRange { max: 86_400, .. }
            }
        ));
        assert_eq!(
            problem(&format!("{BASE}app_idd = \"x\"")),
            P::UnknownOption("app_idd".into())
        );
    }

    #[test]
    fn texts_admins_see() {
        let shown = |body: &str| host(body).unwrap_err().to_string();
        assert_eq!(
            shown(&format!("{BASE}allow_empty_token = \"yes\"")),
            "host \"meet.example.com\": option `allow_empty_token` must be a boolean (true or false), found a string"
        );
        assert_eq!(
            shown("app_id = \"a\"\nasap_key_server = \"file:///etc/keys\""),
            "host \"meet.example.com\": option `asap_key_server`: file:// URLs are not supported; use http or https"
        );
        assert_eq!(
            shown(&format!("{BASE}signature_algorithm = \"none\"")),
            "host \"meet.example.com\": option `signature_algorithm`: \"none\" is not supported \
             (HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, EdDSA)"
        );
        assert_eq!(
            shown(&format!("{BASE}asap_key_fetch_retries = 11")),
            "host \"meet.example.com\": option `asap_key_fetch_retries`: must be at most 10"
        );
    }

    #[test]
    fn a_key_fetch_longer_than_the_shim_waits_is_refused_from_the_shim_and_warned_from_toml() {
        let options = |extra: &str| -> Map<String, Value> {
            serde_json::from_str(&format!(
                r#"{{"app_id":"a","asap_key_server":"https://keys.example.com/asap"{extra}}}"#
            ))
            .unwrap()
        };
        // The defaults fit: 3 tries of 3 s and 0.3 s of backoff is 9.3 s.
        assert!(HostSettings::from_options("h", &options(""), false).is_ok());
        // 3 × 3.05 s + 0.3 s is 9.45 s, just under the 9.5 s limit; 3 × 3.1 s + 0.3 s is over.
        assert!(HostSettings::from_options("h", &options(r#","asap_key_fetch_timeout":3.05"#), false).is_ok());
        assert!(HostSettings::from_options("h", &options(r#","asap_key_fetch_timeout":3.1"#), false).is_err());
        let refused = |extra: &str| match HostSettings::from_options("h", &options(extra), false) {
            Err(ConfigError::Host { problem, .. }) => problem,
            other => panic!("{extra}: expected a refusal, got {other:?}"),
        };
        assert_eq!(
            refused(r#","asap_key_fetch_timeout":60"#),
            HostProblem::KeyFetchTooLong {
                timeout_ms: 60_000,
                retries: 2,
                longest_ms: 180_300,
                limit_ms: 9_500,
                shim_ms: 10_000
            }
        );
        assert_eq!(
            refused(r#","asap_key_fetch_timeout":2,"asap_key_fetch_retries":4"#).to_string(),
            "options `asap_key_fetch_timeout` (2 s) and `asap_key_fetch_retries` (4) let one key fetch \
             take 11.5 s (every try timing out, with the backoff between tries), more than the 9.5 s a \
             login may wait for keys before the shim's `token_sidecar_timeout` (10 s by default) gives \
             up: lower one of them"
        );
        // Only hosts that fetch keys.
        let hs: Map<String, Value> =
            serde_json::from_str(r#"{"app_id":"a","app_secret":"s","asap_key_fetch_timeout":60}"#).unwrap();
        assert!(HostSettings::from_options("h", &hs, false).is_ok());

        // The TOML file warns.
        let h =
            host("app_id = \"a\"\ncache_keys_url = \"https://k.example/jwks\"\nasap_key_fetch_timeout = 60").unwrap();
        let warnings = h.warnings();
        assert!(
            warnings.iter().any(|w| w.contains("`asap_key_fetch_timeout` (60 s)")
                && w.ends_with("logins through the Prosody shim would time out first")),
            "{warnings:?}"
        );
        let hs_warnings = host(&format!("{BASE}asap_key_fetch_timeout = 60")).unwrap().warnings();
        assert!(
            !hs_warnings.iter().any(|w| w.contains("asap_key_fetch")),
            "{hs_warnings:?}"
        );
    }

    /// Issue 10, item 7: `Debug` of settings and keys never prints a secret.
    #[test]
    fn debug_never_prints_a_secret() {
        let h = host(
            "app_id = \"a\"\napp_secret = \"s3cret-never-shown\"\n\
             asap_key_server = \"https://user:hunter2-never-shown@keys.example.com/asap\"\n\
             cache_keys_url = \"https://k.example/jwks?u=a@b\"",
        )
        .unwrap();
        let shown = format!("{h:?} {h:#?}");
        assert!(!shown.contains("never-shown"), "{shown}");
        assert!(shown.contains("app_secret: Some(<redacted>)"), "{shown}");
        assert!(shown.contains("https://<redacted>@keys.example.com/asap"), "{shown}");
        // An `@` after the authority is not user information.
        assert!(shown.contains("https://k.example/jwks?u=a@b"), "{shown}");
        assert!(shown.contains("meet.example.com"), "{shown}");

        let verifier = crate::token::Verifier::new(h).unwrap();
        assert!(!format!("{verifier:?}").contains("never-shown"));

        let secret = b"s3cret-never-shown";
        let hmac = crate::keys::VerifyingKey::hmac(secret);
        let signing = crate::keys::SigningKey::hmac(secret);
        let shown = format!("{hmac:?} {hmac:#?} {signing:?} {signing:#?}");
        assert!(!shown.contains("never-shown"), "{shown}");
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            let generated = crate::keys::generate(alg).unwrap();
            let signing = crate::keys::SigningKey::from_pem(generated.private_pem().as_bytes()).unwrap();
            let shown = format!("{generated:?} {generated:#?} {signing:?} {signing:#?}");
            // The base64 body of the private key, in any 16-character piece.
            let body: String = generated
                .private_pem()
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect();
            for piece in body.as_bytes().chunks(16).filter(|c| c.len() == 16) {
                let piece = std::str::from_utf8(piece).unwrap();
                assert!(!shown.contains(piece), "{alg:?}: {shown}");
            }
        }
    }

    #[test]
    fn lenient_mode_ignores_unknown_options() {
        let map: Map<String, Value> =
            serde_json::from_str(r#"{"app_id":"a","app_secret":"s","something_new":1,"token_leeway":30.0}"#).unwrap();
        let h = HostSettings::from_options("h", &map, false).unwrap();
        assert_eq!((h.host.as_str(), h.leeway), ("h", 30));
    }
}
