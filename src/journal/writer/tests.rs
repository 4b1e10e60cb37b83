//! The writer's rules, driven directly with explicit clocks.

use super::*;
use crate::journal::schema;

fn tx(key: &str, payload: &str) -> NewTransaction {
    NewTransaction {
        key: key.into(),
        device: "scanner-1".into(),
        kind: "scan".into(),
        payload: payload.into(),
        occurred_at: None,
    }
}

fn open(dir: &std::path::Path, options: Options) -> Writer {
    let mut conn = Connection::open(dir.join("journal.db")).unwrap();
    schema::configure(&conn).unwrap();
    schema::migrate(&mut conn).unwrap();
    let positions = Arc::new(Positions::default());
    load_positions(&conn, &positions).unwrap();
    Writer::new(conn, options, positions)
}

/// Commits `requests` as one group at time `now` and returns each request's outcome.
fn group(
    w: &mut Writer,
    requests: Vec<Vec<NewTransaction>>,
    now: i64,
) -> Vec<Result<Vec<Appended>, JournalError>> {
    let mut answers = Vec::new();
    let group = requests
        .into_iter()
        .map(|items| {
            let (reply, answer) = oneshot::channel();
            answers.push(answer);
            (items, reply)
        })
        .collect();
    w.commit_group(group, now);
    answers
        .into_iter()
        .map(|mut a| a.try_recv().expect("answered"))
        .collect()
}

fn seqs(r: &Result<Vec<Appended>, JournalError>) -> Vec<(u64, bool)> {
    r.as_ref()
        .unwrap()
        .iter()
        .map(|a| (a.seq, a.duplicate))
        .collect()
}

fn stored_seqs(w: &Writer) -> Vec<i64> {
    let mut s = w
        .conn
        .prepare("SELECT seq FROM transactions ORDER BY seq")
        .unwrap();
    s.query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

fn prune(w: &mut Writer, now: i64) -> PruneReport {
    let (reply, mut answer) = oneshot::channel();
    w.start_pruning(reply, now);
    while w.pruning.is_some() {
        w.prune_step();
    }
    answer.try_recv().unwrap().unwrap()
}

#[test]
fn a_group_gets_consecutive_seqs_in_request_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path(), Options::default());
    let out = group(
        &mut w,
        vec![
            vec![tx("a", "{}")],
            vec![tx("b", "{}"), tx("c", "{}")],
            vec![tx("d", "{}")],
        ],
        1_000,
    );
    assert_eq!(seqs(&out[0]), vec![(1, false)]);
    assert_eq!(seqs(&out[1]), vec![(2, false), (3, false)]);
    assert_eq!(seqs(&out[2]), vec![(4, false)]);
    assert_eq!(w.positions.last_seq.load(Ordering::Acquire), 4);
}

#[test]
fn a_repeated_key_returns_the_original_seq() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path(), Options::default());
    group(&mut w, vec![vec![tx("a", "{\"q\":1}")]], 1_000);
    let out = group(
        &mut w,
        vec![vec![tx("b", "{}"), tx("a", "{\"q\":1}"), tx("b", "{}")]],
        2_000,
    );
    assert_eq!(seqs(&out[0]), vec![(2, false), (1, true), (2, true)]);
    assert_eq!(stored_seqs(&w), vec![1, 2]);
}

#[test]
fn a_conflicting_request_is_refused_whole_and_leaves_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path(), Options::default());
    group(&mut w, vec![vec![tx("a", "{\"q\":1}")]], 1_000);
    let out = group(
        &mut w,
        vec![
            vec![tx("b", "{}")],
            vec![tx("c", "{}"), tx("a", "{\"q\":2}")],
            vec![tx("d", "{}")],
        ],
        2_000,
    );
    assert_eq!(seqs(&out[0]), vec![(2, false)]);
    match &out[1] {
        Err(JournalError::KeyConflict { index, key, seq }) => {
            assert_eq!((*index, key.as_str(), *seq), (1, "a", 1));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // "c" was rolled back with its request, and "d" takes the next seq.
    assert_eq!(seqs(&out[2]), vec![(3, false)]);
    assert_eq!(stored_seqs(&w), vec![1, 2, 3]);
    // Keys are per device: another device's "a", even with another payload, is its own
    // transaction, and its retry is its own duplicate.
    let mut other = tx("a", "{\"q\":9}");
    other.device = "scanner-2".into();
    let out2 = group(&mut w, vec![vec![other.clone()], vec![other]], 2_500);
    assert_eq!(seqs(&out2[0]), vec![(4, false)]);
    assert_eq!(seqs(&out2[1]), vec![(4, true)]);
}

#[test]
fn cursors_move_forward_only_and_not_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = open(dir.path(), Options::default());
    group(
        &mut w,
        vec![vec![tx("a", "{}"), tx("b", "{}"), tx("c", "{}")]],
        1_000,
    );
    assert_eq!(w.advance(Cursor::HubAcked, 2).unwrap(), 2);
    assert_eq!(w.advance(Cursor::HubAcked, 1).unwrap(), 2);
    assert!(matches!(
        w.advance(Cursor::HubAcked, 4),
        Err(JournalError::CursorBeyondEnd {
            seq: 4,
            last_seq: 3,
            ..
        })
    ));
    assert_eq!(w.advance(Cursor::Applied, 3).unwrap(), 3);
    drop(w);
    let w = open(dir.path(), Options::default());
    assert_eq!(w.positions.hub_acked.load(Ordering::Acquire), 2);
    assert_eq!(w.positions.applied.load(Ordering::Acquire), 3);
    assert_eq!(w.positions.last_seq.load(Ordering::Acquire), 3);
}

