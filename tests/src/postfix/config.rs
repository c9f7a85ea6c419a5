//! The `main.cf` and `master.cf` of a private test Postfix, rendered as text from the instance's
//! directories and the test's options. Pure, so the settings can be checked without a Postfix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::bail;

use super::{BACKEND_HOSTNAME, PostfixOptions};

/// The Maildir, relative to the virtual mailbox base, that every accepted recipient is stored in.
/// The trailing `/` is what makes `virtual(8)` write Maildir rather than mbox.
pub(crate) const INBOX: &str = "inbox/";

/// Where one instance keeps everything, all under its own temp dir so instances never share a
/// file, a socket or a lock.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) config_directory: PathBuf,
    pub(crate) queue_directory: PathBuf,
    pub(crate) data_directory: PathBuf,
    pub(crate) virtual_mailbox_base: PathBuf,
    pub(crate) maillog_file: PathBuf,
    /// The only prefix `maillog_file` may start with: the temp dir itself.
    pub(crate) root: PathBuf,
}

impl Layout {
    pub(crate) fn under(root: &Path) -> Self {
        Layout {
            config_directory: root.join("etc"),
            queue_directory: root.join("spool"),
            data_directory: root.join("data"),
            virtual_mailbox_base: root.join("mailboxes"),
            maillog_file: root.join("maillog"),
            root: root.to_path_buf(),
        }
    }

    /// The Maildir that [`INBOX`] resolves to.
    pub(crate) fn inbox(&self) -> PathBuf {
        self.virtual_mailbox_base.join(INBOX)
    }
}

