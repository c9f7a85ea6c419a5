use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::tests::{config_dir, fixture};

fn load(files: &[(&str, &[u8])]) -> Result<CoreSettings, ConfigError> {
    let (_temp, dir) = config_dir(files);
    CoreSettings::load(&dir)
}

fn addresses(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().expect("address")).collect()
}

#[test]
fn every_default_when_no_files_exist() {
    let settings = load(&[]).expect("defaults");
    assert!(!settings.me.is_empty());
    assert_eq!(settings.listen, addresses(&["[::]:25"]));
    assert_eq!(settings.inactivity_timeout, Duration::from_secs(300));
    assert_eq!(settings.force_shutdown_timeout, Duration::from_secs(30));
    assert_eq!(settings.smtps_port, 465);
    assert_eq!(settings.submission_port, 587);
    assert_eq!(settings.max_connections, 1000);
    assert!(settings.nameservers.is_empty());
    assert!(settings.rdns);
    assert_eq!(settings.dns_timeout, Duration::from_secs(5));
    assert!(settings.smtputf8);
    assert_eq!(settings.bare_newline, BareNewlinePolicy::Reject);
    assert!(settings.add_received);
    assert_eq!(settings.max_received, 100);
    assert_eq!(settings.max_bytes, 26_214_400);
    assert_eq!(settings.max_line_length, 512);
    assert_eq!(settings.max_recipients, 1000);
    assert!(settings.greeting.is_empty());
    assert_eq!(settings.helo_message, "Postern is at your service.");
    assert_eq!(
        settings.close_message,
        "closing connection. Have a jolly good day."
    );
    assert_eq!(settings.max_connections_per_ip, 50);
    assert_eq!(settings.max_unrecognized_commands, 10);
    assert_eq!(settings.early_talker_pause, Duration::from_secs(1));
    assert!(settings.early_talker_reject);
    assert!(settings.haproxy_hosts.is_empty());
    assert_eq!(
        settings.tls,
        TlsSettings {
            files: None,
            starttls: true,
            no_tls_hosts: Vec::new(),
            min_version: TlsMinVersion::Tls12,
        }
    );
    assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);
}

#[test]
fn every_key_is_read() {
    let settings = load(&[
        ("me", b"mx.example.com\n"),
        (
            "smtp.ini",
            b"listen=127.0.0.1:2525\ninactivity_timeout=60\nforce_shutdown_timeout=5\n\
              smtps_port=10465\nsubmission_port=10587\nmax_connections=50\nnameservers=127.0.0.53\nrdns=off\ndns_timeout=2",
        ),
        (
            "connection.ini",
            b"[main]\nsmtputf8=false\nbare_newline=Normalize\n[headers]\nadd_received=no\n\
              max_received=30\n[max]\nbytes=1000\nline_length=1000\nrecipients=5\n\
              [message]\ngreeting[]=Welcome\ngreeting[]=second line\nhelo=Hi.\nclose=Bye.\n\
              [uuid]\ndeny_chars=0",
        ),
        ("limit.ini", b"[concurrency]\nmax=3\n[unrecognized_commands]\nmax=4"),
        ("early_talker.ini", b"pause=1.5\nreject=false"),
    ])
    .expect("load");
    assert_eq!(settings.me, "mx.example.com");
    assert_eq!(settings.listen, addresses(&["127.0.0.1:2525"]));
    assert_eq!(settings.inactivity_timeout, Duration::from_secs(60));
    assert_eq!(settings.force_shutdown_timeout, Duration::from_secs(5));
    assert_eq!(settings.smtps_port, 10465);
    assert_eq!(settings.submission_port, 10587);
    assert_eq!(settings.max_connections, 50);
    assert_eq!(settings.nameservers, addresses(&["127.0.0.53:53"]));
    assert!(!settings.rdns);
    assert_eq!(settings.dns_timeout, Duration::from_secs(2));
    assert!(!settings.smtputf8);
    assert_eq!(settings.bare_newline, BareNewlinePolicy::Normalize);
    assert!(!settings.add_received);
    assert_eq!(settings.max_received, 30);
    assert_eq!(settings.max_bytes, 1000);
    assert_eq!(settings.max_line_length, 1000);
    assert_eq!(settings.max_recipients, 5);
    assert_eq!(settings.greeting, ["Welcome", "second line"]);
    assert_eq!(settings.helo_message, "Hi.");
    assert_eq!(settings.close_message, "Bye.");
    assert_eq!(settings.max_connections_per_ip, 3);
    assert_eq!(settings.max_unrecognized_commands, 4);
    assert_eq!(settings.early_talker_pause, Duration::from_millis(1500));
    assert!(!settings.early_talker_reject);
    assert_eq!(settings.warnings.len(), 1, "{:?}", settings.warnings);
    assert!(settings.warnings[0].contains("section [uuid] is not used"));
}

