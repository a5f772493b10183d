//! The access-token issuers, by the Prosody host their module is loaded on.
//!
//! Like hosts, issuers come from the TOML file (`[issuers."…"]`, replaced on SIGHUP) and from the
//! shim's `hello`, which wins. Unlike hosts, an issuer whose settings are refused is remembered
//! as refused: every request for it is answered with an error naming the problem, never with a
//! token signed by an older or default key.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

use crate::access::settings::read_issuer_table;
use crate::access::{Issuer, IssuerProblem, read_issuer};

/// An `[issuers."…"]` table of the TOML file that is refused.
#[derive(Debug, thiserror::Error)]
#[error("[issuers.{name:?}] {problem}")]
pub struct RefusedTable {
    /// The Prosody host the module stands for.
    pub name: String,
    /// The problem.
    pub problem: IssuerProblem,
}

/// An issuer's state: ready, or refused with the reason.
#[derive(Debug, Clone)]
pub enum IssuerState {
    /// Ready to sign.
    Ready(Arc<Issuer>),
    /// Its settings were refused.
    Refused(Arc<IssuerProblem>),
}

/// `Debug` (derived for the table) shows the state only: `raw` holds keys.
#[derive(Clone)]
struct Entry {
    /// The entry as it came, to tell an unchanged re-`hello` from a change.
    raw: Map<String, Value>,
    state: IssuerState,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Tables {
    toml: HashMap<String, Entry>,
    hello: HashMap<String, Entry>,
}

/// The issuer table.
#[derive(Default)]
pub struct Issuers {
    tables: RwLock<Tables>,
}

fn build(name: &str, raw: &Map<String, Value>) -> IssuerState {
    match read_issuer(name, raw).and_then(Issuer::new) {
        Ok(issuer) => IssuerState::Ready(Arc::new(issuer)),
        Err(problem) => IssuerState::Refused(Arc::new(problem)),
    }
}

impl Issuers {
    /// The issuer in effect for `name`: from `hello`, else from the file.
    pub fn get(&self, name: &str) -> Option<IssuerState> {
        let t = self.tables.read().unwrap_or_else(|e| e.into_inner());
        t.hello.get(name).or_else(|| t.toml.get(name)).map(|e| e.state.clone())
    }

    /// Registers an issuer from `hello`; returns its problem when refused. Unchanged settings
    /// keep the issuer (and its rate-limit counts) in place.
    pub fn set_hello(&self, name: &str, raw: &Map<String, Value>) -> Result<bool, Arc<IssuerProblem>> {
        if let Some(existing) = self
            .tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .hello
            .get(name)
            .filter(|e| e.raw == *raw)
        {
            return match &existing.state {
                IssuerState::Ready(_) => Ok(false),
                IssuerState::Refused(p) => Err(p.clone()),
            };
        }
        let state = build(name, raw);
        let result = match &state {
            IssuerState::Ready(_) => Ok(true),
            IssuerState::Refused(p) => Err(p.clone()),
        };
        self.tables.write().unwrap_or_else(|e| e.into_inner()).hello.insert(
            name.to_owned(),
            Entry {
                raw: raw.clone(),
                state,
            },
        );
        result
    }

    /// Replaces the issuers of the TOML file (at start and on SIGHUP), keeping those whose table
    /// is unchanged. A table that is refused (an unknown option included) changes nothing.
    pub fn set_config(
        &self,
        issuers: &std::collections::BTreeMap<String, Map<String, Value>>,
    ) -> Result<(), RefusedTable> {
        let old = self.tables.read().unwrap_or_else(|e| e.into_inner()).toml.clone();
        let mut new = HashMap::new();
        for (name, raw) in issuers {
            let entry = match old.get(name) {
                Some(e) if e.raw == *raw => e.clone(),
                _ => {
                    let issuer =
                        read_issuer_table(name, raw)
                            .and_then(Issuer::new)
                            .map_err(|problem| RefusedTable {
                                name: name.clone(),
                                problem,
                            })?;
                    Entry {
                        raw: raw.clone(),
                        state: IssuerState::Ready(Arc::new(issuer)),
                    }
                }
            };
            new.insert(name.clone(), entry);
        }
        self.tables.write().unwrap_or_else(|e| e.into_inner()).toml = new;
        Ok(())
    }

    /// Every issuer that is ready (hello first, then the file's not shadowed by hello).
    pub fn ready(&self) -> Vec<Arc<Issuer>> {
        let t = self.tables.read().unwrap_or_else(|e| e.into_inner());
        let from_file = t.toml.iter().filter(|(name, _)| !t.hello.contains_key(*name));
        let mut out: Vec<(String, Arc<Issuer>)> = t
            .hello
            .iter()
            .chain(from_file)
            .filter_map(|(name, e)| match &e.state {
                IssuerState::Ready(i) => Some((name.clone(), i.clone())),
                IssuerState::Refused(_) => None,
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.into_iter().map(|(_, i)| i).collect()
    }

    /// Each issuer (hello's, then the file's not shadowed by hello) as `stats` and `/healthz`
    /// show it: `{"module", "ready": true}` or `{"ready": false, "problem"}`.
    pub fn to_json(&self) -> Value {
        let t = self.tables.read().unwrap_or_else(|e| e.into_inner());
        let from_file = t.toml.iter().filter(|(name, _)| !t.hello.contains_key(*name));
        let described: Map<String, Value> = t
            .hello
            .iter()
            .chain(from_file)
            .map(|(name, e)| {
                let v = match &e.state {
                    IssuerState::Ready(i) => serde_json::json!({"module": i.policy().module.name(), "ready": true}),
                    IssuerState::Refused(p) => serde_json::json!({"ready": false, "problem": p.to_string()}),
                };
                (name.clone(), v)
            })
            .collect();
        Value::Object(described)
    }
}
