//! Prometheus metrics: counters and latency histograms kept in process, rendered in the text
//! exposition format on `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Bucket counts (cumulative, as Prometheus wants them), total and sum in nanoseconds.
#[derive(Default)]
struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    total: AtomicU64,
    sum_nanos: AtomicU64,
}

type Key = (&'static str, String);

/// Series are created once under the write lock; every later update is a read lock and an atomic add,
/// so request handlers never wait on each other here.
#[derive(Default)]
struct Registry {
    counters: RwLock<BTreeMap<Key, Arc<AtomicU64>>>,
    histograms: RwLock<BTreeMap<Key, Arc<Histogram>>>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

fn series<T: Default>(map: &RwLock<BTreeMap<Key, Arc<T>>>, key: Key) -> Arc<T> {
    if let Some(found) = map.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return found.clone();
    }
    map.write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_default()
        .clone()
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        if v.contains(['\\', '"', '\n']) {
            out.push_str(&v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"));
        } else {
            out.push_str(v);
        }
        out.push('"');
    }
    out
}

pub fn increment(name: &'static str, pairs: &[(&str, &str)]) {
    series(&REGISTRY.counters, (name, labels(pairs))).fetch_add(1, Ordering::Relaxed);
}

pub fn observe(name: &'static str, pairs: &[(&str, &str)], elapsed: Duration) {
    let histogram = series(&REGISTRY.histograms, (name, labels(pairs)));
    let seconds = elapsed.as_secs_f64();
    for (count, bound) in histogram.counts.iter().zip(BUCKETS) {
        if seconds <= bound {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
    histogram.total.fetch_add(1, Ordering::Relaxed);
    histogram
        .sum_nanos
        .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
}

pub fn provider_latency(provider: &str, elapsed: Duration) {
    observe(
        "portcullis_reputation_provider_seconds",
        &[("provider", provider)],
        elapsed,
    );
}

pub fn provider_error(provider: &str) {
    increment("portcullis_reputation_provider_errors_total", &[("provider", provider)]);
}

/// How one reputation provider has answered since the process started.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProviderHealth {
    pub provider: String,
    pub lookups: u64,
    pub errors: u64,
    pub mean_ms: f64,
}

/// Every provider that has been asked or has failed, by name.
pub fn provider_health() -> Vec<ProviderHealth> {
    let provider_of = |labels: &str| {
        labels
            .strip_prefix("provider=\"")
            .and_then(|rest| rest.strip_suffix('"'))
            .map(str::to_string)
    };
    let blank = |provider: String| ProviderHealth {
        provider,
        lookups: 0,
        errors: 0,
        mean_ms: 0.0,
    };
    let histograms = REGISTRY.histograms.read().unwrap_or_else(|e| e.into_inner());
    let counters = REGISTRY.counters.read().unwrap_or_else(|e| e.into_inner());
    let mut found: BTreeMap<String, ProviderHealth> = BTreeMap::new();
    for ((name, labels), h) in histograms.iter() {
        if *name == "portcullis_reputation_provider_seconds"
            && let Some(provider) = provider_of(labels)
        {
            let total = h.total.load(Ordering::Relaxed);
            let slot = found.entry(provider.clone()).or_insert_with(|| blank(provider));
            slot.lookups = total;
            if total > 0 {
                slot.mean_ms = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e6 / total as f64;
            }
        }
    }
    for ((name, labels), value) in counters.iter() {
        if *name == "portcullis_reputation_provider_errors_total"
            && let Some(provider) = provider_of(labels)
        {
            found.entry(provider.clone()).or_insert_with(|| blank(provider)).errors = value.load(Ordering::Relaxed);
        }
    }
    found.into_values().collect()
}

/// The whole registry in the Prometheus text format.
pub fn render() -> String {
    let mut out = String::new();
    let mut last = "";
    for ((name, labels), value) in REGISTRY.counters.read().unwrap_or_else(|e| e.into_inner()).iter() {
        if *name != last {
            let _ = writeln!(out, "# TYPE {name} counter");
            last = name;
        }
        let _ = writeln!(out, "{name}{{{labels}}} {}", value.load(Ordering::Relaxed));
    }
    for ((name, labels), h) in REGISTRY.histograms.read().unwrap_or_else(|e| e.into_inner()).iter() {
        if *name != last {
            let _ = writeln!(out, "# TYPE {name} histogram");
            last = name;
        }
        let sep = if labels.is_empty() { "" } else { "," };
        for (count, bound) in h.counts.iter().zip(BUCKETS) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let total = h.total.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
    }
    out
}