#[test]
fn listen_forms_and_legacy_keys() {
    let cases: &[(&[u8], &[&str])] = &[
        (b"listen=[::]:25", &["[::]:25"]),
        (b"listen=", &["[::]:25"]),
        (b"listen", &["[::]:25"]),
        (
            b"listen=10.0.0.1:2526, [::1]:25 ,587",
            &["10.0.0.1:2526", "[::1]:25", "[::]:587"],
        ),
        (b"port=2525", &["[::]:2525"]),
        (
            b"listen_host=127.0.0.1\nport=2525\nlisten=[::1]:25",
            &["127.0.0.1:2525", "[::1]:25"],
        ),
        (b"listen_host=127.0.0.1\nlisten=[::1]:25", &["[::1]:25"]),
    ];
    for (smtp_ini, expected) in cases {
        let settings = load(&[("smtp.ini", smtp_ini)]).expect("load");
        assert_eq!(
            settings.listen,
            addresses(expected),
            "smtp.ini {:?}",
            String::from_utf8_lossy(smtp_ini)
        );
    }
}

/// Each file's bad value names the file, section, key, value and form.
#[test]
fn errors_name_file_and_key() {
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "smtp.ini",
            b"listen=mail.example.com:25",
            "[main] listen = 'mail.example.com:25': expected an IP address with an optional :port (host names are not supported: use an IP address)",
        ),
        ("smtp.ini", b"listen=/tmp/sock", "unix sockets"),
        (
            "smtp.ini",
            b"inactivity_timeout=5m",
            "[main] inactivity_timeout = '5m': expected a whole number of seconds",
        ),
        (
            "smtp.ini",
            b"smtps_port=0",
            "[main] smtps_port = '0': expected a port number from 1 to 65535",
        ),
        (
            "smtp.ini",
            b"port",
            "[main] port = (no value): expected a port number",
        ),
        (
            "smtp.ini",
            b"listen_host=localhost\nport=25",
            "[main] listen_host = 'localhost': expected an IP address",
        ),
        (
            "smtp.ini",
            b"nameservers=dns.google",
            "[main] nameservers = 'dns.google'",
        ),
        (
            "smtp.ini",
            b"max_connections=-1",
            "[main] max_connections = '-1': expected a decimal number",
        ),
        (
            "connection.ini",
            b"[main]\nbare_newline=accept",
            "[main] bare_newline = 'accept': expected one of reject, normalize",
        ),
        (
            "connection.ini",
            b"[max]\nbytes=25MB",
            "[max] bytes = '25MB': expected a decimal number",
        ),
        (
            "connection.ini",
            b"[headers]\nmax_received=lots",
            "[headers] max_received = 'lots'",
        ),
        (
            "connection.ini",
            b"[message]\nhelo[]=a\nhelo[]=b",
            "[message] helo = a list of 2 values (key[]=): expected a single value",
        ),
        (
            "limit.ini",
            b"[concurrency]\nmax=x",
            "[concurrency] max = 'x': expected a decimal number",
        ),
        (
            "early_talker.ini",
            b"pause=1s",
            "[main] pause = '1s': expected a number of seconds",
        ),
        (
            "tls.ini",
            b"minVersion=TLSv1.1",
            "[main] minVersion = 'TLSv1.1': expected one of TLSv1.2, TLSv1.3",
        ),
        (
            "tls.ini",
            b"[no_tls_hosts]\n10.0.0.1\nmail.example.com",
            "[no_tls_hosts] 'mail.example.com': expected an IP address or CIDR network",
        ),
    ];
    for (file, content, expected) in cases {
        let (temp, dir) = config_dir(&[(file, content)]);
        let error = CoreSettings::load(&dir).expect_err(expected).to_string();
        let prefix = format!("{}: ", temp.path().join(file).display());
        assert!(error.starts_with(&prefix), "{error}");
        assert!(
            error.contains(expected),
            "{error}\n  should contain {expected}"
        );
    }
}

