//! Rollout waves, as pure decisions: which plants go in which wave, and, given how a wave's
//! plants are doing, whether to wait, start the next wave, pause, or finish.
//!
//! A wave list such as `1,10%,100%` is cumulative: after the first wave 1 plant runs the new
//! version, after the second 10 % of the fleet (rounded up), after the last all of it. The last
//! wave must be `100%`, so that a rollout always names every plant. Plants are taken in name
//! order, so that the same fleet always gets the same canaries.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaveError {
    #[error("--waves {0:?}: give a comma-separated list of counts and percentages ending in 100%, such as \"1,10%,100%\"")]
    Malformed(String),
    #[error("--waves {0:?}: the last wave must be 100%, so that every plant is updated")]
    NotWhole(String),
    #[error("--waves {0:?}: each wave must reach more plants than the one before it")]
    NotGrowing(String),
}

/// One wave's reach, cumulative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Plants(u32),
    Percent(u32),
}

impl Reach {
    /// How many plants of `fleet` have the new version once this wave is done.
    fn of(self, fleet: usize) -> usize {
        match self {
            Reach::Plants(n) => (n as usize).min(fleet),
            Reach::Percent(p) => (fleet * p as usize).div_ceil(100),
        }
    }
}

/// A parsed `--waves` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waves(Vec<Reach>);

impl Waves {
    pub fn parse(spec: &str) -> Result<Waves, WaveError> {
        let malformed = || WaveError::Malformed(spec.to_string());
        let reaches = spec
            .split(',')
            .map(|item| {
                let item = item.trim();
                match item.strip_suffix('%') {
                    Some(p) => p
                        .parse::<u32>()
                        .ok()
                        .filter(|p| (1..=100).contains(p))
                        .map(Reach::Percent),
                    None => item
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .map(Reach::Plants),
                }
                .ok_or_else(malformed)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if reaches.last() != Some(&Reach::Percent(100)) {
            return Err(WaveError::NotWhole(spec.to_string()));
        }
        // Counts grow with counts and percentages with percentages; between the two kinds the
        // fleet's size decides, and a wave that adds nobody is simply skipped by `plan`.
        let growing = reaches.windows(2).all(|w| match (w[0], w[1]) {
            (Reach::Plants(a), Reach::Plants(b)) | (Reach::Percent(a), Reach::Percent(b)) => a < b,
            _ => true,
        });
        if !growing {
            return Err(WaveError::NotGrowing(spec.to_string()));
        }
        Ok(Waves(reaches))
    }

    /// The plants of each wave, for a fleet (names in any order); waves that would add no
    /// plant are left out.
    pub fn plan(&self, fleet: &[String]) -> Vec<Vec<String>> {
        let mut plants = fleet.to_vec();
        plants.sort();
        plants.dedup();
        let mut done = 0usize;
        let mut waves = Vec::new();
        for reach in &self.0 {
            let upto = reach.of(plants.len()).max(done);
            if upto > done {
                waves.push(plants[done..upto].to_vec());
                done = upto;
            }
        }
        waves
    }
}

impl fmt::Display for Waves {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self
            .0
            .iter()
            .map(|r| match r {
                Reach::Plants(n) => n.to_string(),
                Reach::Percent(p) => format!("{p}%"),
            })
            .collect();
        f.write_str(&items.join(","))
    }
}

/// How a running rollout stands, as the hub's driver counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The wave whose plants are being offered the release (1-based).
    pub current_wave: u32,
    /// How many waves the rollout has.
    pub waves: u32,
    /// Plants that failed (refused, rolled back) since the rollout started or last resumed.
    pub new_failures: u32,
    pub max_failures: u32,
    /// Plants of the current and earlier waves still waiting or installing.
    pub open: u32,
}

/// What the driver does next with a running rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Plants of the current wave are still at it.
    Wait,
    /// The current wave is through: offer the next one.
    NextWave,
    /// Too many failures: stop offering until someone resumes or aborts.
    Pause(String),
    /// The last wave is through.
    Done,
}

/// The driver's decision. Failures are looked at first: a wave whose plants all finished is not
/// "healthy" when too many of them failed, and the next wave must not start.
pub fn decide(p: Progress) -> Step {
    if p.new_failures > p.max_failures {
        return Step::Pause(format!(
            "{} plant(s) failed, over the threshold of {} (--max-failures)",
            p.new_failures, p.max_failures
        ));
    }
    match (p.open, p.current_wave >= p.waves) {
        (0, true) => Step::Done,
        (0, false) => Step::NextWave,
        _ => Step::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wave_opens_the_next_only_when_through_and_within_the_threshold() {
        let p = |current_wave, new_failures, max_failures, open| Progress {
            current_wave,
            waves: 3,
            new_failures,
            max_failures,
            open,
        };
        assert_eq!(decide(p(1, 0, 0, 1)), Step::Wait);
        assert_eq!(decide(p(1, 0, 0, 0)), Step::NextWave);
        assert_eq!(decide(p(3, 0, 0, 0)), Step::Done);
        assert_eq!(decide(p(3, 0, 0, 2)), Step::Wait);
        // One failure within a threshold of one: the rollout goes on.
        assert_eq!(decide(p(1, 1, 1, 0)), Step::NextWave);
        // Over it: paused, even with plants still at it and with the wave through.
        for open in [0, 2] {
            match decide(p(2, 2, 1, open)) {
                Step::Pause(why) => assert!(why.contains("2 plant(s) failed"), "{why}"),
                other => panic!("{other:?}"),
            }
        }
        // The default threshold of 0: the first failure pauses.
        assert!(matches!(decide(p(1, 1, 0, 0)), Step::Pause(_)));
    }

    fn fleet(n: usize) -> Vec<String> {
        (0..n).rev().map(|i| format!("plant-{i:02}")).collect()
    }

    #[test]
    fn waves_reach_the_whole_fleet_in_name_order() {
        let waves = Waves::parse("1,10%,100%").unwrap();
        let plan = waves.plan(&fleet(40));
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), [1, 3, 36]);
        assert_eq!(plan[0], ["plant-00"], "the canary is the first by name");
        assert_eq!(plan.concat(), {
            let mut all = fleet(40);
            all.sort();
            all
        });
        // Three plants, one wave each.
        let plan = Waves::parse("1,2,100%").unwrap().plan(&fleet(3));
        assert_eq!(plan, [["plant-00"], ["plant-01"], ["plant-02"]]);
        // A small fleet: 10 % of 3 rounds up to 1, which the first wave already reached.
        let plan = waves.plan(&fleet(3));
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), [1, 2]);
        assert!(waves.plan(&[]).is_empty());
        assert_eq!(Waves::parse("100%").unwrap().plan(&fleet(2)).len(), 1);
        assert_eq!(waves.to_string(), "1,10%,100%");
    }

    #[test]
    fn wave_lists_that_cannot_work_are_refused() {
        for (spec, want) in [
            ("", "comma-separated"),
            ("1,,100%", "comma-separated"),
            ("0,100%", "comma-separated"),
            ("1,150%", "comma-separated"),
            ("one,100%", "comma-separated"),
            ("1,10%", "must be 100%"),
            ("5,2,100%", "more plants"),
            ("50%,10%,100%", "more plants"),
        ] {
            let e = Waves::parse(spec).unwrap_err().to_string();
            assert!(e.contains(want), "{spec:?}: {e}");
        }
    }
}
