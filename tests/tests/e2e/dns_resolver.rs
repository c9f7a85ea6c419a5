//! `smtp_core::dns::Dns` against a real DNS server on loopback ([`TestDns`]): the reverse lookup
//! that feeds Received/XCLIENT, and the MX/address lookups relay-out routes with.
//!
//! Every resolver here is pointed at a server this test started on 127.0.0.1; none is ever built
//! from the system configuration.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use postern_tests::dns::{SilentDns, TestDns, TestZone};
use smtp_core::dns::{Dns, DnsError, DnsSettings, MxAnswer, MxRecord};
use smtp_protocol::session::ClientName;

const TIMEOUT: Duration = Duration::from_secs(2);

fn resolver_at(nameserver: SocketAddr, timeout: Duration) -> Dns {
    Dns::new(&DnsSettings {
        nameservers: vec![nameserver],
        timeout,
        reverse_lookups: true,
    })
    .expect("resolver builds")
}

async fn serve(zone: TestZone) -> (TestDns, Dns) {
    let server = TestDns::start(zone).await.expect("test DNS starts");
    let dns = resolver_at(server.addr(), TIMEOUT);
    (server, dns)
}

fn v4(text: &str) -> Ipv4Addr {
    text.parse().expect("valid IPv4 literal")
}

fn v6(text: &str) -> Ipv6Addr {
    text.parse().expect("valid IPv6 literal")
}

fn mx(preference: u16, exchange: &str) -> MxRecord {
    MxRecord {
        preference,
        exchange: exchange.to_string(),
    }
}

// ---- client_name ----

#[tokio::test]
async fn forward_confirmed_ptr_is_verified() {
    let client = v4("192.0.2.10");
    let zone = TestZone::new()
        .ptr(client.into(), "mail.example.com")
        .a("mail.example.com", client);
    let (_server, dns) = serve(zone).await;
    assert_eq!(
        dns.client_name(client.into()).await,
        ClientName::Verified("mail.example.com".to_string())
    );
}

#[tokio::test]
async fn ptr_whose_forward_lookup_does_not_match_is_unverified() {
    let client = v4("192.0.2.11");
    let zone = TestZone::new()
        .ptr(client.into(), "spoof.example.com")
        .a("spoof.example.com", v4("192.0.2.99"));
    let (_server, dns) = serve(zone).await;
    assert_eq!(
        dns.client_name(client.into()).await,
        ClientName::Unverified("spoof.example.com".to_string())
    );
}

#[tokio::test]
async fn ptr_whose_name_does_not_exist_is_unverified() {
    let client = v4("192.0.2.12");
    let zone = TestZone::new().ptr(client.into(), "gone.example.com");
    let (_server, dns) = serve(zone).await;
    assert_eq!(
        dns.client_name(client.into()).await,
        ClientName::Unverified("gone.example.com".to_string())
    );
}

#[tokio::test]
async fn any_of_several_ptr_names_may_confirm() {
    let client = v4("192.0.2.13");
    let zone = TestZone::new()
        .ptr(client.into(), "other.example.com")
        .ptr(client.into(), "real.example.com")
        .a("other.example.com", v4("192.0.2.200"))
        .a("real.example.com", client);
    let (_server, dns) = serve(zone).await;
    assert_eq!(
        dns.client_name(client.into()).await,
        ClientName::Verified("real.example.com".to_string())
    );
}

#[tokio::test]
async fn no_ptr_is_unavailable() {
    let (_server, dns) = serve(TestZone::new()).await;
    assert_eq!(
        dns.client_name(v4("192.0.2.14").into()).await,
        ClientName::Unavailable
    );
}

#[tokio::test]
async fn ptr_target_that_is_not_a_host_name_is_unavailable() {
    let client = v4("192.0.2.15");
    let zone = TestZone::new()
        .ptr(client.into(), "192.0.2.15")
        .a("192.0.2.15", client);
    let (_server, dns) = serve(zone).await;
    assert_eq!(
        dns.client_name(client.into()).await,
        ClientName::Unavailable
    );
}

#[tokio::test]
async fn servfail_on_ptr_is_temporarily_unavailable() {
    let client = v4("192.0.2.16");
    let zone = TestZone::new().ptr_servfail(client.into());
    let (_server, dns) = serve(zone).await;
    assert_eq!(
        dns.client_name(client.into()).await,
        ClientName::TempUnavailable
    );
}

