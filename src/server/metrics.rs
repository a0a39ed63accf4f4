//! Request counts and latencies by route and status, kept in memory and
//! rendered, with the store's counts and counters, as Prometheus text
//! (`GET /metrics`).
//! The same middleware logs each request: method, route, status and time,
//! never a body, a token or a path's values.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::model::{Stats, StoreCounters};

/// Upper bounds, in seconds, of the latency histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Series {
    count: u64,
    seconds: f64,
    /// Requests at or under each bound of [`BUCKETS`].
    buckets: [u64; BUCKETS.len()],
}

/// The requests seen, by (method, route, status).
#[derive(Default)]
pub(crate) struct Metrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl Metrics {
    fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut series = self
            .series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = series
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        entry.count += 1;
        entry.seconds += seconds;
        for (bucket, bound) in entry.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }

    /// The Prometheus text: the request series, then the store's counts
    /// and counters.
    pub fn render(&self, stats: &Stats, counters: &StoreCounters) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP sessionstore_http_requests_total HTTP requests answered, by route and status.\n",
        );
        out.push_str("# TYPE sessionstore_http_requests_total counter\n");
        let series = self
            .series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for ((method, route, status), s) in series.iter() {
            let _ = writeln!(
                out,
                "sessionstore_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        out.push_str(
            "# HELP sessionstore_http_request_duration_seconds Time to answer, by route and status.\n",
        );
        out.push_str("# TYPE sessionstore_http_request_duration_seconds histogram\n");
        for ((method, route, status), s) in series.iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
            for (count, bound) in s.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "sessionstore_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "sessionstore_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "sessionstore_http_request_duration_seconds_sum{{{labels}}} {}",
                s.seconds
            );
            let _ = writeln!(
                out,
                "sessionstore_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
        drop(series);
        let store_series = [
            (
                "sessionstore_active_sessions",
                "gauge",
                "Sessions not expired.",
                stats.active_sessions,
            ),
            (
                "sessionstore_expired_sessions",
                "gauge",
                "Sessions expired, not yet purged.",
                stats.expired_sessions,
            ),
            (
                "sessionstore_messages",
                "gauge",
                "Messages in all sessions.",
                stats.messages,
            ),
            (
                "sessionstore_file_bytes",
                "gauge",
                "Size of the store file.",
                stats.file_size,
            ),
            (
                "sessionstore_journal_bytes",
                "gauge",
                "Size of the write-ahead journal.",
                stats.journal_size,
            ),
            (
                "sessionstore_commits_total",
                "counter",
                "Group commits of write requests.",
                counters.commits,
            ),
            (
                "sessionstore_batch_requests_total",
                "counter",
                "Write requests in those commits (divided by the commits: the mean batch size).",
                counters.batch_requests,
            ),
            (
                "sessionstore_checkpoints_total",
                "counter",
                "Durable commits after which the journal starts over.",
                counters.checkpoints,
            ),
            (
                "sessionstore_message_cache_hits_total",
                "counter",
                "Reads of messages served wholly from the message cache.",
                counters.message_cache_hits,
            ),
            (
                "sessionstore_message_cache_misses_total",
                "counter",
                "Reads of messages that read the store file.",
                counters.message_cache_misses,
            ),
        ];
        for (name, kind, help, value) in store_series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        out
    }
}

/// The middleware: times the request, counts it under its route (the
/// route's pattern, not the path: no ids in the labels) and logs it.
pub(crate) async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    metrics.record(&method, &route, status, seconds);
    tracing::info!(method, route, status, millis = seconds * 1000.0, "request");
    response
}
