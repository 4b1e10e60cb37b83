//! When backups are taken and which ones are kept: the schedule (`backup.schedule` in
//! `plant.toml`), [`next_run`] (when the next scheduled backup is due) and [`to_delete`] (which
//! backups a retention [`Policy`] no longer keeps).
//!
//! Pure logic: this module reads no clock, no time zone and no disk. The caller passes `now`, the
//! plant's time zone and the list of backups, so tests drive it with a virtual clock. A thin
//! driver sleeps until [`next_run`], takes the backup, then deletes what [`to_delete`] returns.
//!
//! **Schedule.** `"daily HH:MM"` runs once a day at that wall-clock time in the plant's time
//! zone; `"off"` never runs. On the day clocks spring forward, a time inside the gap does not
//! exist and the backup runs at the first instant after the gap (02:00 in Europe/Paris becomes
//! 03:00 summer time); on the day clocks fall back, a time that happens twice runs once, at its
//! first occurrence. That is jiff's `compatible` disambiguation (RFC 5545, Temporal).
//!
//! **Catch-up.** As with anacron, a slot missed while plantd was stopped is made up once when it
//! starts again: if the newest slot at or before `now` is later than the last successful backup,
//! the backup is due now. Missing several days gives one catch-up backup, not one per day.
//! A plant that never had a successful backup waits for its first slot instead of backing up the
//! moment it is installed (there is nothing worth saving yet, and the install itself is busy).
//!
//! **Retention** follows restic's `forget --keep-daily/--keep-weekly/--keep-monthly`: walking
//! from the newest backup to the oldest, keep the newest backup of each of the `keep_daily` most
//! recent days that have a backup, of each of the `keep_weekly` most recent ISO weeks (Monday to
//! Sunday, numbered in the ISO week-year) that have one, and of each of the `keep_monthly` most
//! recent months that have one. The rules count independently (unlike borg, where a backup kept by
//! one rule is skipped by the next), and a backup is kept if any rule keeps it. The newest backup
//! is always kept, whatever the policy, even 0/0/0. Days, weeks and months are the plant's local
//! calendar in its time zone, not UTC: a backup at 00:30 in Paris belongs to that Paris day.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Deserialize;

/// The suggestion every schedule error ends with.
const SCHEDULE_EXAMPLE: &str = r#"write e.g. "daily 02:00" or "off""#;

/// When the daemon takes backups, from `backup.schedule` in `plant.toml`.
///
/// Built only by parsing or by [`Schedule::daily`], so a schedule always holds a valid time of
/// day in whole minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Schedule {
    /// The local wall-clock time of the daily backup; `None` when backups are off.
    daily_at: Option<Time>,
}

impl Schedule {
    /// No scheduled backups (manual ones still work).
    pub const OFF: Schedule = Schedule { daily_at: None };

    /// A backup every day at `hour:minute` in the plant's local time (24-hour clock).
    #[cfg(test)]
    pub fn daily(hour: i8, minute: i8) -> Result<Schedule, ScheduleError> {
        let input = format!("daily {hour:02}:{minute:02}");
        if !(0..=23).contains(&hour) {
            return Err(ScheduleError::Hour { input });
        }
        if !(0..=59).contains(&minute) {
            return Err(ScheduleError::Minute { input });
        }
        Ok(Schedule {
            daily_at: Some(Time::constant(hour, minute, 0, 0)),
        })
    }

    /// The local wall-clock time of the daily backup, or `None` when backups are off.
    pub fn daily_at(&self) -> Option<Time> {
        self.daily_at
    }
}

impl Default for Schedule {
    /// Daily at 02:00, when a plant's shop floor is usually quiet.
    fn default() -> Schedule {
        Schedule {
            daily_at: Some(Time::constant(2, 0, 0, 0)),
        }
    }
}

