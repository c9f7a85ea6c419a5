use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::forward::ForwardAuth;
use super::*;

/// A throw-away config directory (relay-in has no tempfile dev-dependency).
struct TempConfig {
    path: PathBuf,
}

impl TempConfig {
    fn new(files: &[(&str, &str)]) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "postern-relay-in-config-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        for (name, content) in files {
            let file = path.join(name);
            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            std::fs::write(file, content).expect("write");
        }
        std::fs::create_dir_all(&path).expect("mkdir");
        Self { path }
    }

    fn dir(&self) -> ConfigDir {
        ConfigDir::open(&self.path)
            .expect("open")
            .with_environment(Vec::<(String, String)>::new())
    }

    fn load(&self) -> Result<RelayInSettings, ConfigError> {
        RelayInSettings::load(&self.dir())
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn route(host: &str, port: u16) -> ForwardRoute {
    ForwardRoute {
        host: host.to_owned(),
        port,
        enable_tls: false,
        auth: None,
    }
}

#[test]
fn seed_haraka_in_loads() {
    let root = fixture("seed-haraka-in");
    let dir = ConfigDir::open(&root)
        .expect("open")
        .with_environment(Vec::<(String, String)>::new());
    let settings = RelayInSettings::load(&dir).expect("load");
    assert_eq!(settings.local_domains.names, ["example.com"]);
    assert!(contains(&settings.local_domains, "EXAMPLE.com"));
    assert!(!contains(&settings.local_domains, "example.net"));
    assert_eq!(settings.forward.default_route, route("10.0.0.2", 25));
    assert_eq!(settings.forward.xclient, XclientPolicy::Required);
    assert!(settings.forward.domain_routes.is_empty());

    let warnings = settings.warnings.join("\n");
    assert_eq!(settings.warnings.len(), 6, "{warnings}");
    assert!(warnings.contains("config: section [server] is not used by Postern"));
    assert!(warnings.contains("config: line 6: xclient: relay-in does not run this plugin"));
    assert!(
        warnings
            .contains("host_list = /opt/haraka/config/haraka-in/host_list: file not found; using")
    );
    assert!(warnings.contains(
        "destination=10.0.0.2:25 is not a Haraka setting; same as smtp_forward.ini host/port"
    ));
    assert!(warnings.contains("enabled=true is not a Haraka setting; nothing to map"));
    assert!(warnings.contains("forward=true is not a Haraka setting; nothing to map"));

    // config is read for its [plugins] (xclient, queue/smtp_forward,
    // rcpt_to.in_host_list, tls).
    let unrecognized = dir.unrecognized_files(files::KNOWN_FILES);
    assert!(unrecognized.is_empty(), "{unrecognized:?}");
}

#[test]
fn defaults_without_files() {
    let temp = TempConfig::new(&[]);
    let settings = temp.load().expect("load");
    let forward = settings.forward;
    assert_eq!(forward.default_route, route("localhost", 25));
    assert_eq!(forward.connect_timeout, Duration::from_secs(30));
    assert_eq!(forward.timeout, Duration::from_secs(300));
    assert!(forward.tls_verify);
    assert_eq!(forward.ca_file, None);
    assert_eq!(forward.domain_selector, DomainSelector::RcptTo);
    assert!(!forward.check_recipient);
    assert!(!forward.check_sender);
    assert_eq!(forward.mode, ForwardMode::Queue);
    assert_eq!(forward.xclient, XclientPolicy::Required);
    assert!(settings.local_domains.names.is_empty());
    assert!(settings.local_domains.pattern.is_none());
    assert_eq!(settings.warnings.len(), 1);
    assert!(settings.warnings[0].contains("no local domains"));
}

#[test]
fn every_forward_key_and_per_domain_sections() {
    let temp = TempConfig::new(&[
        ("host_list", "example.com"),
        ("ca.pem", "pem"),
        (
            "smtp_forward.ini",
            "host=[2001:db8::25]\nport=2525\nenable_tls=true\nauth_type=login\nauth_user=u\nauth_pass=s3cret\n\
             connect_timeout=5\ntimeout=60\ntls_verify=off\nca_file=ca.pem\ndomain_selector=mail_from\n\
             check_recipient=yes\ncheck_sender=1\nmode=live\nxclient=optional\n\
             [Example.COM]\nhost=b.example\nenable_tls=false\n\
             [Boss@Example.com]\nport=26\n\
             [bücher.example]\nhost=10.0.0.9\ntimeout=1\n",
        ),
    ]);
    let settings = temp.load().expect("load");
    let forward = &settings.forward;
    let auth = Some(ForwardAuth {
        mechanism: AuthMechanism::Login,
        user: "u".into(),
        pass: "s3cret".into(),
    });
    assert!(!format!("{settings:?}").contains("s3cret"));
    assert_eq!(
        forward.default_route,
        ForwardRoute {
            host: "2001:db8::25".into(),
            port: 2525,
            enable_tls: true,
            auth: auth.clone(),
        }
    );
    assert_eq!(forward.connect_timeout, Duration::from_secs(5));
    assert_eq!(forward.timeout, Duration::from_secs(60));
    assert!(!forward.tls_verify);
    assert_eq!(forward.ca_file, Some(temp.path.join("ca.pem")));
    assert_eq!(forward.domain_selector, DomainSelector::MailFrom);
    assert!(forward.check_recipient);
    assert!(forward.check_sender);
    assert_eq!(forward.mode, ForwardMode::Live);
    assert_eq!(forward.xclient, XclientPolicy::Optional);

    // A per-domain section stands alone: not [main]'s port, STARTTLS or
    // AUTH credentials; only a missing host comes from [main].
    let example = ForwardRoute {
        host: "b.example".into(),
        port: 25,
        enable_tls: false,
        auth: None,
    };
    assert_eq!(forward.route_for("someone@EXAMPLE.com"), &example);
    let boss = forward.route_for("boss@example.com");
    assert_eq!((boss.host.as_str(), boss.port), ("2001:db8::25", 26));
    assert!(!boss.enable_tls);
    assert_eq!(boss.auth, None);
    assert_eq!(forward.route_for("x@bücher.example").host, "10.0.0.9");
    assert_eq!(
        forward.route_for("x@xn--bcher-kva.example").host,
        "10.0.0.9"
    );
    assert_eq!(forward.route_for("x@other.example"), &forward.default_route);

    assert_eq!(settings.warnings.len(), 2, "{:?}", settings.warnings);
    assert!(
        settings.warnings.iter().any(|w| w.contains(
            "[Boss@Example.com] has no host: Postern forwards to [main]'s host 2001:db8::25, Haraka would connect to localhost"
        )),
        "{:?}",
        settings.warnings
    );
    assert!(
        settings
            .warnings
            .iter()
            .any(|w| w.contains("[bücher.example] timeout is only read in [main]")),
        "{:?}",
        settings.warnings
    );
}

#[test]
fn rcpt_to_selector_ignores_user_sections() {
    let temp = TempConfig::new(&[
        ("host_list", "example.com"),
        (
            "smtp_forward.ini",
            "host=a.example\n[boss@example.com]\nhost=b.example",
        ),
    ]);
    let settings = temp.load().expect("load");
    assert_eq!(
        settings.forward.route_for("boss@example.com").host,
        "a.example"
    );
}

/// smtp_forward.ini, xclient.ini, expected (host, port), expected policy,
/// expected warning.
type AliasCase<'a> = (&'a str, &'a str, (&'a str, u16), XclientPolicy, &'a str);

