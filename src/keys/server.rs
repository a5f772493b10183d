//! The ASAP key server: one PEM public key per kid at `<base>/<sha256hex(kid)>.pem`.

use std::sync::Arc;

use super::{FetchSettings, KeyError, KeySourceStats, VerifyingKey};

pub struct KeyServer {
    base: String,
}

impl KeyServer {
    /// `base_url` must be an http or https URL.
    pub fn new(base_url: &str, settings: FetchSettings) -> Result<Self, String> {
        todo!("{base_url} {settings:?}")
    }

    /// The URL the key for `kid` is fetched from: base, exactly one `/`, hex SHA-256 of the kid, `.pem`.
    pub fn url_for(&self, kid: &str) -> String {
        todo!("{} {kid}", self.base)
    }

    /// The key for `kid`: from the cache, or fetched (once, however many callers wait for it).
    pub async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, KeyError> {
        todo!("{kid}")
    }

    pub fn stats(&self) -> KeySourceStats {
        todo!()
    }
}
