//! Prometheus metrics: counters and latency histograms kept in process, rendered in the text
//! exposition format on `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    total: u64,
    sum: f64,
}

#[derive(Default)]
struct Registry {
    counters: BTreeMap<(&'static str, String), u64>,
    histograms: BTreeMap<(&'static str, String), Histogram>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

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
    let key = (name, labels(pairs));
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    *registry.counters.entry(key).or_default() += 1;
}

pub fn observe(name: &'static str, pairs: &[(&str, &str)], elapsed: Duration) {
    let key = (name, labels(pairs));
    let seconds = elapsed.as_secs_f64();
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let histogram = registry.histograms.entry(key).or_default();
    for (count, bound) in histogram.counts.iter_mut().zip(BUCKETS) {
        if seconds <= bound {
            *count += 1;
        }
    }
    histogram.total += 1;
    histogram.sum += seconds;
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

/// The whole registry in the Prometheus text format.
pub fn render() -> String {
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::new();
    let mut last = "";
    for ((name, labels), value) in &registry.counters {
        if *name != last {
            let _ = writeln!(out, "# TYPE {name} counter");
            last = name;
        }
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
    for ((name, labels), h) in &registry.histograms {
        if *name != last {
            let _ = writeln!(out, "# TYPE {name} histogram");
            last = name;
        }
        let sep = if labels.is_empty() { "" } else { "," };
        for (count, bound) in h.counts.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.total);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.total);
    }
    out
}