#[tokio::test]
async fn servfail_on_forward_confirmation_is_temporarily_unavailable() {
    let client = v4("192.0.2.17");
    let zone = TestZone::new()
        .ptr(client.into(), "flaky.example.com")
        .servfail("flaky.example.com");
    let (_server, dns) = serve(zone).await;
    assert_eq!(
        dns.client_name(client.into()).await,
        ClientName::TempUnavailable
    );
}

#[tokio::test]
async fn ipv6_client_is_confirmed_through_ip6_arpa_and_aaaa() {
    let confirmed = v6("2001:db8::1");
    let a_only = v6("2001:db8::25");
    let zone = TestZone::new()
        .ptr(confirmed.into(), "v6.example.com")
        .aaaa("v6.example.com", confirmed)
        .ptr(a_only.into(), "v4only.example.com")
        .a("v4only.example.com", v4("192.0.2.25"));
    let (_server, dns) = serve(zone).await;
    assert_eq!(
        dns.client_name(confirmed.into()).await,
        ClientName::Verified("v6.example.com".to_string())
    );
    // An A record does not confirm an IPv6 client.
    assert_eq!(
        dns.client_name(a_only.into()).await,
        ClientName::Unverified("v4only.example.com".to_string())
    );
}

#[tokio::test]
async fn loopback_clients_are_localhost_without_asking_the_server() {
    // RFC 6761: the resolver answers 1.0.0.127.in-addr.arpa and 1.0...ip6.arpa itself, whatever
    // the zone says; end-to-end tests connecting from loopback always see "localhost".
    let zone = TestZone::new()
        .ptr(Ipv6Addr::LOCALHOST.into(), "zone.example.com")
        .aaaa("zone.example.com", Ipv6Addr::LOCALHOST);
    let (_server, dns) = serve(zone).await;
    for client in [
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    ] {
        assert_eq!(
            dns.client_name(client).await,
            ClientName::Verified("localhost".to_string()),
            "{client}"
        );
    }
}

#[tokio::test]
async fn ipv4_mapped_client_is_looked_up_as_ipv4() {
    let client = v4("192.0.2.18");
    let zone = TestZone::new()
        .ptr(client.into(), "mapped.example.com")
        .a("mapped.example.com", client);
    let (_server, dns) = serve(zone).await;
    let mapped = IpAddr::V6(client.to_ipv6_mapped());
    assert_eq!(
        dns.client_name(mapped).await,
        ClientName::Verified("mapped.example.com".to_string())
    );
}

#[tokio::test]
async fn silent_nameserver_is_temporarily_unavailable_within_the_timeout() {
    let silent = SilentDns::start().await.expect("silent DNS binds");
    let timeout = Duration::from_millis(800);
    let dns = resolver_at(silent.addr().expect("silent DNS address"), timeout);
    let started = Instant::now();
    let name = dns.client_name(v4("192.0.2.19").into()).await;
    let elapsed = started.elapsed();
    assert_eq!(name, ClientName::TempUnavailable);
    assert!(
        elapsed < timeout + Duration::from_millis(500),
        "took {elapsed:?}"
    );
}

// ---- mx ----

#[tokio::test]
async fn mx_records_come_back_lowest_preference_first() {
    let zone = TestZone::new()
        .mx("example.com", 20, "mx2.example.com")
        .mx("example.com", 10, "mx1.example.com")
        .mx("example.com", 30, "mx3.example.net.");
    let (_server, dns) = serve(zone).await;
    let expected = MxAnswer::Records(vec![
        mx(10, "mx1.example.com"),
        mx(20, "mx2.example.com"),
        mx(30, "mx3.example.net"),
    ]);
    assert_eq!(dns.mx("example.com").await, Ok(expected.clone()));
    assert_eq!(dns.mx("EXAMPLE.com.").await, Ok(expected));
}

#[tokio::test]
async fn null_mx_is_reported() {
    let zone = TestZone::new().null_mx("nomail.example.com");
    let (_server, dns) = serve(zone).await;
    assert_eq!(dns.mx("nomail.example.com").await, Ok(MxAnswer::NullMx));
}

