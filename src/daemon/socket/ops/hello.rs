//! `hello`: the protocol version, and the hosts the shim read from Prosody's config.
//!
//! A host's settings are refused when they are not valid (the host then refuses logins until a
//! `hello` brings valid ones) or when another open connection holds other settings for it
//! ([`crate::daemon::hosts`]); each refusal is logged at error level and named in `errors`.

use serde_json::{Map, Value};

use crate::access::Reporter;
use crate::config::HostSettings;
use crate::config::options::unknown_options;
use crate::daemon::state::{DAEMON_VERSION, Shared};
use crate::protocol::{ErrorCode, Hello, PROTOCOL_VERSION, Reply};

/// A `hello` from `connection`, which then holds the hosts it registers until it closes and the
/// listener calls [`crate::daemon::hosts::Registry::release`] for it.
pub(super) fn hello(shared: &Shared, connection: Reporter, id: Value, hello: Hello) -> Reply {
    register(shared, Some(connection), id, hello)
}

fn register(shared: &Shared, connection: Option<Reporter>, id: Value, hello: Hello) -> Reply {
    if hello.version != PROTOCOL_VERSION {
        return Reply::error(
            id,
            ErrorCode::UnsupportedVersion,
            format!(
                "this daemon speaks protocol version {PROTOCOL_VERSION}; the shim sent version {}",
                hello.version
            ),
        );
    }
    let mut accepted = Vec::new();
    let mut errors = Map::new();
    let mut warnings = Vec::new();
    for (name, options) in &hello.hosts {
        let settings = HostSettings::from_options(name, options, false);
        let host_warnings = settings.as_ref().map(HostSettings::warnings).unwrap_or_default();
        let registered = shared
            .registry
            .set_hello(name, options, settings, connection, hello.instance.as_deref())
            .map(|replaced| (replaced, host_warnings));
        match registered {
            Ok((replaced, host_warnings)) => {
                // A shim forwards what Prosody has: unknown names are worth a warning, not a refusal.
                for key in unknown_options(options) {
                    warnings.push(format!("host {name:?}: option `{key}` is not used by token-sidecar"));
                }
                if replaced {
                    tracing::info!(host = %name, "host registered by hello");
                    for warning in &host_warnings {
                        tracing::warn!("{warning}");
                    }
                }
                warnings.extend(host_warnings);
                accepted.push(Value::String(name.clone()));
            }
            Err(e) => {
                tracing::error!(host = %name, instance = ?hello.instance, "hello: settings refused: {e}");
                errors.insert(name.clone(), Value::String(e.to_string()));
            }
        }
    }
    let mut issuers_accepted = Vec::new();
    let mut issuer_errors = Map::new();
    for (name, entry) in &hello.issuers {
        for key in crate::access::settings::unknown_issuer_options(entry) {
            warnings.push(format!("issuer {name:?}: option `{key}` is not used by token-sidecar"));
        }
        match shared.issuers.set_hello(name, entry) {
            Ok(replaced) => {
                if replaced {
                    tracing::info!(issuer = %name, instance = ?hello.instance, "access-token issuer registered by hello");
                }
                issuers_accepted.push(Value::String(name.clone()));
            }
            Err(problem) => {
                tracing::error!(issuer = %name, "hello: access-token settings refused: {problem}");
                issuer_errors.insert(name.clone(), Value::String(problem.to_string()));
            }
        }
    }
    Reply::new(id, true)
        .with("version", PROTOCOL_VERSION)
        .with("daemon", DAEMON_VERSION)
        .with("accepted", accepted)
        .with("errors", errors)
        .with("warnings", warnings)
        .with("issuers_accepted", issuers_accepted)
        .with("issuer_errors", issuer_errors)
}
