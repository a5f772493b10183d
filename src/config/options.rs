//! The host options: one table of every option a host's settings are read from, with the kind of
//! value it takes and its default. The reader below takes both from the table, the shim's list of
//! options to forward (`prosody-shim/token_sidecar_options.lib.lua`) is generated from it, and
//! docs/CONFIG.md's tables are tested against it.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};

use super::error::{HostProblem, ValueProblem};

/// One host option.
#[derive(Debug)]
pub struct HostOption {
    /// The name, as in Prosody's config (and the TOML file).
    pub name: &'static str,
    /// What values it takes.
    pub kind: OptionKind,
    /// What applies when it is not set.
    pub default: OptionDefault,
    /// Whether Jitsi's Lua plugins read it too (false: one of ours).
    pub jitsi: bool,
}

/// What values an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    /// A string.
    String,
    /// An http or https URL.
    Url,
    /// A string or an array of strings (Prosody's `get_option_array` reads a string as one item).
    Strings,
    /// One or more algorithm names: a string or an array of strings.
    Algorithms,
    /// `true` or `false`.
    Boolean,
    /// A whole number from `min` to `max`.
    Count {
        /// The least value allowed.
        min: u64,
        /// The greatest value allowed.
        max: u64,
    },
    /// A number of seconds from `min` to `max`; `whole` refuses fractions. `min` 0 with
    /// `positive` refuses 0 itself.
    Seconds {
        /// Whether fractions of a second are refused.
        whole: bool,
        /// Whether 0 is refused.
        positive: bool,
        /// The greatest value allowed.
        max: u64,
    },
}

/// What applies when an option is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionDefault {
    /// The option must be set.
    Required,
    /// Nothing: the feature is off, or the value is unset.
    Unset,
    /// This boolean.
    Boolean(bool),
    /// This whole number.
    Count(u64),
    /// This many seconds.
    Seconds(u64),
    /// This string.
    String(&'static str),
    /// These strings.
    Strings(&'static [&'static str]),
    /// Worked out from other options; the text says how.
    Derived(&'static str),
}

const fn option(name: &'static str, kind: OptionKind, default: OptionDefault, jitsi: bool) -> HostOption {
    HostOption {
        name,
        kind,
        default,
        jitsi,
    }
}

use OptionDefault as D;
use OptionKind as K;

/// `app_id`.
pub const APP_ID: HostOption = option("app_id", K::String, D::Required, true);
/// `app_secret`.
pub const APP_SECRET: HostOption = option("app_secret", K::String, D::Unset, true);
/// `asap_key_server`.
pub const ASAP_KEY_SERVER: HostOption = option("asap_key_server", K::Url, D::Unset, true);
/// `cache_keys_url`.
pub const CACHE_KEYS_URL: HostOption = option("cache_keys_url", K::Url, D::Unset, true);
/// `signature_algorithm`.
pub const SIGNATURE_ALGORITHM: HostOption = option(
    "signature_algorithm",
    K::Algorithms,
    D::Derived("`RS256` if `asap_key_server` or `cache_keys_url` is set, else `HS256`"),
    true,
);
/// `allow_empty_token`.
pub const ALLOW_EMPTY_TOKEN: HostOption = option("allow_empty_token", K::Boolean, D::Boolean(false), true);
/// `asap_accepted_issuers`.
pub const ASAP_ACCEPTED_ISSUERS: HostOption =
    option("asap_accepted_issuers", K::Strings, D::Derived("`[app_id]`"), true);
/// `asap_accepted_audiences`.
pub const ASAP_ACCEPTED_AUDIENCES: HostOption = option("asap_accepted_audiences", K::Strings, D::Strings(&["*"]), true);
/// `asap_require_room_claim`.
pub const ASAP_REQUIRE_ROOM_CLAIM: HostOption = option("asap_require_room_claim", K::Boolean, D::Boolean(true), true);
/// `enable_domain_verification`.
pub const ENABLE_DOMAIN_VERIFICATION: HostOption =
    option("enable_domain_verification", K::Boolean, D::Boolean(true), true);
/// `muc_mapper_domain_base`.
pub const MUC_MAPPER_DOMAIN_BASE: HostOption = option("muc_mapper_domain_base", K::String, D::Unset, true);
/// `muc_mapper_domain_prefix`.
pub const MUC_MAPPER_DOMAIN_PREFIX: HostOption =
    option("muc_mapper_domain_prefix", K::String, D::String("conference"), true);
