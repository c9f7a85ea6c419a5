use std::net::IpAddr;

use smtp_core::client::{AuthMechanism, Credentials};
use smtp_core::config::ConfigDir;

use super::*;
use crate::config::RelayOutSettings;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

fn name(text: &str) -> HopHost {
    HopHost::Name(text.to_owned())
}

/// Loads the settings of a directory holding `files`; the warnings too.
fn load(
    files: &[(&str, &str)],
) -> (
    Result<RelayOutSettings, ConfigError>,
    Vec<String>,
    tempfile::TempDir,
) {
    let temp = tempfile::tempdir().expect("tempdir");
    for (file, text) in files {
        std::fs::write(temp.path().join(file), text).expect("write");
    }
    let dir = ConfigDir::open(temp.path())
        .expect("open")
        .with_environment(Vec::<(String, String)>::new());
    let settings = RelayOutSettings::load(&dir);
    let warnings = settings
        .as_ref()
        .map(|s| s.warnings.clone())
        .unwrap_or_default();
    (settings, warnings, temp)
}

fn routes(files: &[(&str, &str)]) -> RouteTable {
    let (settings, _, _temp) = load(files);
    settings.expect("load").routes
}

fn error(files: &[(&str, &str)]) -> String {
    let (settings, _, _temp) = load(files);
    settings.expect_err("should fail").to_string()
}

/// The route configured for exactly `domain`.
fn domain_route<'a>(table: &'a RouteTable, domain: &str) -> Option<&'a Route> {
    table
        .domains()
        .find(|(name, _)| *name == domain)
        .map(|(_, route)| route)
}

fn hops(route: &Route) -> Vec<(HopHost, u16)> {
    route
        .hops
        .iter()
        .map(|h| (h.host.clone(), h.port))
        .collect()
}

#[test]
fn hop_addresses_as_haraka_writes_them() {
    type Parsed = Option<(HopHost, Option<u16>)>;
    let cases: &[(&str, Parsed)] = &[
        ("smtp.example.com", Some((name("smtp.example.com"), None))),
        (
            "SMTP.Example.com.:587",
            Some((name("smtp.example.com"), Some(587))),
        ),
        ("192.0.2.1", Some((HopHost::Ip(ip("192.0.2.1")), None))),
        (
            "192.0.2.1:2525",
            Some((HopHost::Ip(ip("192.0.2.1")), Some(2525))),
        ),
        (
            "[2001:db8::1]:25",
            Some((HopHost::Ip(ip("2001:db8::1")), Some(25))),
        ),
        (
            "[2001:db8::1]",
            Some((HopHost::Ip(ip("2001:db8::1")), None)),
        ),
        ("2001:db8::1", Some((HopHost::Ip(ip("2001:db8::1")), None))),
        (
            "[smtp.example.com]:26",
            Some((name("smtp.example.com"), Some(26))),
        ),
        (
            "bücher.example",
            Some((name("xn--bcher-kva.example"), None)),
        ),
        ("host:0", None),
        ("host:99999", None),
        ("host:port", None),
        ("[2001:db8::1]x", None),
        ("", None),
        ("a b", None),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_hop_address(text).ok(), *expected, "{text:?}");
    }
}

