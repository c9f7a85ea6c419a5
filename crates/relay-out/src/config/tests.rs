use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

/// A throw-away config directory (relay-out has no tempfile dev-dependency).
struct TempConfig {
    path: PathBuf,
}

impl TempConfig {
    fn new(files: &[(&str, &str)]) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "postern-relay-out-config-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("mkdir");
        for (name, content) in files {
            std::fs::write(path.join(name), content).expect("write");
        }
        Self { path }
    }

    fn dir(&self) -> ConfigDir {
        ConfigDir::open(&self.path)
            .expect("open")
            .with_environment(Vec::<(String, String)>::new())
    }

    fn load(&self) -> Result<RelayOutSettings, ConfigError> {
        RelayOutSettings::load(&self.dir())
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn networks(list: &[&str]) -> Vec<IpNetwork> {
    list.iter().map(|n| n.parse().expect("network")).collect()
}

#[test]
fn seed_haraka_out_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/seed-haraka-out");
    let dir = ConfigDir::open(&root)
        .expect("open")
        .with_environment(Vec::<(String, String)>::new());
    let settings = RelayOutSettings::load(&dir).expect("load");
    assert_eq!(
        settings.relay,
        RelayPolicy {
            acl: true,
            force_routing: true,
            dest_domains: false,
            all: false,
        }
    );
    assert_eq!(settings.acl_allow, networks(&["10.0.0.2/32"]));
    assert_eq!(settings.dest_domains, None);
    assert_eq!(
        dir.ini_document(files::RELAY_DEST_DOMAINS_INI)
            .expect("read"),
        None
    );
    // The seed's host_list is not read by relay-out (nor by haraka-out's
    // relay and outbound), and the administrator is told why.
    assert_eq!(settings.warnings.len(), 1, "{:?}", settings.warnings);
    assert!(
        settings.warnings[0].ends_with("host_list: not used by relay-out: in Haraka only rcpt_to.in_host_list reads it (the relay plugin and outbound do not), to accept mail for local delivery, which relay-out does not do; relay-out relays for relay_acl_allow, authenticated users and relay.ini dest_domains"),
        "{:?}",
        settings.warnings
    );
    assert!(
        dir.unrecognized_files(files::KNOWN_FILES).is_empty(),
        "plugins is read"
    );
}

#[test]
fn defaults_without_files() {
    let temp = TempConfig::new(&[]);
    let settings = temp.load().expect("load");
    assert_eq!(settings.relay, RelayPolicy::default());
    assert!(settings.relay.acl && settings.relay.force_routing);
    assert!(!settings.relay.dest_domains && !settings.relay.all);
    assert!(settings.acl_allow.is_empty());
    assert!(settings.dest_domains.is_none());
    let outbound = settings.outbound;
    assert!(!outbound.disabled);
    assert_eq!(outbound.concurrency_max, 100);
    assert!(outbound.enable_tls);
    assert!(!outbound.tls_fallback_plain);
    assert!(!outbound.always_split);
    assert_eq!(
        outbound.received_header.as_deref(),
        Some("Postern outbound")
    );
    assert_eq!(outbound.connect_timeout, Duration::from_secs(30));
    assert!(!outbound.local_mx_ok);
    assert!(
        outbound.ipv6_enabled,
        "AAAA records are used, as in Haraka 3.x"
    );
    assert_eq!(outbound.inet_prefer, InetPrefer::Default);
    assert_eq!(outbound.max_temp_failures, 13);
    assert_eq!(outbound.domain_concurrency_max, 20);
    assert_eq!(outbound.temp_fail_intervals, None);
    assert_eq!(outbound.max_queue_lifetime, Duration::from_secs(5 * 86_400));
    assert_eq!(
        outbound.delay_warning_time,
        Some(Duration::from_secs(4 * 3600))
    );
    assert_eq!(outbound.queue_dir, Path::new("/var/spool/postern/queue"));
    assert!(outbound.nameservers.is_empty());
    assert_eq!(outbound.remote_port, 25);
    assert_eq!(outbound.local_address, None);
    assert_eq!(settings.warnings.len(), 1);
    assert!(settings.warnings[0].contains("no client may relay"));
}

