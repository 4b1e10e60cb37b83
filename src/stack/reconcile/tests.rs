use super::*;
use crate::config::ProbeConfig;
use crate::stack::spec::{Secrets, ServiceSpec};

fn spec() -> StackSpec {
    let probe = ProbeConfig {
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(3),
        start_period: Duration::from_secs(30),
        retries: 3,
        busy_limit: Duration::from_secs(600),
    };
    StackSpec {
        name: "t".into(),
        network: "t-net".into(),
        odoo_database: "odoo".into(),
        secrets: Secrets {
            postgres_password: "p".into(),
            odoo_admin_password: "a".into(),
            odoo_admin_login_password: "l".into(),
        },
        fresh_secrets: false,
        odoo_conf: (
            std::path::PathBuf::from("/nonexistent/odoo.conf"),
            String::new(),
        ),
        dir: std::path::PathBuf::from("/nonexistent"),
        services: Service::ALL
            .into_iter()
            .map(|service| ServiceSpec {
                service,
                container: format!("t-{service}"),
                image: format!("{service}:1"),
                pullable: false,
                env: vec![],
                mounts: vec![],
                memory: None,
                nano_cpus: None,
                network: "t-net".into(),
                probe,
                hash: format!("h-{service}"),
            })
            .collect(),
    }
}

fn running(service: Service) -> Observed {
    Observed {
        id: format!("id-{service}"),
        state: RunState::Running,
        spec: format!("h-{service}"),
    }
}

fn with_state(service: Service, state: RunState) -> Observed {
    Observed {
        state,
        ..running(service)
    }
}

use Service::{Odoo, Postgres, Redis};

/// A situation: what Docker shows, what the probes say, what the supervisor remembers.
struct Case {
    name: &'static str,
    observed: Vec<Observed>,
    health: Vec<(Service, Health)>,
    books: Vec<(Service, Book)>,
    now: u64,
    /// The expected actions, as (kind, service).
    want: Vec<(&'static str, Service)>,
}

fn kind(a: &Action) -> &'static str {
    match a {
        Action::Create { .. } => "create",
        Action::Start { .. } => "start",
        Action::Restart { .. } => "restart",
        Action::Recreate { .. } => "recreate",
        Action::OpenBreaker { .. } => "breaker",
    }
}

fn svc_of(o: &Observed) -> Service {
    Service::ALL
        .into_iter()
        .find(|s| o.id == format!("id-{s}"))
        .unwrap()
}

fn seen() -> Book {
    Book {
        seen: true,
        ..Book::default()
    }
}

fn healthy_deps() -> Vec<(Service, Health)> {
    vec![(Postgres, Health::Healthy), (Redis, Health::Healthy)]
}

