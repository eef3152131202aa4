//! A scenario run's report: per-VM failover and downtime, the oracle's
//! verdict and the timeline; JSON for machines, a summary for people, and
//! one last line `summary: vms=<n> split_brain=<count> max_failover_s=<s>`.

use std::fmt::Write as _;
use std::time::Duration;

use nosplit_heartbeat::oracle::OracleReport;
use serde::Serialize;

use super::{Action, Scenario, Step};

/// What happened to one VM.
#[derive(Debug, Clone, Serialize)]
pub struct VmOutcome {
    /// VM id.
    pub vm: String,
    /// Instances seen, in order.
    pub instances: Vec<String>,
    /// Per handover: seconds from the last heartbeat of the old instance
    /// to the first of the new one.
    pub handover_s: Vec<f64>,
    /// Per handover: seconds from the fault step before it to the new
    /// instance's first heartbeat (the failover time an operator sees).
    pub failover_s: Vec<f64>,
    /// Sum of closed gaps in its heartbeats, plus an open one at the end.
    pub downtime_s: f64,
    /// Still heartbeating at the end.
    pub running_at_end: bool,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The scenario as checked.
    pub scenario: Scenario,
    /// Per VM.
    pub vms: Vec<VmOutcome>,
    /// Oracle violations (S2).
    pub split_brains: usize,
    /// The largest failover time of any VM.
    pub max_failover_s: f64,
    /// Total downtime over all VMs.
    pub total_downtime_s: f64,
    /// The expectation, if any, and whether it held.
    pub expectation_met: Option<bool>,
    /// `(seconds since the lab came up, what)`.
    pub timeline: Vec<(f64, String)>,
    /// The oracle's full report.
    pub oracle: OracleReport,
}

fn is_fault(a: &Action) -> bool {
    !matches!(a, Action::Heal | Action::PowerOn | Action::LeasedStart)
}

fn secs(ns: i128) -> f64 {
    (ns as f64 / 1e9 * 100.0).round() / 100.0
}

impl RunReport {
    /// Puts the report together (`start_ns`, `steps` on the oracle's clock).
    pub fn build(
        sc: &Scenario,
        start_ns: u64,
        steps: &[(u64, Step)],
        oracle: OracleReport,
        timeline: Vec<(Duration, String)>,
    ) -> RunReport {
        let mut vms = Vec::new();
        for v in &sc.vms {
            let r = oracle.vms.get(&v.name).cloned().unwrap_or_default();
            let mut failover_s = Vec::new();
            let mut handover_s = Vec::new();
            for t in &r.transitions {
                handover_s.push(t.failover_ms as f64 / 1000.0);
                let fault = steps
                    .iter()
                    .filter(|(at, s)| {
                        is_fault(&s.action) && *at <= t.to_first_seen_ns && *at >= start_ns
                    })
                    .map(|(at, _)| *at)
                    .max();
                if let Some(at) = fault {
                    failover_s.push(secs(i128::from(t.to_first_seen_ns) - i128::from(at)));
                }
            }
            let open: u64 = r
                .gaps
                .iter()
                .filter(|g| g.open)
                .map(|g| g.duration_ms)
                .sum();
            vms.push(VmOutcome {
                vm: v.name.clone(),
                instances: r.instances.iter().map(|i| i.id.clone()).collect(),
                handover_s,
                failover_s,
                downtime_s: (r.total_downtime_ms + open) as f64 / 1000.0,
                running_at_end: !r.gaps.iter().any(|g| g.open) && !r.instances.is_empty(),
            });
        }
        let max_failover_s = vms
            .iter()
            .flat_map(|v| v.failover_s.iter().copied())
            .fold(0.0, f64::max);
        let total_downtime_s = vms.iter().map(|v| v.downtime_s).sum();
        let split_brains = oracle.split_brains;
        let expectation_met = sc.expect_split_brain.map(|want| want == (split_brains > 0));
        RunReport {
            scenario: sc.clone(),
            vms,
            split_brains,
            max_failover_s,
            total_downtime_s,
            expectation_met,
            timeline: timeline
                .into_iter()
                .map(|(d, s)| ((d.as_secs_f64() * 100.0).round() / 100.0, s))
                .collect(),
            oracle,
        }
    }

    /// The last line of every run.
    pub fn summary_line(&self) -> String {
        format!(
            "summary: vms={} split_brain={} max_failover_s={:.1}",
            self.vms.len(),
            self.split_brains,
            self.max_failover_s
        )
    }

    /// A readable summary, ending with [`RunReport::summary_line`].
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "scenario: {}", self.scenario.name);
        let _ = writeln!(s, "timeline:");
        for (t, what) in &self.timeline {
            let _ = writeln!(s, "  {t:>7.2}s  {what}");
        }
        let _ = writeln!(s, "VMs:");
        let _ = writeln!(
            s,
            "  {:<14} {:>9} {:>11} {:>10}  instances",
            "vm", "failover", "handover", "downtime"
        );
        for v in &self.vms {
            let f = v
                .failover_s
                .iter()
                .map(|x| format!("{x:.1}s"))
                .collect::<Vec<_>>()
                .join(",");
            let h = v
                .handover_s
                .iter()
                .map(|x| format!("{x:.1}s"))
                .collect::<Vec<_>>()
                .join(",");
            let _ = writeln!(
                s,
                "  {:<14} {:>9} {:>11} {:>9.1}s  {}{}",
                v.vm,
                if f.is_empty() { "-".into() } else { f },
                if h.is_empty() { "-".into() } else { h },
                v.downtime_s,
                v.instances.join(" -> "),
                if v.running_at_end {
                    ""
                } else {
                    "  (NOT running at the end)"
                }
            );
        }
        let _ = writeln!(
            s,
            "oracle: {}",
            if self.split_brains == 0 {
                "silent: no write by an older instance after a newer one started".to_string()
            } else {
                format!("FIRED: {} split brain(s)", self.split_brains)
            }
        );
        for v in &self.oracle.violations {
            let _ = writeln!(s, "  violation: {v:?}");
        }
        let _ = writeln!(
            s,
            "total downtime: {:.1}s over {} VM(s)",
            self.total_downtime_s,
            self.vms.len()
        );
        if let Some(met) = self.expectation_met {
            let _ = writeln!(
                s,
                "expectation (split brain {}): {}",
                if self.scenario.expect_split_brain == Some(true) {
                    "expected"
                } else {
                    "not expected"
                },
                if met { "met" } else { "NOT MET" }
            );
        }
        let _ = write!(s, "{}", self.summary_line());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_shows_the_total_downtime_and_ends_with_the_summary_line() {
        let sc = crate::scenario::parse(
            "name='s'\nduration_s=1\n[[vm]]\nname='p'\nkind='process'\ncount=2\n[expect]\nsplit_brain=false\n",
            "s",
        )
        .expect("valid");
        let mut r = RunReport::build(&sc, 0, &[], OracleReport::default(), Vec::new());
        r.vms[0].downtime_s = 1.25;
        r.vms[1].downtime_s = 2.5;
        r.total_downtime_s = 3.75;
        r.max_failover_s = 4.44;
        let text = r.summary();
        assert!(text.contains("total downtime: 3.8s over 2 VM(s)"), "{text}");
        assert_eq!(
            text.lines().last(),
            Some("summary: vms=2 split_brain=0 max_failover_s=4.4")
        );
        assert!(
            text.contains("expectation (split brain not expected): met"),
            "{text}"
        );
    }
}
