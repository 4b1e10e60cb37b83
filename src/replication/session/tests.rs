//! Both machines against each other, through the real codec, with virtual time, a fake
//! journal and a fake hub store; connections drop at arbitrary points.

use std::collections::VecDeque;

use proptest::prelude::*;

use super::*;
use crate::replication::wire::{self, RefuseCode};

fn ident() -> PlantIdentity {
    PlantIdentity {
        plant: "plant-a".into(),
        version: "0.1.0".into(),
        journal: "j1".into(),
    }
}

fn entry(seq: u64) -> Entry {
    Entry {
        seq,
        key: format!("k{seq}"),
        device: "d".into(),
        kind: "scan".into(),
        payload: "{}".into(),
        occurred_at: None,
        received_at_ms: seq as i64,
    }
}

/// The plant's journal: entries from `first` on, and the hub cursor.
struct Journal {
    first: u64,
    entries: Vec<Entry>,
    hub_acked: u64,
}

impl Journal {
    fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }
    fn read(&self, after: u64, limit: usize) -> Vec<Entry> {
        self.entries
            .iter()
            .filter(|e| e.seq > after)
            .take(limit)
            .cloned()
            .collect()
    }
}

/// The hub's store for one plant, counting attempts to store a seq twice.
#[derive(Default)]
struct Store {
    rows: Vec<Entry>,
    double_stores: usize,
}

impl Store {
    fn next(&self) -> u64 {
        self.rows.len() as u64 + 1
    }
    fn insert(&mut self, entries: Vec<Entry>) -> u64 {
        for e in entries {
            if e.seq < self.next() {
                self.double_stores += 1;
            } else {
                assert_eq!(e.seq, self.next(), "the store would get a gap");
                self.rows.push(e);
            }
        }
        self.rows.len() as u64
    }
}

/// One connection: both machines and the bytes and driver answers in flight.
struct Link {
    plant: PlantSession,
    hub: HubSession,
    to_hub: VecDeque<Vec<u8>>,
    to_plant: VecDeque<Vec<u8>>,
    plant_events: VecDeque<PlantEvent>,
    hub_events: VecDeque<HubEvent>,
    closed: Vec<SessionError>,
}

struct Sim {
    now: Instant,
    journal: Journal,
    store: Store,
    link: Option<Link>,
    settings: PlantSettings,
}

impl Sim {
    fn new(entries: u64, settings: PlantSettings) -> Sim {
        Sim {
            now: Instant::now(),
            journal: Journal {
                first: 1,
                entries: (1..=entries).map(entry).collect(),
                hub_acked: 0,
            },
            store: Store::default(),
            link: None,
            settings,
        }
    }

    fn connect(&mut self) {
        let plant = PlantSession::new(&ident(), self.journal.last(), self.settings, self.now);
        self.link = Some(Link {
            plant,
            hub: HubSession::default(),
            to_hub: VecDeque::new(),
            to_plant: VecDeque::new(),
            plant_events: VecDeque::new(),
            hub_events: VecDeque::new(),
            closed: Vec::new(),
        });
        self.drain_actions();
    }