/// `muc_mapper_domain`.
pub const MUC_MAPPER_DOMAIN: HostOption = option("muc_mapper_domain", K::String, D::Derived("`<prefix>.<base>`"), true);
/// `jwt_pubkey_cache_size`.
pub const JWT_PUBKEY_CACHE_SIZE: HostOption = option(
    "jwt_pubkey_cache_size",
    K::Count { min: 1, max: 1_000_000 },
    D::Count(128),
    true,
);
/// `token_leeway`.
pub const TOKEN_LEEWAY: HostOption = option(
    "token_leeway",
    K::Seconds {
        whole: true,
        positive: false,
        max: 86_400,
    },
    D::Seconds(0),
    false,
);
/// `token_require_exp`.
pub const TOKEN_REQUIRE_EXP: HostOption = option("token_require_exp", K::Boolean, D::Boolean(false), false);
/// `asap_key_ttl`.
pub const ASAP_KEY_TTL: HostOption = option("asap_key_ttl", SECONDS, D::Seconds(3600), false);
/// `asap_key_stale_if_error`.
pub const ASAP_KEY_STALE_IF_ERROR: HostOption = option("asap_key_stale_if_error", SECONDS, D::Seconds(86_400), false);
/// `asap_key_negative_ttl`.
pub const ASAP_KEY_NEGATIVE_TTL: HostOption = option("asap_key_negative_ttl", SECONDS, D::Seconds(10), false);
/// `asap_key_fetch_timeout`.
pub const ASAP_KEY_FETCH_TIMEOUT: HostOption = option(
    "asap_key_fetch_timeout",
    K::Seconds {
        whole: false,
        positive: true,
        max: MAX_SECONDS,
    },
    D::Seconds(3),
    false,
);
/// `asap_key_fetch_retries`.
pub const ASAP_KEY_FETCH_RETRIES: HostOption = option(
    "asap_key_fetch_retries",
    K::Count { min: 0, max: 10 },
    D::Count(2),
    false,
);
/// `asap_key_fetch_rate`.
pub const ASAP_KEY_FETCH_RATE: HostOption = option(
    "asap_key_fetch_rate",
    K::Count { min: 1, max: 10_000 },
    D::Count(10),
    false,
);

/// Longest duration a seconds option takes (about 31 years): beyond it, a typo.
const MAX_SECONDS: u64 = 1_000_000_000;
const SECONDS: OptionKind = K::Seconds {
    whole: false,
    positive: false,
    max: MAX_SECONDS,
};

/// Every host option, Jitsi's first, in the order docs/CONFIG.md lists them.
pub const HOST_OPTIONS: &[&HostOption] = &[
    &APP_ID,
    &APP_SECRET,
    &ASAP_KEY_SERVER,
    &CACHE_KEYS_URL,
    &SIGNATURE_ALGORITHM,
    &ALLOW_EMPTY_TOKEN,
    &ASAP_ACCEPTED_ISSUERS,
    &ASAP_ACCEPTED_AUDIENCES,
    &ASAP_REQUIRE_ROOM_CLAIM,
    &ENABLE_DOMAIN_VERIFICATION,
    &MUC_MAPPER_DOMAIN_BASE,
    &MUC_MAPPER_DOMAIN_PREFIX,
    &MUC_MAPPER_DOMAIN,
    &JWT_PUBKEY_CACHE_SIZE,
    &TOKEN_LEEWAY,
    &TOKEN_REQUIRE_EXP,
    &ASAP_KEY_TTL,
    &ASAP_KEY_STALE_IF_ERROR,
    &ASAP_KEY_NEGATIVE_TTL,
    &ASAP_KEY_FETCH_TIMEOUT,
    &ASAP_KEY_FETCH_RETRIES,
    &ASAP_KEY_FETCH_RATE,
];

/// The option named `name`, if it is one.
pub fn host_option(name: &str) -> Option<&'static HostOption> {
    HOST_OPTIONS.iter().copied().find(|o| o.name == name)
}

