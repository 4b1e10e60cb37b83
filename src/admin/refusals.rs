//! Refused attempts folded for the audit log: per address (sign-ins and setups) or per
//! signed-in user (changes), action and kind of refusal, the first in a minute is written and
//! the others are counted, then written as one entry that says how many. A flood of refusals,
//! with credentials or without, thus writes a few rows a minute, not one fsync'd row each.
//! A done or failed action ends the run of its refusals. Pure bookkeeping: the caller writes
//! the entries and keeps the timer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often refused attempts of one kind from one address or user are written to the audit
/// log.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(60);
/// Addresses or users followed one by one; past it, the rest share one count.
const MAX_SOURCES: usize = 4096;
/// Other messages a summary quotes, and how much of each.
const EXAMPLES: usize = 3;
const EXAMPLE_CHARS: usize = 200;

/// What to do with a refused attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Write it: the first of its kind from `who` in a new window. `overdue`: the previous
    /// window's count, whose summary was not written yet; write it first.
    Write { overdue: Option<Folded> },
    /// Count it. `summary`: the first counted in the window starting then; the caller writes
    /// the summary at the window's end ([`Refusals::take_window`]).
    Counted { summary: Option<Instant> },
}

/// Refusals counted instead of written: one summary entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    /// Whose: an address, a user, or the shared name past [`MAX_SOURCES`].
    pub who: String,
    pub action: String,
    pub code: &'static str,
    pub count: u64,
    /// Up to three messages among them that differ from the written one (200 characters each).
    pub examples: Vec<String>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    /// The message of the refusal written for this window (its first 200 characters).
    written: String,
    counted: u64,
    examples: Vec<String>,
    /// A summary was taken before the window's end; the rest waits for the end.
    summed_early: bool,
    /// The caller was asked to write the summary at the window's end.
    summary_asked: bool,
}