impl fmt::Display for Schedule {
    /// The canonical form, which parses back to the same schedule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.daily_at {
            None => f.write_str("off"),
            Some(at) => write!(f, "daily {:02}:{:02}", at.hour(), at.minute()),
        }
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    /// Parses `"daily HH:MM"` (two digits each, 24-hour clock) or `"off"`; words may be separated
    /// by any whitespace.
    fn from_str(s: &str) -> Result<Schedule, ScheduleError> {
        let input = || s.to_string();
        let words: Vec<&str> = s.split_whitespace().collect();
        let time = match words.as_slice() {
            ["off"] => return Ok(Schedule::OFF),
            ["daily"] => return Err(ScheduleError::MissingTime { input: input() }),
            ["daily", time] => *time,
            _ => return Err(ScheduleError::Unknown { input: input() }),
        };
        let two_digits = |part: &str| -> Option<i8> {
            if part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit()) {
                part.parse().ok()
            } else {
                None
            }
        };
        let (hour, minute) = time
            .split_once(':')
            .and_then(|(h, m)| Some((two_digits(h)?, two_digits(m)?)))
            .ok_or_else(|| ScheduleError::TimeFormat { input: input() })?;
        if hour > 23 {
            return Err(ScheduleError::Hour { input: input() });
        }
        if minute > 59 {
            return Err(ScheduleError::Minute { input: input() });
        }
        Ok(Schedule {
            daily_at: Some(Time::constant(hour, minute, 0, 0)),
        })
    }
}

impl TryFrom<String> for Schedule {
    type Error = ScheduleError;

    fn try_from(s: String) -> Result<Schedule, ScheduleError> {
        s.parse()
    }
}

/// Why a `backup.schedule` value was refused. Each message quotes the value and shows a right one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("backup.schedule: {input:?}: not a schedule; {SCHEDULE_EXAMPLE}")]
    Unknown { input: String },
    #[error("backup.schedule: {input:?}: the time of day is missing; {SCHEDULE_EXAMPLE}")]
    MissingTime { input: String },
    #[error(
        "backup.schedule: {input:?}: the time must be HH:MM, two digits each, on a 24-hour clock; {SCHEDULE_EXAMPLE}"
    )]
    TimeFormat { input: String },
    #[error("backup.schedule: {input:?}: the hour must be 00 to 23; {SCHEDULE_EXAMPLE}")]
    Hour { input: String },
    #[error("backup.schedule: {input:?}: the minute must be 00 to 59; {SCHEDULE_EXAMPLE}")]
    Minute { input: String },
}

/// When the next scheduled backup is due: never earlier than `now`, and `None` when the schedule
/// is off.
///
/// - If the newest slot at or before `now` is later than `last_success`, it was missed (plantd
///   was stopped, or the backup failed): the backup is due now. Only one catch-up, however many
///   slots were missed.
/// - Otherwise, the first slot after both `now` and `last_success` (so a clock stepped back
///   does not repeat a slot already served).
/// - With no successful backup ever, the first slot at or after `now`: a new plant does not back
///   up the moment it is installed.
///
/// `last_success` is when the last successful backup started (or ended: both are at or after the
/// slot it served), scheduled or manual: a manual backup after today's slot stands for it.
/// A failed backup leaves `last_success` unchanged, so this says "due now" again: the driver
/// decides how long to wait before retrying. The answer depends only on the arguments, so a
/// driver may ask again at any time, e.g. after a restart.
///
/// Slots are `schedule`'s wall-clock time in `tz`, disambiguated as jiff's `compatible`: after
/// the gap when clocks spring forward, the first occurrence when they fall back. `None` is also
/// returned in the theoretical case where no slot is representable (within a day of year
/// -9999 or 9999).
pub fn next_run(
    schedule: &Schedule,
    last_success: Option<Timestamp>,
    now: Timestamp,
    tz: &TimeZone,
) -> Option<Timestamp> {
    let at = schedule.daily_at()?;
    match last_success {
        None => first_slot(at, tz, now, |slot| slot >= now),
        Some(last) => {
            if latest_slot_at_or_before(at, tz, now)? > last {
                Some(now)
            } else {
                let after = now.max(last);
                first_slot(at, tz, after, |slot| slot > after)
            }
        }
    }
}

/// The instant of the slot at `at` on local date `day` in `tz`.
fn slot(at: Time, day: Date, tz: &TimeZone) -> Option<Timestamp> {
    tz.to_ambiguous_timestamp(day.to_datetime(at))
        .compatible()
        .ok()
}

