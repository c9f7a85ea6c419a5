//! The plugin list read from real directories: Haraka's `plugins` file and
//! the seed guide's `config` `[plugins]`.

use super::*;
use crate::config::tests::{config_dir, fixture};

fn joined(lines: &[String]) -> String {
    lines.join("\n")
}

#[test]
fn without_a_list_each_binary_keeps_its_role() {
    let (_temp, dir) = config_dir(&[("smtp.ini", b"")]);
    let plugins = dir.plugins().expect("plugins");
    assert_eq!(plugins.path(), None);
    for feature in [
        Feature::InHostList,
        Feature::SmtpForward,
        Feature::Tls,
        Feature::Relay,
        Feature::AuthFlatFile,
    ] {
        assert!(plugins.enabled(feature), "{feature:?}");
    }
    assert!(!plugins.enabled(Feature::SmtpProxy));
    assert_eq!(plugins.queue(), Some(Feature::SmtpForward));
    assert!(plugins.findings(&dir, Binary::RelayIn).is_empty());
    assert_eq!(
        plugins.summary(&dir, Binary::RelayIn),
        [
            "  plugins: no plugins file; relay-in's defaults: rcpt_to.in_host_list, queue/smtp_forward, tls"
        ]
    );
    assert_eq!(
        plugins.summary(&dir, Binary::RelayOut),
        ["  plugins: no plugins file; relay-out's defaults: tls, relay, auth/flat_file"]
    );
}

#[test]
fn a_commented_out_plugin_is_off_and_others_are_named() {
    let (temp, dir) = config_dir(&[
        (
            "plugins",
            b"# CONNECT\n  ; relay\n#relay\n\n  haraka-plugin-limit  \r\nmax_unrecognized_commands\ntls\nrcpt_to.in_host_list\nmy_spam_check\nqueue/smtp_forward\ndnsbl\nrcpt_to.qmail_deliverable\ntls\n",
        ),
        ("relay_acl_allow", b"10.0.0.2\n"),
    ]);
    let plugins = dir.plugins().expect("plugins");
    let names: Vec<&str> = plugins.entries().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "limit",
            "tls",
            "rcpt_to.in_host_list",
            "my_spam_check",
            "queue/smtp_forward",
            "dns-list",
            "qmail-deliverable"
        ]
    );
    assert_eq!(plugins.entries()[0].written, "haraka-plugin-limit");
    assert_eq!(plugins.entries()[0].line, 5);
    assert!(!plugins.enabled(Feature::Relay));
    assert!(!plugins.enabled(Feature::AuthFlatFile));
    assert!(plugins.enabled(Feature::Tls));
    assert!(plugins.enabled(Feature::InHostList));
    assert_eq!(plugins.queue(), Some(Feature::SmtpForward));

    let notes = joined(&dir.take_warnings());
    assert!(
        notes.contains("line 6: max_unrecognized_commands has been replaced by limit in Haraka"),
        "{notes}"
    );
    assert!(
        notes.contains("line 6: max_unrecognized_commands is listed again (first on line 5)"),
        "{notes}"
    );
    assert!(
        notes.contains("line 11: dnsbl has been replaced by dns-list"),
        "{notes}"
    );
    assert!(
        notes.contains("line 13: tls is listed again (first on line 7); loaded once"),
        "{notes}"
    );

    let shown = temp.path().join("plugins").display().to_string();
    let relay_in = joined(&plugins.findings(&dir, Binary::RelayIn));
    assert!(
        relay_in.contains(&format!("{shown}: line 9: my_spam_check: relay-in does not run this plugin: not a plugin Postern knows (a custom plugin?)")),
        "{relay_in}"
    );
    assert!(
        relay_in.contains("line 11: dns-list: relay-in does not run this plugin: Postern does not filter mail; relay-in passes the client's address and HELO to the backend with XCLIENT"),
        "{relay_in}"
    );
    assert!(
        relay_in.contains("line 12: qmail-deliverable: relay-in does not run this plugin: relay-in accepts recipients only with rcpt_to.in_host_list"),
        "{relay_in}"
    );
    assert!(!relay_in.contains("limit"), "built in: {relay_in}");
    assert!(!relay_in.contains("relay is not listed"), "{relay_in}");

    let relay_out = joined(&plugins.findings(&dir, Binary::RelayOut));
    assert!(
        relay_out.contains(&format!(
            "{shown}: relay is not listed: no client relays by address (relay_acl_allow)"
        )),
        "{relay_out}"
    );
    // Off, but nothing in the directory asked for it: no warning.
    assert!(
        !relay_out.contains("auth/flat_file is not listed"),
        "{relay_out}"
    );
    assert!(!relay_out.contains("tls is not listed"), "{relay_out}");
    assert!(
        relay_out.contains("line 10: queue/smtp_forward: relay-out does not run this plugin: relay-out queues every message it accepts"),
        "{relay_out}"
    );

    let summary = joined(&plugins.summary(&dir, Binary::RelayOut));
    assert!(summary.contains(&format!("  plugins (from {shown}): limit, tls, rcpt_to.in_host_list, my_spam_check, queue/smtp_forward, dns-list, qmail-deliverable")), "{summary}");
    assert!(
        summary.contains("  not read: relay_acl_allow (relay is off, see plugins)"),
        "{summary}"
    );
    assert!(
        summary.contains("built in, on whether listed or not: limit (limit.ini, connection.ini [max]), early_talker (early_talker.ini)"),
        "{summary}"
    );
}