#[test]
fn delay_warning_time_forms() {
    let cases = [
        ("delay_warning_time=0", None),
        ("delay_warning_time=0h", None),
        ("delay_warning_time=3", Some(3 * 3600)),
        ("delay_warning_time=10s", Some(10)),
        ("delay_warning_time=1.5H", Some(5400)),
    ];
    for (line, expected) in cases {
        let temp = TempConfig::new(&[("outbound.ini", line)]);
        let outbound = temp.load().expect(line).outbound;
        assert_eq!(
            outbound.delay_warning_time,
            expected.map(Duration::from_secs),
            "{line}"
        );
    }
}

#[test]
fn every_outbound_key() {
    let temp = TempConfig::new(&[(
        "outbound.ini",
        "disabled=true\nconcurrency_max=7\ndomain_concurrency_max=3\nenable_tls=false\ntls_fallback_plain=yes\nalways_split=on\n\
         received_header=disabled\nconnect_timeout=12\nlocal_mx_ok=1\nipv6_enabled=false\ninet_prefer=v6\n\
         maxTempFailures=3\ntemp_fail_intervals=1m, 5m*2\nmax_queue_lifetime=2d\nqueue_dir=/srv/relay-queue\n\
         delay_warning_time=30m\nnameservers=127.0.0.1:5353\nremote_port=2525\nlocal_address=127.0.0.10\n",
    )]);
    let outbound = temp.load().expect("load").outbound;
    assert!(outbound.disabled);
    assert_eq!(outbound.concurrency_max, 7);
    assert_eq!(outbound.domain_concurrency_max, 3);
    assert!(!outbound.enable_tls);
    assert!(outbound.tls_fallback_plain);
    assert!(outbound.always_split);
    assert_eq!(outbound.received_header, None);
    assert_eq!(outbound.connect_timeout, Duration::from_secs(12));
    assert!(outbound.local_mx_ok);
    assert!(!outbound.ipv6_enabled);
    assert_eq!(outbound.inet_prefer, InetPrefer::V6);
    assert_eq!(outbound.max_temp_failures, 3);
    let minutes: Vec<u64> = outbound
        .temp_fail_intervals
        .unwrap_or_default()
        .iter()
        .map(|d| d.as_secs() / 60)
        .collect();
    assert_eq!(minutes, [1, 5, 5]);
    assert_eq!(outbound.max_queue_lifetime, Duration::from_secs(2 * 86_400));
    assert_eq!(outbound.delay_warning_time, Some(Duration::from_secs(1800)));
    assert_eq!(outbound.queue_dir, Path::new("/srv/relay-queue"));
    assert_eq!(
        outbound.nameservers,
        ["127.0.0.1:5353".parse().expect("addr")]
    );
    assert_eq!(outbound.remote_port, 2525);
    assert_eq!(
        outbound.local_address,
        Some("127.0.0.10".parse().expect("ip"))
    );
}

#[test]
fn unset_intervals_stay_unset_and_none_is_empty() {
    let temp = TempConfig::new(&[("outbound.ini", "maxTempFailures=3")]);
    let outbound = temp.load().expect("load").outbound;
    assert_eq!(outbound.max_temp_failures, 3);
    assert_eq!(outbound.temp_fail_intervals, None);
    let temp = TempConfig::new(&[("outbound.ini", "temp_fail_intervals=none")]);
    assert_eq!(
        temp.load().expect("load").outbound.temp_fail_intervals,
        Some(Vec::new())
    );
}