/// The newest slot at or before `t`.
fn latest_slot_at_or_before(at: Time, tz: &TimeZone, t: Timestamp) -> Option<Timestamp> {
    // Start a day late: a slot pushed past a gap could, in odd zones, land on the next date.
    let mut day = tz.to_datetime(t).date().tomorrow().ok()?;
    loop {
        let slot = slot(at, day, tz)?;
        if slot <= t {
            return Some(slot);
        }
        day = day.yesterday().ok()?;
    }
}

/// The oldest slot, from around `t` on, for which `is_next` holds.
fn first_slot(
    at: Time,
    tz: &TimeZone,
    t: Timestamp,
    is_next: impl Fn(Timestamp) -> bool,
) -> Option<Timestamp> {
    let mut day = tz.to_datetime(t).date().yesterday().ok()?;
    loop {
        let slot = slot(at, day, tz)?;
        if is_next(slot) {
            return Some(slot);
        }
        day = day.tomorrow().ok()?;
    }
}

/// How many backups to keep, from `backup.retention` in `plant.toml`. See the module
/// documentation for the rules; the newest backup is kept whatever the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The newest backup of each of this many most recent local days that have one.
    #[serde(default = "default_keep_daily")]
    pub keep_daily: u32,
    /// The newest backup of each of this many most recent ISO weeks that have one.
    #[serde(default = "default_keep_weekly")]
    pub keep_weekly: u32,
    /// The newest backup of each of this many most recent months that have one.
    #[serde(default = "default_keep_monthly")]
    pub keep_monthly: u32,
}

fn default_keep_daily() -> u32 {
    7
}
fn default_keep_weekly() -> u32 {
    4
}
fn default_keep_monthly() -> u32 {
    3
}

impl Default for Policy {
    /// A week of dailies, a month of weeklies, a quarter of monthlies.
    fn default() -> Policy {
        Policy {
            keep_daily: default_keep_daily(),
            keep_weekly: default_keep_weekly(),
            keep_monthly: default_keep_monthly(),
        }
    }
}

/// The ids of the backups that `policy` no longer keeps, in input order. `backups` are
/// `(id, when taken)` in any order; days, weeks and months are local to `tz`. Of backups taken
/// at the same instant, the later in `backups` counts as the newer.
pub fn to_delete(backups: &[(String, Timestamp)], policy: &Policy, tz: &TimeZone) -> Vec<String> {
    let dates: Vec<Date> = backups
        .iter()
        .map(|(_, taken)| tz.to_datetime(*taken).date())
        .collect();
    let mut newest_first: Vec<usize> = (0..backups.len()).collect();
    newest_first.sort_by(|&a, &b| backups[b].1.cmp(&backups[a].1).then(b.cmp(&a)));

    let mut keep = vec![false; backups.len()];
    if let Some(&newest) = newest_first.first() {
        keep[newest] = true;
    }
    let by_day = |d: Date| d;
    let by_iso_week = |d: Date| {
        let week = d.iso_week_date();
        (week.year(), week.week())
    };
    let by_month = |d: Date| (d.year(), d.month());
    keep_newest_per_period(&newest_first, &dates, policy.keep_daily, by_day, &mut keep);
    keep_newest_per_period(
        &newest_first,
        &dates,
        policy.keep_weekly,
        by_iso_week,
        &mut keep,
    );
    keep_newest_per_period(
        &newest_first,
        &dates,
        policy.keep_monthly,
        by_month,
        &mut keep,
    );

    backups
        .iter()
        .zip(keep)
        .filter(|(_, kept)| !kept)
        .map(|((id, _), _)| id.clone())
        .collect()
}