/// A system user as numbers: `virtual_uid_maps` and chown take numbers, not names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserIds {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// Renders `main.cf` for an instance listening on `listen`. `extra_main_cf` replaces a setting of
/// the same name in place (so the file never holds a parameter twice) or is appended.
pub(crate) fn main_cf(
    layout: &Layout,
    options: &PostfixOptions,
    listen: SocketAddr,
    mailbox_owner: UserIds,
) -> anyhow::Result<String> {
    let mut settings: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: String| settings.push((name.to_string(), value));

    // Where the binaries are: Debian's layout. Stating them keeps the instance independent of
    // /etc/postfix/main.cf, which the preseeded "No configuration" install never writes.
    set("compatibility_level", "3.6".into());
    set("command_directory", "/usr/sbin".into());
    set("daemon_directory", "/usr/lib/postfix/sbin".into());
    set("meta_directory", "/etc/postfix".into());
    set("shlib_directory", "/usr/lib/postfix".into());
    set("queue_directory", display(&layout.queue_directory)?);
    set("data_directory", display(&layout.data_directory)?);
    set("mail_owner", "postfix".into());

    // No syslog on these machines: postlogd (master.cf) writes this file.
    set("maillog_file", display(&layout.maillog_file)?);
    set("maillog_file_prefixes", display(&layout.root)?);

    set("myhostname", BACKEND_HOSTNAME.into());
    set("mydestination", String::new());
    // Listen on IPv4 loopback only (the listener itself is pinned in master.cf, on 127.0.0.1 or
    // another 127.0.0.0/8 address: Postfix accepts only an address that an interface carries
    // here, and lo carries 127.0.0.1), but keep IPv6 enabled: Postfix parses an XCLIENT
    // `ADDR=IPV6:...` with the families of inet_protocols, so with `ipv4` alone it answers "501
    // Bad ADDR syntax" to every IPv6 client. The SMTP client connects from the listen address:
    // Postfix would not bind to it on its own.
    set("inet_interfaces", "127.0.0.1".into());
    set("smtp_bind_address", listen.ip().to_string());
    set("inet_protocols", "all".into());
    set("mynetworks", "127.0.0.0/8 [::1]/128".into());

    // Nothing may reach DNS: the tests run in a namespace that has none.
    set("smtpd_peername_lookup", "no".into());
    set("smtp_dns_support_level", "disabled".into());
    set("lmtp_dns_support_level", "disabled".into());
    set("biff", "no".into());

    set(
        "smtpd_authorized_xclient_hosts",
        checked_value(&options.xclient_hosts)?,
    );

    // Accept exactly the test's domains, for any local part (or only the test's mailboxes), into
    // one Maildir; refuse every other domain even from mynetworks, so a relay that forwards what
    // it should not is caught.
    let domains = options
        .relay_domains
        .iter()
        .map(|domain| checked_word(domain))
        .collect::<anyhow::Result<Vec<_>>>()?;
    set("virtual_mailbox_domains", domains.join(" "));
    set(
        "virtual_mailbox_base",
        display(&layout.virtual_mailbox_base)?,
    );
    set("virtual_mailbox_maps", mailbox_map(&options.mailboxes)?);
    set("virtual_uid_maps", format!("static:{}", mailbox_owner.uid));
    set("virtual_gid_maps", format!("static:{}", mailbox_owner.gid));
    set("virtual_minimum_uid", "1".into());
    set("virtual_transport", "virtual".into());
    set("relay_domains", String::new());
    set(
        "smtpd_relay_restrictions",
        "reject_unauth_destination".into(),
    );
    // Mail for other domains only comes from `sendmail`: sent to the relayhost, or failed.
    match options.relayhost {
        Some(relayhost) => {
            set(
                "relayhost",
                format!("[{}]:{}", relayhost.ip(), relayhost.port()),
            );
            set("default_transport", "smtp".into());
        }
        None => set(
            "default_transport",
            "error:5.7.1 test backend delivers nowhere".into(),
        ),
    }
    set(
        "relay_transport",
        "error:5.7.1 test backend relays nowhere".into(),
    );
    set(
        "local_transport",
        "error:5.7.1 test backend has no local users".into(),
    );
    set("alias_maps", String::new());
    set("alias_database", String::new());

    // Store messages exactly as the client sent them: by default Postfix adds and rewrites headers
    // for clients on its own interfaces, which 127.0.0.1 is.
    set("local_header_rewrite_clients", String::new());
    set("append_dot_mydomain", "no".into());

    for (name, value) in &options.extra_main_cf {
        let name = checked_word(name)?;
        let value = checked_value(value)?;
        match settings.iter_mut().find(|(existing, _)| *existing == name) {
            Some(slot) => slot.1 = value,
            None => settings.push((name, value)),
        }
    }

    let mut text =
        String::from("# Written by postern-tests for one test; see tests/src/postfix.rs\n");
    for (name, value) in settings {
        text.push_str(&format!("{name} = {value}\n"));
    }
    Ok(text)
}