#[test]
fn acl_entries() {
    let temp = TempConfig::new(&[(
        "relay_acl_allow",
        "# backend\n10.0.0.2\n10.0.0.0/8\n2001:db8::1\n2001:db8::/48\n",
    )]);
    let settings = temp.load().expect("load");
    assert_eq!(
        settings.acl_allow,
        networks(&[
            "10.0.0.2/32",
            "10.0.0.0/8",
            "2001:db8::1/128",
            "2001:db8::/48"
        ])
    );
    assert!(!settings.acl_allow[2].contains("2001:db8::2".parse().expect("ip")));
    assert_eq!(settings.warnings.len(), 1, "{:?}", settings.warnings);
    assert!(settings.warnings[0].contains("line 4: 2001:db8::1 means only that address (/128)"));
}

#[test]
fn errors_name_file_line_and_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "relay_acl_allow",
            "10.0.0.2/32\n\nmailcow.lan",
            "relay_acl_allow: line 3: 'mailcow.lan': expected an IP address or CIDR network",
        ),
        ("relay_acl_allow", "10.0.0.0/33", "line 1: '10.0.0.0/33'"),
        (
            "outbound.ini",
            "temp_fail_intervals=60 min",
            "outbound.ini: [main] temp_fail_intervals = '60 min': expected intervals like \"1m, 5m*2, 1h*3\"",
        ),
        (
            "outbound.ini",
            "temp_fail_intervals=1m,2x",
            "element 2 '2x'",
        ),
        (
            "outbound.ini",
            "maxTempFailures=0",
            "[main] maxTempFailures = '0': expected a whole number from 1 to 50",
        ),
        (
            "outbound.ini",
            "inet_prefer=ipv4",
            "[main] inet_prefer = 'ipv4': expected one of default, v4, v6",
        ),
        (
            "outbound.ini",
            "concurrency_max=lots",
            "[main] concurrency_max = 'lots'",
        ),
        (
            "outbound.ini",
            "max_queue_lifetime=forever",
            "[main] max_queue_lifetime = 'forever'",
        ),
        (
            "outbound.ini",
            "delay_warning_time=soon",
            "[main] delay_warning_time = 'soon': expected a duration such as 4h",
        ),
        (
            "outbound.ini",
            "local_address=eth0",
            "[main] local_address = 'eth0': expected an IP address",
        ),
        ("outbound.ini", "remote_port=0", "[main] remote_port = '0'"),
        (
            "outbound.ini",
            "domain_concurrency_max=0",
            "[main] domain_concurrency_max = '0': expected a whole number from 1",
        ),
        (
            "relay.ini",
            "[relay]\nacl[]=1",
            "relay.ini: [relay] acl = a list of 1 values",
        ),
    ];
    for (file, content, expected) in cases {
        let temp = TempConfig::new(&[(file, content)]);
        let error = temp.load().expect_err(expected).to_string();
        assert!(
            error.contains(expected),
            "{error}\n  should contain {expected}"
        );
        assert!(
            error.starts_with(&temp.path.display().to_string()),
            "{error}"
        );
    }
}

#[test]
fn dest_domains_kept_raw_and_env_overrides() {
    let temp = TempConfig::new(&[(
        "relay_dest_domains.ini",
        "[domains]\nexample.com = { \"action\": \"accept\", \"nexthop\": \"10.0.0.5:2525\" }\n",
    )]);
    let dir = temp
        .dir()
        .with_environment([("POSTERN_OUTBOUND__MAIN__MAXTEMPFAILURES", "2")]);
    let settings = RelayOutSettings::load(&dir).expect("load");
    let (_, document) = dir
        .ini_document(files::RELAY_DEST_DOMAINS_INI)
        .expect("read")
        .expect("present");
    assert_eq!(
        document.get("domains", "example.com"),
        Some(&smtp_core::config::IniValue::Text(
            "{ \"action\": \"accept\", \"nexthop\": \"10.0.0.5:2525\" }".to_owned()
        ))
    );
    assert_eq!(settings.outbound.max_temp_failures, 2);
    assert_eq!(settings.outbound.temp_fail_intervals, None);
}

