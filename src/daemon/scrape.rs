//! `GET /metrics`: the daemon's counters and gauges in Prometheus' text format (docs/METRICS.md),
//! encoded by prometheus-client at each scrape. Nothing is kept for it between scrapes: the
//! counters are the daemon's own atomics ([`super::state::Stats`], [`super::metrics::Metrics`]),
//! and the gauges (in flight, connections, remembered logins, occupancy, the store) are read when
//! asked.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::state::{CacheUser, Shared};
use crate::protocol::{Op, Outcome};
use crate::store::StoreOp;

/// The prefix of every series.
pub const PREFIX: &str = "token_sidecar";

/// The content type of OpenMetrics text, which a scraper gets when its `Accept` names it.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Reads the daemon's state at each scrape.
struct Daemon(Arc<Shared>);

impl fmt::Debug for Daemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Daemon")
    }
}

/// A registry over the daemon's state: every series, named `token_sidecar_…`.
pub fn registry(shared: Arc<Shared>) -> Registry {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(Daemon(shared)));
    registry
}

/// The scrape's body and content type: OpenMetrics text when `openmetrics`, else the Prometheus
/// text format 0.0.4.
pub fn render(registry: &Registry, openmetrics: bool) -> Result<(&'static str, String), fmt::Error> {
    let mut body = String::with_capacity(32 * 1024);
    if openmetrics {
        prometheus_client::encoding::text::encode(&mut body, registry)?;
        Ok((OPENMETRICS_CONTENT_TYPE, body))
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut body, registry)?;
        Ok((prometheus_client::encoding::prometheus_text::CONTENT_TYPE, body))
    }
}

/// Whether an `Accept` header asks for OpenMetrics text, as Prometheus' does.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue + fmt::Debug + Send + Sync + 'static>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: N,
) -> fmt::Result {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?)
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "ok",
        Outcome::Refused => "refused",
        Outcome::Error => "error",
    }
}