#[test]
fn legacy_databytes() {
    let settings = load(&[("databytes", b"# size\n1048576\n")]).expect("load");
    assert_eq!(settings.max_bytes, 1_048_576);
    assert!(settings.warnings[0].contains("legacy Haraka file used"));

    let settings =
        load(&[("databytes", b"1"), ("connection.ini", b"[max]\nbytes=2")]).expect("load");
    assert_eq!(settings.max_bytes, 2);
    assert!(settings.warnings[0].contains("ignored"));

    let (temp, dir) = config_dir(&[("databytes", b"\n10M\n")]);
    let error = CoreSettings::load(&dir).expect_err("bad databytes");
    assert_eq!(
        error.to_string(),
        format!(
            "{}: line 2: '10M': expected a decimal number of bytes",
            temp.path().join("databytes").display()
        )
    );
}

#[test]
fn haproxy_hosts_from_connection_ini_or_the_legacy_file() {
    let net = |s: &str| s.parse::<ipnetwork::IpNetwork>().unwrap();
    // Haraka's shipped section: one empty entry, commented examples.
    let shipped = b"[haproxy]\nhosts[] =\n; hosts[] = 192.0.2.4\n; hosts[] = [2001:db8::1]\n";
    let settings = load(&[("connection.ini", shipped)]).expect("load");
    assert!(settings.haproxy_hosts.is_empty());
    assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);

    let settings = load(&[(
        "connection.ini",
        b"[haproxy]\nhosts[] = 127.0.0.1\nhosts[] = 10.0.0.0/8\nhosts[] = [2001:db8::1]\n",
    )])
    .expect("load");
    assert_eq!(
        settings.haproxy_hosts,
        [
            net("127.0.0.1/32"),
            net("10.0.0.0/8"),
            net("2001:db8::1/128")
        ]
    );
    assert!(settings.warnings[0].contains("means only that address (/128)"));

    let settings = load(&[(
        "haproxy_hosts",
        b"# the balancers\n192.0.2.4\n192.0.2.8/29\n",
    )])
    .expect("load");
    assert_eq!(
        settings.haproxy_hosts,
        [net("192.0.2.4/32"), net("192.0.2.8/29")]
    );
    assert!(settings.warnings[0].contains("legacy Haraka file used"));
    assert!(settings.warnings[0].contains("[haproxy] hosts[]"));

    let settings = load(&[
        ("haproxy_hosts", b"192.0.2.4\n"),
        ("connection.ini", b"[haproxy]\nhosts[] = 192.0.2.9\n"),
    ])
    .expect("load");
    assert_eq!(settings.haproxy_hosts, [net("192.0.2.9/32")]);
    assert!(settings.warnings[0].contains("ignored"));

    let (temp, dir) = config_dir(&[("connection.ini", b"[haproxy]\nhosts[] = balancer\n")]);
    let error = CoreSettings::load(&dir).expect_err("bad host");
    assert_eq!(
        error.to_string(),
        format!(
            "{}: [haproxy] hosts[] = 'balancer': expected an IP address or CIDR network such as 192.0.2.4 or 2001:db8::/64",
            temp.path().join("connection.ini").display()
        )
    );
    let (temp, dir) = config_dir(&[("haproxy_hosts", b"\n192.0.2.4/40\n")]);
    let error = CoreSettings::load(&dir).expect_err("bad legacy host");
    assert!(
        error.to_string().starts_with(&format!(
            "{}: line 2: '192.0.2.4/40': expected an IP address",
            temp.path().join("haproxy_hosts").display()
        )),
        "{error}"
    );
}

#[test]
fn legacy_message_files() {
    let settings = load(&[
        ("smtpgreeting", b"Line one\nLine two\n"),
        ("ehlo_hello_message", b"Howdy."),
        ("connection_close_message", b"See ya."),
    ])
    .expect("load");
    assert_eq!(settings.greeting, ["Line one", "Line two"]);
    assert_eq!(settings.helo_message, "Howdy.");
    assert_eq!(settings.close_message, "See ya.");
    assert_eq!(settings.warnings.len(), 3);
}

#[test]
fn tls_default_files_enable_tls_only_when_both_exist() {
    let (temp, dir) = config_dir(&[("tls_key.pem", b"k"), ("tls_cert.pem", b"c")]);
    let settings = CoreSettings::load(&dir).expect("load");
    assert_eq!(
        settings.tls.files,
        Some(TlsFiles {
            key: temp.path().join("tls_key.pem"),
            cert: temp.path().join("tls_cert.pem"),
        })
    );
    assert!(settings.warnings.is_empty());

    let settings = load(&[("tls_key.pem", b"k")]).expect("load");
    assert_eq!(settings.tls.files, None);
}

