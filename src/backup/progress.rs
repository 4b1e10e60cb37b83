//! What a backup, a verify or a restore is doing now, for whoever follows it (the admin UI's
//! jobs): the phase, its bytes (and their total when known ahead), how long it has run, and
//! the phases done. A job runs its work inside [`watched`]; the backup code says where it is
//! with [`phase`] and [`add`], which do nothing outside a watched job (the CLI, the schedule).
//! A phase run inside [`section`] is named after it ("safety backup: dumping the database").

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

tokio::task_local! {
    static CURRENT: Arc<Progress>;
}

/// One job's progress.
#[derive(Debug, Default)]
pub struct Progress {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    prefix: Vec<String>,
    phase: Option<(String, Instant)>,
    bytes: u64,
    total: Option<u64>,
    done: Vec<Done>,
}

/// A finished phase.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Done {
    pub phase: String,
    pub bytes: u64,
    pub seconds: f64,
}

/// The progress as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Snapshot {
    pub phase: String,
    pub bytes: u64,
    /// The phase's bytes in all, when known ahead.
    pub total: Option<u64>,
    /// Of the total, below 100 until the phase is done; `None` without a total.
    pub percent: Option<u8>,
    pub phase_elapsed_s: u64,
    pub done: Vec<Done>,
}

impl Progress {
    pub fn snapshot(&self) -> Option<Snapshot> {
        let s = self.state.lock().expect("not poisoned");
        let (phase, since) = s.phase.clone()?;
        let percent = s
            .total
            .filter(|t| *t > 0)
            .map(|t| ((s.bytes.saturating_mul(100) / t).min(99)) as u8);
        Some(Snapshot {
            phase,
            bytes: s.bytes,
            total: s.total,
            percent,
            phase_elapsed_s: since.elapsed().as_secs(),
            done: s.done.clone(),
        })
    }

    /// The job ended: its last phase is done too.
    pub fn finished(&self) -> Option<Snapshot> {
        {
            let mut s = self.state.lock().expect("not poisoned");
            s.finish();
            s.phase = Some(("finished".into(), Instant::now()));
            s.bytes = 0;
            s.total = None;
        }
        self.snapshot()
    }

    fn start(&self, name: &str, total: Option<u64>) {
        let mut s = self.state.lock().expect("not poisoned");
        s.finish();
        let name = match s.prefix.last() {
            Some(p) => format!("{p}: {name}"),
            None => name.to_string(),
        };
        s.phase = Some((name, Instant::now()));
        s.bytes = 0;
        s.total = total;
    }
}

impl State {
    fn finish(&mut self) {
        if let Some((phase, since)) = self.phase.take() {
            self.done.push(Done {
                phase,
                bytes: self.bytes,
                seconds: (since.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            });
        }
    }
}

/// Runs `work` with `progress` following it.
pub async fn watched<F: std::future::Future>(progress: Arc<Progress>, work: F) -> F::Output {
    CURRENT.scope(progress, work).await
}

/// A new phase begins (the one before is done); `total`: its bytes, when known ahead.
pub fn phase(name: &str, total: Option<u64>) {
    let _ = CURRENT.try_with(|p| p.start(name, total));
}

/// `n` more bytes of the phase.
pub fn add(n: u64) {
    let _ = CURRENT.try_with(|p| p.state.lock().expect("not poisoned").bytes += n);
}

/// Runs `work` with its phases named after `name`.
pub async fn section<F: std::future::Future>(name: &str, work: F) -> F::Output {
    let _ = CURRENT.try_with(|p| {
        let mut s = p.state.lock().expect("not poisoned");
        s.finish();
        s.prefix.push(name.to_string());
    });
    let out = work.await;
    let _ = CURRENT.try_with(|p| {
        let mut s = p.state.lock().expect("not poisoned");
        s.finish();
        s.prefix.pop();
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phases_are_followed_inside_a_watched_job_only() {
        // Outside a job: nothing to follow, nothing fails.
        phase("dumping the database", None);
        add(10);
        let p = Arc::new(Progress::default());
        watched(p.clone(), async {
            phase("checking free space", None);
            section("safety backup", async {
                phase("packing the filestore", Some(1000));
                add(400);
                let s = p.snapshot().unwrap();
                assert_eq!(s.phase, "safety backup: packing the filestore");
                assert_eq!((s.bytes, s.total, s.percent), (400, Some(1000), Some(40)));
                add(700);
                assert_eq!(
                    p.snapshot().unwrap().percent,
                    Some(99),
                    "never 100 before done"
                );
            })
            .await;
            phase("restoring", None);
        })
        .await;
        let s = p.snapshot().unwrap();
        assert_eq!(s.phase, "restoring");
        assert_eq!(s.percent, None);
        let done: Vec<_> = s.done.iter().map(|d| d.phase.as_str()).collect();
        assert_eq!(
            done,
            [
                "checking free space",
                "safety backup: packing the filestore"
            ]
        );
        assert_eq!(s.done[1].bytes, 1100);
    }
}