/// `virtual_mailbox_maps`: every address of the accepted domains into [`INBOX`], or only
/// `mailboxes` (an `inline:` table, so no map file to build).
fn mailbox_map(mailboxes: &[String]) -> anyhow::Result<String> {
    if mailboxes.is_empty() {
        return Ok(format!("static:{INBOX}"));
    }
    let entries = mailboxes
        .iter()
        .map(|address| Ok(format!("{}={INBOX}", checked_word(address)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(format!("inline:{{ {} }}", entries.join(", ")))
}

/// Renders `master.cf`: only the services a receiving backend (or a relaying home server) uses,
/// none chrooted (the chroot
/// would need copies of /etc files), the SMTP listener on exactly `listen`, and `postlogd` so
/// `maillog_file` is written.
pub(crate) fn master_cf(listen: SocketAddr) -> String {
    let services = [
        // service type  private unpriv chroot wakeup maxproc command
        format!("{listen} inet n - n - - smtpd"),
        "pickup unix n - n 60 1 pickup".into(),
        "cleanup unix n - n - 0 cleanup".into(),
        "qmgr unix n - n 300 1 qmgr".into(),
        "rewrite unix - - n - - trivial-rewrite".into(),
        "bounce unix - - n - 0 bounce".into(),
        "defer unix - - n - 0 bounce".into(),
        "trace unix - - n - 0 bounce".into(),
        "verify unix - - n - 1 verify".into(),
        "flush unix n - n 1000? 0 flush".into(),
        "proxymap unix - - n - - proxymap".into(),
        "showq unix n - n - - showq".into(),
        "error unix - - n - - error".into(),
        "retry unix - - n - - error".into(),
        "discard unix - - n - - discard".into(),
        "virtual unix - n n - - virtual".into(),
        "smtp unix - - n - - smtp".into(),
        "anvil unix - - n - 1 anvil".into(),
        "scache unix - - n - 1 scache".into(),
        "postlog unix-dgram n - n - 1 postlogd".into(),
    ];
    let mut text =
        String::from("# Written by postern-tests for one test; see tests/src/postfix.rs\n");
    for line in services {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// A parameter value on one line: a newline would let a test's string add settings of its own.
fn checked_value(value: &str) -> anyhow::Result<String> {
    if value.contains(['\n', '\r']) {
        bail!("Postfix setting value {value:?} spans lines");
    }
    Ok(value.trim().to_string())
}

/// A parameter name, domain or address: one word, no separators that would change its meaning
/// (braces included: they delimit an `inline:` table).
fn checked_word(word: &str) -> anyhow::Result<String> {
    let trimmed = word.trim();
    if trimmed.is_empty() || trimmed.contains(|c: char| c.is_whitespace() || ",=#{}".contains(c)) {
        bail!("{word:?} is not a single Postfix word");
    }
    Ok(trimmed.to_string())
}

/// Paths go into main.cf as text, so they must be plain: no separators, `$` expansions or quotes.
fn display(path: &Path) -> anyhow::Result<String> {
    let Some(text) = path.to_str() else {
        bail!("path {path:?} is not UTF-8");
    };
    // Also keeps the path safe to put in the shell command of the start diagnosis.
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+".contains(c);
    if !text.chars().all(plain) {
        bail!("path {text:?} holds a character Postfix or a shell would read specially");
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: UserIds = UserIds {
        uid: 65534,
        gid: 65534,
    };
    const LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::new(127, 0, 0, 5),
        2525,
    ));

    fn options() -> PostfixOptions {
        PostfixOptions {
            xclient_hosts: "127.0.0.0/8".into(),
            relay_domains: vec!["example.com".into(), "example.net".into()],
            ..PostfixOptions::default()
        }
    }

    /// `main.cf` for `options`, in /tmp/pf1, listening on [`LISTEN`].
    fn rendered(options: &PostfixOptions) -> String {
        main_cf(
            &Layout::under(Path::new("/tmp/pf1")),
            options,
            LISTEN,
            OWNER,
        )
        .unwrap()
    }

    fn setting<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter_map(|line| line.strip_prefix(name)?.strip_prefix(" = "))
            .collect()
    }

    #[test]
    fn main_cf_points_everything_into_the_temp_dir() {
        let text = rendered(&options());
        assert_eq!(setting(&text, "queue_directory"), ["/tmp/pf1/spool"]);
        assert_eq!(setting(&text, "data_directory"), ["/tmp/pf1/data"]);
        assert_eq!(setting(&text, "maillog_file"), ["/tmp/pf1/maillog"]);
        assert_eq!(setting(&text, "maillog_file_prefixes"), ["/tmp/pf1"]);
        assert_eq!(
            setting(&text, "virtual_mailbox_base"),
            ["/tmp/pf1/mailboxes"]
        );
    }

    #[test]
    fn main_cf_carries_the_options() {
        let text = rendered(&options());
        assert_eq!(
            setting(&text, "smtpd_authorized_xclient_hosts"),
            ["127.0.0.0/8"]
        );
        assert_eq!(
            setting(&text, "virtual_mailbox_domains"),
            ["example.com example.net"]
        );
        assert_eq!(setting(&text, "virtual_uid_maps"), ["static:65534"]);
        assert_eq!(setting(&text, "virtual_mailbox_maps"), ["static:inbox/"]);
        assert_eq!(
            setting(&text, "default_transport"),
            ["error:5.7.1 test backend delivers nowhere"]
        );
        assert_eq!(setting(&text, "relayhost"), Vec::<&str>::new());
    }

    #[test]
    fn the_client_connects_from_the_listen_address() {
        let text = rendered(&options());
        assert_eq!(setting(&text, "inet_interfaces"), ["127.0.0.1"]);
        assert_eq!(setting(&text, "smtp_bind_address"), ["127.0.0.5"]);
    }

    #[test]
    fn mailboxes_and_relayhost_narrow_and_widen_what_is_done_with_mail() {
        let options = PostfixOptions {
            mailboxes: vec!["user@example.com".into(), "other@example.net".into()],
            relayhost: Some("127.0.0.1:2526".parse().unwrap()),
            ..options()
        };
        let text = rendered(&options);
        assert_eq!(
            setting(&text, "virtual_mailbox_maps"),
            ["inline:{ user@example.com=inbox/, other@example.net=inbox/ }"]
        );
        assert_eq!(setting(&text, "relayhost"), ["[127.0.0.1]:2526"]);
        assert_eq!(setting(&text, "default_transport"), ["smtp"]);
    }

    #[test]
    fn empty_xclient_hosts_authorizes_nobody() {
        let options = PostfixOptions {
            xclient_hosts: String::new(),
            ..options()
        };
        let text = rendered(&options);
        assert!(text.contains("\nsmtpd_authorized_xclient_hosts = \n"));
    }

    #[test]
    fn extra_settings_replace_in_place_or_append() {
        let options = PostfixOptions {
            extra_main_cf: vec![
                (
                    "smtpd_relay_restrictions".into(),
                    "permit_mynetworks reject".into(),
                ),
                ("smtpd_forbid_bare_newline".into(), "yes".into()),
            ],
            ..options()
        };
        let text = rendered(&options);
        assert_eq!(
            setting(&text, "smtpd_relay_restrictions"),
            ["permit_mynetworks reject"]
        );
        assert_eq!(setting(&text, "smtpd_forbid_bare_newline"), ["yes"]);
    }

    #[test]
    fn values_that_would_inject_settings_are_refused() {
        let cases = [
            PostfixOptions {
                xclient_hosts: "127.0.0.1\nmynetworks = 0.0.0.0/0".into(),
                ..options()
            },
            PostfixOptions {
                relay_domains: vec!["a.example b.example".into()],
                ..options()
            },
            PostfixOptions {
                relay_domains: vec![String::new()],
                ..options()
            },
            PostfixOptions {
                mailboxes: vec!["a@example.com, b@example.com=/etc/".into()],
                ..options()
            },
            PostfixOptions {
                mailboxes: vec!["a@example.com}".into()],
                ..options()
            },
            PostfixOptions {
                extra_main_cf: vec![("a = b".into(), "c".into())],
                ..options()
            },
            PostfixOptions {
                extra_main_cf: vec![("a".into(), "b\rc".into())],
                ..options()
            },
        ];
        for case in cases {
            assert!(
                main_cf(&Layout::under(Path::new("/tmp/pf1")), &case, LISTEN, OWNER).is_err(),
                "accepted {case:?}"
            );
        }
    }

    #[test]
    fn unusual_paths_are_refused() {
        for root in [
            "/tmp/with space",
            "/tmp/a,b",
            "/tmp/$x",
            "/tmp/a'b",
            "/tmp/a;b",
        ] {
            assert!(
                main_cf(&Layout::under(Path::new(root)), &options(), LISTEN, OWNER).is_err(),
                "{root}"
            );
        }
    }

    #[test]
    fn master_cf_listens_only_where_told_and_runs_postlogd() {
        let text = master_cf("127.0.0.1:2525".parse().unwrap());
        let listeners: Vec<_> = text
            .lines()
            .filter(|line| line.contains(" inet "))
            .collect();
        assert_eq!(listeners, ["127.0.0.1:2525 inet n - n - - smtpd"]);
        assert!(
            text.lines()
                .any(|line| line.starts_with("postlog unix-dgram"))
        );
        assert!(text.lines().any(|line| line.starts_with("virtual unix")));
        assert!(text.lines().any(|line| line.starts_with("smtp unix")));
    }
}