/// A count that fits a gauge's i64.
fn signed(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The store's series: up, since when, backlog, revocations in force, errors by operation.
fn encode_store(encoder: &mut DescriptorEncoder, shared: &Shared) -> fmt::Result {
    let status = &shared.store;
    gauge(
        encoder,
        "store_up",
        "1 when the store answered the last time it was asked ([store]; always 1 for memory), else 0.",
        None,
        i64::from(status.is_up()),
    )?;
    gauge(
        encoder,
        "store_state_since",
        "Since when the store has been up or down, in seconds since 1970.",
        Some(&Unit::Seconds),
        status.since(),
    )?;
    gauge(
        encoder,
        "store_backlog",
        "Occupancy changes waiting to be published to the shared store.",
        None,
        signed(status.backlog()),
    )?;
    gauge(
        encoder,
        "store_revocations",
        "Revocations in force (token ids and users).",
        None,
        signed(shared.revocations.count(crate::clock::unix_now())),
    )?;
    let mut errors = encoder.encode_descriptor(
        "store_errors",
        "Shared-store commands that failed or timed out, by operation.",
        None,
        MetricType::Counter,
    )?;
    for op in StoreOp::ALL {
        let labels = [("op", op.name())];
        ConstCounter::new(status.errors(op)).encode(errors.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Daemon {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let shared = &self.0;
        let settings = &shared.settings;
        let mut build = encoder.encode_descriptor(
            "build_info",
            "Always 1; the daemon's version as a label.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1i64).encode(build.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)?;
        gauge(
            &mut encoder,
            "start_time",
            "When the daemon started, in seconds since 1970.",
            Some(&Unit::Seconds),
            shared.started,
        )?;

        let mut requests = encoder.encode_descriptor(
            "requests",
            "Socket requests answered, by op and result (as stats counts them; invalid: lines that were not requests).",
            None,
            MetricType::Counter,
        )?;
        for op in Op::ALL {
            for (outcome, n) in shared.stats.replies(op) {
                let labels = [("op", op.name()), ("result", outcome_name(outcome))];
                ConstCounter::new(n).encode(requests.encode_family(&labels)?)?;
            }
        }
        let in_flight = settings.max_inflight.saturating_sub(shared.global.available_permits());
        gauge(
            &mut encoder,
            "inflight_requests",
            "Socket requests being worked on now, across connections (requests waiting for a key fetch are not).",
            None,
            signed(in_flight),
        )?;
        gauge(
            &mut encoder,
            "inflight_requests_limit",
            "The most socket requests worked on at once ([server] max_inflight); at it, the daemon stops reading requests.",
            None,
            signed(settings.max_inflight),
        )?;
        gauge(
            &mut encoder,
            "connections_open",
            "Socket connections open now.",
            None,
            signed(shared.stats.connections.load(Ordering::Relaxed)),
        )?;
        gauge(
            &mut encoder,
            "connections_limit",
            "The most socket connections open at once ([server] max_connections).",
            None,
            signed(settings.max_connections),
        )?;
        ConstCounter::new(shared.stats.accepted.load(Ordering::Relaxed)).encode(encoder.encode_descriptor(
            "connections_accepted",
            "Socket connections accepted since start.",
            None,
            MetricType::Counter,
        )?)?;

        let mut cache = encoder.encode_descriptor(
            "verify_cache_lookups",
            "Lookups in the remembered (accepted) logins, by op and whether one was found.",
            None,
            MetricType::Counter,
        )?;
        for user in CacheUser::ALL {
            let (hits, misses) = shared.stats.cache_lookups(user);
            for (result, n) in [("hit", hits), ("miss", misses)] {
                let labels = [("op", user.name()), ("result", result)];
                ConstCounter::new(n).encode(cache.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut encoder,
            "verify_cache_entries",
            "Logins remembered now.",
            None,
            i64::try_from(shared.logins.count()).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut encoder,
            "verify_cache_capacity",
            "The most logins remembered ([server] verify_cache_size).",
            None,
            i64::try_from(settings.verify_cache_size).unwrap_or(i64::MAX),
        )?;

        let occupancy = shared.occupancy.counts();
        gauge(
            &mut encoder,
            "occupancy_rooms",
            "Rooms with someone in them, as the shims report them (for introspection).",
            None,
            signed(occupancy.rooms),
        )?;
        gauge(
            &mut encoder,
            "occupancy_occupants",
            "Occupant sessions in those rooms.",
            None,
            signed(occupancy.occupants),
        )?;
        encode_store(&mut encoder, shared)?;

        shared.metrics.encode(&mut encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerSettings;

    #[test]
    fn both_formats_name_the_same_series() {
        let shared = Arc::new(Shared::new(ServerSettings::default()));
        shared.stats.count(Op::Auth, Outcome::Refused);
        let registry = registry(shared);
        let (prometheus_type, text) = render(&registry, false).expect("encode");
        assert!(prometheus_type.starts_with("text/plain; version=0.0.4"));
        assert!(text.contains("# TYPE token_sidecar_requests_total counter\n"), "{text}");
        assert!(text.contains("token_sidecar_requests_total{op=\"auth\",result=\"refused\"} 1\n"));
        assert!(text.contains("token_sidecar_build_info{version=\""));
        assert!(text.contains("token_sidecar_start_time_seconds "));
        assert!(
            text.contains("token_sidecar_key_fetch_duration_seconds_bucket{source=\"key_server\",le=\"0.001\"} 0\n")
        );
        assert!(text.contains("token_sidecar_store_up 1\n"), "{text}");
        assert!(
            text.contains("token_sidecar_store_errors_total{op=\"lookup\"} 0\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
        let (openmetrics_type, open) = render(&registry, true).expect("encode");
        assert_eq!(openmetrics_type, OPENMETRICS_CONTENT_TYPE);
        assert!(open.ends_with("# EOF\n"));
        assert!(open.contains("token_sidecar_requests_total{op=\"auth\",result=\"refused\"} 1\n"));
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3"
        )));
        assert!(!wants_openmetrics(Some("*/*")) && !wants_openmetrics(None));
    }
}
