//! `[http]`: the optional HTTP listener for API services — the JWKS of the access-token keys,
//! RFC 7662 introspection, and a health check — and for Prometheus (`GET /metrics`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::Value;

/// The HTTP listener's settings (`[http]`). No `listen`, no listener. `Debug` never shows the
/// secret.
#[derive(Clone, PartialEq)]
pub struct HttpSettings {
    /// Address to listen on (`listen`, e.g. "127.0.0.1:5290").
    pub listen: Option<SocketAddr>,
    /// The bearer secret introspection callers present (`introspect_secret`, or the contents of
    /// `introspect_secret_file` without surrounding whitespace).
    pub introspect_secret: Option<String>,
    /// Serve introspection without a secret (`introspect_without_secret`); only on a loopback
    /// listener.
    pub introspect_without_secret: bool,
    /// Serve `GET /metrics` (`metrics`, default true).
    pub metrics: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: None,
            introspect_secret: None,
            introspect_without_secret: false,
            metrics: true,
        }
    }
}

impl std::fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let HttpSettings {
            listen,
            introspect_secret,
            introspect_without_secret,
            metrics,
        } = self;
        f.debug_struct("HttpSettings")
            .field("listen", listen)
            .field("introspect_secret", &introspect_secret.as_ref().map(|_| "<redacted>"))
            .field("introspect_without_secret", introspect_without_secret)
            .field("metrics", metrics)
            .finish()
    }
}

/// A problem in `[http]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpProblem {
    /// `[http]` is not a table.
    #[error("[http] must be a table")]
    NotATable,
    /// An option `[http]` does not have.
    #[error("[http]: unknown option `{0}`")]
    UnknownOption(String),
    /// An option of the wrong type.
    #[error("[http] {option}: expected {expected}")]
    WrongType {
        /// The option.
        option: &'static str,
        /// What it takes.
        expected: &'static str,
    },
    /// `listen` is not an address.
    #[error("[http] listen: expected an address and port such as \"127.0.0.1:5290\", found {0:?}")]
    Listen(String),
    /// The secret file cannot be read.
    #[error("[http] introspect_secret_file: cannot read {path}: {error}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// A secret too short to be one.
    #[error("[http] introspect_secret: at least 16 characters, found {0}")]
    ShortSecret(usize),
    /// Both a secret and a file.
    #[error("[http]: set introspect_secret or introspect_secret_file, not both")]
    TwoSecrets,
    /// Introspection without a secret on a listener other machines can reach.
    #[error(
        "[http] introspect_without_secret = true is allowed only when listen is a loopback address (127.0.0.0/8 or ::1)"
    )]
    OpenIntrospection,
}

impl HttpSettings {
    /// Reads `[http]`.
    pub(super) fn from_table(value: &Value) -> Result<HttpSettings, HttpProblem> {
        let Value::Object(map) = value else {
            return Err(HttpProblem::NotATable);
        };
        let mut http = HttpSettings::default();
        let mut secret_file = None;
        for (key, v) in map {
            let text = |option| {
                v.as_str().ok_or(HttpProblem::WrongType {
                    option,
                    expected: "a string",
                })
            };
            match key.as_str() {
                "listen" => {
                    let s = text("listen")?;
                    http.listen = Some(s.parse().map_err(|_| HttpProblem::Listen(s.to_owned()))?);
                }
                "introspect_secret" => http.introspect_secret = Some(text("introspect_secret")?.to_owned()),
                "introspect_secret_file" => secret_file = Some(PathBuf::from(text("introspect_secret_file")?)),
                "introspect_without_secret" => {
                    http.introspect_without_secret = v.as_bool().ok_or(HttpProblem::WrongType {
                        option: "introspect_without_secret",
                        expected: "true or false",
                    })?;
                }
                "metrics" => {
                    http.metrics = v.as_bool().ok_or(HttpProblem::WrongType {
                        option: "metrics",
                        expected: "true or false",
                    })?;
                }
                other => return Err(HttpProblem::UnknownOption(other.to_owned())),
            }
        }
        if let Some(path) = secret_file {
            if http.introspect_secret.is_some() {
                return Err(HttpProblem::TwoSecrets);
            }
            let text = std::fs::read_to_string(&path).map_err(|e| HttpProblem::SecretFile {
                path: path.clone(),
                error: e.to_string(),
            })?;
            http.introspect_secret = Some(text.trim().to_owned());
        }
        if let Some(secret) = &http.introspect_secret
            && secret.len() < 16
        {
            return Err(HttpProblem::ShortSecret(secret.len()));
        }
        if http.introspect_without_secret && !http.listen.is_some_and(|a| a.ip().is_loopback()) {
            return Err(HttpProblem::OpenIntrospection);
        }
        Ok(http)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_and_refuses() {
        let h = HttpSettings::from_table(&json!({"listen": "127.0.0.1:5290", "introspect_secret": "0123456789abcdef"}))
            .unwrap();
        assert_eq!(h.listen, Some("127.0.0.1:5290".parse().unwrap()));
        assert!(h.metrics, "metrics are served by default");
        assert!(!HttpSettings::from_table(&json!({"metrics": false})).unwrap().metrics);
        assert_eq!(
            HttpSettings::from_table(&json!({"metrics": "no"})),
            Err(HttpProblem::WrongType {
                option: "metrics",
                expected: "true or false"
            })
        );
        assert_eq!(
            HttpSettings::from_table(&json!({"listen": "0.0.0.0:1", "introspect_without_secret": true})),
            Err(HttpProblem::OpenIntrospection)
        );
        assert!(HttpSettings::from_table(&json!({"listen": "[::1]:1", "introspect_without_secret": true})).is_ok());
        assert_eq!(
            HttpSettings::from_table(&json!({"introspect_secret": "short"})),
            Err(HttpProblem::ShortSecret(5))
        );
        assert!(matches!(
            HttpSettings::from_table(&json!({"listen": "localhost"})),
            Err(HttpProblem::Listen(_))
        ));
        assert!(matches!(
            HttpSettings::from_table(&json!({"port": 1})),
            Err(HttpProblem::UnknownOption(_))
        ));
    }
}