/// Haraka takes `1s,1s,1s` (test setups use it): so does relay-out, with a
/// warning that names the file and key.
#[test]
fn short_retry_intervals_are_accepted_with_a_warning() {
    let temp = TempConfig::new(&[("outbound.ini", "temp_fail_intervals=1s,1s,1s")]);
    let settings = temp.load().expect("load");
    assert_eq!(
        settings.outbound.temp_fail_intervals,
        Some(vec![Duration::from_secs(1); 3])
    );
    assert!(
        settings.warnings.iter().any(|w| w.contains(
            "outbound.ini: [main] temp_fail_intervals has a delay of 1s: fine for a test"
        )),
        "{:?}",
        settings.warnings
    );
}

/// A line outside the INI grammar is skipped with a warning, as Haraka
/// skips it, and the rest of the file still counts.
#[test]
fn a_malformed_ini_line_is_a_warning_naming_file_and_line() {
    let temp = TempConfig::new(&[("relay_dest_domains.ini", "[domains]\nbad line here\n")]);
    let settings = temp.load().expect("load");
    assert!(
        settings.warnings.iter().any(|w| w
            .contains("relay_dest_domains.ini line 2: not a comment")
            && w.contains("(skipped, as Haraka does)")),
        "{:?}",
        settings.warnings
    );
}

/// auth_flat_file.ini `[core] constrain_sender`: on unless set false, and
/// never reported as an unused key.
#[test]
fn constrain_sender_is_on_by_default_and_can_be_turned_off() {
    let on = TempConfig::new(&[("auth_flat_file.ini", "[users]\nalice=secret\n")]);
    assert!(on.load().expect("load").auth_users.constrain_sender);
    let off = TempConfig::new(&[(
        "auth_flat_file.ini",
        "[core]\nconstrain_sender=false\n[users]\nalice=secret\n",
    )]);
    let settings = off.load().expect("load");
    assert!(!settings.auth_users.constrain_sender);
    assert!(
        !settings
            .warnings
            .iter()
            .any(|w| w.contains("constrain_sender")),
        "{:?}",
        settings.warnings
    );
}

/// relay is commented out in `plugins`: relay.ini and relay_acl_allow are
/// not read and nobody relays by address; with no AUTH either, relay-out
/// refuses to start, naming `plugins`.
#[test]
fn plugins_without_relay_relay_for_nobody() {
    let temp = TempConfig::new(&[
        ("plugins", "# relay\ntls\nauth/flat_file\n"),
        ("relay_acl_allow", "10.0.0.2/32\n"),
        ("relay.ini", "[relay]\nall=true\n"),
    ]);
    let settings = temp.load().expect("load");
    assert!(settings.acl_allow.is_empty());
    assert_eq!(settings.relay, RelayPolicy::NOT_LOADED);
    let warnings = settings.warnings.join("\n");
    assert!(
        warnings.contains("plugins: relay is not listed: no client relays by address"),
        "{warnings}"
    );
    assert!(!warnings.contains("open relay"), "{warnings}");

    let temp = TempConfig::new(&[
        ("plugins", "# relay\ntls\n"),
        ("relay_acl_allow", "10.0.0.2/32\n"),
    ]);
    let error = temp.load().expect_err("nothing to do").to_string();
    assert!(
        error.ends_with("plugins: lists neither relay nor auth/flat_file, so no client may relay: relay-out would have nothing to do"),
        "{error}"
    );
}