#[test]
fn decisions() {
    let five_recent = Book {
        seen: true,
        restarts: (0..5).map(|i| 100_000 + i * 1000).collect(),
        ..Book::default()
    };
    let five_old = Book {
        seen: true,
        restarts: (0..5).map(|i| i * 1000).collect(),
        ..Book::default()
    };
    let cases = vec![
        Case {
            name: "nothing exists: databases first, Odoo waits for them",
            observed: vec![],
            health: vec![],
            books: vec![],
            now: 0,
            want: vec![("create", Postgres), ("create", Redis)],
        },
        Case {
            name: "databases running but not yet healthy: Odoo still waits",
            observed: vec![running(Postgres), running(Redis)],
            health: vec![(Postgres, Health::Starting), (Redis, Health::Healthy)],
            books: vec![],
            now: 0,
            want: vec![],
        },
        Case {
            name: "databases healthy: Odoo is created",
            observed: vec![running(Postgres), running(Redis)],
            health: healthy_deps(),
            books: vec![],
            now: 0,
            want: vec![("create", Odoo)],
        },
        Case {
            name: "all running and healthy: nothing to do",
            observed: vec![running(Postgres), running(Redis), running(Odoo)],
            health: vec![
                (Postgres, Health::Healthy),
                (Redis, Health::Healthy),
                (Odoo, Health::Healthy),
            ],
            books: vec![],
            now: 0,
            want: vec![],
        },
        Case {
            name: "Odoo still starting: left alone",
            observed: vec![running(Postgres), running(Redis), running(Odoo)],
            health: vec![
                (Postgres, Health::Healthy),
                (Redis, Health::Healthy),
                (Odoo, Health::Starting),
            ],
            books: vec![],
            now: 0,
            want: vec![],
        },
        Case {
            name: "PostgreSQL exited (killed): started again",
            observed: vec![
                with_state(Postgres, RunState::Exited),
                running(Redis),
                running(Odoo),
            ],
            health: vec![(Redis, Health::Healthy), (Odoo, Health::Healthy)],
            books: vec![(Postgres, seen())],
            now: 0,
            want: vec![("start", Postgres)],
        },
        Case {
            name: "Odoo paused (hung) and found unhealthy: restarted",
            observed: vec![
                running(Postgres),
                running(Redis),
                with_state(Odoo, RunState::Paused),
            ],
            health: vec![
                (Postgres, Health::Healthy),
                (Redis, Health::Healthy),
                (Odoo, Health::Unhealthy("timed out".into())),
            ],
            books: vec![],
            now: 0,
            want: vec![("restart", Odoo)],
        },
        Case {
            name: "Redis removed by hand: recreated",
            observed: vec![running(Postgres), running(Odoo)],
            health: vec![(Postgres, Health::Healthy), (Odoo, Health::Healthy)],
            books: vec![(Redis, seen())],
            now: 0,
            want: vec![("create", Redis)],
        },
        Case {
            name: "spec changed: recreated even while healthy",
            observed: vec![
                Observed {
                    spec: "old".into(),
                    ..running(Postgres)
                },
                running(Redis),
                running(Odoo),
            ],
            health: vec![
                (Postgres, Health::Healthy),
                (Redis, Health::Healthy),
                (Odoo, Health::Healthy),
            ],
            books: vec![],
            now: 0,
            want: vec![("recreate", Postgres)],
        },
        Case {
            name: "exited Odoo waits for an unhealthy PostgreSQL",
            observed: vec![
                running(Postgres),
                running(Redis),
                with_state(Odoo, RunState::Exited),
            ],
            health: vec![
                (Postgres, Health::Unhealthy("refused".into())),
                (Redis, Health::Healthy),
            ],
            books: vec![],
            now: 0,
            want: vec![("restart", Postgres)],
        },
        Case {
            name: "within the backoff: no restart yet",
            observed: vec![with_state(Redis, RunState::Exited)],
            health: vec![],
            books: vec![
                (
                    Redis,
                    Book {
                        seen: true,
                        not_before: 5_000,
                        ..Book::default()
                    },
                ),
                (
                    Postgres,
                    Book {
                        breaker: true,
                        ..Book::default()
                    },
                ),
            ],
            now: 4_999,
            want: vec![],
        },
        Case {
            name: "five restarts within ten minutes: the breaker opens",
            observed: vec![running(Postgres), with_state(Redis, RunState::Exited)],
            health: vec![(Postgres, Health::Healthy)],
            books: vec![(Redis, five_recent.clone())],
            now: 200_000,
            want: vec![("breaker", Redis)],
        },
        Case {
            name: "five restarts long ago: restarted",
            observed: vec![running(Postgres), with_state(Redis, RunState::Exited)],
            health: vec![(Postgres, Health::Healthy)],
            books: vec![(Redis, five_old)],
            now: 700_000,
            want: vec![("start", Redis)],
        },
        Case {
            name: "breaker open: left alone, even when gone",
            observed: vec![running(Postgres)],
            health: vec![(Postgres, Health::Healthy)],
            books: vec![(
                Redis,
                Book {
                    breaker: true,
                    ..five_recent.clone()
                },
            )],
            now: 200_000,
            want: vec![],
        },
        Case {
            name: "paused but still answering its probes: left alone",
            observed: vec![
                running(Postgres),
                running(Redis),
                with_state(Odoo, RunState::Paused),
            ],
            health: vec![
                (Postgres, Health::Healthy),
                (Redis, Health::Healthy),
                (Odoo, Health::Healthy),
            ],
            books: vec![],
            now: 0,
            want: vec![],
        },
        Case {
            name: "dead and created containers are started; restarting ones waited for",
            observed: vec![
                with_state(Postgres, RunState::Dead),
                with_state(Redis, RunState::Created),
                with_state(Odoo, RunState::Restarting),
            ],
            health: vec![],
            books: vec![],
            now: 0,
            want: vec![("start", Postgres), ("start", Redis)],
        },
        Case {
            name: "a changed spec of a stopped Odoo waits for its dependencies",
            observed: vec![
                running(Postgres),
                running(Redis),
                Observed {
                    spec: "old".into(),
                    ..with_state(Odoo, RunState::Exited)
                },
            ],
            health: vec![(Postgres, Health::Starting), (Redis, Health::Healthy)],
            books: vec![],
            now: 0,
            want: vec![],
        },
        Case {
            name: "a lost container after five restarts opens the breaker too",
            observed: vec![running(Postgres)],
            health: vec![(Postgres, Health::Healthy)],
            books: vec![(
                Redis,
                Book {
                    seen: true,
                    restarts: (0..5).map(|i| 100_000 + i * 1000).collect(),
                    ..Book::default()
                },
            )],
            now: 200_000,
            want: vec![("breaker", Redis)],
        },
        Case {
            name: "a busy Odoo (requests waiting on a lock) is left alone",
            observed: vec![running(Postgres), running(Redis), running(Odoo)],
            health: vec![
                (Postgres, Health::Healthy),
                (Redis, Health::Healthy),
                (Odoo, Health::Busy("2 statements waiting on a lock".into())),
            ],
            books: vec![(Odoo, seen())],
            now: 100_000,
            want: vec![],
        },
        Case {
            name: "a busy Odoo is left alone in a backoff and near the breaker too",
            observed: vec![running(Postgres), running(Redis), running(Odoo)],
            health: vec![
                (Postgres, Health::Healthy),
                (Redis, Health::Healthy),
                (Odoo, Health::Busy("waiting on a lock".into())),
            ],
            books: vec![(Odoo, five_recent.clone())],
            now: 200_000,
            want: vec![],
        },
        Case {
            name: "a hung Odoo (no answer, nothing in progress) is restarted",
            observed: vec![running(Postgres), running(Redis), running(Odoo)],
            health: vec![
                (Postgres, Health::Healthy),
                (Redis, Health::Healthy),
                (Odoo, Health::Unhealthy("hung".into())),
            ],
            books: vec![(Odoo, seen())],
            now: 100_000,
            want: vec![("restart", Odoo)],
        },
        Case {
            name: "a paused Odoo found unhealthy is restarted",
            observed: vec![
                running(Postgres),
                running(Redis),
                with_state(Odoo, RunState::Paused),
            ],
            health: vec![
                (Postgres, Health::Healthy),
                (Redis, Health::Healthy),
                (Odoo, Health::Unhealthy("the container is paused".into())),
            ],
            books: vec![(Odoo, seen())],
            now: 100_000,
            want: vec![("restart", Odoo)],
        },
        Case {
            name: "a container being removed is waited for",
            observed: vec![with_state(Postgres, RunState::Removing), running(Redis)],
            health: vec![(Redis, Health::Healthy)],
            books: vec![],
            now: 0,
            want: vec![],
        },
    ];
    let desired = spec();
    for case in cases {
        let observed: BTreeMap<Service, Observed> =
            case.observed.into_iter().map(|o| (svc_of(&o), o)).collect();
        let health: BTreeMap<Service, Health> = case.health.into_iter().collect();
        let mut books: BTreeMap<Service, Book> = case.books.into_iter().collect();
        let got: Vec<(&str, Service)> =
            reconcile(case.now, &desired, &observed, &health, &mut books)
                .iter()
                .map(|a| (kind(a), a.service()))
                .collect();
        assert_eq!(got, case.want, "case: {}", case.name);
    }
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let mut book = Book::default();
    let mut waits = vec![];
    let mut now = 0;
    for _ in 0..8 {
        book.record_restart(now);
        waits.push(book.not_before - now);
        now = book.not_before;
    }
    assert_eq!(
        waits,
        vec![1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
    );
    assert_eq!(book.total_restarts, 8);
}

#[test]
fn reset_closes_the_breaker_and_forgets() {
    let mut book = Book {
        breaker: true,
        not_before: 99,
        restarts: [1, 2, 3].into(),
        ..Book::default()
    };
    book.reset();
    assert!(!book.breaker);
    assert!(book.restarts.is_empty());
    assert_eq!(book.not_before, 0);
}

#[test]
fn upgrade_verdicts() {
    use UpgradeVerdict::*;
    let unhealthy = Health::Unhealthy("refused".into());
    let limit = UPGRADE_START_LIMIT.as_millis() as u64;
    // (now, started, health, restarts since, breaker) with the upgrade applied at 0 and a
    // deadline of 60 s.
    type Case<'a> = (
        u64,
        Option<u64>,
        Option<&'a Health>,
        u64,
        bool,
        UpgradeVerdict,
    );
    let cases: Vec<Case> = vec![
        (10, Some(5), Some(&Health::Healthy), 0, false, Commit),
        (10, Some(5), Some(&Health::Starting), 0, false, Wait),
        (10, Some(5), None, 1, false, Wait),
        (
            10,
            Some(5),
            None,
            2,
            false,
            RollBack("the new image failed to start (2 restarts)".into()),
        ),
        (
            10,
            Some(5),
            Some(&Health::Starting),
            0,
            true,
            RollBack("the new image failed to start (0 restarts)".into()),
        ),
        (
            60_005,
            Some(5),
            Some(&unhealthy),
            0,
            false,
            RollBack("not healthy within 60 s: refused".into()),
        ),
        (
            60_005,
            Some(5),
            Some(&Health::Starting),
            0,
            false,
            RollBack("not healthy within 60 s".into()),
        ),
        // The deadline counts from the new container's start, not from the apply (a pull).
        (
            60_005,
            Some(30_000),
            Some(&Health::Starting),
            0,
            false,
            Wait,
        ),
        // No probe verdict yet (just back from a Docker outage): no deadline verdict.
        (600_000, Some(5), None, 0, false, Wait),
        // Still pulling, or failing to create.
        (limit - 1, None, None, 0, false, Wait),
        (
            limit,
            None,
            None,
            0,
            false,
            RollBack("no container on the new image within 30 minutes".into()),
        ),
    ];
    for (now, started, health, restarts, breaker, want) in cases {
        assert_eq!(
            judge_upgrade(now, 0, started, 60_000, health, restarts, breaker),
            want,
            "now {now}, started {started:?}, health {health:?}"
        );
    }
}

