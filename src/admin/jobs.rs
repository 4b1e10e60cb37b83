//! Backup jobs started from the UI: a backup, a verify or a restore takes from seconds to many
//! minutes, so the API answers `202` with a job and the UI follows it. One job runs at a time
//! (the backup directory's lock would refuse a second anyway); the last 20 are remembered.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;

use serde::Serialize;

use super::AdminError;

const KEEP: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Run,
    Verify,
    Restore,
}

impl Kind {
    pub fn action(self) -> &'static str {
        match self {
            Kind::Run => "backup.run",
            Kind::Verify => "backup.verify",
            Kind::Restore => "backup.restore",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: String,
    pub kind: Kind,
    pub backup: Option<String>,
    pub user: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub state: JobState,
    pub message: String,
    /// Where a running job is (its phase, bytes, time), and the phases it went through.
    pub progress: Option<crate::backup::progress::Snapshot>,
    #[serde(skip)]
    follow: std::sync::Arc<crate::backup::progress::Progress>,
}

#[derive(Default)]
pub struct Jobs {
    inner: Mutex<(u64, VecDeque<Job>)>,
}

impl Jobs {
    /// Starts `work` as a job unless one runs; `done` hears the finished job (for the audit log).
    pub fn start<F, D>(
        self: &std::sync::Arc<Self>,
        kind: Kind,
        backup: Option<String>,
        user: &str,
        work: F,
        done: D,
    ) -> Result<Job, AdminError>
    where
        F: Future<Output = anyhow::Result<String>> + Send + 'static,
        D: FnOnce(Job) + Send + 'static,
    {
        let job = {
            let mut inner = self.inner.lock().expect("not poisoned");
            if let Some(running) = inner.1.iter().find(|j| j.state == JobState::Running) {
                return Err(AdminError::Busy(format!(
                    "{} is running ({}, started by {} at {}); wait for it to finish",
                    running.kind.action(),
                    running.id,
                    running.user,
                    running.started_at
                )));
            }
            inner.0 += 1;
            let job = Job {
                id: format!("job-{}", inner.0),
                kind,
                backup,
                user: user.to_string(),
                started_at: super::store::now(),
                finished_at: None,
                state: JobState::Running,
                message: "running".into(),
                progress: None,
                follow: Default::default(),
            };
            if inner.1.len() == KEEP {
                inner.1.pop_front();
            }
            inner.1.push_back(job.clone());
            job
        };
        let jobs = self.clone();
        let id = job.id.clone();
        let follow = job.follow.clone();
        tokio::spawn(async move {
            // A panic in the work must not leave the job "running" forever.
            let outcome = tokio::spawn(crate::backup::progress::watched(follow, work))
                .await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("the job stopped: {e}")));
            let finished = {
                let mut inner = jobs.inner.lock().expect("not poisoned");
                let Some(job) = inner.1.iter_mut().find(|j| j.id == id) else {
                    return;
                };
                job.finished_at = Some(super::store::now());
                job.progress = job.follow.finished();
                match outcome {
                    Ok(m) => {
                        job.state = JobState::Succeeded;
                        job.message = m;
                    }
                    Err(e) => {
                        job.state = JobState::Failed;
                        job.message = format!("{e:#}");
                    }
                }
                job.clone()
            };
            done(finished);
        });
        Ok(job)
    }

    /// Newest first.
    pub fn list(&self) -> Vec<Job> {
        self.inner
            .lock()
            .expect("not poisoned")
            .1
            .iter()
            .rev()
            .map(Job::now)
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        self.inner
            .lock()
            .expect("not poisoned")
            .1
            .iter()
            .find(|j| j.id == id)
            .map(Job::now)
    }

    /// The job running now, if any.
    pub fn running(&self) -> Option<Job> {
        self.list()
            .into_iter()
            .find(|j| j.state == JobState::Running)
    }
}

impl Job {
    /// The job with its progress as of now.
    fn now(&self) -> Job {
        let mut job = self.clone();
        if job.state == JobState::Running {
            job.progress = job.follow.snapshot();
        }
        job
    }
}
