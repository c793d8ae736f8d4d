//! Runs a scenario: shared state, pacing to `--rate`, the measured window, the progress
//! line, and the final report.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::api::{Api, Progress};
use crate::options::{Options, Scenario};
use crate::report::{Recorder, Report, ReportHead};
use crate::scenarios;
use crate::wechat::Wechat;

/// What every task of a run shares.
pub struct Shared {
    pub opts: Options,
    pub api: Api,
    pub wechat: Wechat,
    /// Random per run: openids and phones of one run do not collide with another's.
    pub run_id: u64,
}

/// The measured window and its pacing: slot `k` starts at `start + k / rate`.
pub struct Window {
    pub start: Instant,
    pub end: Instant,
    rate: f64,
    next: AtomicU64,
}

impl Window {
    pub fn open(duration: Duration, rate: f64) -> Arc<Self> {
        let start = Instant::now();
        Arc::new(Self { start, end: start + duration, rate, next: AtomicU64::new(0) })
    }

    pub fn over(&self) -> bool {
        Instant::now() >= self.end
    }

    /// Waits for the next slot of the rate (none without a rate); `false` when the
    /// window has closed.
    pub async fn next(&self) -> bool {
        if self.rate > 0.0 {
            let k = self.next.fetch_add(1, Ordering::Relaxed);
            let at = self.start + Duration::from_secs_f64(k as f64 / self.rate);
            if at >= self.end {
                return false;
            }
            tokio::time::sleep_until(at.into()).await;
        }
        !self.over()
    }

    /// Runs `fut` but gives it up (`None`) when the window closes.
    pub async fn within<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        tokio::time::timeout_at(self.end.into(), fut).await.ok()
    }
}

/// Runs `n` copies of `task(i)` with at most `limit` at once; merges their recorders as
/// they finish (a finished task's recorder is not kept around).
pub async fn fan_out<F, Fut>(n: usize, limit: usize, task: F) -> Recorder
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Recorder> + Send + 'static,
{
    let mut running = tokio::task::JoinSet::new();
    let mut all = Recorder::default();
    for i in 0..n {
        if running.len() >= limit.max(1)
            && let Some(Ok(r)) = running.join_next().await
        {
            all.merge(r);
        }
        running.spawn(task(i));
    }
    while let Some(r) = running.join_next().await {
        if let Ok(r) = r {
            all.merge(r);
        }
    }
    all
}

/// A live attempt made during set-up: its poll id and, when asked for, its scene.
#[derive(Debug, Clone)]
pub struct Slot {
    pub uuid: String,
    pub scene: Option<String>,
}

/// Creates one attempt per user (`--connections` at once) before the measured window;
/// failures are reported as `setup …` errors.
pub async fn setup_attempts(shared: &Arc<Shared>, with_scene: bool) -> (Vec<Option<Slot>>, Recorder) {
    let users = shared.opts.users;
    let slots = Arc::new(std::sync::Mutex::new(vec![None; users]));
    let rec = fan_out(users, shared.opts.connections, |u| {
        let (s, slots) = (shared.clone(), slots.clone());
        async move {
            let mut rec = Recorder::for_setup();
            let slot = make_slot(&s, &mut rec, with_scene).await;
            slots.lock().unwrap_or_else(|p| p.into_inner())[u] = slot;
            rec
        }
    })
    .await;
    let slots = std::mem::take(&mut *slots.lock().unwrap_or_else(|p| p.into_inner()));
    (slots, rec.into_setup())
}

/// A new attempt (and its scene).
pub async fn make_slot(s: &Shared, rec: &mut Recorder, with_scene: bool) -> Option<Slot> {
    let qr = s.api.create_qr(rec).await?;
    let scene = if with_scene { Some(s.api.scene_of(rec, &qr.ticket).await?) } else { None };
    Some(Slot { uuid: qr.uuid, scene })
}

