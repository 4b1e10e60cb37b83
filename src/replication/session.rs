//! The replication session on each side, as state machines without I/O.
//!
//! A driver feeds events ([`PlantEvent`], [`HubEvent`]) with the current time and carries out
//! the actions the machine asks for (send a frame, read a batch from the journal, store a batch,
//! advance the cursor, close), looping on `poll_action` until it is empty and arming a timer at
//! `poll_timeout` (the shape of quinn-proto's `Connection`). Tests drive both machines against
//! each other with virtual time.
//!
//! Promises, whatever the peer does: the plant sends entries in seq order with no gap, at most
//! `window` batches unacknowledged; it advances its cursor only on an ack for entries it sent;
//! the hub stores only the contiguous continuation of what it holds, so a resent or overlapping
//! batch is never stored twice and a gap is refused.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::wire::{check_hello, Entry, Frame, RefuseCode, PROTOCOL};

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("refused by the peer ({code:?}): {message}")]
    Refused { code: RefuseCode, message: String },
    #[error("no acknowledgement for {0:?}")]
    AckTimeout(Duration),
    #[error("the hub needs seq {needed}, but the journal starts at {first}: it was pruned")]
    Pruned { needed: u64, first: u64 },
}

/// Who the plant says it is in `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlantIdentity {
    pub plant: String,
    pub version: String,
    /// The journal's random id.
    pub journal: String,
}

/// Tunables of the plant side.
#[derive(Debug, Clone, Copy)]
pub struct PlantSettings {
    /// Most batches sent and not yet acknowledged.
    pub window: usize,
    /// Most entries in one batch.
    pub batch_max: usize,
    /// Most bytes of entries in one batch (one entry always goes, however large), well under
    /// the wire's frame limit.
    pub batch_bytes: usize,
    /// How long an unacknowledged batch may wait before the session is given up.
    pub ack_timeout: Duration,
}

