//! Running the checker and summarising its result.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use stateright::{Checker, Expectation, HasDiscoveries, Model, Path};

use crate::model::LeaseModel;
use crate::types::{Action, Bounds, State, Variant};

/// What the checker found for one property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PropertyOutcome {
    /// An `always` property with no counterexample in the explored space.
    Holds,
    /// An `always` property with a counterexample (the actions leading to it).
    Violated(Vec<Action>),
    /// A `sometimes` property with an example (the actions leading to it).
    Found(Vec<Action>),
    /// A `sometimes` property with no example in the explored space.
    NotFound,
}

/// One property's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropertyResult {
    /// Property name.
    pub name: &'static str,
    /// What was found.
    pub outcome: PropertyOutcome,
}

/// Summary of one check.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// Variant checked.
    pub variant: Variant,
    /// Bounds used.
    pub bounds: Bounds,
    /// Distinct states explored.
    pub unique_states: usize,
    /// States generated including repeats.
    pub total_states: usize,
    /// Longest path explored.
    pub max_depth: usize,
    /// False when checking stopped early because every awaited discovery was made (a broken
    /// variant's expected counterexamples; for the correct variant, a discovery for every
    /// property, i.e. some `always` property failed), so not every state was visited.
    pub complete: bool,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// Per-property results, in the model's order.
    pub properties: Vec<PropertyResult>,
}

impl CheckReport {
    /// The outcome for the named property.
    pub fn outcome(&self, name: &str) -> Option<&PropertyOutcome> {
        self.properties
            .iter()
            .find(|p| p.name == name)
            .map(|p| &p.outcome)
    }

    /// Whether every `always` property holds and every `sometimes` property has an example.
    pub fn all_as_expected(&self) -> bool {
        self.properties.iter().all(|p| {
            matches!(
                p.outcome,
                PropertyOutcome::Holds | PropertyOutcome::Found(_)
            )
        })
    }

    /// Whether the `always` properties named by [`Variant::expected_violations`] are exactly
    /// the ones violated.
    pub fn violations_as_expected(&self) -> bool {
        let violated: BTreeSet<&str> = self
            .properties
            .iter()
            .filter(|p| matches!(p.outcome, PropertyOutcome::Violated(_)))
            .map(|p| p.name)
            .collect();
        let expected: BTreeSet<&str> = self.variant.expected_violations().iter().copied().collect();
        violated == expected
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ({} hosts): {} states ({} generated, depth {}) in {:.2?}{}",
            self.variant,
            self.bounds.hosts,
            self.unique_states,
            self.total_states,
            self.max_depth,
            self.elapsed,
            if self.complete {
                ", exhaustive"
            } else {
                ", stopped early once the awaited discoveries were made"
            },
        )?;
        for p in &self.properties {
            let what = match &p.outcome {
                PropertyOutcome::Holds => "holds".to_string(),
                PropertyOutcome::Violated(t) => format!("VIOLATED after {} steps", t.len()),
                PropertyOutcome::Found(t) => format!("example in {} steps", t.len()),
                PropertyOutcome::NotFound => "no example".to_string(),
            };
            writeln!(f, "    {:<30} {}", p.name, what)?;
        }
        Ok(())
    }
}

/// Formats a trace one action per line.
pub fn format_trace(trace: &[Action]) -> String {
    let mut out = String::new();
    for (i, a) in trace.iter().enumerate() {
        out.push_str(&format!("{:>3}. {a:?}\n", i + 1));
    }
    out
}

/// Checks `variant` within `bounds` breadth-first with `threads` worker threads.
///
/// The correct variant is explored exhaustively. A broken variant is explored until every
/// property in [`Variant::expected_violations`] has a counterexample (or the space is
/// exhausted), so its `sometimes` results may be incomplete.
pub fn check(variant: Variant, bounds: Bounds, threads: usize) -> CheckReport {
    let model = LeaseModel::new(variant, bounds);
    let props = model.properties();
    let expected: BTreeSet<&'static str> = variant.expected_violations().iter().copied().collect();
    let start = Instant::now();
    let mut builder = model.checker().threads(threads.max(1));
    if !expected.is_empty() {
        builder = builder.finish_when(HasDiscoveries::AllOf(expected.clone()));
    }
    let checker = builder.spawn_bfs().join();
    let elapsed = start.elapsed();
    let discoveries = checker.discoveries();
    // The checker stops by itself once every awaited discovery is made: for the correct
    // variant that is one for every property, for a broken one its expected violations.
    let complete = if expected.is_empty() {
        discoveries.len() < props.len()
    } else {
        !expected.iter().all(|e| discoveries.contains_key(e))
    };
    let trace = |path: &Path<State, Action>| path.clone().into_actions();
    let properties = props
        .iter()
        .map(|p| {
            let outcome = match (&p.expectation, discoveries.get(p.name)) {
                (Expectation::Sometimes, Some(path)) => PropertyOutcome::Found(trace(path)),
                (Expectation::Sometimes, None) => PropertyOutcome::NotFound,
                (_, Some(path)) => PropertyOutcome::Violated(trace(path)),
                (_, None) => PropertyOutcome::Holds,
            };
            PropertyResult {
                name: p.name,
                outcome,
            }
        })
        .collect();
    CheckReport {
        variant,
        bounds,
        unique_states: checker.unique_state_count(),
        total_states: checker.state_count(),
        max_depth: checker.max_depth(),
        complete,
        elapsed,
        properties,
    }
}