/// Marks in `keep` the newest backup of each of the `count` most recent periods that have one.
/// `newest_first` indexes `dates` from the newest backup to the oldest, so the first backup met
/// in a period is its newest.
fn keep_newest_per_period<P: PartialEq>(
    newest_first: &[usize],
    dates: &[Date],
    count: u32,
    period: impl Fn(Date) -> P,
    keep: &mut [bool],
) {
    let mut kept = 0;
    let mut current = None;
    for &i in newest_first {
        if kept == count {
            break;
        }
        let p = period(dates[i]);
        if current.as_ref() != Some(&p) {
            keep[i] = true;
            kept += 1;
            current = Some(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use jiff::civil::{date, DateTime};
    use jiff::tz::TimeZoneDatabase;
    use jiff::{SignedDuration, ToSpan};

    /// Europe/Paris from the tz database bundled in jiff (`tzdb-bundle-always`, a dev-dependency
    /// feature), so the tests do not depend on the host's `/usr/share/zoneinfo`.
    fn paris() -> TimeZone {
        TimeZoneDatabase::bundled()
            .get("Europe/Paris")
            .expect("jiff bundles Europe/Paris")
    }

    fn at(tz: &TimeZone, local: DateTime) -> Timestamp {
        tz.to_timestamp(local).expect("test dates are in range")
    }

    fn local(tz: &TimeZone, ts: Timestamp) -> DateTime {
        tz.to_datetime(ts)
    }

    // ---- schedule parsing ----

    #[test]
    fn parses_daily_and_off_and_prints_them_back() {
        for (input, canonical) in [
            ("daily 02:00", "daily 02:00"),
            ("daily 00:00", "daily 00:00"),
            ("daily 23:59", "daily 23:59"),
            ("  daily \t 07:30 ", "daily 07:30"),
            ("off", "off"),
        ] {
            let schedule: Schedule = input.parse().expect(input);
            assert_eq!(schedule.to_string(), canonical, "{input:?}");
            assert_eq!(canonical.parse::<Schedule>(), Ok(schedule));
        }
        assert_eq!("off".parse::<Schedule>(), Ok(Schedule::OFF));
        assert_eq!(
            "daily 07:30".parse::<Schedule>().unwrap().daily_at(),
            Some(Time::constant(7, 30, 0, 0))
        );
    }

    #[test]
    fn default_is_daily_at_two() {
        assert_eq!(Schedule::default().to_string(), "daily 02:00");
        assert_eq!(Schedule::daily(2, 0), Ok(Schedule::default()));
    }

    #[test]
    fn refuses_bad_schedules_saying_why_and_what_to_write() {
        let hint = r#"write e.g. "daily 02:00" or "off""#;
        for (input, why) in [
            ("daily 25:00", "the hour must be 00 to 23"),
            ("daily 24:00", "the hour must be 00 to 23"),
            ("daily 12:60", "the minute must be 00 to 59"),
            (
                "daily 2:00",
                "the time must be HH:MM, two digits each, on a 24-hour clock",
            ),
            (
                "daily 02h00",
                "the time must be HH:MM, two digits each, on a 24-hour clock",
            ),
            (
                "daily 02:00:00",
                "the time must be HH:MM, two digits each, on a 24-hour clock",
            ),
            (
                "daily -1:00",
                "the time must be HH:MM, two digits each, on a 24-hour clock",
            ),
            ("daily", "the time of day is missing"),
            ("weekly 02:00", "not a schedule"),
            ("daily 02:00 03:00", "not a schedule"),
            ("Daily 02:00", "not a schedule"),
            ("", "not a schedule"),
        ] {
            let err = input.parse::<Schedule>().expect_err(input);
            assert_eq!(
                err.to_string(),
                format!("backup.schedule: {input:?}: {why}; {hint}")
            );
        }
        assert_eq!(
            "daily 25:00".parse::<Schedule>().unwrap_err().to_string(),
            r#"backup.schedule: "daily 25:00": the hour must be 00 to 23; write e.g. "daily 02:00" or "off""#
        );
        assert_eq!(
            Schedule::daily(25, 0),
            Err(ScheduleError::Hour {
                input: "daily 25:00".into()
            })
        );
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct BackupSection {
        #[serde(default)]
        schedule: Schedule,
        #[serde(default)]
        retention: Policy,
    }

    #[test]
    fn reads_schedule_and_policy_from_toml_with_named_defaults() {
        let section: BackupSection = toml::from_str("").unwrap();
        assert_eq!(section.schedule, Schedule::default());
        assert_eq!(section.retention, Policy::default());
        assert_eq!(
            Policy::default(),
            Policy {
                keep_daily: 7,
                keep_weekly: 4,
                keep_monthly: 3
            }
        );

        let section: BackupSection =
            toml::from_str("schedule = \"daily 03:15\"\n[retention]\nkeep_daily = 14\n").unwrap();
        assert_eq!(section.schedule.to_string(), "daily 03:15");
        assert_eq!(
            section.retention,
            Policy {
                keep_daily: 14,
                keep_weekly: 4,
                keep_monthly: 3
            }
        );

        let err = toml::from_str::<BackupSection>("schedule = \"daily 25:00\"\n").unwrap_err();
        assert!(
            err.to_string().contains(
                r#"backup.schedule: "daily 25:00": the hour must be 00 to 23; write e.g. "daily 02:00" or "off""#
            ),
            "{err}"
        );
        let err = toml::from_str::<BackupSection>("[retention]\nkeep_yearly = 1\n").unwrap_err();
        assert!(err.to_string().contains("keep_yearly"), "{err}");
    }

    // ---- next_run ----

    #[test]
    fn off_never_runs() {
        let tz = paris();
        let now = at(&tz, date(2026, 6, 10).at(10, 0, 0, 0));
        assert_eq!(next_run(&Schedule::OFF, None, now, &tz), None);
        assert_eq!(next_run(&Schedule::OFF, Some(now), now, &tz), None);
    }

    #[test]
    fn catches_up_once_then_follows_the_schedule() {
        let tz = paris();
        let daily = Schedule::default();
        let now = at(&tz, date(2026, 6, 10).at(10, 0, 0, 0));
        let today_2am = at(&tz, date(2026, 6, 10).at(2, 0, 0, 0));
        let tomorrow_2am = at(&tz, date(2026, 6, 11).at(2, 0, 0, 0));

        // Stopped for two days: one backup now, not one per missed day.
        let two_days_ago = at(&tz, date(2026, 6, 8).at(2, 0, 0, 0));
        assert_eq!(next_run(&daily, Some(two_days_ago), now, &tz), Some(now));
        // Yesterday's backup but today's 02:00 was missed: due now too.
        let yesterday = at(&tz, date(2026, 6, 9).at(2, 0, 0, 0));
        assert_eq!(next_run(&daily, Some(yesterday), now, &tz), Some(now));
        // Today's slot served: tomorrow 02:00.
        assert_eq!(
            next_run(&daily, Some(today_2am), now, &tz),
            Some(tomorrow_2am)
        );
        // After the catch-up backup at 10:00, tomorrow 02:00 as well.
        assert_eq!(next_run(&daily, Some(now), now, &tz), Some(tomorrow_2am));
        // A manual backup in the night before the slot does not replace it.
        let at_1am = at(&tz, date(2026, 6, 10).at(1, 0, 0, 0));
        let at_1_30 = at(&tz, date(2026, 6, 10).at(1, 30, 0, 0));
        assert_eq!(
            next_run(&daily, Some(at_1am), at_1_30, &tz),
            Some(today_2am)
        );
        // Never backed up: the next slot, not right away.
        assert_eq!(next_run(&daily, None, now, &tz), Some(tomorrow_2am));
        assert_eq!(next_run(&daily, None, at_1_30, &tz), Some(today_2am));
        // ... and at the slot itself, due then.
        assert_eq!(next_run(&daily, None, today_2am, &tz), Some(today_2am));
        // A clock stepped back behind a served slot does not serve it again.
        assert_eq!(
            next_run(&daily, Some(today_2am), at_1_30, &tz),
            Some(tomorrow_2am)
        );
    }

    #[test]
    fn slots_follow_daylight_saving_time() {
        let tz = paris();
        let daily = Schedule::default();
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:00 does not exist, the slot is 03:00.
        let evening_before = at(&tz, date(2026, 3, 28).at(22, 0, 0, 0));
        let slot = next_run(&daily, None, evening_before, &tz).unwrap();
        assert_eq!(slot.to_string(), "2026-03-29T01:00:00Z");
        assert_eq!(local(&tz, slot), date(2026, 3, 29).at(3, 0, 0, 0));
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:00 happens twice, the slot is the
        // first (00:00 UTC), and the second does not run again.
        let evening_before = at(&tz, date(2026, 10, 24).at(22, 0, 0, 0));
        let first = next_run(&daily, None, evening_before, &tz).unwrap();
        assert_eq!(first.to_string(), "2026-10-25T00:00:00Z");
        let second = "2026-10-25T01:00:00Z".parse::<Timestamp>().unwrap();
        assert_eq!(local(&tz, second), date(2026, 10, 25).at(2, 0, 0, 0));
        assert_eq!(
            next_run(&daily, Some(first), second, &tz)
                .unwrap()
                .to_string(),
            "2026-10-26T01:00:00Z"
        );
    }

    /// Drives [`next_run`] and [`to_delete`] with a virtual clock in 10-minute steps, as the
    /// daemon would, asking afresh at every step (as after a restart). Returns the local times of
    /// every backup taken and of those left at the end.
    fn simulate(tz: &TimeZone, start: Date, days: i64) -> (Vec<DateTime>, Vec<DateTime>) {
        let schedule = Schedule::default();
        let policy = Policy::default();
        let mut now = at(tz, start.at(0, 0, 0, 0));
        let end = at(tz, start.checked_add(days.days()).unwrap().at(0, 0, 0, 0));
        let mut last_success = None;
        let mut taken = Vec::new();
        let mut backups: Vec<(String, Timestamp)> = Vec::new();
        while now < end {
            let due = next_run(&schedule, last_success, now, tz).expect("daily schedule");
            assert!(due >= now, "next_run went back in time at {now}");
            if due <= now {
                let id = local(tz, now).strftime("%Y-%m-%dT%H:%M").to_string();
                backups.push((id.clone(), now));
                taken.push(local(tz, now));
                last_success = Some(now);
                let doomed = to_delete(&backups, &policy, tz);
                assert!(!doomed.contains(&id), "the newest backup {id} was deleted");
                backups.retain(|(id, _)| !doomed.contains(id));
                assert!(backups.len() <= 7 + 4 + 3, "{} backups kept", backups.len());
            }
            now += SignedDuration::from_mins(10);
        }
        let left = backups.iter().map(|(_, ts)| local(tz, *ts)).collect();
        (taken, left)
    }

    #[test]
    fn hundred_days_across_spring_forward_keep_exactly_the_policy() {
        let tz = paris();
        let (taken, left) = simulate(&tz, date(2026, 2, 1), 100);

        // One backup per day, 2026-02-01 to 2026-05-11, at 02:00 local; on 2026-03-29 02:00
        // does not exist in Paris and the backup runs at 03:00 CEST.
        let mut expected = Vec::new();
        let mut day = date(2026, 2, 1);
        for _ in 0..100 {
            let hour = if day == date(2026, 3, 29) { 3 } else { 2 };
            expected.push(day.at(hour, 0, 0, 0));
            day = day.tomorrow().unwrap();
        }
        assert_eq!(expected.last(), Some(&date(2026, 5, 11).at(2, 0, 0, 0)));
        assert_eq!(taken, expected);

        // 2026-05-11 is a Monday (ISO week 20).
        let two_am = |m, d| date(2026, m, d).at(2, 0, 0, 0);
        assert_eq!(
            left,
            vec![
                two_am(3, 31), // monthly: March's newest
                two_am(4, 26), // weekly: week 17's newest (Sunday)
                two_am(4, 30), // monthly: April's newest
                two_am(5, 3),  // weekly: week 18's newest (Sunday)
                two_am(5, 5),  // daily, the 7 most recent days: 05-05 to 05-11
                two_am(5, 6),
                two_am(5, 7),
                two_am(5, 8),
                two_am(5, 9),
                two_am(5, 10), // also weekly: week 19's newest
                two_am(5, 11), // also weekly (week 20) and monthly (May): the newest
            ]
        );
    }

    #[test]
    fn fall_back_week_backs_up_once_a_day_at_the_first_two_am() {
        let tz = paris();
        let (taken, _) = simulate(&tz, date(2026, 10, 22), 7);
        let expected: Vec<DateTime> = (22..29).map(|d| date(2026, 10, d).at(2, 0, 0, 0)).collect();
        assert_eq!(taken, expected);
        // 02:00 on 2026-10-25 ran in summer time, before the clocks fell back.
        let fall_back = at(&tz, date(2026, 10, 25).at(2, 0, 0, 0));
        assert_eq!(fall_back.to_string(), "2026-10-25T00:00:00Z");
    }

    // ---- to_delete ----

    fn backups(tz: &TimeZone, times: &[(&str, DateTime)]) -> Vec<(String, Timestamp)> {
        times
            .iter()
            .map(|(id, when)| (id.to_string(), at(tz, *when)))
            .collect()
    }

    fn policy(keep_daily: u32, keep_weekly: u32, keep_monthly: u32) -> Policy {
        Policy {
            keep_daily,
            keep_weekly,
            keep_monthly,
        }
    }

    #[test]
    fn several_backups_a_day_only_the_newest_counts() {
        let tz = paris();
        let list = backups(
            &tz,
            &[
                ("mon-scheduled", date(2026, 6, 8).at(2, 0, 0, 0)),
                ("tue-scheduled", date(2026, 6, 9).at(2, 0, 0, 0)),
                ("wed-scheduled", date(2026, 6, 10).at(2, 0, 0, 0)),
                ("wed-manual", date(2026, 6, 10).at(10, 30, 0, 0)),
                ("wed-before-upgrade", date(2026, 6, 10).at(14, 0, 0, 0)),
            ],
        );
        assert_eq!(
            to_delete(&list, &policy(2, 0, 0), &tz),
            ["mon-scheduled", "wed-scheduled", "wed-manual"]
        );
        assert_eq!(
            to_delete(&list, &policy(7, 0, 0), &tz),
            ["wed-scheduled", "wed-manual"]
        );
        // 0/0/0 keeps only the newest.
        assert_eq!(
            to_delete(&list, &policy(0, 0, 0), &tz),
            [
                "mon-scheduled",
                "tue-scheduled",
                "wed-scheduled",
                "wed-manual"
            ]
        );
        // Input order does not matter, and the answer keeps it.
        let mut shuffled = list.clone();
        shuffled.reverse();
        assert_eq!(
            to_delete(&shuffled, &policy(2, 0, 0), &tz),
            ["wed-manual", "wed-scheduled", "mon-scheduled"]
        );
    }

    #[test]
    fn nothing_to_delete_from_nothing_or_one() {
        let tz = paris();
        assert!(to_delete(&[], &policy(0, 0, 0), &tz).is_empty());
        let one = backups(&tz, &[("only", date(2020, 1, 1).at(2, 0, 0, 0))]);
        assert!(to_delete(&one, &policy(0, 0, 0), &tz).is_empty());
    }

    #[test]
    fn days_are_the_plants_local_days() {
        let tz = paris();
        // Both on 2026-06-10 in UTC, but 23:30 and 00:30 the next day in Paris (UTC+2).
        let list = vec![
            (
                "late".to_string(),
                "2026-06-10T21:30:00Z".parse::<Timestamp>().unwrap(),
            ),
            (
                "after-midnight".to_string(),
                "2026-06-10T22:30:00Z".parse::<Timestamp>().unwrap(),
            ),
        ];
        assert!(to_delete(&list, &policy(2, 0, 0), &tz).is_empty());
        assert_eq!(to_delete(&list, &policy(2, 0, 0), &TimeZone::UTC), ["late"]);
    }

    #[test]
    fn weeks_are_iso_weeks_across_the_new_year() {
        let tz = paris();
        let list = backups(
            &tz,
            &[
                ("sun-w52-2025", date(2025, 12, 28).at(2, 0, 0, 0)),
                ("mon-w01-2026", date(2025, 12, 29).at(2, 0, 0, 0)),
                ("thu-w01-2026", date(2026, 1, 1).at(2, 0, 0, 0)),
            ],
        );
        // Monday 2025-12-29 already belongs to 2026-W01, whose newest is 2026-01-01.
        assert_eq!(to_delete(&list, &policy(0, 2, 0), &tz), ["mon-w01-2026"]);
        // By month, December's newest is the Monday.
        assert_eq!(to_delete(&list, &policy(0, 0, 2), &tz), ["sun-w52-2025"]);
    }

    #[test]
    fn rules_skip_periods_without_backups_and_count_independently() {
        let tz = paris();
        let list = backups(
            &tz,
            &[
                ("jan", date(2026, 1, 15).at(2, 0, 0, 0)),
                ("mar", date(2026, 3, 15).at(2, 0, 0, 0)),
                ("jun-1", date(2026, 6, 1).at(2, 0, 0, 0)),
                ("jun-2", date(2026, 6, 2).at(2, 0, 0, 0)),
            ],
        );
        // The 3 most recent months with a backup are June, March and January (the months
        // without one do not count); June keeps only its newest.
        assert_eq!(to_delete(&list, &policy(0, 0, 3), &tz), ["jun-1"]);
        // jun-2 is kept by the daily, weekly and monthly rules at once; that uses up none of
        // the others' counts, so jun-1 (daily) and mar (monthly) stay too.
        assert_eq!(to_delete(&list, &policy(2, 1, 2), &tz), ["jan"]);
    }

    // ---- properties ----

    use proptest::prelude::*;

    /// Instants from 2025 to 2028, which cross eight daylight saving changes in Paris.
    fn instant() -> impl Strategy<Value = Timestamp> {
        (1_735_689_600i64..1_830_297_600).prop_map(|s| Timestamp::from_second(s).unwrap())
    }

    proptest! {
        #[test]
        fn schedule_parsing_never_panics_and_round_trips(input in "\\PC{0,20}|(daily|off)[ 0-9:]{0,8}") {
            if let Ok(schedule) = input.parse::<Schedule>() {
                prop_assert_eq!(schedule.to_string().parse::<Schedule>(), Ok(schedule));
            }
        }

        #[test]
        fn every_time_of_day_round_trips(hour in 0i8..24, minute in 0i8..60) {
            let schedule = Schedule::daily(hour, minute).unwrap();
            let text = format!("daily {hour:02}:{minute:02}");
            prop_assert_eq!(schedule.to_string(), text.clone());
            prop_assert_eq!(text.parse::<Schedule>(), Ok(schedule));
        }

        #[test]
        fn next_run_is_never_early_and_serves_each_slot_once(
            now in instant(),
            behind in proptest::option::of(0i64..10 * 86_400),
            hour in 0i8..24,
            minute in 0i8..60,
        ) {
            let tz = paris();
            let schedule = Schedule::daily(hour, minute).unwrap();
            let last = behind.map(|secs| now - SignedDuration::from_secs(secs));
            let due = next_run(&schedule, last, now, &tz).unwrap();
            prop_assert!(due >= now);
            // Once the backup is taken when due, the next one is the next day's slot.
            let next = next_run(&schedule, Some(due), due, &tz).unwrap();
            prop_assert!(next > due);
            prop_assert!(next.duration_since(due) <= SignedDuration::from_hours(25));
            // ... that is, the schedule's time on its local date (after the gap on a spring-forward
            // day, as jiff's `to_timestamp` resolves it).
            let day = local(&tz, next).date();
            let at = schedule.daily_at().unwrap();
            prop_assert_eq!(next, tz.to_timestamp(day.to_datetime(at)).unwrap());
        }

        #[test]
        fn to_delete_keeps_the_newest_and_no_more_than_the_policy(
            times in proptest::collection::vec(instant(), 0..60),
            daily in 0u32..10,
            weekly in 0u32..6,
            monthly in 0u32..4,
        ) {
            let tz = paris();
            let list: Vec<(String, Timestamp)> =
                times.iter().enumerate().map(|(i, t)| (i.to_string(), *t)).collect();
            let policy = policy(daily, weekly, monthly);
            let doomed = to_delete(&list, &policy, &tz);
            let kept: Vec<&(String, Timestamp)> =
                list.iter().filter(|(id, _)| !doomed.contains(id)).collect();
            if let Some(newest) = times.iter().max() {
                prop_assert!(kept.iter().any(|(_, t)| t == newest));
            }
            prop_assert!(kept.len() as u32 <= (daily + weekly + monthly).max(1));
            // Deleting is final: pruning again deletes nothing more.
            let kept: Vec<(String, Timestamp)> = kept.into_iter().cloned().collect();
            prop_assert!(to_delete(&kept, &policy, &tz).is_empty());
        }
    }
}