impl Default for PlantSettings {
    fn default() -> Self {
        PlantSettings {
            window: 8,
            batch_max: 2000,
            batch_bytes: 4 * 1024 * 1024,
            ack_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlantAction {
    Send(Frame),
    /// Read up to `limit` entries after `after` from the journal, stopping once they hold
    /// `max_bytes` (at least one entry); answer with `PlantEvent::Read`.
    Read {
        after: u64,
        limit: usize,
        max_bytes: usize,
    },
    /// The hub holds everything through this seq: advance the journal's hub cursor.
    Acked(u64),
    Close(SessionError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlantEvent {
    Frame(Frame),
    /// The journal's answer to `PlantAction::Read`.
    Read(Vec<Entry>),
    /// The journal's last seq now.
    JournalAt(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlantState {
    AwaitResume,
    Streaming,
    Closed,
}

/// The plant's side of one session.
#[derive(Debug)]
pub struct PlantSession {
    settings: PlantSettings,
    state: PlantState,
    /// The journal's last seq, as last told.
    available: u64,
    /// Highest seq sent.
    sent_through: u64,
    /// Highest seq the hub acknowledged in this session.
    acked: u64,
    /// The last seq of each batch in flight, oldest first.
    inflight: VecDeque<u64>,
    reading: bool,
    ack_deadline: Option<Instant>,
    actions: VecDeque<PlantAction>,
}

impl PlantSession {
    /// A new session at `now`; its first action sends `Hello`, and the hub has the ack timeout
    /// to answer it.
    pub fn new(
        identity: &PlantIdentity,
        journal_at: u64,
        settings: PlantSettings,
        now: Instant,
    ) -> Self {
        let mut actions = VecDeque::new();
        actions.push_back(PlantAction::Send(Frame::Hello {
            protocol: PROTOCOL,
            plant: identity.plant.clone(),
            version: identity.version.clone(),
            journal: identity.journal.clone(),
        }));
        PlantSession {
            settings,
            state: PlantState::AwaitResume,
            available: journal_at,
            sent_through: 0,
            acked: 0,
            inflight: VecDeque::new(),
            reading: false,
            ack_deadline: Some(now + settings.ack_timeout),
            actions,
        }
    }

    pub fn poll_action(&mut self) -> Option<PlantAction> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ack_deadline
    }

    #[cfg(test)]
    pub fn is_closed(&self) -> bool {
        self.state == PlantState::Closed
    }

    /// Whether the hub answered the hello (with `Resume`) and the session is streaming: from
    /// then on the hub accepts the connection's other streams.
    pub fn is_streaming(&self) -> bool {
        self.state == PlantState::Streaming
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ack_deadline.is_some_and(|d| now >= d) {
            self.close(SessionError::AckTimeout(self.settings.ack_timeout));
        }
    }

    pub fn handle(&mut self, now: Instant, event: PlantEvent) {
        if self.state == PlantState::Closed {
            return;
        }
        match event {
            PlantEvent::JournalAt(n) => {
                self.available = self.available.max(n);
                self.pump();
            }
            PlantEvent::Read(entries) => self.on_read(now, entries),
            PlantEvent::Frame(frame) => self.on_frame(now, frame),
        }
    }

    fn on_frame(&mut self, now: Instant, frame: Frame) {
        match (self.state, frame) {
            (PlantState::AwaitResume, Frame::Resume { next_seq }) => {
                let have = next_seq.saturating_sub(1);
                if next_seq == 0 || have > self.available {
                    return self.close(SessionError::Protocol(format!(
                        "hub asks to resume at seq {next_seq}, but this plant's last seq is {}",
                        self.available
                    )));
                }
                self.sent_through = have;
                self.acked = have;
                self.state = PlantState::Streaming;
                self.ack_deadline = None;
                self.actions.push_back(PlantAction::Acked(have));
                self.pump();
            }
            (PlantState::Streaming, Frame::Ack { through_seq }) => {
                if through_seq > self.sent_through {
                    return self.close(SessionError::Protocol(format!(
                        "ack through seq {through_seq}, but only {} was sent",
                        self.sent_through
                    )));
                }
                if through_seq <= self.acked {
                    return; // a repeated ack says nothing new
                }
                self.acked = through_seq;
                while self
                    .inflight
                    .front()
                    .is_some_and(|&last| last <= through_seq)
                {
                    self.inflight.pop_front();
                }
                self.ack_deadline =
                    (!self.inflight.is_empty()).then(|| now + self.settings.ack_timeout);
                self.actions.push_back(PlantAction::Acked(through_seq));
                self.pump();
            }
            (_, Frame::Refuse { code, message }) => {
                self.close(SessionError::Refused { code, message })
            }
            (state, other) => self.close(SessionError::Protocol(format!(
                "unexpected {} from the hub while {state:?}",
                frame_name(&other)
            ))),
        }
    }

    fn on_read(&mut self, now: Instant, entries: Vec<Entry>) {
        self.reading = false;
        let Some(first) = entries.first() else {
            if self.sent_through < self.available {
                // The journal says it has more, yet returns nothing: those rows are gone.
                return self.close(SessionError::Pruned {
                    needed: self.sent_through + 1,
                    first: self.available + 1,
                });
            }
            return;
        };
        if first.seq != self.sent_through + 1 {
            return self.close(SessionError::Pruned {
                needed: self.sent_through + 1,
                first: first.seq,
            });
        }
        let contiguous = entries.windows(2).all(|w| w[1].seq == w[0].seq + 1);
        if !contiguous {
            return self.close(SessionError::Protocol(
                "the journal returned seqs with a gap".into(),
            ));
        }
        let last = entries.last().expect("not empty").seq;
        self.available = self.available.max(last);
        self.sent_through = last;
        self.inflight.push_back(last);
        if self.ack_deadline.is_none() {
            self.ack_deadline = Some(now + self.settings.ack_timeout);
        }
        self.actions
            .push_back(PlantAction::Send(Frame::Batch { entries }));
        self.pump();
    }

    /// Asks for the next batch when the window and the journal allow.
    fn pump(&mut self) {
        if self.state == PlantState::Streaming
            && !self.reading
            && self.inflight.len() < self.settings.window
            && self.sent_through < self.available
        {
            self.reading = true;
            self.actions.push_back(PlantAction::Read {
                after: self.sent_through,
                limit: self.settings.batch_max,
                max_bytes: self.settings.batch_bytes,
            });
        }
    }

    fn close(&mut self, e: SessionError) {
        self.state = PlantState::Closed;
        self.ack_deadline = None;
        self.actions.push_back(PlantAction::Close(e));
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubAction {
    Send(Frame),
    /// Check that this plant may replicate and find the next seq the hub needs from it; answer
    /// with `HubEvent::Authorized` or `HubEvent::Denied`.
    Authorize {
        plant: String,
        version: String,
        journal: String,
    },
    /// Commit these entries (the contiguous continuation of what is stored), in order; answer
    /// with `HubEvent::Stored` or `HubEvent::StoreFailed`.
    Store(Vec<Entry>),
    Close(SessionError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    Frame(Frame),
    Authorized { next_seq: u64 },
    Denied { message: String },
    Stored { through_seq: u64 },
    StoreFailed { message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HubState {
    AwaitHello,
    Authorizing,
    Streaming,
    Closed,
}

/// The hub's side of one session.
#[derive(Debug)]
pub struct HubSession {
    state: HubState,
    /// The next seq this session will pass on to the store.
    expected: u64,
    actions: VecDeque<HubAction>,
}

impl Default for HubSession {
    fn default() -> Self {
        HubSession {
            state: HubState::AwaitHello,
            expected: 0,
            actions: VecDeque::new(),
        }
    }
}

impl HubSession {
    pub fn poll_action(&mut self) -> Option<HubAction> {
        self.actions.pop_front()
    }

    #[cfg(test)]
    pub fn is_closed(&self) -> bool {
        self.state == HubState::Closed
    }

    pub fn handle(&mut self, event: HubEvent) {
        if self.state == HubState::Closed {
            return;
        }
        match (self.state, event) {
            (
                HubState::AwaitHello,
                HubEvent::Frame(Frame::Hello {
                    protocol,
                    plant,
                    version,
                    journal,
                }),
            ) => {
                if protocol != PROTOCOL {
                    return self.refuse(
                        RefuseCode::Version,
                        format!("this hub speaks protocol {PROTOCOL}, the plant {protocol}; update one of them"),
                    );
                }
                // Bounded before anything is looked up or written.
                if let Err(e) = check_hello(&plant, &version, &journal) {
                    return self.refuse(RefuseCode::Protocol, e.to_string());
                }
                self.state = HubState::Authorizing;
                self.actions.push_back(HubAction::Authorize {
                    plant,
                    version,
                    journal,
                });
            }
            (HubState::Authorizing, HubEvent::Authorized { next_seq }) => {
                self.expected = next_seq.max(1);
                self.state = HubState::Streaming;
                self.actions.push_back(HubAction::Send(Frame::Resume {
                    next_seq: self.expected,
                }));
            }
            (HubState::Authorizing, HubEvent::Denied { message }) => {
                self.refuse(RefuseCode::Forbidden, message)
            }
            (HubState::Streaming, HubEvent::Frame(Frame::Batch { entries })) => {
                self.on_batch(entries)
            }
            (HubState::Streaming, HubEvent::Stored { through_seq }) => {
                self.actions
                    .push_back(HubAction::Send(Frame::Ack { through_seq }));
            }
            (_, HubEvent::StoreFailed { message }) => self.refuse(
                RefuseCode::Unavailable,
                format!("hub store failed: {message}"),
            ),
            (_, HubEvent::Frame(Frame::Refuse { code, message })) => {
                self.close(SessionError::Refused { code, message })
            }
            (state, HubEvent::Frame(other)) => self.refuse(
                RefuseCode::Protocol,
                format!("unexpected {} while {state:?}", frame_name(&other)),
            ),
            (state, event) => self.close(SessionError::Protocol(format!(
                "driver event {event:?} while {state:?}"
            ))),
        }
    }

    fn on_batch(&mut self, entries: Vec<Entry>) {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return;
        };
        let (first, last) = (first.seq, last.seq);
        let contiguous = entries.windows(2).all(|w| w[1].seq == w[0].seq + 1);
        if !contiguous || first > self.expected {
            return self.refuse(
                RefuseCode::Protocol,
                format!(
                    "batch {first}..={last} does not continue at seq {} without a gap",
                    self.expected
                ),
            );
        }
        if last < self.expected {
            // All already passed on: say so again rather than store twice.
            self.actions.push_back(HubAction::Send(Frame::Ack {
                through_seq: self.expected - 1,
            }));
            return;
        }
        let skip = (self.expected - first) as usize;
        let fresh: Vec<Entry> = entries.into_iter().skip(skip).collect();
        self.expected = last + 1;
        self.actions.push_back(HubAction::Store(fresh));
    }

    fn refuse(&mut self, code: RefuseCode, message: String) {
        self.actions.push_back(HubAction::Send(Frame::Refuse {
            code,
            message: message.clone(),
        }));
        let e = match code {
            RefuseCode::Protocol => SessionError::Protocol(message),
            _ => SessionError::Refused { code, message },
        };
        self.close(e);
    }

    fn close(&mut self, e: SessionError) {
        self.state = HubState::Closed;
        self.actions.push_back(HubAction::Close(e));
    }
}

pub(crate) fn frame_name(f: &Frame) -> &'static str {
    match f {
        Frame::Hello { .. } => "hello",
        Frame::Resume { .. } => "resume",
        Frame::Batch { .. } => "batch",
        Frame::Ack { .. } => "ack",
        Frame::Refuse { .. } => "refuse",
        Frame::Telemetry { .. } => "telemetry",
        Frame::BackupOffer { .. } => "backup offer",
        Frame::BackupFrom { .. } => "backup from",
        Frame::BackupChunk { .. } => "backup chunk",
        Frame::BackupStored { .. } => "backup stored",
        Frame::BackupFetch { .. } => "backup fetch",
        Frame::UpdateCheck { .. } => "update check",
        Frame::UpdateOffer { .. } => "update offer",
        Frame::UpdateNone => "update none",
        Frame::UpdateGet { .. } => "update get",
        Frame::UpdateReport { .. } => "update report",
        Frame::UpdateNoted => "update noted",
        Frame::UpdateImagesGet { .. } => "update images get",
        Frame::RemoteReady => "remote ready",
        Frame::RemoteAction { .. } => "remote action",
        Frame::RemoteResult { .. } => "remote result",
        Frame::Logs { .. } => "logs",
    }
}

#[cfg(test)]
mod tests;