/// The names in `options` that are not host options, in the map's order: the one check for
/// unknown options (an error in a TOML file, a warning in a shim's `hello`).
pub fn unknown_options(options: &Map<String, Value>) -> impl Iterator<Item = &str> {
    options.keys().map(String::as_str).filter(|k| host_option(k).is_none())
}

/// The shim's generated list of options to forward, as the text of
/// `prosody-shim/token_sidecar_options.lib.lua`.
pub fn shim_option_list() -> String {
    let mut out = String::from(
        "-- Generated from src/config/options.rs (the host-option table); do not edit by hand.\n\
         -- A test fails when this list and the table differ; it prints the text to put here.\n\
         -- The host options the shim forwards to token-sidecar, read with module:get_option.\n\
         return {\n",
    );
    for option in HOST_OPTIONS {
        out.push_str(&format!("\t\"{}\",\n", option.name));
    }
    out.push_str("};\n");
    out
}

impl OptionKind {
    /// The type as docs/CONFIG.md's tables write it.
    pub fn doc(self) -> String {
        match self {
            K::String => "string".into(),
            K::Url => "http(s) URL".into(),
            K::Strings => "string or array".into(),
            K::Algorithms => "string, or array of strings".into(),
            K::Boolean => "boolean".into(),
            K::Count { min: 1, max } if max >= 1_000_000 => "positive integer".into(),
            K::Count { min, max } => format!("whole number ({min}–{max})"),
            K::Seconds { whole: true, max, .. } => format!("whole seconds (0–{max})"),
            K::Seconds { positive: true, .. } => "seconds (> 0)".into(),
            K::Seconds { .. } => "seconds".into(),
        }
    }

    /// What a value of this kind is, for "must be …, found …" messages.
    fn expected(self) -> &'static str {
        match self {
            K::String => "a string",
            K::Url => "a string (an http or https URL)",
            K::Strings | K::Algorithms => "a string or an array of strings",
            K::Boolean => "a boolean (true or false)",
            K::Count { min: 0, .. } => "a whole number (0 or more)",
            K::Count { .. } => "a positive integer",
            K::Seconds { whole: true, .. } => "a whole number of seconds",
            K::Seconds { .. } => "a number of seconds (0 or more)",
        }
    }
}

impl fmt::Display for OptionDefault {
    /// The default as docs/CONFIG.md's tables write it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            D::Required => f.write_str("**required**"),
            D::Unset => f.write_str("—"),
            D::Boolean(b) => write!(f, "`{b}`"),
            D::Count(n) | D::Seconds(n) => write!(f, "`{n}`"),
            D::String(s) => write!(f, "`{s}`"),
            D::Strings(items) => {
                let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
                write!(f, "`[{}]`", quoted.join(", "))
            }
            D::Derived(text) => f.write_str(text),
        }
    }
}

/// Reads typed options out of one host's table, each with its kind and default from the table.
pub(super) struct Options<'a> {
    map: &'a Map<String, Value>,
}

type Read<T> = Result<T, HostProblem>;

impl<'a> Options<'a> {
    pub(super) fn new(map: &'a Map<String, Value>) -> Self {
        Options { map }
    }