#[test]
fn xclient_ini_aliases() {
    let cases: &[AliasCase] = &[
        (
            "",
            "destination=10.0.0.7:2525",
            ("10.0.0.7", 2525),
            XclientPolicy::Required,
            "used as smtp_forward.ini host=10.0.0.7 port=2525",
        ),
        (
            "port=26",
            "destination=10.0.0.7:2525",
            ("10.0.0.7", 26),
            XclientPolicy::Required,
            "host used as smtp_forward.ini host=10.0.0.7; smtp_forward.ini port takes precedence",
        ),
        (
            "host=a.example",
            "destination=10.0.0.7",
            ("a.example", 25),
            XclientPolicy::Required,
            "port used as smtp_forward.ini port=25",
        ),
        (
            "host=a.example\nport=25",
            "destination=10.0.0.7",
            ("a.example", 25),
            XclientPolicy::Required,
            "ignored, smtp_forward.ini host/port take precedence",
        ),
        (
            "",
            "forward=false",
            ("localhost", 25),
            XclientPolicy::Off,
            "forward=false is not a Haraka setting; mapped to smtp_forward.ini xclient=off",
        ),
        (
            "",
            "enabled=no",
            ("localhost", 25),
            XclientPolicy::Off,
            "enabled=false is not a Haraka setting; mapped to smtp_forward.ini xclient=off",
        ),
        (
            "xclient=optional",
            "forward=false",
            ("localhost", 25),
            XclientPolicy::Optional,
            "ignored, smtp_forward.ini xclient takes precedence",
        ),
    ];
    for (forward_ini, xclient_ini, (host, port), xclient, warning) in cases {
        let temp = TempConfig::new(&[
            ("host_list", "example.com"),
            ("smtp_forward.ini", forward_ini),
            ("plugins/xclient.ini", xclient_ini),
        ]);
        let settings = temp.load().expect("load");
        assert_eq!(
            settings.forward.default_route,
            route(host, *port),
            "case {xclient_ini}"
        );
        assert_eq!(settings.forward.xclient, *xclient, "case {xclient_ini}");
        assert!(
            settings.warnings.iter().any(|w| w.contains(warning)),
            "{:?} should contain {warning}",
            settings.warnings
        );
    }
}

