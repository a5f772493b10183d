//! docker-jitsi-meet's environment: the host its `JWT_*` variables describe, as its Prosody config
//! template would set it, for a daemon run in (or beside) that stack without a file.

use serde_json::{Map, Value};

use super::error::ConfigError;
use super::host::HostSettings;

/// The host docker-jitsi-meet's environment describes: only when `ENABLE_AUTH` is on and
/// `PROSODY_AUTH_TYPE` (else `AUTH_TYPE`) is `jwt`, for the VirtualHost `XMPP_DOMAIN`, with the
/// MUC prefix taken from `XMPP_MUC_DOMAIN`'s first label (default `muc`). `get` reads one variable
/// (`std::env::var` in the daemon; a map in tests).
///
/// Differences from the template, on purpose: list variables are split on commas with blanks
/// trimmed and empty items dropped (the template keeps `" b"` of `"a, b"` and then never matches
/// it); a boolean is on for `1`, `true`, `yes` or `on` in any case.
pub fn env_host(get: impl Fn(&str) -> Option<String>) -> Result<Option<HostSettings>, ConfigError> {
    let set = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let on = |name: &str| {
        set(name).is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
    };
    // docker-jitsi-meet's Prosody takes PROSODY_AUTH_TYPE, which defaults to AUTH_TYPE.
    let auth_type = set("PROSODY_AUTH_TYPE").or_else(|| set("AUTH_TYPE"));
    let (Some(domain), true, true) = (
        set("XMPP_DOMAIN"),
        on("ENABLE_AUTH"),
        auth_type.is_some_and(|t| t.trim() == "jwt"),
    ) else {
        return Ok(None);
    };
    let domain = domain.trim().to_owned();
    let list = |v: String| -> Value {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Value::from)
            .collect()
    };
    let mut options = Map::new();
    let mut put = |option: &str, value: Option<Value>| {
        if let Some(value) = value {
            options.insert(option.to_owned(), value);
        }
    };
    put("app_id", get("JWT_APP_ID").map(Value::from));
    put("app_secret", set("JWT_APP_SECRET").map(Value::from));
    put("asap_key_server", set("JWT_ASAP_KEYSERVER").map(Value::from));
    put("allow_empty_token", Some(on("JWT_ALLOW_EMPTY").into()));
    put(
        "enable_domain_verification",
        Some(on("JWT_ENABLE_DOMAIN_VERIFICATION").into()),
    );
    put(
        "signature_algorithm",
        set("JWT_SIGN_TYPE").map(|v| Value::from(v.trim())),
    );
    put("asap_accepted_issuers", set("JWT_ACCEPTED_ISSUERS").map(list));
    put("asap_accepted_audiences", set("JWT_ACCEPTED_AUDIENCES").map(list));
    put("muc_mapper_domain_base", Some(Value::from(domain.clone())));
    // As the template: the first label of XMPP_MUC_DOMAIN (muc.meet.jitsi → "muc").
    let prefix = set("XMPP_MUC_DOMAIN")
        .and_then(|muc| muc.trim().split('.').next().map(str::to_owned))
        .filter(|label| !label.is_empty())
        .unwrap_or_else(|| "muc".into());
    put("muc_mapper_domain_prefix", Some(Value::from(prefix)));
    HostSettings::from_options(&domain, &options, true)
        .map(Some)
        .map_err(|e| ConfigError::Environment(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: std::collections::HashMap<String, String> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name: &str| vars.get(name).cloned()
    }

    #[test]
    fn docker_environment_defines_the_xmpp_domain_host() {
        let base = [
            ("XMPP_DOMAIN", "meet.jitsi"),
            ("ENABLE_AUTH", "1"),
            ("AUTH_TYPE", "jwt"),
            ("JWT_APP_ID", "my_app"),
            ("JWT_APP_SECRET", "s3cret"),
        ];
        let h = env_host(env(&base)).unwrap().expect("a host");
        assert_eq!(h.host, "meet.jitsi");
        assert_eq!(h.app_id, "my_app");
        assert_eq!(h.muc_domain().as_deref(), Some("muc.meet.jitsi"));
        assert!(!h.enable_domain_verification, "docker writes false unless set");
        assert!(!h.allow_empty_token);
        assert_eq!(h.accepted_issuers, vec!["my_app".to_owned()]);

        let mut more = base.to_vec();
        more.extend([
            ("JWT_ACCEPTED_ISSUERS", "a, b,,c "),
            ("JWT_ACCEPTED_AUDIENCES", "jitsi"),
            ("JWT_ALLOW_EMPTY", "true"),
            ("JWT_ENABLE_DOMAIN_VERIFICATION", "1"),
            ("XMPP_MUC_DOMAIN", "conference.meet.jitsi"),
        ]);
        let h = env_host(env(&more)).unwrap().unwrap();
        assert_eq!(h.accepted_issuers, vec!["a", "b", "c"]);
        assert_eq!(h.accepted_audiences, vec!["jitsi"]);
        assert!(h.allow_empty_token && h.enable_domain_verification);
        assert_eq!(h.muc_domain().as_deref(), Some("conference.meet.jitsi"));

        // PROSODY_AUTH_TYPE, when set, is the one that counts (as in docker-jitsi-meet).
        let mut vars = base.to_vec();
        vars.push(("PROSODY_AUTH_TYPE", "internal"));
        assert!(env_host(env(&vars)).unwrap().is_none(), "PROSODY_AUTH_TYPE=internal");

        // Off unless ENABLE_AUTH is on and AUTH_TYPE is jwt.
        for (k, v) in [("ENABLE_AUTH", "0"), ("AUTH_TYPE", "internal")] {
            let mut vars = base.to_vec();
            vars.retain(|(name, _)| *name != k);
            vars.push((k, v));
            assert!(env_host(env(&vars)).unwrap().is_none(), "{k}={v}");
        }
        // No secret and no key server: the same refusal as a TOML table, naming the environment.
        let no_key: Vec<_> = base.iter().copied().filter(|(k, _)| *k != "JWT_APP_SECRET").collect();
        let e = env_host(env(&no_key)).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Environment(inner) if matches!(**inner, ConfigError::Host { .. })),
            "{e}"
        );

        // A TOML table for the same VirtualHost wins.
        let mut config =
            Config::from_toml("[hosts.\"meet.jitsi\"]\napp_id = \"from_toml\"\napp_secret = \"x\"\n").unwrap();
        config.add_env_host(env(&base)).unwrap();
        assert_eq!(config.hosts["meet.jitsi"].app_id, "from_toml");
        let mut empty = Config::default();
        empty.add_env_host(env(&base)).unwrap();
        assert_eq!(empty.hosts["meet.jitsi"].app_id, "my_app");
        assert!(empty.env_hosts.contains("meet.jitsi"));
    }
}