#[test]
fn outbound_routes_ini_sections_and_the_smart_host() {
    let table = routes(&[
        ("ca.pem", "not checked at load"),
        (
            "outbound_routes.ini",
            "[*]\nhosts = smtp.provider.test:587, [2001:db8::1]:587\ntls = required\n\
             tls_ca = ca.pem\nauth_type = login\nauth_user = account\nauth_pass = s3cret\n\
             [Lists.Example.ORG]\nhosts[] = 127.0.0.7\nhosts[] = 127.0.0.8:2424\n\
             using_lmtp = yes\nbind = 127.0.0.3\ntls = off\n",
        ),
    ]);
    let smart = table.default_route().expect("default route");
    assert_eq!(smart.origin, "outbound_routes.ini [*]");
    assert_eq!(
        hops(smart),
        [
            (name("smtp.provider.test"), 587),
            (HopHost::Ip(ip("2001:db8::1")), 587)
        ]
    );
    let settings = &smart.hops[0].settings;
    assert!(
        matches!(&settings.tls, RouteTls::Required { ca_file: Some(path) } if path.ends_with("ca.pem"))
    );
    assert_eq!(
        settings.auth,
        Some(Credentials {
            mechanism: AuthMechanism::Login,
            user: "account".into(),
            password: "s3cret".into(),
        })
    );
    assert!(!settings.lmtp && settings.bind.is_none());

    let lists = domain_route(&table, "lists.example.org").expect("domain route");
    assert_eq!(
        hops(lists),
        [
            (HopHost::Ip(ip("127.0.0.7")), LMTP_PORT),
            (HopHost::Ip(ip("127.0.0.8")), 2424)
        ]
    );
    let settings = &lists.hops[0].settings;
    assert_eq!(settings.tls, RouteTls::Off);
    assert!(settings.lmtp && settings.auth.is_none());
    assert_eq!(settings.bind, Some(ip("127.0.0.3")));
}

#[test]
fn tls_defaults_to_outbound_ini() {
    let route = |outbound: &str| {
        let table = routes(&[
            ("outbound.ini", outbound),
            ("outbound_routes.ini", "[x.test]\nhosts = 127.0.0.7\n"),
        ]);
        domain_route(&table, "x.test").expect("route").hops[0]
            .settings
            .tls
            .clone()
    };
    assert_eq!(route(""), RouteTls::Opportunistic);
    assert_eq!(route("enable_tls=false"), RouteTls::Off);
    let table = routes(&[(
        "outbound_routes.ini",
        "[x.test]\nhosts=a.test\ntls=required\n",
    )]);
    assert_eq!(
        domain_route(&table, "x.test").expect("route").hops[0]
            .settings
            .tls,
        RouteTls::Required { ca_file: None }
    );
    assert!(table.default_route().is_none(), "no default route");
}

#[test]
fn outbound_routes_ini_errors_name_file_section_and_key() {
    let cases = [
        ("[x.test]\n", "[x.test] hosts = (missing)"),
        (
            "[x.test]\nhosts=a.test\ntsl=required\n",
            "[x.test] tsl = unknown key",
        ),
        ("[x.test]\nhosts=a.test:0\n", "[x.test] hosts = 'a.test:0'"),
        (
            "[x.test]\nhosts=a.test\ntls=yes\n",
            "[x.test] tls = 'yes': expected off, opportunistic or required",
        ),
        (
            "[x.test]\nhosts=a.test\ntls=required\ntls_ca=missing.pem\n",
            "[x.test] tls_ca = 'missing.pem'",
        ),
        (
            "[x.test]\nhosts=a.test\ntls_ca=ca.pem\n",
            "only used with tls = required",
        ),
        (
            "[x.test]\nhosts=a.test\nauth_user=u\n",
            "[x.test] auth_pass = (missing)",
        ),
        (
            "[x.test]\nhosts=a.test\nauth_pass=secretpw\n",
            "[x.test] auth_user = (missing)",
        ),
        (
            "[x.test]\nhosts=a.test\nauth_user=u\nauth_pass=p\nauth_type=cram-md5\n",
            "auth_type = 'cram-md5': expected plain or login",
        ),
        (
            "[x.test]\nhosts=a.test\nbind=192.0.2.1\n",
            "[x.test] bind = '192.0.2.1': not an address of this host",
        ),
        (
            "[x.test]\nhosts=[::1]\nbind=127.0.0.1\n",
            "another address family",
        ),
        (
            "[x.test]\nhosts=a.test\nusing_lmtp[]=1\n",
            "[x.test] using_lmtp = a list",
        ),
        (
            "hosts=a.test\n[x.test]\nhosts=b.test\n",
            "[main] hosts = written before the first section",
        ),
        (
            "[not a domain]\nhosts=a.test\n",
            "section name 'not a domain'",
        ),
        (
            "[X.test]\nhosts=a.test\n[x.test.]\nhosts=b.test\n",
            "routes the same mail as outbound_routes.ini [X.test]",
        ),
    ];
    for (text, expected) in cases {
        let message = error(&[("outbound_routes.ini", text), ("ca.pem", "")]);
        assert!(message.contains(expected), "{text:?}: {message}");
        assert!(message.contains("outbound_routes.ini"), "{message}");
        assert!(!message.contains("secretpw"), "{message}");
    }
}

