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

#[cfg(test)]
mod tests {
    use super::*;

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