type Kind = (String, String, &'static str);

/// Refused attempts per address or user, action and kind of refusal (the error code): one
/// audit row a window, and one row that sums up the rest, so that a flood of refusals, with
/// credentials or without, cannot push real entries out of the audit log or wear the disk
/// with fsyncs. At most three rows per kind and window: the first, one summary asked for
/// early ([`Refusals::take_early`]), and the one at the window's end.
#[derive(Debug)]
pub struct Refusals {
    windows: Mutex<HashMap<Kind, Window>>,
    /// Whose refusals are counted together past [`MAX_SOURCES`].
    many: &'static str,
}

impl Refusals {
    pub fn new(many: &'static str) -> Refusals {
        Refusals {
            windows: Mutex::default(),
            many,
        }
    }

    /// Notes a refusal of `action` from `who`, with its error `code` and message `detail`.
    pub fn note(
        &self,
        who: &str,
        action: &str,
        code: &'static str,
        detail: &str,
        now: Instant,
    ) -> Refusal {
        let mut windows = self.windows.lock().expect("not poisoned");
        if windows.len() >= MAX_SOURCES {
            windows.retain(|_, w| {
                // A window with a count keeps it until its summary is written.
                now.duration_since(w.start) < REFUSAL_WINDOW || w.counted > 0
            });
        }
        let who = if windows.len() >= MAX_SOURCES {
            self.many
        } else {
            who
        };
        let key = (who.to_string(), action.to_string(), code);
        let detail: String = detail.chars().take(EXAMPLE_CHARS).collect();
        match windows.get_mut(&key) {
            Some(w) if now.duration_since(w.start) < REFUSAL_WINDOW => {
                w.counted += 1;
                if detail != w.written
                    && w.examples.len() < EXAMPLES
                    && !w.examples.contains(&detail)
                {
                    w.examples.push(detail);
                }
                let summary = (!w.summary_asked).then_some(w.start);
                w.summary_asked = true;
                Refusal::Counted { summary }
            }
            _ => {
                let fresh = Window {
                    start: now,
                    written: detail,
                    counted: 0,
                    examples: Vec::new(),
                    summed_early: false,
                    summary_asked: false,
                };
                let overdue = windows
                    .insert(key.clone(), fresh)
                    .and_then(|mut old| take(&key, &mut old));
                Refusal::Write { overdue }
            }
        }
    }

    /// At the end of the window that started at `start`: the refusals it counted and did not
    /// write, taken (none when a newer window took its place and wrote them).
    pub fn take_window(
        &self,
        who: &str,
        action: &str,
        code: &'static str,
        start: Instant,
    ) -> Option<Folded> {
        let mut windows = self.windows.lock().expect("not poisoned");
        // Counted under the shared name when the map was full at the time: the window that
        // started then is that one.
        for whose in [who, self.many] {
            let key = (whose.to_string(), action.to_string(), code);
            if let Some(w) = windows.get_mut(&key).filter(|w| w.start == start) {
                return take(&key, w);
            }
        }
        None
    }

    /// Before another entry of `who` is written: the refusals counted in each of its windows
    /// that has not been summed up early yet, so that the log reads in order. Each window is
    /// summed up early once; what comes after waits for its end.
    pub fn take_early(&self, who: &str) -> Vec<Folded> {
        let mut windows = self.windows.lock().expect("not poisoned");
        let mut out: Vec<Folded> = windows
            .iter_mut()
            .filter(|((w, _, _), window)| w == who && window.counted > 0 && !window.summed_early)
            .filter_map(|(key, window)| {
                window.summed_early = true;
                take(key, window)
            })
            .collect();
        out.sort_by(|a, b| (&a.action, a.code).cmp(&(&b.action, b.code)));
        out
    }

    /// `who` did `action` (done or failed): a success breaks a run of refusals, so its windows
    /// for `action` end, and their counts are taken with [`Refusals::take_early`]'s; the next
    /// refusal of `action` is written. Rows stay bounded: a done or failed action is written
    /// too, so refusals add at most a few rows to each.
    pub fn settle(&self, who: &str, action: &str) -> Vec<Folded> {
        let mut ended = Vec::new();
        {
            let mut windows = self.windows.lock().expect("not poisoned");
            windows.retain(|key, window| {
                if key.0 != who || key.1 != action {
                    return true;
                }
                ended.extend(take(key, window));
                false
            });
        }
        let mut out = self.take_early(who);
        out.extend(ended);
        out.sort_by(|a, b| (&a.action, a.code).cmp(&(&b.action, b.code)));
        out
    }
}

/// Takes a window's count and examples, leaving it open.
fn take((who, action, code): &Kind, w: &mut Window) -> Option<Folded> {
    (w.counted > 0).then(|| Folded {
        who: who.clone(),
        action: action.clone(),
        code,
        count: std::mem::take(&mut w.counted),
        examples: std::mem::take(&mut w.examples),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write() -> Refusal {
        Refusal::Write { overdue: None }
    }

    #[test]
    fn refusals_are_written_once_a_window_per_address_and_summed_up() {
        let r = Refusals::new("(many addresses)");
        let t0 = Instant::now();
        let note = |who: &str, action: &str, t: Instant| {
            r.note(who, action, "conflict", "exists already", t)
        };
        assert_eq!(note("10.0.0.1", "admin.setup", t0), write());
        assert_eq!(
            note("10.0.0.1", "admin.setup", t0),
            Refusal::Counted { summary: Some(t0) }
        );
        for _ in 0..1998 {
            assert_eq!(
                note("10.0.0.1", "admin.setup", t0),
                Refusal::Counted { summary: None }
            );
        }
        assert_eq!(note("10.0.0.2", "admin.setup", t0), write());
        assert_eq!(note("10.0.0.1", "sign_in", t0), write());
        let summed = r
            .take_window("10.0.0.1", "admin.setup", "conflict", t0)
            .unwrap();
        assert_eq!((summed.count, summed.examples), (1999, vec![]), "all alike");
        assert_eq!(
            r.take_window("10.0.0.1", "admin.setup", "conflict", t0),
            None
        );
        assert_eq!(
            note("10.0.0.1", "admin.setup", t0 + REFUSAL_WINDOW),
            write(),
            "a new window"
        );
    }

    #[test]
    fn a_count_not_summed_up_yet_is_handed_to_the_next_window() {
        let r = Refusals::new("(many users)");
        let t0 = Instant::now();
        r.note("ana", "island", "csrf", "missing", t0);
        r.note("ana", "island", "csrf", "missing", t0);
        let t1 = t0 + REFUSAL_WINDOW;
        match r.note("ana", "island", "csrf", "missing", t1) {
            Refusal::Write {
                overdue: Some(folded),
            } => assert_eq!(folded.count, 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            r.take_window("ana", "island", "csrf", t0),
            None,
            "the old window's summary finds nothing"
        );
    }

    #[test]
    fn refused_actions_are_summed_up_early_once_a_window() {
        let r = Refusals::new("(many users)");
        let t0 = Instant::now();
        assert_eq!(
            r.note("ana", "island", "csrf", "missing token", t0),
            write()
        );
        assert_eq!(
            r.note("ana", "island", "csrf", "missing token", t0),
            Refusal::Counted { summary: Some(t0) }
        );
        r.note("ana", "island", "csrf", "origin evil.example", t0);
        r.note("ana", "island", "invalid", "reason: say why", t0);
        r.note("bob", "island", "csrf", "missing token", t0);
        r.note("bob", "island", "csrf", "missing token", t0);
        let early = r.take_early("ana");
        assert_eq!(
            early,
            vec![Folded {
                who: "ana".into(),
                action: "island".into(),
                code: "csrf",
                count: 2,
                examples: vec!["origin evil.example".into()],
            }],
            "the invalid one was written, bob's are bob's"
        );
        for _ in 0..100 {
            r.note("ana", "island", "csrf", "missing token", t0);
        }
        assert_eq!(r.take_early("ana"), vec![], "once a window");
        let end = r.take_window("ana", "island", "csrf", t0).unwrap();
        assert_eq!(end.count, 100, "the rest at the window's end");
    }

    #[test]
    fn a_done_action_ends_the_run_of_its_refusals() {
        let r = Refusals::new("(many users)");
        let t0 = Instant::now();
        r.note("ana", "apply.replay", "conflict", "stays parked", t0);
        r.note("ana", "apply.replay", "conflict", "stays parked", t0);
        r.note("ana", "island", "csrf", "missing token", t0);
        r.note("ana", "island", "csrf", "missing token", t0);
        let settled = r.settle("ana", "apply.replay");
        assert_eq!(
            settled
                .iter()
                .map(|f| (f.action.as_str(), f.count))
                .collect::<Vec<_>>(),
            vec![("apply.replay", 1), ("island", 1)]
        );
        assert_eq!(
            r.note("ana", "apply.replay", "conflict", "is not parked", t0),
            write(),
            "the refusal after a success is written"
        );
        assert_eq!(
            r.note("ana", "island", "csrf", "missing token", t0),
            Refusal::Counted { summary: None },
            "other actions' runs go on"
        );
        assert_eq!(
            r.take_window("ana", "apply.replay", "conflict", t0),
            None,
            "the ended window's summary was taken"
        );
    }

    #[test]
    fn refusals_from_too_many_addresses_share_one_count() {
        let r = Refusals::new("(many addresses)");
        let t0 = Instant::now();
        for i in 0..MAX_SOURCES {
            assert_eq!(r.note(&format!("a{i}"), "sign_in", "x", "", t0), write());
        }
        assert_eq!(r.note("late", "sign_in", "x", "", t0), write());
        assert_eq!(
            r.note("later", "sign_in", "x", "", t0),
            Refusal::Counted { summary: Some(t0) }
        );
        // The caller asks for the summary under the address it saw.
        assert_eq!(
            r.take_window("later", "sign_in", "x", t0).map(|f| f.count),
            Some(1)
        );
    }
}
