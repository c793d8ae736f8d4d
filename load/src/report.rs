//! What a run measured: per-step latency histograms (µs, 2 significant digits: 1 %
//! resolution keeps each one a few KiB, and a run may hold one per user and step),
//! request and error counts, errors by kind; rendered as a text table and as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies past 10 minutes are clamped.
const MAX_MICROS: u64 = 600_000_000;

/// Grows only as far as the largest value recorded.
fn histogram() -> Histogram<u32> {
    Histogram::new(2).expect("valid precision")
}

/// One task's measurements; merged into the run's at the end.
#[derive(Default)]
pub struct Recorder {
    steps: BTreeMap<&'static str, Histogram<u32>>,
    errors: BTreeMap<String, u64>,
    /// Successful HTTP requests ([`Recorder::request`]) in the measured window…
    requests: u64,
    /// … and before it, in the set-up.
    setup_requests: u64,
    /// A set-up task's recorder: its requests are set-up requests.
    setup: bool,
}

impl Recorder {
    /// The recorder of a set-up task (work before the measured window).
    pub fn for_setup() -> Self {
        Self { setup: true, ..Self::default() }
    }

    pub fn is_setup(&self) -> bool {
        self.setup
    }

    /// One successful HTTP request. Counted here, where it was made, and not from the
    /// steps: a step may be a measurement of no request of its own (`wake`, `login
    /// total`), and the set-up's steps are not reported.
    pub fn request(&mut self) {
        if self.setup {
            self.setup_requests += 1;
        } else {
            self.requests += 1;
        }
    }

    pub fn ok(&mut self, step: &'static str, took: Duration) {
        let us = (took.as_micros() as u64).clamp(1, MAX_MICROS);
        let h = self.steps.entry(step).or_insert_with(histogram);
        // `record` grows the histogram to fit; only a failed growth falls back to clamping.
        if h.record(us).is_err() {
            h.saturating_record(us);
        }
    }

    pub fn error(&mut self, step: &'static str, kind: &str) {
        *self.errors.entry(format!("{step}: {kind}")).or_default() += 1;
    }

    pub fn merge(&mut self, other: Recorder) {
        for (step, h) in other.steps {
            self.steps.entry(step).or_insert_with(histogram).add(h).expect("same bounds");
        }
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        self.requests += other.requests;
        self.setup_requests += other.setup_requests;
    }

    /// Only the errors, renamed `setup <step>: kind`, and the request count: set-up work
    /// is not measured, but its failures are reported and its requests counted.
    pub fn into_setup(self) -> Recorder {
        let errors = self.errors.into_iter().map(|(k, n)| (format!("setup {k}"), n)).collect();
        let setup_requests = self.requests + self.setup_requests;
        Recorder { errors, setup_requests, setup: true, ..Recorder::default() }
    }

    pub fn count(&self, step: &str) -> u64 {
        self.steps.get(step).map_or(0, |h| h.len())
    }

    /// The report over `elapsed`, steps in the order given first, then the rest.
    pub fn report(&self, head: ReportHead, order: &[&str], elapsed: Duration) -> Report {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let ms = |us: u64| us as f64 / 1000.0;
        let mut names: Vec<&str> = order.iter().copied().filter(|n| self.steps.contains_key(n)).collect();
        names.extend(self.steps.keys().copied().filter(|n| !order.contains(n)));
        let steps = names
            .into_iter()
            .map(|name| {
                let h = &self.steps[name];
                let errors =
                    self.errors.iter().filter(|(k, _)| k.split(": ").next() == Some(name)).map(|(_, n)| n).sum();
                StepStats {
                    name: name.to_string(),
                    count: h.len(),
                    errors,
                    per_sec: h.len() as f64 / secs,
                    mean_ms: h.mean() / 1000.0,
                    p50_ms: ms(h.value_at_quantile(0.50)),
                    p90_ms: ms(h.value_at_quantile(0.90)),
                    p99_ms: ms(h.value_at_quantile(0.99)),
                    max_ms: ms(h.max()),
                }
            })
            .collect::<Vec<_>>();
        Report {
            head,
            elapsed_secs: secs,
            requests: self.requests,
            setup_requests: self.setup_requests,
            total_errors: self.errors.values().sum(),
            peak_held: 0,
            steps,
            errors: self.errors.clone(),
        }
    }
}

