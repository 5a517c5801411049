//! Which queues a worker serves, and in what order it asks them for work.

use rand::RngExt;

use crate::broker::Error;
use crate::broker::keys::validate_queue_name;

/// The queues a worker serves with their priorities.
///
/// Weighted (the default): on each fetch, queues are tried in a random order
/// in which a queue comes first with a probability proportional to its
/// weight, so over many tasks each queue gets its share of the work while
/// none starves. Strict: always in descending weight, so a lower queue is
/// only served while every higher one is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSelection {
    queues: Vec<(String, u32)>,
    strict: bool,
}

impl QueueSelection {
    /// One queue, alone.
    pub fn single(queue: &str) -> Self {
        QueueSelection {
            queues: vec![(queue.to_string(), 1)],
            strict: false,
        }
    }

    /// Parses `critical=6,default=3,low=1` (a name alone has weight 1).
    pub fn parse(spec: &str, strict: bool) -> Result<Self, Error> {
        let mut queues: Vec<(String, u32)> = Vec::new();
        for part in spec
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let (name, weight) = match part.split_once('=') {
                Some((name, weight)) => {
                    let weight: u32 = weight.trim().parse().map_err(|_| {
                        Error::InvalidTask(format!(
                            "queue weight {weight:?} in {part:?} is not a whole number; write NAME=WEIGHT, e.g. critical=6"
                        ))
                    })?;
                    (name.trim(), weight)
                }
                None => (part, 1),
            };
            validate_queue_name(name)?;
            if weight == 0 {
                return Err(Error::InvalidTask(format!(
                    "queue {name:?} has weight 0 and would never be served; give it at least 1 or leave it out"
                )));
            }
            if queues.iter().any(|(existing, _)| existing == name) {
                return Err(Error::InvalidTask(format!(
                    "queue {name:?} is listed twice"
                )));
            }
            queues.push((name.to_string(), weight));
        }
        if queues.is_empty() {
            return Err(Error::InvalidTask(
                "no queues to serve: name at least one, as NAME[=WEIGHT],...".into(),
            ));
        }
        if strict {
            // A stable sort keeps the given order among equal weights.
            queues.sort_by_key(|(_, weight)| std::cmp::Reverse(*weight));
        }
        Ok(QueueSelection { queues, strict })
    }

    /// The queue names, in the order given (strict: by priority).
    pub fn names(&self) -> Vec<String> {
        self.queues.iter().map(|(name, _)| name.clone()).collect()
    }

    /// The queue names with their weights.
    pub fn weights(&self) -> Vec<(String, u32)> {
        self.queues.clone()
    }

    /// Whether priorities are strict.
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// The order in which to try the queues for one fetch.
    pub fn fetch_order(&self, rng: &mut impl RngExt) -> Vec<&str> {
        if self.strict || self.queues.len() == 1 {
            return self.queues.iter().map(|(name, _)| name.as_str()).collect();
        }
        // An exponential race: each queue draws an arrival time at a rate
        // of its weight, and the queues are tried in order of arrival. That
        // order is a weighted draw without replacement (a queue comes
        // first with a probability proportional to its weight, and so on
        // among the rest), in O(n log n) for a worker of many queues.
        let mut arrivals: Vec<(f64, &str)> = self
            .queues
            .iter()
            .map(|(name, weight)| {
                let uniform: f64 = rng.random();
                (-(1.0 - uniform).ln() / f64::from(*weight), name.as_str())
            })
            .collect();
        arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
        arrivals.into_iter().map(|(_, name)| name).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn weights_parse_and_bad_specs_are_explained() {
        let selection = QueueSelection::parse("critical=6, default=3,low", false).unwrap();
        assert_eq!(selection.names(), ["critical", "default", "low"]);
        for (spec, needle) in [
            ("a=x", "not a whole number"),
            ("a=0", "weight 0"),
            ("a,a", "twice"),
            ("", "no queues"),
            ("bad{name}", "braces"),
        ] {
            let err = QueueSelection::parse(spec, false).unwrap_err().to_string();
            assert!(err.contains(needle), "{spec:?}: {err}");
        }
    }

    #[test]
    fn strict_orders_by_descending_weight() {
        let selection = QueueSelection::parse("low=1,critical=6,default=3", true).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..10 {
            assert_eq!(
                selection.fetch_order(&mut rng),
                ["critical", "default", "low"]
            );
        }
    }

    #[test]
    fn weighted_order_puts_each_queue_first_in_proportion_to_its_weight() {
        let selection = QueueSelection::parse("critical=6,default=3,low=1", false).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut firsts = std::collections::HashMap::new();
        let mut default_second = 0;
        let rounds = 10_000;
        for _ in 0..rounds {
            let order = selection.fetch_order(&mut rng);
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, ["critical", "default", "low"], "each queue once");
            *firsts.entry(order[0]).or_insert(0) += 1;
            default_second += usize::from(order[1] == "default");
        }
        // Second place is drawn among the rest by weight: `default` after
        // `critical` 3 times in 4, after `low` 3 times in 9.
        let expected_second = 0.6 * 3.0 / 4.0 + 0.1 * 3.0 / 9.0;
        let second = default_second as f64 / f64::from(rounds);
        assert!((second - expected_second).abs() < 0.03, "{second}");
        let share = |q: &str| f64::from(firsts[q]) / f64::from(rounds);
        assert!((share("critical") - 0.6).abs() < 0.03, "{firsts:?}");
        assert!((share("default") - 0.3).abs() < 0.03, "{firsts:?}");
        assert!((share("low") - 0.1).abs() < 0.03, "{firsts:?}");
    }
}