/// relay.ini `dest_domains=true`: each `[domains]` action as Haraka's relay
/// plugin reads it; the `any` key grants nothing; a missing or unknown
/// action refuses, with a warning naming the line.
#[test]
fn dest_domains_actions_follow_haraka() {
    let temp = TempConfig::new(&[
        ("relay.ini", "[relay]\ndest_domains=true\n"),
        (
            "relay_dest_domains.ini",
            "[domains]\nAccept.Test = {\"action\":\"accept\",\"nexthop\":\"127.0.0.9:2525\"}\n\
             continue.test = {\"action\":\"continue\"}\ndeny.test = {\"action\":\"deny\"}\n\
             typo.test = {\"action\":\"accpet\"}\nroute-only.test = {\"nexthop\":\"127.0.0.9\"}\n\
             any = {\"action\":\"accept\"}\n",
        ),
    ]);
    let settings = temp.load().expect("load");
    let dest = settings.dest_domains.expect("dest_domains on");
    for (domain, action) in [
        ("accept.test", DestAction::Accept),
        ("continue.test", DestAction::Accept),
        ("deny.test", DestAction::Deny),
        ("typo.test", DestAction::NotAccepted),
        ("route-only.test", DestAction::NotAccepted),
        ("unlisted.test", DestAction::Deny),
        ("any", DestAction::Deny),
    ] {
        assert_eq!(dest.action(domain), action, "{domain}");
    }
    for needle in [
        "relay_dest_domains.ini: line 5: [domains] typo.test: action 'accpet' is not one Haraka knows",
        "relay_dest_domains.ini: line 6: [domains] route-only.test: no action",
    ] {
        assert!(
            settings.warnings.iter().any(|w| w.contains(needle)),
            "{needle}: {:?}",
            settings.warnings
        );
    }
    // The accepted domain's mail goes to its nexthop (force_routing's
    // default), as Haraka's get_mx hook sends it.
    let (domain, route) = settings.routes.domains().next().expect("a route");
    assert_eq!(domain, "accept.test");
    assert_eq!(route.hops[0].port, 2525);
}

/// With `dest_domains` off (Haraka's default), an `action` has no effect
/// and `--check` says so; nexthop routes still apply.
#[test]
fn dest_domains_off_reports_the_action_as_not_used() {
    let temp = TempConfig::new(&[(
        "relay_dest_domains.ini",
        "[domains]\naccept.test = {\"action\":\"accept\",\"nexthop\":\"127.0.0.9\"}\n",
    )]);
    let settings = temp.load().expect("load");
    assert!(settings.dest_domains.is_none());
    assert!(
        settings.warnings.iter().any(|w| w.contains(
            "[domains] accept.test: action is not used because relay.ini [relay] dest_domains=false"
        )),
        "{:?}",
        settings.warnings
    );
    assert_eq!(settings.routes.domains().count(), 1);
}

/// `dest_domains=true` without a `[domains]` section refuses every
/// recipient of a client outside the ACL (Haraka's hook passes, and nothing
/// else accepts), with a warning; a bad key is a startup error.
#[test]
fn dest_domains_without_entries_or_with_a_bad_key() {
    let empty = TempConfig::new(&[("relay.ini", "[relay]\ndest_domains=true\n")]);
    let settings = empty.load().expect("load");
    assert_eq!(settings.dest_domains, Some(DestDomains::default()));
    assert!(
        settings
            .warnings
            .iter()
            .any(|w| w.contains("dest_domains=true but relay_dest_domains.ini has no [domains]")),
        "{:?}",
        settings.warnings
    );
    let bad = TempConfig::new(&[
        ("relay.ini", "[relay]\ndest_domains=true\n"),
        (
            "relay_dest_domains.ini",
            "[domains]\na..b = {\"action\":\"accept\"}\n",
        ),
    ]);
    let error = bad.load().expect_err("bad key").to_string();
    assert!(
        error.contains("[domains] a..b") && error.contains("expected a domain name"),
        "{error}"
    );
}

