use super::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn policy(local_mx_ok: bool, ipv6_enabled: bool, inet_prefer: InetPrefer) -> AddressPolicy {
    AddressPolicy {
        local_mx_ok,
        ipv6_enabled,
        inet_prefer,
        family: Arc::default(),
        listeners: vec![
            "10.0.0.1:2526".parse().unwrap(),
            "127.0.0.1:2525".parse().unwrap(),
            "[::]:25".parse().unwrap(),
        ],
        remote_port: 2525,
        local_address: None,
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn skipped_addresses() {
    let strict = policy(false, false, InetPrefer::Default);
    let lenient = policy(true, true, InetPrefer::Default);
    let cases = [
        (
            "127.0.0.1",
            Some(Skip::OwnListener),
            Some(Skip::OwnListener),
        ),
        (
            "::ffff:127.0.0.1",
            Some(Skip::OwnListener),
            Some(Skip::OwnListener),
        ),
        ("127.0.0.2", Some(Skip::Local), None),
        ("::1", Some(Skip::Local), None),
        ("169.254.1.1", Some(Skip::Local), None),
        ("fe80::1", Some(Skip::Local), None),
        ("0.0.0.0", Some(Skip::Local), None),
        ("10.0.0.1", Some(Skip::Local), None),
        ("10.0.0.9", None, None),
        ("192.168.1.1", None, None),
        ("203.0.113.5", None, None),
        ("2001:db8::1", Some(Skip::Ipv6Disabled), None),
    ];
    for (address, strictly, leniently) in cases {
        assert_eq!(strict.skip(ip(address)), strictly, "{address} strict");
        assert_eq!(lenient.skip(ip(address)), leniently, "{address} lenient");
    }
}

#[test]
fn route_hops_may_be_local_but_never_our_own_listener() {
    let strict = policy(false, false, InetPrefer::Default);
    let v4 = Some(ip("127.0.0.3"));
    let cases = [
        // (address, port, source, from DNS, expected)
        ("127.0.0.1", 2525, None, false, Some(Skip::OwnListener)),
        ("127.0.0.1", 2424, None, false, None),
        ("127.0.0.7", 2525, None, false, None),
        ("10.0.0.1", 2526, None, true, Some(Skip::OwnListener)),
        ("10.0.0.1", 25, None, true, None),
        ("::1", 25, None, false, Some(Skip::OwnListener)),
        ("2001:db8::1", 587, None, false, None),
        ("2001:db8::1", 587, None, true, Some(Skip::Ipv6Disabled)),
        (
            "2001:db8::1",
            587,
            v4,
            false,
            Some(Skip::SourceFamily(ip("127.0.0.3"))),
        ),
        (
            "192.0.2.1",
            587,
            Some(ip("2001:db8::5")),
            false,
            Some(Skip::SourceFamily(ip("2001:db8::5"))),
        ),
        ("192.0.2.1", 587, v4, true, None),
    ];
    for (address, port, source, from_dns, expected) in cases {
        assert_eq!(
            strict.skip_hop(ip(address), port, source, from_dns),
            expected,
            "{address}:{port} from {source:?}"
        );
    }
}

#[test]
fn local_address_keeps_mx_delivery_to_its_family() {
    let mut policy = policy(true, true, InetPrefer::Default);
    policy.local_address = Some(ip("127.0.0.4"));
    assert_eq!(policy.skip(ip("192.0.2.1")), None);
    assert_eq!(
        policy.skip(ip("2001:db8::1")),
        Some(Skip::SourceFamily(ip("127.0.0.4")))
    );
    assert_eq!(
        policy.usable("mx", &[ip("2001:db8::1"), ip("192.0.2.1")]),
        [ip("192.0.2.1")]
    );
}

#[test]
fn a_wildcard_listener_on_the_delivery_port_makes_every_local_address_ours() {
    let mut wildcard = policy(true, true, InetPrefer::Default);
    wildcard.remote_port = 25;
    assert_eq!(wildcard.skip(ip("127.0.0.9")), Some(Skip::OwnListener));
    assert_eq!(wildcard.skip(ip("::1")), Some(Skip::OwnListener));
    assert_eq!(wildcard.skip(ip("203.0.113.5")), None);
}

#[test]
fn address_order_follows_inet_prefer_within_a_host() {
    let addresses = [
        ip("2001:db8::1"),
        ip("192.0.2.1"),
        ip("2001:db8::2"),
        ip("192.0.2.2"),
    ];
    let cases = [
        (
            InetPrefer::Default,
            vec!["2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2"],
        ),
        (
            InetPrefer::V4,
            vec!["192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2"],
        ),
        (
            InetPrefer::V6,
            vec!["2001:db8::1", "2001:db8::2", "192.0.2.1", "192.0.2.2"],
        ),
    ];
    for (prefer, expected) in cases {
        let expected: Vec<IpAddr> = expected.into_iter().map(ip).collect();
        assert_eq!(
            policy(true, true, prefer).usable("mx", &addresses),
            expected
        );
    }
    let v4_only = policy(true, false, InetPrefer::V6).usable("mx", &addresses);
    assert_eq!(v4_only, vec![ip("192.0.2.1"), ip("192.0.2.2")]);
}

fn mx(preference: u16, exchange: &str) -> MxRecord {
    MxRecord {
        preference,
        exchange: exchange.to_string(),
    }
}

#[test]
fn mx_order_is_by_preference_with_equal_ones_shuffled() {
    let records = vec![
        mx(20, "c"),
        mx(10, "a"),
        mx(10, "b"),
        mx(30, "d"),
        mx(20, "e"),
    ];
    let mut rng = StdRng::seed_from_u64(7);
    let mut first_seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let ordered = order_mx(records.clone(), &mut rng);
        let preferences: Vec<u16> = ordered.iter().map(|r| r.preference).collect();
        assert_eq!(preferences, [10, 10, 20, 20, 30]);
        let mut pair: Vec<&str> = ordered[..2].iter().map(|r| r.exchange.as_str()).collect();
        first_seen.insert(pair[0].to_string());
        pair.sort_unstable();
        assert_eq!(pair, ["a", "b"]);
        assert_eq!(ordered[4].exchange, "d");
    }
    assert_eq!(first_seen.len(), 2, "both equal hosts come first sometimes");
    assert!(order_mx(Vec::new(), &mut rng).is_empty());
}

#[test]
fn dns_failures_bounce_or_defer() {
    let nx = DnsError::NxDomain {
        name: "x.test".into(),
    };
    let temporary = DnsError::Temporary {
        name: "x.test".into(),
        reason: "SERVFAIL".into(),
    };
    let bounce = dns_failure("x.test", &nx, "MX");
    assert!(bounce.permanent && bounce.status == "5.1.2");
    assert!(bounce.text.contains("does not exist"), "{}", bounce.text);
    let defer = dns_failure("x.test", &temporary, "MX");
    assert!(!defer.permanent && defer.status == "4.4.3");
    assert!(defer.text.contains("SERVFAIL"), "{}", defer.text);
}

#[test]
fn destinations_display_like_addresses() {
    assert_eq!(
        Destination::Domain("example.com".into()).to_string(),
        "example.com"
    );
    assert_eq!(
        Destination::Literal(ip("192.0.2.1")).to_string(),
        "[192.0.2.1]"
    );
    assert_eq!(
        Destination::Literal(ip("2001:db8::1")).to_string(),
        "[2001:db8::1]"
    );
}

#[test]
fn a_failed_ipv6_self_check_leaves_ipv6_addresses_out() {
    let policy = policy(true, true, InetPrefer::Default);
    let addresses = [ip("2001:db8::1"), ip("192.0.2.1")];
    assert_eq!(policy.usable("mx.test", &addresses), addresses.to_vec());
    policy.family.set_ipv6_refused(true);
    assert_eq!(policy.skip(ip("2001:db8::1")), Some(Skip::Ipv6Unconfirmed));
    assert_eq!(policy.usable("mx.test", &addresses), vec![ip("192.0.2.1")]);
    assert_eq!(
        policy.skip_hop(ip("2001:db8::1"), 587, None, true),
        Some(Skip::Ipv6Unconfirmed)
    );
    // A route's IPv6 literal was written on purpose.
    assert_eq!(policy.skip_hop(ip("2001:db8::1"), 587, None, false), None);
}