    fn get(&self, option: &HostOption) -> Option<&'a Value> {
        // Lua's nil and JSON null both mean "not set".
        self.map.get(option.name).filter(|v| !v.is_null())
    }

    fn wrong(option: &HostOption, found: &Value) -> HostProblem {
        HostProblem::WrongType {
            option: option.name,
            expected: option.kind.expected(),
            found: type_name(found),
        }
    }

    /// A string option, `None` when unset.
    pub(super) fn string(&self, option: &HostOption) -> Read<Option<String>> {
        match self.get(option) {
            None => Ok(match option.default {
                D::String(s) => Some(s.to_owned()),
                _ => None,
            }),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(Self::wrong(option, other)),
        }
    }

    /// A URL option, checked as key sources check it.
    pub(super) fn url(&self, option: &'static HostOption) -> Read<Option<String>> {
        let Some(text) = self.string(option)? else {
            return Ok(None);
        };
        crate::keys::parse_http_url(&text).map_err(|error| HostProblem::KeySource {
            option: option.name,
            error,
        })?;
        Ok(Some(text))
    }

    /// A boolean option, its default when unset.
    pub(super) fn boolean(&self, option: &HostOption) -> Read<bool> {
        match self.get(option) {
            None => Ok(matches!(option.default, D::Boolean(true))),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(Self::wrong(option, other)),
        }
    }

    /// A string or an array of strings; its default when unset (`None` for a derived default).
    pub(super) fn strings(&self, option: &HostOption) -> Read<Option<Vec<String>>> {
        match self.get(option) {
            None => Ok(match option.default {
                D::Strings(items) => Some(items.iter().map(|s| (*s).to_owned()).collect()),
                _ => None,
            }),
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            // An empty Lua table (`{ }` in Prosody's config) reaches us from the shim as `{}`.
            Some(Value::Object(map)) if map.is_empty() => Ok(Some(Vec::new())),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(Self::wrong(option, other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(Self::wrong(option, other)),
        }
    }

    /// A whole number within the option's range; its default when unset.
    pub(super) fn count(&self, option: &HostOption) -> Read<u64> {
        let (K::Count { min, max }, D::Count(default)) = (option.kind, option.default) else {
            unreachable!("{} is not a count option", option.name)
        };
        let Some(v) = self.get(option) else {
            return Ok(default);
        };
        let n = whole_number(v).ok_or_else(|| Self::wrong(option, v))?;
        if !(min..=max).contains(&n) {
            return Err(HostProblem::Invalid {
                option: option.name,
                problem: ValueProblem::OutOfRange { min, max, unit: "" },
            });
        }
        Ok(n)
    }

    /// A number of seconds within the option's range; its default when unset.
    pub(super) fn seconds(&self, option: &HostOption) -> Read<Duration> {
        let (K::Seconds { whole, positive, max }, D::Seconds(default)) = (option.kind, option.default) else {
            unreachable!("{} is not a seconds option", option.name)
        };
        let Some(v) = self.get(option) else {
            return Ok(Duration::from_secs(default));
        };
        let seconds = if whole {
            whole_number(v).map(|n| n as f64)
        } else {
            v.as_f64().filter(|f| f.is_finite() && *f >= 0.0)
        }
        .ok_or_else(|| Self::wrong(option, v))?;
        let problem = if positive && seconds == 0.0 {
            Some(ValueProblem::Zero)
        } else if seconds > max as f64 {
            Some(ValueProblem::OutOfRange {
                min: 0,
                max,
                unit: " seconds",
            })
        } else {
            None
        };
        match problem {
            Some(problem) => Err(HostProblem::Invalid {
                option: option.name,
                problem,
            }),
            None => Ok(Duration::from_secs_f64(seconds)),
        }
    }
}

/// A whole, non-negative number (Lua numbers may arrive as floats such as `60.0`).
fn whole_number(v: &Value) -> Option<u64> {
    let n = v.as_number()?;
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e15)
            .map(|f| f as u64)
    })
}

/// What kind of value was found, in the words of TOML and Lua configs.
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_consistent() {
        for option in HOST_OPTIONS {
            assert_eq!(host_option(option.name).map(|o| o.name), Some(option.name));
            let fits = match (option.kind, option.default) {
                (K::Boolean, D::Boolean(_)) | (K::Count { .. }, D::Count(_)) | (K::Seconds { .. }, D::Seconds(_)) => {
                    true
                }
                (K::Boolean | K::Count { .. } | K::Seconds { .. }, _) => false,
                (K::Strings, D::Strings(_) | D::Derived(_)) => true,
                (_, D::Strings(_)) => false,
                _ => true,
            };
            assert!(
                fits,
                "{}: default {:?} does not fit kind {:?}",
                option.name, option.default, option.kind
            );
            if let (K::Count { min, max }, D::Count(d)) = (option.kind, option.default) {
                assert!((min..=max).contains(&d), "{}", option.name);
            }
        }
        let mut names: Vec<_> = HOST_OPTIONS.iter().map(|o| o.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), HOST_OPTIONS.len(), "a name is listed twice");
    }

    #[test]
    fn unknown_options_are_found_once() {
        let map: Map<String, Value> =
            serde_json::from_str(r#"{"app_id":"a","app_idd":1,"token_leeway":2,"modules_enabled":[]}"#).unwrap();
        assert_eq!(
            unknown_options(&map).collect::<Vec<_>>(),
            ["app_idd", "modules_enabled"]
        );
    }
}