#[test]
fn pruning_takes_only_what_is_acknowledged_and_past_retention() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        retention: Duration::from_secs(10),
        ..Options::default()
    };
    let mut w = open(dir.path(), options);
    group(&mut w, vec![vec![tx("a", "{}"), tx("b", "{}")]], 1_000);
    group(&mut w, vec![vec![tx("c", "{}"), tx("d", "{}")]], 20_000);
    w.advance(Cursor::HubAcked, 3).unwrap();
    // At t=8 s nothing is past the 10 s window yet.
    assert_eq!(prune(&mut w, 8_000).deleted, 0);
    // At t=25 s a and b are past it; c is acknowledged but still inside the window.
    assert_eq!(prune(&mut w, 25_000).deleted, 2);
    assert_eq!(stored_seqs(&w), vec![3, 4]);
    // Far later, d still waits for the hub.
    assert_eq!(prune(&mut w, 1_000_000).deleted, 1);
    assert_eq!(stored_seqs(&w), vec![4]);
}

#[test]
fn pruning_waits_for_local_apply_when_it_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        retention: Duration::ZERO,
        wait_for_local_apply: true,
        ..Options::default()
    };
    let mut w = open(dir.path(), options);
    group(&mut w, vec![vec![tx("a", "{}"), tx("b", "{}")]], 1_000);
    w.advance(Cursor::HubAcked, 2).unwrap();
    w.advance(Cursor::Applied, 1).unwrap();
    assert_eq!(prune(&mut w, 5_000).deleted, 1);
    assert_eq!(stored_seqs(&w), vec![2]);
}

#[test]
fn seq_continues_after_everything_was_pruned_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        retention: Duration::ZERO,
        ..Options::default()
    };
    let mut w = open(dir.path(), options.clone());
    let batch: Vec<_> = (0..12_000).map(|i| tx(&format!("k{i}"), "{}")).collect();
    group(&mut w, vec![batch], 1_000);
    w.advance(Cursor::HubAcked, 12_000).unwrap();
    // More than one chunk: the run goes on until nothing is left.
    assert_eq!(prune(&mut w, 2_000).deleted, 12_000);
    assert!(stored_seqs(&w).is_empty());
    drop(w);
    let mut w = open(dir.path(), options);
    let out = group(&mut w, vec![vec![tx("next", "{}")]], 3_000);
    assert_eq!(seqs(&out[0]), vec![(12_001, false)]);
}

#[test]
fn per_request_mode_and_group_mode_store_the_same() {
    for commit in [CommitMode::Group, CommitMode::PerRequest] {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let j = crate::journal::Journal::open(
                &dir.path().join("journal.db"),
                Options {
                    commit,
                    ..Options::default()
                },
            )
            .unwrap();
            let mut tasks = Vec::new();
            for i in 0..50 {
                let j = j.clone();
                tasks.push(tokio::spawn(async move {
                    j.append(vec![tx(&format!("k{i}"), "{}")]).await.unwrap()[0].seq
                }));
            }
            let mut got = Vec::new();
            for t in tasks {
                got.push(t.await.unwrap());
            }
            got.sort();
            assert_eq!(got, (1..=50).collect::<Vec<u64>>(), "{commit:?}");
            let s = j
                .get("scanner-1".into(), "k7".into())
                .await
                .unwrap()
                .unwrap();
            assert_eq!((s.key.as_str(), s.kind.as_str()), ("k7", "scan"));
            let stats = j.stats().await.unwrap();
            assert_eq!((stats.depth, stats.last_seq), (50, 50));
            j.close().await;
        });
    }
}

#[test]
fn a_rewound_cursor_moves_back_only_and_holds_pruning_back() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        retention: Duration::ZERO,
        wait_for_local_apply: true,
        ..Options::default()
    };
    let mut w = open(dir.path(), options);
    group(
        &mut w,
        vec![vec![
            tx("a", "{}"),
            tx("b", "{}"),
            tx("c", "{}"),
            tx("d", "{}"),
        ]],
        1_000,
    );
    w.advance(Cursor::HubAcked, 4).unwrap();
    w.advance(Cursor::Applied, 4).unwrap();
    assert_eq!(w.rewind(Cursor::Applied, 1).unwrap(), 1);
    // Never forwards.
    assert_eq!(w.rewind(Cursor::Applied, 3).unwrap(), 1);
    assert_eq!(prune(&mut w, 5_000).deleted, 1);
    assert_eq!(stored_seqs(&w), vec![2, 3, 4]);
    drop(w);
    let w = open(dir.path(), Options::default());
    assert_eq!(w.positions.applied.load(Ordering::Acquire), 1);
}

#[test]
fn a_rewind_narrows_a_pruning_run_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        retention: Duration::ZERO,
        wait_for_local_apply: true,
        ..Options::default()
    };
    let mut w = open(dir.path(), options);
    let items: Vec<_> = (0..12_000).map(|i| tx(&format!("k{i}"), "{}")).collect();
    group(&mut w, vec![items], 1_000);
    w.advance(Cursor::HubAcked, 12_000).unwrap();
    w.advance(Cursor::Applied, 12_000).unwrap();
    let (reply, mut answer) = oneshot::channel();
    w.start_pruning(reply, 5_000);
    // One chunk is gone; the run goes on in later steps.
    assert!(w.pruning.is_some());
    w.rewind(Cursor::Applied, 7_000).unwrap();
    while w.pruning.is_some() {
        w.prune_step();
    }
    assert_eq!(answer.try_recv().unwrap().unwrap().deleted, 7_000);
    assert_eq!(stored_seqs(&w).first(), Some(&7_001));
}