fn dest(entries: &str) -> (&'static str, String) {
    ("relay_dest_domains.ini", format!("[domains]\n{entries}"))
}

#[test]
fn relay_dest_domains_nexthop_in_every_haraka_form() {
    let (file, text) = dest(concat!(
        "plain.test = {\"action\":\"accept\",\"nexthop\":\"10.0.0.5\"}\n",
        "port.test = {\"action\":\"accept\",\"nexthop\":\"mx.port.test:2525\"}\n",
        "v6.test = {\"nexthop\":\"[::1]:2525\"}\n",
        "url.test = {\"nexthop\":\"smtp://user%40x.test:p%3Ass@smart.test:587\"}\n",
        "lmtp.test = {\"nexthop\":\"lmtp://127.0.0.7\"}\n",
        "object.test = {\"nexthop\":{\"exchange\":\"127.0.0.9\",\"port\":\"26\",\"using_lmtp\":true,\"bind\":\"127.0.0.3\",\"auth_user\":\"u\",\"auth_pass\":\"p\",\"auth_type\":\"PLAIN\"}}\n",
        "list.test = {\"nexthop\":[{\"exchange\":\"b.test\",\"priority\":20},\"c.test:26\",{\"exchange\":\"a.test\",\"priority\":10}]}\n",
        "noroute.test = {\"action\":\"accept\"}\n",
        "any = {\"action\":\"continue\",\"nexthop\":\"smart.test\"}\n",
    ));
    let table = routes(&[(file, text.as_str())]);
    let get = |domain: &str| domain_route(&table, domain).expect(domain);
    assert_eq!(hops(get("plain.test")), [(HopHost::Ip(ip("10.0.0.5")), 25)]);
    assert_eq!(hops(get("port.test")), [(name("mx.port.test"), 2525)]);
    assert_eq!(hops(get("v6.test")), [(HopHost::Ip(ip("::1")), 2525)]);
    let url = get("url.test");
    assert_eq!(hops(url), [(name("smart.test"), 587)]);
    assert_eq!(
        url.hops[0].settings.auth,
        Some(Credentials {
            mechanism: AuthMechanism::Any,
            user: "user@x.test".into(),
            password: "p:ss".into(),
        })
    );
    assert_eq!(url.origin, "relay_dest_domains.ini [domains] url.test");
    let lmtp = get("lmtp.test");
    assert_eq!(hops(lmtp), [(HopHost::Ip(ip("127.0.0.7")), LMTP_PORT)]);
    assert!(lmtp.hops[0].settings.lmtp);
    let object = &get("object.test").hops[0];
    assert_eq!((object.port, object.settings.lmtp), (26, true));
    assert_eq!(object.settings.bind, Some(ip("127.0.0.3")));
    assert_eq!(
        object.settings.auth.as_ref().map(|a| a.mechanism),
        Some(AuthMechanism::Plain)
    );
    assert_eq!(object.settings.tls, RouteTls::Opportunistic);
    assert_eq!(
        hops(get("list.test")),
        [
            (name("c.test"), 26),
            (name("a.test"), 25),
            (name("b.test"), 25)
        ]
    );
    // No nexthop: no route of its own (the `any` route takes it).
    assert!(domain_route(&table, "noroute.test").is_none());
    assert_eq!(
        table.default_route().map(|r| r.origin.as_str()),
        Some("relay_dest_domains.ini [domains] any")
    );
}