#[test]
fn tls_not_listed_turns_starttls_off() {
    let (_temp, dir) = config_dir(&[
        ("plugins", b"relay\n# tls\n"),
        ("tls.ini", b"key=tls_key.pem\ncert=tls_cert.pem\n"),
    ]);
    let core = crate::config::CoreSettings::load(&dir).expect("core");
    assert!(!core.tls.starttls);
    let findings = joined(&core.plugins.findings(&dir, Binary::RelayOut));
    assert!(
        findings.contains("tls is not listed: STARTTLS is not offered"),
        "{findings}"
    );
}

#[test]
fn the_first_queue_plugin_takes_the_message() {
    let (_temp, dir) = config_dir(&[(
        "plugins",
        b"rcpt_to.in_host_list\nqueue/smtp_proxy\nqueue/smtp_forward\n",
    )]);
    let plugins = dir.plugins().expect("plugins");
    assert_eq!(plugins.queue(), Some(Feature::SmtpProxy));
    assert!(plugins.enabled(Feature::SmtpProxy));
    assert!(!plugins.enabled(Feature::SmtpForward));
    assert!(!plugins.enabled(Feature::Tls));
    let findings = joined(&plugins.findings(&dir, Binary::RelayIn));
    assert!(
        findings.contains("line 3: queue/smtp_forward: not used: relay-in forwards with queue/smtp_proxy, listed first"),
        "{findings}"
    );

    let (_temp, dir) = config_dir(&[("plugins", b"rcpt_to.in_host_list\n")]);
    assert_eq!(dir.plugins().expect("plugins").queue(), None);
}

#[test]
fn names_haraka_would_not_find_are_read_as_meant() {
    let (_temp, dir) = config_dir(&[("plugins", b"plugins/queue/smtp_forward.js\n")]);
    let plugins = dir.plugins().expect("plugins");
    assert_eq!(plugins.queue(), Some(Feature::SmtpForward));
    let notes = joined(&dir.take_warnings());
    assert!(
        notes.contains("plugins/queue/smtp_forward.js: Haraka would not find this name"),
        "{notes}"
    );
}

#[test]
fn the_seed_config_file_lists_plugins_when_there_is_no_plugins_file() {
    let dir = ConfigDir::open(fixture("seed-haraka-in"))
        .expect("open")
        .with_environment(Vec::<(String, String)>::new());
    let plugins = dir.plugins().expect("plugins");
    let path = plugins.path().expect("listed").to_path_buf();
    assert!(path.ends_with("seed-haraka-in/config"), "{path:?}");
    let names: Vec<&str> = plugins.entries().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "xclient",
            "queue/smtp_forward",
            "rcpt_to.in_host_list",
            "tls"
        ]
    );
    assert_eq!(plugins.entries()[0].line, 6);
    let notes = joined(&dir.take_warnings());
    assert!(
        notes.contains("section [server] is not used by Postern (listen comes from smtp.ini"),
        "{notes}"
    );
    let findings = joined(&plugins.findings(&dir, Binary::RelayIn));
    assert!(
        findings.contains("line 6: xclient: relay-in does not run this plugin: relay-in never accepts XCLIENT from clients"),
        "{findings}"
    );

    // A plugins file wins; config is then not read at all.
    let (_temp, dir) = config_dir(&[("plugins", b"relay\n"), ("config", b"[plugins]\ntls\n")]);
    let plugins = dir.plugins().expect("plugins");
    assert!(plugins.path().expect("listed").ends_with("plugins"));
    assert!(!plugins.enabled(Feature::Tls));
    let unread = dir.unrecognized_files(crate::config::files::KNOWN_FILES);
    assert_eq!(unread, ["config"]);

    // A config without [plugins] leaves the role defaults.
    let (_temp, dir) = config_dir(&[("config", b"[server]\nlisten=0.0.0.0:25\n")]);
    let plugins = dir.plugins().expect("plugins");
    assert_eq!(plugins.path(), None);
    assert!(joined(&dir.take_warnings()).contains("no [plugins] section"));
}

#[test]
fn a_reload_keeps_the_list_read_at_startup() {
    let (temp, dir) = config_dir(&[("plugins", b"relay\n")]);
    let startup = dir.plugins().expect("plugins");
    std::fs::write(temp.path().join("plugins"), b"relay\ntls\n").expect("write");
    let reopened = ConfigDir::open(temp.path())
        .expect("open")
        .with_plugins(Arc::clone(&startup));
    assert!(!reopened.plugins().expect("plugins").enabled(Feature::Tls));
}