/// What was run.
#[derive(Debug, Clone, Serialize)]
pub struct ReportHead {
    pub scenario: String,
    pub target: String,
    pub users: usize,
    pub rate: f64,
    pub duration_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepStats {
    pub name: String,
    pub count: u64,
    pub errors: u64,
    pub per_sec: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub head: ReportHead,
    pub elapsed_secs: f64,
    /// Successful HTTP requests of the measured window (`wake` and `login total` are
    /// measurements, not requests of their own). The progress line counts the same.
    pub requests: u64,
    /// Successful HTTP requests of the set-up before the window (QR codes, scenes).
    pub setup_requests: u64,
    /// Failed requests and unexpected answers, the set-up's included.
    pub total_errors: u64,
    /// The most long polls this tool held at once (hold scenario).
    pub peak_held: i64,
    pub steps: Vec<StepStats>,
    /// `step: kind` → count.
    pub errors: BTreeMap<String, u64>,
}

impl Report {
    pub fn step(&self, name: &str) -> Option<&StepStats> {
        self.steps.iter().find(|s| s.name == name)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("serialisable")
    }

    pub fn to_text(&self) -> String {
        let h = &self.head;
        let mut out = format!(
            "scenario {} against {}: {} users, rate {}, {:.1} s measured\n\
             {} requests ({:.0}/s), {} errors, at most {} polls held at once{}\n\n",
            h.scenario,
            h.target,
            h.users,
            if h.rate > 0.0 { format!("{}/s", h.rate) } else { "unlimited".into() },
            self.elapsed_secs,
            self.requests,
            self.requests as f64 / self.elapsed_secs,
            self.total_errors,
            self.peak_held,
            match self.setup_requests {
                0 => String::new(),
                n => format!("; {n} set-up requests before the window"),
            }
        );
        out.push_str(&format!(
            "{:<16} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "step", "ok", "errors", "per s", "p50 ms", "p90 ms", "p99 ms", "max ms"
        ));
        for s in &self.steps {
            out.push_str(&format!(
                "{:<16} {:>9} {:>7} {:>9.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                s.name, s.count, s.errors, s.per_sec, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms
            ));
        }
        if !self.errors.is_empty() {
            out.push_str("\nerrors by kind\n");
            for (k, n) in &self.errors {
                out.push_str(&format!("  {n:>9}  {k}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> ReportHead {
        ReportHead { scenario: "t".into(), target: "x".into(), users: 1, rate: 0.0, duration_secs: 1.0 }
    }

    #[test]
    fn percentiles_merge_and_errors_are_counted_per_step() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        for ms in 1..=90 {
            a.ok("poll", Duration::from_millis(ms));
        }
        for ms in 91..=100 {
            b.ok("poll", Duration::from_millis(ms));
        }
        b.ok("create", Duration::from_millis(5));
        for _ in 0..101 {
            b.request();
        }
        // A measurement of no request of its own, and a set-up that made 7 requests.
        b.ok("wake", Duration::from_millis(1));
        let mut setup = Recorder::for_setup();
        for _ in 0..7 {
            setup.request();
        }
        setup.error("create", "timeout");
        b.merge(setup.into_setup());
        b.error("poll", "http_503 overloaded");
        b.error("poll", "http_503 overloaded");
        b.error("create", "timeout");
        a.merge(b);
        let r = a.report(head(), &["create", "poll"], Duration::from_secs(2));
        assert_eq!(r.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["create", "poll", "wake"]);
        let poll = r.step("poll").unwrap();
        assert_eq!((poll.count, poll.errors), (100, 2));
        assert!((poll.per_sec - 50.0).abs() < 1e-9);
        assert!((poll.p50_ms - 50.0).abs() < 0.5, "{}", poll.p50_ms);
        assert!((poll.p99_ms - 99.0).abs() < 1.0, "{}", poll.p99_ms);
        assert!((poll.max_ms - 100.0).abs() < 1.0, "{}", poll.max_ms);
        assert_eq!((r.requests, r.setup_requests, r.total_errors), (101, 7, 4));
        let text = r.to_text();
        assert!(
            text.contains("101 requests (50/s), 4 errors, at most 0 polls held at once; 7 set-up requests"),
            "{text}"
        );
        assert!(text.contains("2  poll: http_503 overloaded"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["steps"][1]["count"], 100);
        assert_eq!(json["errors"]["create: timeout"], 1);
        assert_eq!(json["errors"]["setup create: timeout"], 1);
        assert_eq!(json["setup_requests"], 7);
        assert_eq!(json["scenario"], "t");
    }
}