#[tokio::test]
async fn nonexistent_domain_is_nxdomain() {
    let zone = TestZone::new().nxdomain("gone.example.com");
    let (_server, dns) = serve(zone).await;
    for domain in ["gone.example.com", "never-mentioned.example.com"] {
        assert!(
            matches!(dns.mx(domain).await, Err(DnsError::NxDomain { .. })),
            "{domain}"
        );
    }
}

#[tokio::test]
async fn domain_without_mx_means_implicit_mx() {
    let zone = TestZone::new().a("plain.example.com", v4("192.0.2.30"));
    let (_server, dns) = serve(zone).await;
    assert_eq!(dns.mx("plain.example.com").await, Ok(MxAnswer::NoRecords));
}

#[tokio::test]
async fn servfail_on_mx_is_temporary() {
    let zone = TestZone::new().servfail("broken.example.com");
    let (_server, dns) = serve(zone).await;
    assert!(matches!(
        dns.mx("broken.example.com").await,
        Err(DnsError::Temporary { .. })
    ));
}

#[tokio::test]
async fn silent_nameserver_makes_mx_temporary_within_the_timeout() {
    let silent = SilentDns::start().await.expect("silent DNS binds");
    let timeout = Duration::from_millis(800);
    let dns = resolver_at(silent.addr().expect("silent DNS address"), timeout);
    let started = Instant::now();
    let answer = dns.mx("example.com").await;
    assert!(
        matches!(answer, Err(DnsError::Temporary { .. })),
        "{answer:?}"
    );
    assert!(started.elapsed() < timeout + Duration::from_millis(500));
}

// ---- addresses ----

#[tokio::test]
async fn addresses_list_ipv6_before_ipv4() {
    let zone = TestZone::new()
        .a("dual.example.com", v4("192.0.2.40"))
        .aaaa("dual.example.com", v6("2001:db8::40"));
    let (_server, dns) = serve(zone).await;
    assert_eq!(
        dns.addresses("dual.example.com").await,
        Ok(vec![
            IpAddr::V6(v6("2001:db8::40")),
            IpAddr::V4(v4("192.0.2.40"))
        ])
    );
}

#[tokio::test]
async fn addresses_of_name_without_addresses_is_empty_and_unknown_name_is_nxdomain() {
    let zone = TestZone::new().mx("mxonly.example.com", 10, "mx.example.com");
    let (_server, dns) = serve(zone).await;
    assert_eq!(dns.addresses("mxonly.example.com").await, Ok(Vec::new()));
    assert!(matches!(
        dns.addresses("unknown.example.com").await,
        Err(DnsError::NxDomain { .. })
    ));
}

#[tokio::test]
async fn addresses_servfail_is_temporary() {
    let zone = TestZone::new().servfail("broken.example.com");
    let (_server, dns) = serve(zone).await;
    assert!(matches!(
        dns.addresses("broken.example.com").await,
        Err(DnsError::Temporary { .. })
    ));
}

#[tokio::test]
async fn truncated_udp_answer_is_retried_over_tcp() {
    // 60 A records do not fit in a 512-byte UDP answer: the server truncates, the resolver must
    // repeat the query over TCP on the same port to see them all.
    let zone = (1..=60u8).fold(TestZone::new(), |zone, last| {
        zone.a("big.example.com", Ipv4Addr::new(192, 0, 2, last))
    });
    let (_server, dns) = serve(zone).await;
    let addresses = dns
        .addresses("big.example.com")
        .await
        .expect("answer over TCP");
    assert_eq!(addresses.len(), 60);
}

// ---- the test server itself ----

#[tokio::test]
async fn test_dns_stops_when_dropped() {
    let zone = TestZone::new().a("up.example.com", v4("192.0.2.50"));
    let server = TestDns::start(zone).await.expect("test DNS starts");
    let addr = server.addr();
    let dns = resolver_at(addr, Duration::from_millis(600));
    assert_eq!(
        dns.addresses("up.example.com").await,
        Ok(vec![IpAddr::V4(v4("192.0.2.50"))])
    );
    drop(server);
    // Let the aborted tasks release their sockets.
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A fresh resolver, so the cached answer cannot hide a server that is still up.
    let fresh = resolver_at(addr, Duration::from_millis(600));
    assert!(matches!(
        fresh.addresses("up.example.com").await,
        Err(DnsError::Temporary { .. })
    ));
}