/// One progress line: the requests so far (the measured window's, as the report counts
/// them, and the set-up's), the rate of all since the last line, errors, held polls.
fn progress_line(start: Instant, p: &Progress, last: &mut (Instant, u64)) -> String {
    let now = Instant::now();
    let reqs = p.requests.load(Ordering::Relaxed);
    let setup = p.setup_requests.load(Ordering::Relaxed);
    let rate = (reqs + setup - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
    *last = (now, reqs + setup);
    format!(
        "[{:>5.1}s] requests {reqs:>9} ({rate:>8.0}/s)  set-up {setup:>7}  errors {:>6}  held {:>6}",
        now.duration_since(start).as_secs_f64(),
        p.errors.load(Ordering::Relaxed),
        p.held.load(Ordering::Relaxed)
    )
}

/// How long a run waits for the server to answer `/healthz`: the README starts the
/// server in the background and the load tool right after it.
const SERVER_START_BUDGET: Duration = Duration::from_secs(120);

/// Waits until `target` answers HTTP at `/healthz` (any status: the baselines have no
/// such route, but answering at all means listening), at most `budget`.
async fn wait_until_up(target: &str, budget: Duration) -> Result<(), String> {
    scanlogin::install_crypto();
    let url = format!("{}/healthz", target.trim_end_matches('/'));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + budget;
    let mut told = false;
    loop {
        match client.get(&url).send().await {
            Ok(_) => return Ok(()),
            _ if Instant::now() >= deadline => {
                return Err(format!("the server at {target} did not answer {url} within {}s", budget.as_secs()));
            }
            _ => {
                if !told {
                    eprintln!("load: waiting for {url} …");
                    told = true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Runs the scenario of `opts` and returns its report (measured window only).
pub async fn run(opts: Options) -> Result<Report, String> {
    run_counted(opts, Arc::new(Progress::default())).await
}

/// [`run`], counting into `progress` as it goes (the progress line's counters).
pub async fn run_counted(opts: Options, progress: Arc<Progress>) -> Result<Report, String> {
    if opts.users == 0 {
        return Err("--users must be at least 1".into());
    }
    wait_until_up(&opts.target, SERVER_START_BUDGET).await?;
    let wechat = Wechat::new(&opts.app_id, &opts.wechat_token, &opts.aes_key)?;
    let api = Api::new(&opts.target, Duration::from_secs(opts.wait), progress.clone());
    let shared = Arc::new(Shared { api, wechat, run_id: rand::random_range(0..10_000), opts: opts.clone() });
    let start = Instant::now();
    let last = Arc::new(std::sync::Mutex::new((start, 0)));
    let ticker = (!opts.quiet).then(|| {
        let (p, last) = (progress.clone(), last.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.tick().await;
            loop {
                every.tick().await;
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                eprintln!("{}", progress_line(start, &p, &mut last));
            }
        })
    });
    let (rec, measured) = match opts.scenario {
        Scenario::Login => scenarios::login::run(shared).await,
        Scenario::PollStorm => scenarios::poll_storm::run(shared).await,
        Scenario::Hold => scenarios::hold::run(shared).await,
        Scenario::Callbacks => scenarios::callbacks::run(shared).await,
        Scenario::Oidc => scenarios::oidc::run(shared).await,
    };
    if let Some(t) = ticker {
        t.abort();
        // The last line counts everything the report counts (a tick may have been up to
        // a second before the end).
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        eprintln!("{}  done", progress_line(start, &progress, &mut last));
    }
    let head = ReportHead {
        scenario: opts.scenario.name().into(),
        target: opts.target.clone(),
        users: opts.users,
        rate: opts.rate,
        duration_secs: opts.duration.as_secs_f64(),
    };
    let mut report = rec.report(head, scenarios::STEP_ORDER, measured);
    report.peak_held = progress.peak_held.load(Ordering::Relaxed);
    Ok(report)
}
