//! Running the checker and summarising its result.

use std::fmt;
use std::time::{Duration, Instant};

use stateright::{Checker, Expectation, Model};

use crate::model::LeaseModel;
use crate::types::{Bounds, Variant};

/// What the checker found for one property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PropertyOutcome {
    /// An `always` property with no counterexample in the explored space.
    Holds,
    /// An `always` property with a counterexample; the trace is the formatted actions.
    Violated(Vec<String>),
    /// A `sometimes` property with an example; the trace is the formatted actions.
    Found(Vec<String>),
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

impl PropertyResult {
    /// Whether the result is what the correct protocol should give: `always` holds,
    /// `sometimes` has an example.
    pub fn as_expected(&self) -> bool {
        matches!(
            self.outcome,
            PropertyOutcome::Holds | PropertyOutcome::Found(_)
        )
    }
}

/// Summary of one exhaustive check.
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
    /// Whether the whole reachable space was explored (false when the check stopped at the
    /// first counterexample).
    pub complete: bool,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// Per-property results, in the model's order.
    pub properties: Vec<PropertyResult>,
}

impl CheckReport {
    /// The result of the named property.
    pub fn property(&self, name: &str) -> Option<&PropertyResult> {
        self.properties.iter().find(|p| p.name == name)
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "variant {} with {} hosts: {} unique states ({} generated, depth {}) in {:.2?}{}",
            self.variant,
            self.bounds.hosts,
            self.unique_states,
            self.total_states,
            self.max_depth,
            self.elapsed,
            if self.complete {
                ""
            } else {
                " (stopped early)"
            },
        )?;
        for p in &self.properties {
            let what = match &p.outcome {
                PropertyOutcome::Holds => "holds".to_string(),
                PropertyOutcome::Violated(t) => {
                    format!("VIOLATED (counterexample of {} steps)", t.len())
                }
                PropertyOutcome::Found(t) => format!("example found ({} steps)", t.len()),
                PropertyOutcome::NotFound => "NO EXAMPLE".to_string(),
            };
            writeln!(f, "  {:<30} {}", p.name, what)?;
        }
        Ok(())
    }
}

/// Exhaustively checks `variant` within `bounds` (breadth-first, `threads` worker threads).
/// With `stop_at_violation`, checking stops as soon as any `always` property is violated.
pub fn check(
    variant: Variant,
    bounds: Bounds,
    threads: usize,
    stop_at_violation: bool,
) -> CheckReport {
    let model = LeaseModel::new(variant, bounds);
    let props = model.properties();
    let start = Instant::now();
    let mut builder = model.checker().threads(threads.max(1));
    if stop_at_violation {
        builder = builder.finish_when(stateright::HasDiscoveries::AnyFailures);
    }
    let checker = builder.spawn_bfs().join();
    let elapsed = start.elapsed();
    let complete = checker.is_done() && !stop_at_violation
        || props
            .iter()
            .all(|p| p.expectation != Expectation::Always || checker.discovery(p.name).is_none());
    let properties = props
        .iter()
        .map(|p| {
            let path = checker.discovery(p.name);
            let trace = |path: stateright::Path<_, _>| {
                path.into_actions()
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
            };
            let outcome = match (p.expectation.clone(), path) {
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
