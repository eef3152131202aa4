//! Power domains, enter_host, and teardown (twice, and after a crash).
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{plan, start, TestLab};
use nosplit_labnet::naming::{netns_name, netns_path};
use nosplit_labnet::{
    cgroup_create, cgroup_path, cgroup_procs, down, enter_host, lab_objects, power_off,
    run_in_host, up,
};

fn ino(path: &str) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// Alive and not a zombie.
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next());
            !matches!(state, Some(Some('Z' | 'X')))
        }
        Err(_) => false,
    }
}

fn wait_for_procs(t: &TestLab, host: u32, n: usize) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let procs = cgroup_procs(t.lab(), host).unwrap();
        if procs.len() >= n || Instant::now() > deadline {
            return procs;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn power_off_kills_a_process_tree_started_on_the_host() {
    let t = start('f', 155, 2);
    let lab = t.lab();
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "setsid sh -c 'sleep 300 & sleep 300' & sleep 300 & wait",
    ])
    .stdin(Stdio::null());
    enter_host(&mut cmd, lab, 2).unwrap();
    let mut child = cmd.spawn().unwrap();
    // sh, sleep, setsid'ed sh and its two sleeps.
    let procs = wait_for_procs(&t, 2, 5);
    assert!(procs.len() >= 5, "procs {procs:?}");
    assert!(procs.contains(&child.id()));
    assert!(cgroup_procs(lab, 1).unwrap().is_empty());

    let host_ns = ino(netns_path(lab, 2).unwrap().to_str().unwrap());
    assert_ne!(host_ns, ino("/proc/self/ns/net"));
    for pid in &procs {
        assert_eq!(
            ino(&format!("/proc/{pid}/ns/net")),
            host_ns,
            "pid {pid} netns"
        );
        assert_eq!(
            ino(&format!("/proc/{pid}/ns/mnt")),
            ino("/proc/self/ns/mnt")
        );
    }
    // New session: the child leads it; the setsid'ed shell leads another one.
    let child_pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: getsid has no memory-safety preconditions.
    assert_eq!(unsafe { libc::getsid(child_pid) }, child_pid);

    let report = power_off(lab, 2, Duration::from_secs(5)).unwrap();
    assert!(report.stragglers.is_empty(), "{report:?}");
    assert_eq!(report.killed.len(), procs.len());
    assert!(cgroup_procs(lab, 2).unwrap().is_empty());
    child.wait().unwrap();
    for pid in &procs {
        assert!(!running(*pid), "pid {pid} survived");
    }
    // The host can run processes again after power-off.
    let out = run_in_host(lab, 2, &["ip", "-o", "-4", "addr", "show", "eth-svc"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&t.addr(2, nosplit_labnet::Plane::Service).to_string()),
        "{text}"
    );
}

#[test]
fn down_removes_everything_and_can_run_twice() {
    let t = start('g', 156, 3);
    let lab = t.lab().clone();
    let mut cmd = Command::new("sleep");
    cmd.arg("300").stdin(Stdio::null());
    enter_host(&mut cmd, &lab, 3).unwrap();
    let mut child = cmd.spawn().unwrap();
    assert_eq!(wait_for_procs(&t, 3, 1), vec![child.id()]);

    let first = down(&lab).unwrap();
    child.wait().unwrap();
    assert_eq!(first.killed, vec![child.id()]);
    assert!(first.stragglers.is_empty());
    assert_eq!(first.namespaces.len(), 3);
    assert_eq!(first.links.len(), 3 + 9, "{:?}", first.links);
    assert_eq!(first.cgroups.len(), 4, "{:?}", first.cgroups);
    assert!(lab_objects(&lab).unwrap().is_empty());
    assert!(!netns_path(&lab, 1).unwrap().exists());
    assert!(!cgroup_path(&lab, 1).unwrap().exists());

    let second = down(&lab).unwrap();
    assert!(second.removed_nothing(), "{second:?}");
    drop(t);
}

#[test]
fn down_cleans_a_half_made_lab() {
    let p = plan('h', 157, 2);
    let lab = p.lab().clone();
    let guard = TestLab { plan: p.clone() };
    // A crashed up: namespaces and a cgroup, no bridges or veths.
    for h in 1..=2 {
        let ns = netns_name(&lab, h).unwrap();
        assert!(Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .unwrap()
            .success());
    }
    cgroup_create(&lab, 1).unwrap();
    let mut in_cgroup = Command::new("sleep");
    in_cgroup.arg("300").stdin(Stdio::null());
    enter_host(&mut in_cgroup, &lab, 1).unwrap();
    let mut a = in_cgroup.spawn().unwrap();
    // A process in a lab namespace but in no lab cgroup.
    let ns2 = netns_name(&lab, 2).unwrap();
    let mut b = Command::new("ip")
        .args(["netns", "exec", &ns2, "sleep", "300"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let ns2_ino = ino(netns_path(&lab, 2).unwrap().to_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(format!("/proc/{}/ns/net", b.id()))
        .map(|m| m.ino())
        .ok()
        != Some(ns2_ino)
    {
        assert!(Instant::now() < deadline, "ip netns exec did not start");
        std::thread::sleep(Duration::from_millis(10));
    }

    let report = down(&lab).unwrap();
    a.wait().unwrap();
    b.wait().unwrap();
    assert!(report.killed.contains(&a.id()), "{report:?}");
    assert!(report.killed.contains(&b.id()), "{report:?}");
    assert!(report.stragglers.is_empty());
    assert_eq!(report.namespaces.len(), 2);
    assert!(report.links.is_empty());
    assert!(lab_objects(&lab).unwrap().is_empty());
    // The lab can be built again afterwards.
    up(&p).unwrap();
    assert!(down(&lab).unwrap().namespaces.len() == 2);
    drop(guard);
}