/// Haraka's flat file `queue_dir` names the queue (outbound.ini has no
/// such key in Haraka); outbound.ini `queue_dir`, Postern's, is used
/// without it. A relative or quoted path in either, or two different
/// paths, is a startup error naming the file, never `<config>/"/tmp"`.
#[test]
fn queue_dir_from_haraka_flat_file_or_outbound_ini() {
    let flat = TempConfig::new(&[("queue_dir", "# Haraka's queue\n/srv/haraka/queue\n")]);
    assert_eq!(
        flat.load().expect("load").outbound.queue_dir,
        Path::new("/srv/haraka/queue")
    );
    let both_agree = TempConfig::new(&[
        ("queue_dir", "/srv/q\n"),
        ("outbound.ini", "queue_dir=/srv/q\n"),
    ]);
    assert_eq!(
        both_agree.load().expect("load").outbound.queue_dir,
        Path::new("/srv/q")
    );
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("outbound.ini", "queue_dir=queue\n")],
            "outbound.ini: [main] queue_dir = 'queue': expected an absolute path such as /var/spool/postern/queue, without quotes",
        ),
        (
            &[("outbound.ini", "queue_dir=\"/tmp\"\n")],
            "outbound.ini: [main] queue_dir = '\"/tmp\"': expected an absolute path",
        ),
        (
            &[("queue_dir", "\n./queue\n")],
            "queue_dir: line 2: './queue': expected an absolute path such as /var/spool/postern/queue, without quotes (they would be part of the name) (Haraka resolved a relative one against its working directory)",
        ),
        (
            &[
                ("queue_dir", "/srv/a\n"),
                ("outbound.ini", "queue_dir=/srv/b\n"),
            ],
            "queue_dir: says the queue is /srv/a, outbound.ini [main] queue_dir says /srv/b; keep one of them",
        ),
    ];
    for (files, message) in cases {
        let temp = TempConfig::new(files);
        let error = temp.load().expect_err(message).to_string();
        assert!(error.contains(message), "{error}\nwanted: {message}");
        assert!(
            error.starts_with(&temp.path.display().to_string()),
            "names the file: {error}"
        );
    }
}

#[test]
fn tls_policy_dane_keys() {
    let defaults = TempConfig::new(&[]).load().expect("loads");
    assert!(defaults.tls_policies.dane);
    assert_eq!(defaults.tls_policies.dane_probe, ".");

    let config = TempConfig::new(&[(
        "tls_policy.ini",
        "dane = off\ndane_probe = example.org\n[example.com]\npolicy=verify\ndane=on\n",
    )]);
    let settings = config.load().expect("loads");
    assert!(!settings.tls_policies.dane);
    assert_eq!(settings.tls_policies.dane_probe, "example.org");
    assert!(
        settings
            .warnings
            .iter()
            .any(|w| w.contains("[example.com] dane is only read in [main]")),
        "{:?}",
        settings.warnings
    );

    let typo = TempConfig::new(&[("tls_policy.ini", "dane = maybe\n")]);
    let error = typo.load().expect_err("an unknown switch word is an error");
    assert!(error.to_string().contains("dane"), "{error}");
}

/// tls_policy.ini `[main]` MTA-STS keys: on by default, `mta_sts=false`
/// turns it off, `mta_sts_port` is test-only (warned about), port 0 is an
/// error naming the key, and the keys in a domain section are ignored with
/// a warning.
#[test]
fn tls_policy_mta_sts_keys() {
    let defaults = TempConfig::new(&[]).load().expect("load");
    assert!(defaults.tls_policies.mta_sts);
    assert_eq!(defaults.tls_policies.mta_sts_port, 443);

    let set = TempConfig::new(&[(
        "tls_policy.ini",
        "mta_sts=false\nmta_sts_port=8443\n[example.com]\npolicy=verify\nmta_sts=true\n",
    )])
    .load()
    .expect("load");
    assert!(!set.tls_policies.mta_sts);
    assert_eq!(set.tls_policies.mta_sts_port, 8443);
    let warnings = set.warnings.join("\n");
    assert!(
        warnings.contains("mta_sts_port=8443 is for tests only"),
        "{warnings}"
    );
    assert!(
        warnings.contains("[example.com] mta_sts is only read in [main]"),
        "{warnings}"
    );

    let error = TempConfig::new(&[("tls_policy.ini", "mta_sts_port=0\n")])
        .load()
        .expect_err("port 0");
    assert!(error.to_string().contains("mta_sts_port"), "{error}");
}
