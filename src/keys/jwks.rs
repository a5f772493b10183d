//! A pre-fetched key set (`cache_keys_url`): JWKS `{keys:[…]}` or a Firebase-style
//! `{kid: "-----BEGIN CERTIFICATE-----…"}` map.

use std::sync::Arc;

use super::{FetchSettings, KeyError, KeySourceStats, VerifyingKey};

pub struct JwksSource {
    url: String,
}

impl JwksSource {
    /// `url` must be an http or https URL. Nothing is fetched until the first lookup or `refresh`.
    pub fn new(url: &str, settings: FetchSettings) -> Result<Self, String> {
        todo!("{url} {settings:?}")
    }

    /// `Ok(Some(key))` when `kid` is in the set; `Ok(None)` when it is not, even after the one
    /// rate-limited refresh an unknown kid may trigger; `Err` when no set could ever be loaded.
    pub async fn key(&self, kid: &str) -> Result<Option<Arc<VerifyingKey>>, KeyError> {
        todo!("{} {kid}", self.url)
    }

    /// Fetches the set now; returns how many keys it holds.
    pub async fn refresh(&self) -> Result<usize, KeyError> {
        todo!()
    }

    pub fn stats(&self) -> KeySourceStats {
        todo!()
    }
}
