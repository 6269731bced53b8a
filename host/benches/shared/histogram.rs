//! Histograms in the Prometheus text format that `/metrics` and
//! `weft::metrics::encode` write: their buckets, and quantiles as bucket
//! upper bounds.

/// The cumulative buckets (upper bound, count) of histogram `name`.
pub fn histogram_buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&format!("{name}_bucket{{le=\"")) {
            let (le, count) = rest.split_once("\"} ").unwrap();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            buckets.push((le, count.trim().parse().unwrap()));
        }
    }
    buckets
}

/// Observations of histogram `name` since `before` (its buckets then), and
/// their p50 and p99 as bucket upper bounds.
pub fn histogram_quantiles_since(
    text: &str,
    name: &str,
    before: &[(f64, f64)],
) -> (usize, f64, f64) {
    let buckets: Vec<(f64, f64)> = histogram_buckets(text, name)
        .into_iter()
        .enumerate()
        .map(|(i, (le, c))| (le, c - before.get(i).map_or(0.0, |b| b.1)))
        .collect();
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    let q = |p: f64| {
        buckets
            .iter()
            .find(|(_, c)| *c >= total * p)
            .map(|b| b.0)
            .unwrap_or(f64::NAN)
    };
    (total as usize, q(0.5), q(0.99))
}

/// p50 and p99 (bucket upper bounds) of every observation of histogram
/// `name`, and how many there were.
#[allow(dead_code)] // not every bench reads it
pub fn histogram_quantiles(text: &str, name: &str) -> (usize, f64, f64) {
    histogram_quantiles_since(text, name, &[])
}