#[test]
fn host_list_normalisation_and_regex() {
    let temp = TempConfig::new(&[
        ("host_list", "Example.COM.\nbücher.example\nexample.com\n"),
        (
            "host_list_regex",
            "# subdomains\n.*\\.example\\.org\nmx[0-9]+\\.example\\.net",
        ),
    ]);
    let domains = temp.load().expect("load").local_domains;
    assert_eq!(domains.names, ["example.com", "xn--bcher-kva.example"]);
    assert!(contains(&domains, "Bücher.Example"));
    assert!(contains(&domains, "a.b.EXAMPLE.org"));
    assert!(contains(&domains, "mx12.example.net"));
    assert!(!contains(&domains, "example.org"));
    assert!(!contains(&domains, "mx12.example.net.evil"));
}

#[test]
fn host_list_alternative_location() {
    let temp = TempConfig::new(&[
        ("domains.txt", "example.net"),
        ("host_list", "example.com"),
        ("rcpt_to.in_host_list.ini", "[main]\nhost_list=domains.txt"),
    ]);
    let settings = temp.load().expect("load");
    assert_eq!(settings.local_domains.names, ["example.net"]);
    assert!(settings.warnings[0].contains("used as the host_list file"));
}

#[test]
fn errors_name_file_line_and_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "host_list",
            "example.com\nnot a domain",
            "host_list: line 2: 'not a domain': expected a domain name",
        ),
        (
            "host_list_regex",
            "ok\n(unclosed",
            "host_list_regex: line 2: '(unclosed': expected a regular expression",
        ),
        (
            "host_list_regex",
            "a)|(b",
            "host_list_regex: line 1: 'a)|(b'",
        ),
        (
            "smtp_forward.ini",
            "port=smtp",
            "smtp_forward.ini: [main] port = 'smtp': expected a port number",
        ),
        (
            "smtp_forward.ini",
            "host=not a host",
            "smtp_forward.ini: [main] host = 'not a host': expected a host name or IP address",
        ),
        (
            "smtp_forward.ini",
            "[example.com]\nport=0",
            "smtp_forward.ini: [example.com] port = '0'",
        ),
        (
            "smtp_forward.ini",
            "tls_verify=maybe",
            "smtp_forward.ini: [main] tls_verify = 'maybe': expected one of on, off",
        ),
        (
            "smtp_forward.ini",
            "mode=backup",
            "smtp_forward.ini: [main] mode = 'backup': expected one of queue, live, spool",
        ),
        (
            "smtp_forward.ini",
            "xclient=always",
            "[main] xclient = 'always': expected one of required, optional, off",
        ),
        (
            "smtp_forward.ini",
            "domain_selector=to",
            "[main] domain_selector = 'to'",
        ),
        (
            "smtp_forward.ini",
            "auth_type=cram-md5",
            "[main] auth_type = 'cram-md5': expected one of plain, login",
        ),
        (
            "smtp_forward.ini",
            "auth_type=plain\nauth_user=u",
            "smtp_forward.ini: [main] auth_type and auth_user are set but auth_pass is missing",
        ),
        (
            "xclient.ini",
            "destination=10.0.0.2:smtp",
            "xclient.ini: [main] destination = '10.0.0.2:smtp': expected host:port",
        ),
    ];
    for (file, content, expected) in cases {
        let mut files = vec![(*file, *content)];
        if *file != "host_list" {
            files.push(("host_list", "example.com"));
        }
        let temp = TempConfig::new(&files);
        match temp.load() {
            Ok(_) => panic!("{file}: {content:?} should fail with {expected}"),
            Err(error) => {
                let error = error.to_string();
                assert!(
                    error.contains(expected),
                    "{error}\n  should contain {expected}"
                );
                assert!(error.contains(&temp.path.display().to_string()), "{error}");
            }
        }
    }
}