fn probe(start_period_s: u64, retries: u32) -> ProbeConfig {
    ProbeConfig {
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(5),
        start_period: Duration::from_secs(start_period_s),
        retries,
        busy_limit: Duration::from_secs(600),
    }
}

fn fail(why: &str) -> Outcome {
    Outcome::Fail(why.into())
}

fn busy(why: &str) -> Outcome {
    Outcome::Busy(why.into())
}

#[test]
fn tracker_respects_the_start_period_and_retries() {
    let p = probe(30, 3);
    let mut t = Tracker::new("c1", 1, 1_000);
    // Failing while starting, within the period: still starting, nothing counted.
    t.record(5_000, fail("refused"), &p);
    assert_eq!((t.health.clone(), t.failures), (Health::Starting, 0));
    assert!(t.eager());
    // Past the period without ever passing: failures count.
    for now in [31_000, 32_000] {
        t.record(now, fail("refused"), &p);
    }
    assert_eq!((t.health.clone(), t.failures), (Health::Starting, 2));
    t.record(33_000, fail("refused"), &p);
    assert_eq!(t.health, Health::Unhealthy("refused".into()));
    // A pass heals at once.
    t.record(34_000, Outcome::Pass, &p);
    assert_eq!((t.health.clone(), t.failures), (Health::Healthy, 0));
    assert!(!t.eager());
    // Once healthy, the start period no longer shelters failures.
    let p = probe(30, 2);
    let mut t = Tracker::new("c2", 2, 0);
    t.record(1_000, Outcome::Pass, &p);
    t.record(2_000, fail("timed out"), &p);
    assert_eq!(t.health, Health::Healthy);
    assert!(t.eager());
    t.record(3_000, fail("timed out"), &p);
    assert_eq!(t.health, Health::Unhealthy("timed out".into()));
}

