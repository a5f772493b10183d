//! `stats`: counters, limits, remembered logins, key sources, occupancy and the store.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde_json::{Map, Value, json};

use crate::daemon::state::{CacheUser, DAEMON_VERSION, Shared};
use crate::protocol::{Op, Outcome, Reply};
use crate::store::StoreOp;

/// The store: its kind and, when shared, its state (`owned`: the entries this shard publishes).
fn store(shared: &Shared) -> Value {
    let status = &shared.store;
    let revocations = shared.revocations.count(crate::clock::unix_now());
    if status.kind() == crate::config::StoreKind::Memory {
        return json!({"kind": "memory", "revocations": revocations});
    }
    let errors: Map<String, Value> = StoreOp::ALL
        .iter()
        .map(|op| (op.name().to_owned(), status.errors(*op).into()))
        .collect();
    json!({
        "kind": status.kind().name(),
        "shard": status.shard(),
        "state": status.reachability().name(),
        "since": status.since(),
        "last_error": status.last_error(),
        "backlog": status.backlog(),
        "dropped_leaves": status.dropped_leaves(),
        "owned": shared.occupancy.counts().occupants,
        "revocations": revocations,
        "errors": errors,
    })
}

pub(super) fn stats(shared: &Shared, id: Value) -> Reply {
    let mut ops = Map::new();
    for op in Op::ALL {
        let mut counts = Map::new();
        for (outcome, n) in shared.stats.replies(op) {
            let name = match outcome {
                Outcome::Ok => "ok",
                Outcome::Refused => "refused",
                Outcome::Error => "error",
            };
            counts.insert(name.into(), n.into());
        }
        ops.insert(op.name().into(), Value::Object(counts));
    }
    let mut hosts = BTreeMap::new();
    for host in shared.registry.all() {
        let (key_server, key_set) = host.verifier.key_stats();
        hosts.insert(
            host.name.clone(),
            json!({ "origin": host.origin.as_str(), "key_server": key_server, "key_set": key_set }),
        );
    }
    let settings = &shared.settings;
    let global_in_use = settings.max_inflight - shared.global.available_permits();
    let (hits, misses) = CacheUser::ALL
        .iter()
        .map(|user| shared.stats.cache_lookups(*user))
        .fold((0, 0), |(h, m), (hits, misses)| (h + hits, m + misses));
    Reply::new(id, true)
        .with("daemon", DAEMON_VERSION)
        .with("ops", ops)
        .with(
            "connections",
            json!({
                "open": shared.stats.connections.load(Ordering::Relaxed),
                "accepted": shared.stats.accepted.load(Ordering::Relaxed),
                "limit": settings.max_connections,
            }),
        )
        .with(
            "inflight",
            json!({
                "now": global_in_use,
                "limit": settings.max_inflight,
                "per_connection_limit": settings.max_inflight_per_connection,
            }),
        )
        .with(
            "verify_cache",
            json!({
                "entries": shared.logins.count(),
                "capacity": settings.verify_cache_size,
                "hits": hits,
                "misses": misses,
            }),
        )
        .with("hosts", serde_json::to_value(hosts).unwrap_or(Value::Null))
        .with("issuers", shared.issuers.to_json())
        .with("occupancy", {
            let counts = shared.occupancy.counts();
            json!({"rooms": counts.rooms, "occupants": counts.occupants})
        })
        .with("store", store(shared))
}