#[test]
fn nexthop_errors_never_quote_the_json() {
    for (entry, expected) in [
        ("x.test = not json", "not valid JSON"),
        ("x.test = [1]", "expected a JSON object"),
        (
            "x.test = {\"nexthop\":5}",
            "expected a string, an MX object",
        ),
        ("x.test = {\"nexthop\":{\"port\":25}}", "needs \"exchange\""),
        (
            "x.test = {\"nexthop\":{\"exchange\":\"a.test\",\"path\":\"/run/lmtp\"}}",
            "\"path\" is not supported",
        ),
        (
            "x.test = {\"nexthop\":{\"exchange\":\"a.test\",\"auth_user\":\"u\"}}",
            "go together",
        ),
        (
            "x.test = {\"nexthop\":\"ftp://secretpw@a.test\"}",
            "nexthop: expected a host",
        ),
        (
            "x.test = {\"nexthop\":\"imap-lmtp://secretpw@a.test\"}",
            "nexthop: expected a URL",
        ),
        (
            "x.test = {\"nexthop\":\"smtp://u:secretpw%zz@a.test\"}",
            "bad %-escape",
        ),
        (
            "x.test = {\"nexthop\":{\"exchange\":\"a.test\",\"port\":70000}}",
            "port: expected",
        ),
        (
            "a..b = {\"nexthop\":\"a.test\"}",
            "[domains] a..b = key: expected a domain",
        ),
    ] {
        let (file, text) = dest(entry);
        let message = error(&[(file, text.as_str())]);
        assert!(message.contains(expected), "{entry}: {message}");
        assert!(
            message.contains("relay_dest_domains.ini: [domains]"),
            "{message}"
        );
        assert!(!message.contains("secretpw"), "{message}");
    }
}

#[test]
fn both_files_may_not_route_the_same_mail() {
    let (file, text) = dest("x.test = {\"nexthop\":\"a.test\"}\n");
    let message = error(&[
        (file, text.as_str()),
        ("outbound_routes.ini", "[x.test]\nhosts=b.test\n"),
    ]);
    assert!(
        message.contains("relay_dest_domains.ini [domains] x.test routes the same mail as outbound_routes.ini [x.test]"),
        "{message}"
    );
    let (file, text) = dest("any = {\"nexthop\":\"a.test\"}\n");
    let message = error(&[
        (file, text.as_str()),
        ("outbound_routes.ini", "[*]\nhosts=b.test\n"),
    ]);
    assert!(
        message.contains("routes the same mail as outbound_routes.ini [*]"),
        "{message}"
    );
}

#[test]
fn risky_routes_are_reported() {
    let (settings, warnings, _temp) = load(&[(
        "outbound_routes.ini",
        "[*]\nhosts = smtp.provider.test:465\nauth_user = u\nauth_pass = p\n",
    )]);
    settings.expect("load");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("port 465 expects TLS from the first byte")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("AUTH without tls = required")),
        "{warnings:?}"
    );
}

#[test]
fn force_routing_off_ignores_nexthops_and_says_so() {
    let (file, text) = dest("x.test = {\"nexthop\":\"a.test\"}\n");
    let (settings, warnings, _temp) = load(&[
        (file, text.as_str()),
        ("relay.ini", "[relay]\nforce_routing=false\n"),
    ]);
    assert!(settings.expect("load").routes.is_empty());
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("nexthop routes are ignored")),
        "{warnings:?}"
    );
}

#[test]
fn local_address_must_exist_on_this_host() {
    let message = error(&[("outbound.ini", "local_address=192.0.2.44\n")]);
    assert!(
        message.contains(
            "outbound.ini: [main] local_address = '192.0.2.44': not an address of this host"
        ),
        "{message}"
    );
    let (settings, _, _temp) = load(&[("outbound.ini", "local_address=127.0.0.3\n")]);
    assert_eq!(
        settings.expect("load").outbound.local_address,
        Some(ip("127.0.0.3"))
    );
}