#[test]
fn environment_overrides_forward_settings() {
    let temp = TempConfig::new(&[
        ("host_list", "example.com"),
        ("smtp_forward.ini", "host=a.example"),
    ]);
    let dir = temp.dir().with_environment([
        ("POSTERN_SMTP_FORWARD__MAIN__HOST", "10.1.1.1"),
        ("POSTERN_SMTP_FORWARD__MAIN__XCLIENT", "off"),
    ]);
    let settings = RelayInSettings::load(&dir).expect("load");
    assert_eq!(settings.forward.default_route.host, "10.1.1.1");
    assert_eq!(settings.forward.xclient, XclientPolicy::Off);
}

#[test]
fn enable_outbound_true_is_reported() {
    let temp = TempConfig::new(&[
        ("host_list", "example.com"),
        ("smtp_forward.ini", "enable_outbound=true\nqueue=x"),
    ]);
    let settings = temp.load().expect("load");
    assert_eq!(settings.warnings.len(), 2, "{:?}", settings.warnings);
    assert!(
        settings
            .warnings
            .iter()
            .any(|w| w.contains("enable_outbound=true is ignored"))
    );
    assert!(
        settings
            .warnings
            .iter()
            .any(|w| w.contains("[main] queue is not used by Postern"))
    );
}

/// How the recipient check asks: the parser's domain and the text as sent.
fn contains(domains: &LocalDomains, written: &str) -> bool {
    let domain = smtp_protocol::address::Domain::parse(written).expect("a valid domain");
    domains.contains(&domain, written)
}

/// Haraka sends no AUTH when auth_user is empty or absent, whatever
/// auth_type says; Postern likewise, with a warning.
#[test]
fn auth_type_without_a_user_sends_no_auth_and_warns() {
    let temp = TempConfig::new(&[
        ("host_list", "example.com"),
        (
            "smtp_forward.ini",
            "host=a.example\nauth_type=plain\nauth_user=\nauth_pass=\n[example.com]\nhost=b.example\nauth_type=login\n",
        ),
    ]);
    let settings = temp.load().expect("load");
    assert_eq!(settings.forward.default_route.auth, None);
    assert_eq!(settings.forward.route_for("x@example.com").auth, None);
    let warned = |section: &str| {
        settings.warnings.iter().any(|w| {
            w.contains(&format!(
                "[{section}] auth_type is set without an auth_user: no AUTH is sent, as in Haraka"
            ))
        })
    };
    assert!(
        warned("main") && warned("example.com"),
        "{:?}",
        settings.warnings
    );
}

