//! Scratch: state counts for bounds given as env overrides.
use nosplit_lease_model::{check, Bounds, Variant};

fn main() {
    let mut b = Bounds::two_hosts();
    let get = |k: &str, d: u8| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    b.hosts = get("HOSTS", b.hosts);
    b.max_lver = get("LVER", b.max_lver);
    b.max_ballot = get("BAL", b.max_ballot);
    b.max_crashes = get("CR", b.max_crashes);
    b.max_storage_failures = get("SF", b.max_storage_failures);
    b.max_late_writes = get("LW", b.max_late_writes);
    b.max_gen = get("GEN", b.max_gen);
    b.host_dead = get("HD", b.host_dead);
    b.renew_fail = get("RF", b.renew_fail);
    b.kill_grace = get("KG", b.kill_grace);
    let v = match std::env::var("V").as_deref() {
        Ok("p2") => Variant::NoPhase2Read,
        Ok("lw") => Variant::NoLivenessWait,
        _ => Variant::Correct,
    };
    let r = check(v, b, 2, v != Variant::Correct);
    print!("{b:?}\n{r}");
}
