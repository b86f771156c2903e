//! Prometheus metrics of the webhook, in the text exposition format, named like the ecosystem's
//! (`*_total` counters, a `_seconds` histogram with buckets that resolve sub-millisecond reviews).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds of the review-duration buckets, in seconds: most reviews take well under 1 ms.
const BUCKETS: [f64; 14] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Inner {
    /// `meshguard_admission_requests_total{decision,operation,kind,rule}`.
    requests: BTreeMap<(String, String, String, String), u64>,
    /// `meshguard_admission_audit_findings_total{rule}`.
    audits: BTreeMap<String, u64>,
    /// `meshguard_admission_mutations_total{rule}`.
    mutations: BTreeMap<String, u64>,
    /// `meshguard_admission_errors_total{reason}`.
    errors: BTreeMap<String, u64>,
    /// `meshguard_reloads_total{what,result}`.
    reloads: BTreeMap<(String, String), u64>,
    duration: Histogram,
}

#[derive(Default)]
pub struct Metrics(Mutex<Inner>);

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Inner)) {
        if let Ok(mut inner) = self.0.lock() {
            f(&mut inner);
        }
    }

    /// One reviewed request; `rules` are the ids that fired with a deny or warn (none: `rule=""`).
    pub fn request(&self, decision: &str, operation: &str, kind: &str, rules: &[&str], seconds: f64) {
        self.with(|m| {
            let key = |rule: &str| (decision.to_string(), operation.to_string(), kind.to_string(), rule.to_string());
            if rules.is_empty() {
                *m.requests.entry(key("")).or_default() += 1;
            }
            for rule in rules {
                *m.requests.entry(key(rule)).or_default() += 1;
            }
            let h = &mut m.duration;
            for (i, bound) in BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        })
    }

    pub fn audit(&self, rule: &str) {
        self.with(|m| *m.audits.entry(rule.to_string()).or_default() += 1)
    }

    pub fn mutation(&self, rule: &str) {
        self.with(|m| *m.mutations.entry(rule.to_string()).or_default() += 1)
    }

    pub fn error(&self, reason: &str) {
        self.with(|m| *m.errors.entry(reason.to_string()).or_default() += 1)
    }

    pub fn reload(&self, what: &str, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.with(|m| *m.reloads.entry((what.to_string(), result.to_string())).or_default() += 1)
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.with(|m| {
            let _ = writeln!(out, "# HELP meshguard_admission_requests_total AdmissionReviews answered, by decision, operation, kind and fired rule.");
            let _ = writeln!(out, "# TYPE meshguard_admission_requests_total counter");
            for ((decision, operation, kind, rule), n) in &m.requests {
                let _ = writeln!(
                    out,
                    "meshguard_admission_requests_total{{decision=\"{}\",operation=\"{}\",kind=\"{}\",rule=\"{}\"}} {n}",
                    label(decision),
                    label(operation),
                    label(kind),
                    label(rule)
                );
            }
            let _ = writeln!(out, "# HELP meshguard_admission_audit_findings_total Findings of audit rules (logged, never enforced).");
            let _ = writeln!(out, "# TYPE meshguard_admission_audit_findings_total counter");
            for (rule, n) in &m.audits {
                let _ = writeln!(out, "meshguard_admission_audit_findings_total{{rule=\"{}\"}} {n}", label(rule));
            }
            let _ = writeln!(out, "# HELP meshguard_admission_mutations_total Objects a mutating review patched, by rule.");
            let _ = writeln!(out, "# TYPE meshguard_admission_mutations_total counter");
            for (rule, n) in &m.mutations {
                let _ = writeln!(out, "meshguard_admission_mutations_total{{rule=\"{}\"}} {n}", label(rule));
            }
            let _ = writeln!(out, "# HELP meshguard_admission_errors_total Requests that could not be evaluated or parsed.");
            let _ = writeln!(out, "# TYPE meshguard_admission_errors_total counter");
            for (reason, n) in &m.errors {
                let _ = writeln!(out, "meshguard_admission_errors_total{{reason=\"{}\"}} {n}", label(reason));
            }
            let _ = writeln!(out, "# HELP meshguard_reloads_total Rule-set and certificate reloads, by result.");
            let _ = writeln!(out, "# TYPE meshguard_reloads_total counter");
            for ((what, result), n) in &m.reloads {
                let _ = writeln!(out, "meshguard_reloads_total{{what=\"{what}\",result=\"{result}\"}} {n}");
            }
            let h = &m.duration;
            let _ = writeln!(out, "# HELP meshguard_admission_review_duration_seconds Time from a complete request body to its answer.");
            let _ = writeln!(out, "# TYPE meshguard_admission_review_duration_seconds histogram");
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(out, "meshguard_admission_review_duration_seconds_bucket{{le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "meshguard_admission_review_duration_seconds_bucket{{le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "meshguard_admission_review_duration_seconds_sum {}", h.sum);
            let _ = writeln!(out, "meshguard_admission_review_duration_seconds_count {}", h.count);
        });
        out
    }
}

/// A label value as the exposition format needs it: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn counters_and_histogram_render() {
        let m = Metrics::default();
        m.request("deny", "CREATE", "Service", &["istio-port-name"], 0.0003);
        m.request("allow", "CREATE", "Service", &[], 0.02);
        m.audit("a\"b");
        m.reload("rules", false);
        let text = m.render();
        assert!(text.contains(
            "meshguard_admission_requests_total{decision=\"deny\",operation=\"CREATE\",kind=\"Service\",rule=\"istio-port-name\"} 1"
        ));
        assert!(text.contains("rule=\"\"} 1"));
        assert!(text.contains("meshguard_admission_review_duration_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("meshguard_admission_review_duration_seconds_bucket{le=\"0.025\"} 2"));
        assert!(text.contains("meshguard_admission_review_duration_seconds_count 2"));
        assert!(text.contains("meshguard_admission_audit_findings_total{rule=\"a\\\"b\"} 1"));
        assert!(text.contains("meshguard_reloads_total{what=\"rules\",result=\"failure\"} 1"));
    }
}