/// The forward target and the recipients follow `plugins`: smtp_proxy.ini
/// (live) when it loads queue/smtp_proxy, no host_list without
/// rcpt_to.in_host_list, and an error naming `plugins` without a queue.
#[test]
fn plugins_choose_the_forward_target_and_the_recipients() {
    let temp = TempConfig::new(&[
        (
            "plugins",
            "# rcpt_to.in_host_list\nmy_rcpt_check\nqueue/smtp_proxy\n",
        ),
        ("host_list", "example.com\n"),
        ("smtp_forward.ini", "host=10.0.0.9\nport=25\n"),
        (
            "smtp_proxy.ini",
            "host=10.0.0.2\nenable_tls=true\ncheck_recipient=true\n[example.org]\nhost=10.0.0.3\n",
        ),
    ]);
    let dir = temp.dir();
    let settings = RelayInSettings::load(&dir).expect("load");
    assert_eq!(settings.forward_ini, "smtp_proxy.ini");
    assert_eq!(settings.forward.mode, ForwardMode::Live);
    assert_eq!(settings.forward.default_route.host, "10.0.0.2");
    assert_eq!(settings.forward.default_route.port, 25);
    assert!(settings.forward.default_route.enable_tls);
    assert!(settings.forward.domain_routes.is_empty());
    assert!(!settings.forward.check_recipient);
    assert!(settings.forward_port_from_haraka_defaults);
    assert!(settings.local_domains.names.is_empty());
    let read: Vec<String> = dir
        .used_files()
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    assert_eq!(read, ["plugins", "smtp_proxy.ini"]);
    let warnings = settings.warnings.join("\n");
    for expected in [
        "plugins: rcpt_to.in_host_list is not listed: no recipient is accepted by host_list",
        "plugins: line 2: my_rcpt_check: relay-in does not run this plugin: not a plugin Postern knows",
        "smtp_proxy.ini: section [example.org] is not used: queue/smtp_proxy reads [main] only",
        "smtp_proxy.ini: [main] check_recipient is not used with queue/smtp_proxy",
    ] {
        assert!(warnings.contains(expected), "{expected}\n{warnings}");
    }

    let temp = TempConfig::new(&[("plugins", "rcpt_to.in_host_list\n#queue/smtp_forward\n")]);
    let error = temp.load().expect_err("no queue plugin").to_string();
    assert!(
        error.ends_with("plugins: lists neither queue/smtp_forward nor queue/smtp_proxy: relay-in would have nothing to do"),
        "{error}"
    );

    let temp = TempConfig::new(&[
        ("plugins", "rcpt_to.in_host_list\nqueue/smtp_forward\n"),
        ("host_list", "example.com\n"),
        ("smtp_forward.ini", "host=10.0.0.2\nport=2525\n"),
    ]);
    let settings = temp.load().expect("load");
    assert_eq!(settings.forward_ini, "smtp_forward.ini");
    assert_eq!(settings.forward.mode, ForwardMode::Queue);
    assert_eq!(settings.local_domains.names, ["example.com"]);
    assert!(!settings.forward_port_from_haraka_defaults);
    assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);
}

/// `mode=spool` reads its keys (each default in one place); the same keys
/// without it are reported, since they would do nothing.
#[test]
fn spool_mode_reads_its_keys_and_reports_them_without_it() {
    let temp = TempConfig::new(&[
        ("host_list", "example.com"),
        (
            "smtp_forward.ini",
            "mode=spool\nspool_dir=/srv/spool\nverified_ttl=7d\nspool_max_messages=3\nspool_max_bytes=1000\nmax_spool_age=2d\nspool_concurrency=4\nspool_retry_intervals=1m*2, 1h\nprobe_interval=30\n",
        ),
    ]);
    let settings = temp.load().expect("load");
    let forward = &settings.forward;
    assert_eq!(forward.mode, ForwardMode::Spool);
    assert_eq!(forward.probe_interval, Duration::from_secs(30));
    let spool = &forward.spool;
    assert_eq!(spool.dir, PathBuf::from("/srv/spool"));
    assert_eq!(spool.verified_ttl, Duration::from_secs(7 * 86_400));
    assert_eq!((spool.max_messages, spool.max_bytes), (3, 1000));
    assert_eq!(spool.max_age, Duration::from_secs(2 * 86_400));
    assert_eq!(spool.concurrency, 4);
    assert_eq!(
        spool.retry_intervals,
        [60, 60, 3600].map(Duration::from_secs).to_vec()
    );
    assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);

    let defaults = TempConfig::new(&[
        ("host_list", "example.com"),
        ("smtp_forward.ini", "mode=spool"),
    ]);
    let spool = defaults.load().expect("load").forward.spool;
    assert_eq!(spool, crate::config::SpoolSettings::default());
    assert_eq!(spool.dir, PathBuf::from("/var/spool/postern/in"));
    assert_eq!(spool.verified_ttl, Duration::from_secs(31 * 86_400));

    let unused = TempConfig::new(&[
        ("host_list", "example.com"),
        ("smtp_forward.ini", "mode=live\nspool_max_messages=3\n"),
    ]);
    let warnings = unused.load().expect("load").warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("[main] spool_max_messages is only used with mode=spool (ignored)")),
        "{warnings:?}"
    );

    for (bad, expected) in [
        (
            "spool_dir=spool",
            "spool_dir = spool: must be an absolute path",
        ),
        ("spool_concurrency=0", "spool_concurrency = 0"),
        ("spool_retry_intervals=none", "spool_retry_intervals = none"),
    ] {
        let temp = TempConfig::new(&[
            ("host_list", "example.com"),
            ("smtp_forward.ini", &format!("mode=spool\n{bad}\n")),
        ]);
        let error = temp.load().expect_err(bad).to_string();
        assert!(error.contains(expected), "{bad}: {error}");
        assert!(error.contains("smtp_forward.ini"), "{error}");
    }
}