#[test]
fn tls_explicit_paths_resolve_against_root_and_may_be_missing() {
    let (temp, dir) = config_dir(&[
        ("tls.ini", b"key=certs/combined.pem\ncert=certs/combined.pem\nminVersion=TLSv1.3\n[no_tls_hosts]\n192.0.2.1\n2001:db8::/32\n"),
        ("certs/combined.pem", b"pem"),
    ]);
    let settings = CoreSettings::load(&dir).expect("load");
    let combined = temp.path().join("certs/combined.pem");
    assert_eq!(
        settings.tls.files,
        Some(TlsFiles {
            key: combined.clone(),
            cert: combined,
        })
    );
    assert_eq!(settings.tls.min_version, TlsMinVersion::Tls13);
    let hosts: Vec<String> = settings
        .tls
        .no_tls_hosts
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(hosts, ["192.0.2.1/32", "2001:db8::/32"]);
    assert!(
        dir.unrecognized_files(crate::config::files::KNOWN_FILES)
            .is_empty()
    );

    let settings = load(&[(
        "tls.ini",
        b"key=/nonexistent/key.pem\ncert[]=/nonexistent/a.pem\ncert[]=/nonexistent/b.pem",
    )])
    .expect("missing files are not fatal");
    let files = settings.tls.files.expect("configured");
    assert_eq!(files.cert, Path::new("/nonexistent/a.pem"));
    assert_eq!(settings.warnings.len(), 3, "{:?}", settings.warnings);
    assert!(
        settings
            .warnings
            .iter()
            .any(|w| w.contains("only the first is used"))
    );
    assert!(
        settings
            .warnings
            .iter()
            .any(|w| w.contains("/nonexistent/key.pem: file not found"))
    );
}

#[test]
fn environment_overrides_core_settings() {
    let (_temp, dir) = config_dir(&[("smtp.ini", b"listen=[::]:25")]);
    let dir = dir.with_environment([
        ("POSTERN_SMTP__MAIN__LISTEN", "127.0.0.1:2525"),
        ("POSTERN_CONNECTION__MAX__BYTES", "1234"),
        ("POSTERN_TLS__MAIN__MINVERSION", "TLSv1.3"),
    ]);
    let settings = CoreSettings::load(&dir).expect("load");
    assert_eq!(settings.listen, addresses(&["127.0.0.1:2525"]));
    assert_eq!(settings.max_bytes, 1234);
    assert_eq!(settings.tls.min_version, TlsMinVersion::Tls13);
    assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);
}

#[test]
fn seed_fixtures_load_with_warnings_only() {
    let dir = ConfigDir::open(fixture("seed-haraka-in"))
        .expect("open")
        .with_environment(Vec::<(String, String)>::new());
    let settings = CoreSettings::load(&dir).expect("haraka-in");
    assert_eq!(settings.listen, addresses(&["[::]:25"]));
    let pem = Path::new("/opt/haraka/config/haraka-in/tls/mail.example.com.pem");
    assert_eq!(
        settings.tls.files,
        Some(TlsFiles {
            key: pem.to_path_buf(),
            cert: pem.to_path_buf(),
        })
    );
    // The two certificates not found, and config's [server] not used.
    assert_eq!(settings.warnings.len(), 3, "{:?}", settings.warnings);
    assert!(settings.tls.starttls, "config [plugins] lists tls");

    let dir = ConfigDir::open(fixture("seed-haraka-out"))
        .expect("open")
        .with_environment(Vec::<(String, String)>::new());
    let settings = CoreSettings::load(&dir).expect("haraka-out");
    assert_eq!(settings.listen, addresses(&["10.0.0.1:2526"]));
    assert!(settings.tls.files.is_some());
    assert!(settings.tls.starttls, "plugins lists tls");
}

#[test]
fn too_many_greeting_lines_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..60).map(|i| format!("greeting[]=line {i}\n")).collect();
    std::fs::write(
        dir.path().join("connection.ini"),
        format!("[message]\n{lines}"),
    )
    .unwrap();
    let error = CoreSettings::load(&ConfigDir::open(dir.path()).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("connection.ini") && error.contains("greeting"),
        "{error}"
    );
}