/// Invariant 8: busy is not failing, however long the probes go unanswered (within the
/// limit); hung after busy fails as usual; busy past the limit counts as failing.
#[test]
fn tracker_tells_busy_from_hung() {
    let p = probe(30, 3);
    let table: &[(&str, &[Outcome], Health, u32)] = &[
        (
            "one timeout, then busy: busy, the failure forgiven",
            &[Outcome::Pass, fail("no answer"), busy("lock")],
            Health::Busy("lock".into()),
            0,
        ),
        (
            "busy for many probes in a row: still busy, never unhealthy",
            &[
                Outcome::Pass,
                busy("lock"),
                busy("lock"),
                busy("lock"),
                busy("lock"),
                busy("lock"),
                busy("lock"),
            ],
            Health::Busy("lock".into()),
            0,
        ),
        (
            "busy, then answering: healthy",
            &[Outcome::Pass, busy("lock"), busy("lock"), Outcome::Pass],
            Health::Healthy,
            0,
        ),
        (
            "busy, then hung (nothing in progress): failures count from there",
            &[Outcome::Pass, busy("lock"), fail("hung"), fail("hung")],
            Health::Busy("lock".into()),
            2,
        ),
        (
            "busy, then hung three times: unhealthy",
            &[
                Outcome::Pass,
                busy("lock"),
                fail("hung"),
                fail("hung"),
                fail("hung"),
            ],
            Health::Unhealthy("hung".into()),
            3,
        ),
        (
            "hung twice, then busy, then hung: the count starts again",
            &[
                Outcome::Pass,
                fail("hung"),
                fail("hung"),
                busy("lock"),
                fail("hung"),
            ],
            Health::Busy("lock".into()),
            1,
        ),
        (
            "busy while starting: still starting, never unhealthy",
            &[busy("lock"), busy("lock"), busy("lock"), busy("lock")],
            Health::Starting,
            0,
        ),
    ];
    for (name, outcomes, want, failures) in table {
        // Probes every 5 s, well past the start period: only busyness shelters them.
        let mut t = Tracker::new("c", 1, 0);
        for (i, o) in outcomes.iter().enumerate() {
            t.record(60_000 + i as u64 * 5_000, o.clone(), &p);
        }
        assert_eq!((&t.health, t.failures), (want, *failures), "case: {name}");
    }
    // A busy service is probed at the usual interval, not every second.
    let mut t = Tracker::new("c", 1, 0);
    t.record(60_000, Outcome::Pass, &p);
    t.record(65_000, busy("lock"), &p);
    assert!(!t.eager());
}

#[test]
fn busy_past_the_limit_counts_as_failing() {
    let p = ProbeConfig {
        busy_limit: Duration::from_secs(60),
        ..probe(30, 3)
    };
    let mut t = Tracker::new("c", 1, 0);
    t.record(100_000, Outcome::Pass, &p);
    // Busy from 105 s; up to 165 s it is left alone.
    for now in (105_000..165_000).step_by(5_000) {
        t.record(now, busy("lock"), &p);
        assert_eq!(t.health, Health::Busy("lock".into()), "at {now}");
    }
    t.record(165_000, busy("lock"), &p);
    t.record(166_000, busy("lock"), &p);
    assert_eq!(t.failures, 2);
    t.record(167_000, busy("lock"), &p);
    match &t.health {
        Health::Unhealthy(why) => assert!(
            why.starts_with("busy for more than 60 s without answering: lock"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    // An answer resets it all.
    t.record(168_000, Outcome::Pass, &p);
    assert_eq!(
        (&t.health, t.failures, t.busy_since),
        (&Health::Healthy, 0, None)
    );
}