    /// Carries out every pending action of both machines.
    fn drain_actions(&mut self) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        loop {
            let mut progressed = false;
            while let Some(a) = link.plant.poll_action() {
                progressed = true;
                match a {
                    PlantAction::Send(f) => {
                        let mut b = Vec::new();
                        wire::encode(&f, &mut b);
                        link.to_hub.push_back(b);
                    }
                    PlantAction::Read { after, limit, .. } => link
                        .plant_events
                        .push_back(PlantEvent::Read(self.journal.read(after, limit))),
                    PlantAction::Acked(seq) => {
                        assert!(
                            seq <= self.store.rows.len() as u64,
                            "acked {seq} before it was stored"
                        );
                        self.journal.hub_acked = self.journal.hub_acked.max(seq);
                    }
                    PlantAction::Close(e) => link.closed.push(e),
                }
            }
            while let Some(a) = link.hub.poll_action() {
                progressed = true;
                match a {
                    HubAction::Send(f) => {
                        let mut b = Vec::new();
                        wire::encode(&f, &mut b);
                        link.to_plant.push_back(b);
                    }
                    HubAction::Authorize { plant, .. } => {
                        assert_eq!(plant, "plant-a");
                        link.hub_events.push_back(HubEvent::Authorized {
                            next_seq: self.store.next(),
                        });
                    }
                    HubAction::Store(entries) => {
                        let through = self.store.insert(entries);
                        link.hub_events.push_back(HubEvent::Stored {
                            through_seq: through,
                        });
                    }
                    HubAction::Close(e) => link.closed.push(e),
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// Delivers one pending item, chosen by `pick`; false when nothing is pending.
    fn step(&mut self, pick: usize) -> bool {
        let now = self.now;
        let Some(link) = self.link.as_mut() else {
            return false;
        };
        let queues = [
            !link.to_hub.is_empty(),
            !link.to_plant.is_empty(),
            !link.plant_events.is_empty(),
            !link.hub_events.is_empty(),
        ];
        let ready: Vec<usize> = (0..4).filter(|&i| queues[i]).collect();
        if ready.is_empty() {
            return false;
        }
        match ready[pick % ready.len()] {
            0 => {
                let b = link.to_hub.pop_front().unwrap();
                let (f, used) = wire::decode(&b).unwrap().unwrap();
                assert_eq!(used, b.len());
                link.hub.handle(HubEvent::Frame(f));
            }
            1 => {
                let b = link.to_plant.pop_front().unwrap();
                let (f, _) = wire::decode(&b).unwrap().unwrap();
                link.plant.handle(now, PlantEvent::Frame(f));
            }
            2 => {
                let e = link.plant_events.pop_front().unwrap();
                link.plant.handle(now, e);
            }
            _ => {
                let e = link.hub_events.pop_front().unwrap();
                link.hub.handle(e);
            }
        }
        self.drain_actions();
        true
    }

    fn append(&mut self, n: u64) {
        let last = self.journal.last();
        for s in last + 1..=last + n {
            self.journal.entries.push(entry(s));
        }
        let now = self.now;
        if let Some(link) = self.link.as_mut() {
            link.plant.handle(now, PlantEvent::JournalAt(last + n));
        }
        self.drain_actions();
    }

    fn run_to_quiescence(&mut self) {
        let mut i = 0;
        while self.step(i) {
            i += 1;
            assert!(i < 1_000_000, "no quiescence");
        }
    }

    fn errors(&self) -> Vec<SessionError> {
        self.link
            .as_ref()
            .map(|l| l.closed.clone())
            .unwrap_or_default()
    }

    fn assert_exactly_once_in_order(&self) {
        assert_eq!(self.store.double_stores, 0);
        for (i, e) in self.store.rows.iter().enumerate() {
            assert_eq!(e, &entry(i as u64 + 1));
        }
        assert!(self.journal.hub_acked <= self.store.rows.len() as u64);
    }
}

#[test]
fn a_backlog_drains_in_order_within_the_window() {
    let settings = PlantSettings {
        window: 4,
        batch_max: 100,
        ..PlantSettings::default()
    };
    let mut sim = Sim::new(10_000, settings);
    sim.connect();
    let mut max_inflight = 0;
    let mut i = 0;
    while sim.step(i) {
        i += 1;
        let l = sim.link.as_ref().unwrap();
        max_inflight = max_inflight.max(l.plant.inflight.len());
    }
    assert_eq!(sim.errors(), vec![]);
    assert_eq!(sim.store.rows.len(), 10_000);
    assert_eq!(sim.journal.hub_acked, 10_000);
    assert!(max_inflight <= 4, "window exceeded: {max_inflight}");
    sim.assert_exactly_once_in_order();
    // New transactions flow in the same session.
    sim.append(250);
    sim.run_to_quiescence();
    assert_eq!(
        (sim.store.rows.len(), sim.journal.hub_acked),
        (10_250, 10_250)
    );
}

#[test]
fn reconnecting_resumes_where_the_hub_is_without_resending_stored_entries() {
    let settings = PlantSettings {
        window: 2,
        batch_max: 10,
        ..PlantSettings::default()
    };
    let mut sim = Sim::new(100, settings);
    sim.connect();
    for i in 0..15 {
        sim.step(i);
    }
    let stored = sim.store.rows.len();
    assert!(stored > 0 && stored < 100, "stored {stored}");
    // The link drops with batches in flight; a new session starts where the hub is.
    sim.connect();
    sim.run_to_quiescence();
    assert_eq!(sim.store.rows.len(), 100);
    sim.assert_exactly_once_in_order();
}

#[test]
fn no_ack_within_the_timeout_ends_the_session() {
    let settings = PlantSettings {
        ack_timeout: Duration::from_secs(30),
        ..PlantSettings::default()
    };
    let t0 = Instant::now();
    let mut s = PlantSession::new(&ident(), 5, settings, t0);
    assert!(matches!(
        s.poll_action(),
        Some(PlantAction::Send(Frame::Hello { .. }))
    ));
    s.handle(t0, PlantEvent::Frame(Frame::Resume { next_seq: 1 }));
    assert_eq!(s.poll_action(), Some(PlantAction::Acked(0)));
    assert_eq!(
        s.poll_action(),
        Some(PlantAction::Read {
            after: 0,
            limit: 2000,
            max_bytes: 4 * 1024 * 1024
        })
    );
    s.handle(t0, PlantEvent::Read((1..=5).map(entry).collect()));
    assert!(matches!(
        s.poll_action(),
        Some(PlantAction::Send(Frame::Batch { .. }))
    ));
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    s.handle_timeout(t0 + Duration::from_secs(29));
    assert_eq!(s.poll_action(), None);
    s.handle_timeout(t0 + Duration::from_secs(30));
    assert_eq!(
        s.poll_action(),
        Some(PlantAction::Close(SessionError::AckTimeout(
            Duration::from_secs(30)
        )))
    );
    assert!(s.is_closed());
}

#[test]
fn an_ack_moves_the_deadline_and_the_cursor() {
    let mut s = PlantSession::new(
        &ident(),
        4,
        PlantSettings {
            batch_max: 2,
            ..PlantSettings::default()
        },
        Instant::now(),
    );
    let t0 = Instant::now();
    s.poll_action();
    s.handle(t0, PlantEvent::Frame(Frame::Resume { next_seq: 1 }));
    while s.poll_action().is_some() {}
    s.handle(t0, PlantEvent::Read(vec![entry(1), entry(2)]));
    s.handle(t0, PlantEvent::Read(vec![entry(3), entry(4)]));
    while s.poll_action().is_some() {}
    let t1 = t0 + Duration::from_secs(10);
    s.handle(t1, PlantEvent::Frame(Frame::Ack { through_seq: 2 }));
    assert_eq!(s.poll_action(), Some(PlantAction::Acked(2)));
    assert_eq!(s.poll_timeout(), Some(t1 + Duration::from_secs(30)));
    s.handle(t1, PlantEvent::Frame(Frame::Ack { through_seq: 2 }));
    assert_eq!(s.poll_action(), None, "a repeated ack changes nothing");
    s.handle(t1, PlantEvent::Frame(Frame::Ack { through_seq: 4 }));
    assert_eq!(s.poll_action(), Some(PlantAction::Acked(4)));
    assert_eq!(s.poll_timeout(), None);
    s.handle(t1, PlantEvent::Frame(Frame::Ack { through_seq: 9 }));
    assert!(matches!(
        s.poll_action(),
        Some(PlantAction::Close(SessionError::Protocol(_)))
    ));
}

#[test]
fn the_plant_refuses_a_resume_beyond_its_journal_and_reports_pruned_entries() {
    let mut s = PlantSession::new(&ident(), 10, PlantSettings::default(), Instant::now());
    s.poll_action();
    s.handle(
        Instant::now(),
        PlantEvent::Frame(Frame::Resume { next_seq: 12 }),
    );
    assert!(
        matches!(s.poll_action(), Some(PlantAction::Close(SessionError::Protocol(m))) if m.contains("last seq is 10"))
    );

    let mut s = PlantSession::new(&ident(), 10, PlantSettings::default(), Instant::now());
    s.poll_action();
    s.handle(
        Instant::now(),
        PlantEvent::Frame(Frame::Resume { next_seq: 3 }),
    );
    while s.poll_action().is_some() {}
    s.handle(Instant::now(), PlantEvent::Read(vec![entry(6), entry(7)]));
    assert_eq!(
        s.poll_action(),
        Some(PlantAction::Close(SessionError::Pruned {
            needed: 3,
            first: 6
        }))
    );
}

#[test]
fn the_hub_refuses_gaps_old_protocols_and_denied_plants_and_re_acks_duplicates() {
    let mut h = HubSession::default();
    h.handle(HubEvent::Frame(Frame::Hello {
        protocol: 99,
        plant: "p".into(),
        version: "v".into(),
        journal: "j1".into(),
    }));
    assert!(matches!(
        h.poll_action(),
        Some(HubAction::Send(Frame::Refuse {
            code: RefuseCode::Version,
            ..
        }))
    ));
    assert!(h.is_closed());

    let mut h = HubSession::default();
    h.handle(HubEvent::Frame(Frame::Hello {
        protocol: wire::PROTOCOL,
        plant: "p".into(),
        version: "v".into(),
        journal: "j1".into(),
    }));
    h.poll_action();
    h.handle(HubEvent::Denied {
        message: "plant p is revoked".into(),
    });
    assert_eq!(
        h.poll_action(),
        Some(HubAction::Send(Frame::Refuse {
            code: RefuseCode::Forbidden,
            message: "plant p is revoked".into()
        }))
    );

    let mut h = HubSession::default();
    h.handle(HubEvent::Frame(Frame::Hello {
        protocol: wire::PROTOCOL,
        plant: "p".into(),
        version: "v".into(),
        journal: "j1".into(),
    }));
    h.poll_action();
    h.handle(HubEvent::Authorized { next_seq: 5 });
    assert_eq!(
        h.poll_action(),
        Some(HubAction::Send(Frame::Resume { next_seq: 5 }))
    );
    // Overlap: 3..=6 stores only 5 and 6.
    h.handle(HubEvent::Frame(Frame::Batch {
        entries: (3..=6).map(entry).collect(),
    }));
    assert_eq!(
        h.poll_action(),
        Some(HubAction::Store(vec![entry(5), entry(6)]))
    );
    // All old: re-acked, not stored.
    h.handle(HubEvent::Frame(Frame::Batch {
        entries: vec![entry(4)],
    }));
    assert_eq!(
        h.poll_action(),
        Some(HubAction::Send(Frame::Ack { through_seq: 6 }))
    );
    // A gap is refused.
    h.handle(HubEvent::Frame(Frame::Batch {
        entries: vec![entry(9)],
    }));
    assert!(matches!(
        h.poll_action(),
        Some(HubAction::Send(Frame::Refuse {
            code: RefuseCode::Protocol,
            ..
        }))
    ));
    assert!(h.is_closed());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    /// Any interleaving of deliveries, new transactions and dropped connections stores every
    /// entry exactly once, in order, and never acks what the hub does not hold.
    #[test]
    fn any_schedule_with_drops_stores_exactly_once_in_order(
        ops in prop::collection::vec((0u8..10, any::<usize>()), 1..400),
        window in 1usize..5,
        batch_max in 1usize..20,
    ) {
        let settings = PlantSettings { window, batch_max, ..PlantSettings::default() };
        let mut sim = Sim::new(20, settings);
        sim.connect();
        for (op, pick) in ops {
            match op {
                0 => sim.connect(),                 // the link drops; a new session
                1 => sim.append((pick % 7) as u64 + 1),
                _ => { sim.step(pick); }
            }
            sim.assert_exactly_once_in_order();
            prop_assert!(sim.errors().is_empty(), "{:?}", sim.errors());
        }
        sim.connect();
        sim.run_to_quiescence();
        sim.assert_exactly_once_in_order();
        prop_assert_eq!(sim.store.rows.len() as u64, sim.journal.last());
        prop_assert_eq!(sim.journal.hub_acked, sim.journal.last());
    }
}

#[test]
fn a_hub_that_never_answers_the_hello_times_out() {
    let t0 = Instant::now();
    let mut s = PlantSession::new(&ident(), 3, PlantSettings::default(), t0);
    s.poll_action();
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    s.handle_timeout(t0 + Duration::from_secs(30));
    assert!(matches!(
        s.poll_action(),
        Some(PlantAction::Close(SessionError::AckTimeout(_)))
    ));
}

#[test]
fn a_hub_that_cannot_store_says_so_and_closes() {
    let mut h = HubSession::default();
    h.handle(HubEvent::Frame(Frame::Hello {
        protocol: wire::PROTOCOL,
        plant: "p".into(),
        version: "v".into(),
        journal: "j1".into(),
    }));
    h.handle(HubEvent::Authorized { next_seq: 1 });
    h.handle(HubEvent::Frame(Frame::Batch {
        entries: vec![entry(1)],
    }));
    h.handle(HubEvent::StoreFailed {
        message: "connection to PostgreSQL lost".into(),
    });
    let actions: Vec<_> = std::iter::from_fn(|| h.poll_action()).collect();
    assert!(actions.contains(&HubAction::Send(Frame::Refuse {
        code: RefuseCode::Unavailable,
        message: "hub store failed: connection to PostgreSQL lost".into()
    })));
    assert!(h.is_closed());
}

#[test]
fn the_hub_refuses_a_hello_out_of_bounds_before_it_asks_the_store_anything() {
    let mut h = HubSession::default();
    h.handle(HubEvent::Frame(Frame::Hello {
        protocol: wire::PROTOCOL,
        plant: "plant-a".into(),
        version: "x".repeat(4 * 1024 * 1024),
        journal: "j1".into(),
    }));
    match h.poll_action() {
        Some(HubAction::Send(Frame::Refuse {
            code: RefuseCode::Protocol,
            message,
        })) => assert!(message.starts_with("hello: version"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(h.poll_action(), Some(HubAction::Close(_))));
    assert_eq!(
        h.poll_action(),
        None,
        "no Authorize: nothing is looked up or written"
    );
    assert!(h.is_closed());
}

#[test]
fn the_connection_s_other_streams_wait_for_the_hubs_resume() {
    let t0 = Instant::now();
    let mut s = PlantSession::new(&ident(), 5, PlantSettings::default(), t0);
    assert!(!s.is_streaming(), "before the hello is sent");
    assert!(matches!(
        s.poll_action(),
        Some(PlantAction::Send(Frame::Hello { .. }))
    ));
    assert!(!s.is_streaming(), "the hello sent, not answered");
    s.handle(t0, PlantEvent::JournalAt(6));
    assert!(!s.is_streaming(), "journal news is no answer");
    s.handle(t0, PlantEvent::Frame(Frame::Resume { next_seq: 3 }));
    assert!(s.is_streaming(), "answered");
    let mut refused = PlantSession::new(&ident(), 5, PlantSettings::default(), t0);
    refused.handle(
        t0,
        PlantEvent::Frame(Frame::Refuse {
            code: RefuseCode::Forbidden,
            message: "revoked".into(),
        }),
    );
    assert!(!refused.is_streaming(), "a refusal opens nothing");
}
