//! Unit tests of naming and addressing.

use super::*;

fn lab(s: &str) -> LabName {
    LabName::new(s).unwrap()
}

#[test]
fn lab_names_are_validated() {
    for ok in ["a", "lab", "l1", "abcde", "z9z9z"] {
        assert!(LabName::new(ok).is_ok(), "{ok}");
    }
    for bad in ["", "1ab", "abcdef", "a-b", "Ab", "a_b", "ä", " a"] {
        assert!(LabName::new(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn planes_parse_and_display() {
    for p in Plane::ALL {
        assert_eq!(p.to_string().parse::<Plane>().unwrap(), p);
        assert_eq!(Plane::ALL[p.index()], p);
        assert_eq!(p.host_ifname(), format!("eth-{p}"));
    }
    assert_eq!("svc".parse::<Plane>().unwrap(), Plane::Service);
    assert!("storage".parse::<Plane>().is_err());
}

#[test]
fn prefix_parse_and_privacy() {
    assert_eq!(Prefix::default().to_string(), "10.77");
    assert_eq!("10.77".parse::<Prefix>().unwrap(), Prefix::default());
    assert!("192.168".parse::<Prefix>().is_ok());
    assert!("172.16".parse::<Prefix>().is_ok());
    for bad in ["8.8", "172.32", "10", "10.256", "10.77.1", "x.y", "192.169"] {
        assert!(bad.parse::<Prefix>().is_err(), "{bad}");
    }
}

#[test]
fn addresses_follow_the_plan() {
    let p = Prefix::default();
    let a = host_addrs(p, 3).unwrap();
    assert_eq!(a.mgmt, Ipv4Addr::new(10, 77, 1, 13));
    assert_eq!(a.svc, Ipv4Addr::new(10, 77, 2, 13));
    assert_eq!(a.get(Plane::Storage), Ipv4Addr::new(10, 77, 3, 13));
    assert_eq!(bridge_addr(p, Plane::Service), Ipv4Addr::new(10, 77, 2, 1));
    assert_eq!(
        host_addrs(p, 64).unwrap().mgmt,
        Ipv4Addr::new(10, 77, 1, 74)
    );
    assert!(host_addrs(p, 0).is_err());
    assert!(host_addrs(p, 65).is_err());
    assert!(p.covers(Ipv4Addr::new(10, 77, 3, 200)));
    assert!(!p.covers(Ipv4Addr::new(10, 77, 4, 1)));
    assert!(!p.covers(Ipv4Addr::new(10, 78, 1, 1)));
}

#[test]
fn names_follow_the_convention() {
    let l = lab("ab");
    assert_eq!(netns_name(&l, 7).unwrap(), "ab-h7");
    assert_eq!(
        netns_path(&l, 7).unwrap(),
        PathBuf::from("/run/netns/ab-h7")
    );
    assert_eq!(bridge_name(&l, Plane::Storage).unwrap(), "ab-br-stor");
    assert_eq!(veth_name(&l, 12, Plane::Management).unwrap(), "abh12-mgmt");
    assert!(netns_name(&l, 0).is_err());
    assert!(veth_name(&l, 65, Plane::Service).is_err());
}

#[test]
fn longest_names_fit_ifnamsiz() {
    let l = lab("zzzzz");
    for p in Plane::ALL {
        assert!(bridge_name(&l, p).unwrap().len() <= MAX_IFNAME);
        for h in 1..=MAX_HOSTS {
            assert!(veth_name(&l, h, p).unwrap().len() <= MAX_IFNAME);
            assert!(netns_name(&l, h).unwrap().len() <= MAX_IFNAME);
        }
    }
}

#[test]
fn cleanup_matching_is_exact_per_lab() {
    let a = lab("a");
    let ah = lab("ah");
    assert_eq!(parse_netns_name(&a, "a-h3"), Some(3));
    assert_eq!(parse_netns_name(&a, "a-h"), None);
    assert_eq!(parse_netns_name(&a, "a-h03"), None);
    assert_eq!(parse_netns_name(&a, "ab-h3"), None);
    assert_eq!(parse_netns_name(&a, "a-h3x"), None);
    assert!(is_lab_link(&a, "a-br-mgmt"));
    assert!(is_lab_link(&a, "ah1-stor"));
    assert!(!is_lab_link(&a, "a-br-foo"));
    assert!(!is_lab_link(&a, "ahh1-stor"));
    assert!(is_lab_link(&ah, "ahh1-stor"));
    assert!(!is_lab_link(&ah, "ah1-stor"));
    assert!(!is_lab_link(&a, "ah1-storx"));
    assert!(!is_lab_link(&a, "eth0"));
    // Every generated name is recognised by its own lab and by no other.
    for l in [lab("a"), lab("ah"), lab("ah1")] {
        for h in [1, 9, 64] {
            for p in Plane::ALL {
                let v = veth_name(&l, h, p).unwrap();
                assert!(is_lab_link(&l, &v));
                for other in [lab("a"), lab("ah"), lab("ah1")] {
                    assert_eq!(is_lab_link(&other, &v), other == l, "{v} {other}");
                }
            }
        }
    }
}
