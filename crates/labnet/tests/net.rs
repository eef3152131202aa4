//! Lab network: connectivity per plane, link faults, nftables drops, errors.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ping, start, udp_reaches};
use nosplit_labnet::naming::bridge_addr;
use nosplit_labnet::{host_status, lab_objects, set_drop, set_link, up, DropMode, NetError, Plane};

#[test]
fn hosts_reach_each_other_and_bridges_on_every_plane() {
    let t = start('a', 151, 3);
    let lab = t.lab();
    for p in Plane::ALL {
        assert!(ping(lab, 1, t.addr(2, p)), "h1 -> h2 on {p}");
        assert!(ping(lab, 3, t.addr(1, p)), "h3 -> h1 on {p}");
        assert!(
            ping(lab, 2, bridge_addr(t.plan.prefix(), p)),
            "h2 -> bridge {p}"
        );
    }
    let st = host_status(lab, 1).unwrap();
    for p in Plane::ALL {
        assert!(st.plane(p).link_up);
        assert_eq!(st.plane(p).drop, DropMode::None);
    }
    // A second up of the same lab is refused with a clear error.
    match up(&t.plan) {
        Err(NetError::LabExists { found, .. }) => assert!(!found.is_empty()),
        other => panic!("expected LabExists, got {other:?}"),
    }
}

#[test]
fn link_down_cuts_only_that_plane() {
    let t = start('b', 152, 2);
    let lab = t.lab();
    set_link(lab, 1, Plane::Storage, false).unwrap();
    let st = host_status(lab, 1).unwrap();
    assert!(!st.plane(Plane::Storage).link_up);
    assert!(st.plane(Plane::Management).link_up);
    assert!(!ping(lab, 1, t.addr(2, Plane::Storage)));
    assert!(!ping(lab, 2, t.addr(1, Plane::Storage)));
    assert!(ping(lab, 1, t.addr(2, Plane::Management)));
    assert!(ping(lab, 2, t.addr(1, Plane::Service)));
    set_link(lab, 1, Plane::Storage, true).unwrap();
    assert!(host_status(lab, 1).unwrap().plane(Plane::Storage).link_up);
    // The address survives down/up; give the link a moment to come back.
    let ok = (0..5).any(|_| ping(lab, 1, t.addr(2, Plane::Storage)));
    assert!(ok, "storage back after link up");
}

#[test]
fn drops_act_in_the_stated_direction() {
    let t = start('c', 153, 2);
    let lab = t.lab();
    let s = Plane::Storage;
    let (a1, a2) = (t.addr(1, s), t.addr(2, s));

    set_drop(lab, 1, s, DropMode::Out).unwrap();
    assert_eq!(host_status(lab, 1).unwrap().plane(s).drop, DropMode::Out);
    assert!(!ping(lab, 1, a2), "out: h1 cannot reach h2");
    assert!(!udp_reaches(lab, 1, a1, 2, a2), "out: h1 -> h2 dropped");
    assert!(
        udp_reaches(lab, 2, a2, 1, a1),
        "out: h2 -> h1 still arrives"
    );
    assert!(
        ping(lab, 1, t.addr(2, Plane::Management)),
        "mgmt unaffected"
    );

    set_drop(lab, 1, s, DropMode::In).unwrap();
    assert_eq!(host_status(lab, 1).unwrap().plane(s).drop, DropMode::In);
    assert!(!ping(lab, 2, a1), "in: h2 cannot reach h1");
    assert!(!udp_reaches(lab, 2, a2, 1, a1), "in: h2 -> h1 dropped");
    assert!(udp_reaches(lab, 1, a1, 2, a2), "in: h1 -> h2 still leaves");
    assert!(ping(lab, 2, t.addr(1, Plane::Service)), "svc unaffected");

    set_drop(lab, 1, s, DropMode::Both).unwrap();
    set_drop(lab, 1, Plane::Management, DropMode::In).unwrap();
    let st = host_status(lab, 1).unwrap();
    assert_eq!(
        st.plane(s).drop,
        DropMode::Both,
        "kept when another plane changed"
    );
    assert_eq!(st.plane(Plane::Management).drop, DropMode::In);
    assert_eq!(st.plane(Plane::Service).drop, DropMode::None);
    assert!(!udp_reaches(lab, 1, a1, 2, a2));
    assert!(!udp_reaches(lab, 2, a2, 1, a1));
    assert!(ping(lab, 1, t.addr(2, Plane::Service)));
    // Drops on h1 do not show on h2.
    assert_eq!(host_status(lab, 2).unwrap().plane(s).drop, DropMode::None);

    set_drop(lab, 1, s, DropMode::None).unwrap();
    set_drop(lab, 1, Plane::Management, DropMode::None).unwrap();
    let st = host_status(lab, 1).unwrap();
    assert!(st.planes.iter().all(|p| p.drop == DropMode::None));
    assert!(ping(lab, 1, a2));
    assert!(ping(lab, 2, t.addr(1, Plane::Management)));
}

#[test]
fn faults_on_missing_hosts_are_errors() {
    let t = start('d', 154, 1);
    let lab = t.lab();
    assert!(matches!(
        set_link(lab, 2, Plane::Service, false),
        Err(NetError::NoNamespace(_))
    ));
    assert!(matches!(
        set_drop(lab, 9, Plane::Service, DropMode::In),
        Err(NetError::NoNamespace(_))
    ));
    assert!(matches!(
        host_status(lab, 0),
        Err(NetError::InvalidHost { .. })
    ));
    assert!(nosplit_labnet::run_in_host(lab, 3, &["true"]).is_err());
    assert!(nosplit_labnet::run_in_host(lab, 1, &[]).is_err());
    // Another lab on the same prefix is refused (root addresses would clash).
    let other = common::plan('e', 154, 1);
    match up(&other) {
        Err(NetError::PrefixInUse { .. }) => {}
        r => panic!("expected PrefixInUse, got {r:?}"),
    }
    assert!(lab_objects(other.lab()).unwrap().is_empty());
}
