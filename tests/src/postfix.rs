//! A real Postfix in end-to-end tests: relay-in's backend, and relay-out's peers (the home mail
//! server that relays through it, the recipients' MX hosts), so XCLIENT, the envelope and the
//! bytes on the wire are judged by the server the relays talk to in production rather than by a
//! mock that shares our assumptions.
//!
//! Each [`Postfix`] is a private instance (its own config, queue, data and mail directories and
//! log file, all in one temp dir) started with `postfix -c DIR start` on `127.0.0.1:<free port>`,
//! or on the address of [`PostfixOptions::listen`]. It must run as root (Postfix's master does),
//! with the packages from `.ci/install-test-deps`.
//!
//! How it is set up, and why:
//! - Accepted mail is delivered by `virtual(8)` into one Maildir for every recipient of
//!   [`PostfixOptions::relay_domains`] (a `static:` catch-all map, or only the addresses of
//!   [`PostfixOptions::mailboxes`]), written as user `nobody`, so [`Postfix::delivered`] reads
//!   plain files and no local user, alias or pipe is involved. Every other domain is refused at
//!   RCPT with `554 5.7.1 Relay access denied`, even from loopback.
//! - Nothing is sent on (mail for other domains fails at once) unless
//!   [`PostfixOptions::relayhost`] names a host to relay it to; mail to send on is put in with
//!   [`Postfix::sendmail`], as a local program would.
//! - Logging goes to a file through `postlogd` (there is no syslog here).
//! - Nothing touches DNS (peer-name lookups off, SMTP client DNS disabled) and nothing listens
//!   beyond the one SMTP listener; the SMTP client, when a relayhost is set, connects from the
//!   listener's address.
//! - Headers are stored as sent: Postfix would otherwise add `Date:`/`Message-ID:` to mail from
//!   its own interfaces, and 127.0.0.1 is one. (Mail put in with `sendmail` is local submission:
//!   Postfix adds its `Received:` header and any missing `Date:`, `Message-ID:` or `From:`.)
//! - Postfix sets SO_REUSEPORT on its listeners, so two instances given the same address would
//!   both start and share connections at random. The address is therefore kept reserved by a
//!   bound, non-listening SO_REUSEPORT socket for the instance's lifetime: the kernel never hands
//!   a reserved port to another `bind(port 0)`, and a listen address already taken (by another
//!   instance or anything else) is refused at start.

mod config;
mod maildir;
mod process;

use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use tempfile::TempDir;
use tokio::net::TcpSocket;

pub use maildir::DeliveredMessage;

use config::{Layout, UserIds};
use process::Pid;

/// The backend's `myhostname`: it appears in its banner and in the `Received:` header it adds
/// (which is how [`DeliveredMessage::as_sent`] recognises that header). `.test` is reserved
/// (RFC 2606), so it never names a real host.
pub const BACKEND_HOSTNAME: &str = "backend.postern.test";

/// Debian's `command_directory`; named in full so a PATH without /usr/sbin still works.
const POSTFIX_COMMAND: &str = "/usr/sbin/postfix";
const SWAKS_COMMAND: &str = "/usr/bin/swaks";
/// Postfix's queue control, for [`Postfix::flush`].
const POSTQUEUE_COMMAND: &str = "/usr/sbin/postqueue";
/// Postfix's `sendmail(1)`, for local submission.
const SENDMAIL_COMMAND: &str = "/usr/sbin/sendmail";
/// Bound on one `sendmail` run (it only hands the message to `postdrop`).
const SENDMAIL_TIMEOUT: Duration = Duration::from_secs(10);
/// util-linux's `script`, the one pseudo-terminal at hand for [`Postfix::start`]'s diagnosis.
const SCRIPT_COMMAND: &str = "/usr/bin/script";
/// Bound on the whole start, up to the first 220 banner.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How far in the past config files are dated; see [`write_config_file`].
const CONFIG_AGE: Duration = Duration::from_secs(60);
/// How often the `wait_for_*` methods look again.
const POLL: Duration = Duration::from_millis(25);

/// What a test wants of its instance. `Default` is a backend on 127.0.0.1 that trusts no XCLIENT
/// client, accepts no domain and sends nothing on; most relay-in tests start from
/// [`PostfixOptions::xclient_backend`].
#[derive(Debug, Clone, Default)]
pub struct PostfixOptions {
    /// `smtpd_authorized_xclient_hosts`, e.g. `127.0.0.0/8`; empty authorizes nobody.
    pub xclient_hosts: String,
    /// Domains whose recipients are accepted and stored for [`Postfix::delivered`]. (They
    /// become Postfix's `virtual_mailbox_domains`; its `relay_domains` stays empty.)
    pub relay_domains: Vec<String>,
    /// When not empty, the only addresses of [`PostfixOptions::relay_domains`] that have a
    /// mailbox: any other recipient of those domains is refused at RCPT with `550 5.1.1 ... User
    /// unknown in virtual mailbox table`. Empty: every local part is accepted.
    pub mailboxes: Vec<String>,
    /// Where the smtpd listens, on 127.0.0.0/8; port 0 picks a free port on that address. `None`:
    /// 127.0.0.1 on a free port. Two instances can share a port on two addresses, as the MX
    /// hosts of relay-out's tests do (its `remote_port` is one port for every host).
    pub listen: Option<SocketAddr>,
    /// Relay mail for every domain not accepted here to this host (`relayhost = [ip]:port`,
    /// through `smtp(8)`), as a Mailcow relays through relay-out. `None`: such mail fails at once.
    pub relayhost: Option<SocketAddr>,
    /// More `main.cf` settings; one with the name of a harness setting replaces it.
    pub extra_main_cf: Vec<(String, String)>,
    /// Where the instance's temp dir (hence its queue) is made; `None`: the system temp dir.
    /// postern-bench puts it on the filesystem it measures.
    pub base_dir: Option<std::path::PathBuf>,
}

impl PostfixOptions {
    /// The production shape of relay-in's backend: XCLIENT allowed from loopback (where relay-in
    /// runs in tests), mail for `domains` accepted.
    pub fn xclient_backend(domains: &[&str]) -> Self {
        PostfixOptions {
            xclient_hosts: "127.0.0.0/8".to_string(),
            relay_domains: domains.iter().map(|domain| domain.to_string()).collect(),
            ..PostfixOptions::default()
        }
    }
}

/// A private Postfix instance (own config dir, queue dir, data dir, log file) in a temp dir,
/// listening on 127.0.0.1:<port> or [`PostfixOptions::listen`]. Stops itself, and reaps its
/// processes, when dropped.
///
/// All methods block the calling thread; the `wait_for_*` ones poll. In a `#[tokio::test]` that
/// also serves something in-process (a `TestDns`, say) that the binaries under test need while
/// the test waits, call them through `tokio::task::spawn_blocking` or use a multi-thread runtime.
#[derive(Debug)]
pub struct Postfix {
    layout: Layout,
    addr: SocketAddr,
    /// The master's PID once it is known; `None` only while `start` has not seen it yet.
    master: Option<Pid>,
    /// Keeps the port out of other instances' hands; see the module comment.
    _port_reservation: TcpSocket,
    /// Last field, so the files outlive the stop in `drop`.
    dir: TempDir,
}

impl Postfix {
    /// Starts an instance on its listen address and waits (at most ~10 s) for its 220 banner.
    /// On failure the error carries the output of `postfix start` and the instance's maillog,
    /// which is where Postfix reports why it did not come up.
    pub fn start(options: PostfixOptions) -> anyhow::Result<Postfix> {
        if !Path::new(POSTFIX_COMMAND).exists() {
            bail!("{POSTFIX_COMMAND} is missing: run .ci/install-test-deps as root");
        }
        process::become_subreaper()?;
        let mail_owner = user_ids("postfix")?;
        let nobody = user_ids("nobody")?;

        let mut builder = tempfile::Builder::new();
        builder.prefix("postern-postfix-");
        let dir = match &options.base_dir {
            Some(base) => builder.tempdir_in(base)?,
            None => builder.tempdir()?,
        };
        // Postfix's daemons drop to the postfix user and must be able to reach their queue.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let layout = Layout::under(dir.path());
        let (port_reservation, addr) = reserve_listen_address(options.listen)?;

        fs::create_dir(&layout.config_directory)?;
        fs::create_dir(&layout.queue_directory)?;
        fs::create_dir(&layout.data_directory)?;
        chown(
            &layout.data_directory,
            Some(mail_owner.uid),
            Some(mail_owner.gid),
        )?;
        fs::create_dir(&layout.virtual_mailbox_base)?;
        chown(
            &layout.virtual_mailbox_base,
            Some(nobody.uid),
            Some(nobody.gid),
        )?;
        let main_cf = config::main_cf(&layout, &options, addr, nobody)?;
        write_config_file(&layout.config_directory.join("main.cf"), &main_cf)?;
        let master_cf = config::master_cf(addr);
        write_config_file(&layout.config_directory.join("master.cf"), &master_cf)?;

        let mut postfix = Postfix {
            layout,
            addr,
            master: None,
            _port_reservation: port_reservation,
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let started = postfix.run_postfix_start();
        // Read the PID even after a failed start: a half-started master must still be stopped.
        postfix.master = process::read_master_pid(&postfix.layout.queue_directory).ok();
        if let Err(error) = started.and_then(|()| wait_for_banner(addr, deadline)) {
            let dir = postfix.dir.path().display();
            bail!(
                "Postfix in {dir} did not come up: {error:#}\nmaillog:\n{}",
                postfix.log()
            );
        }
        if postfix.master.is_none() {
            bail!(
                "Postfix answers but wrote no master.pid; maillog:\n{}",
                postfix.log()
            );
        }
        Ok(postfix)
    }

    /// Stops the instance (its master and every daemon), as a home server
    /// that goes away: connections to its address are refused until
    /// [`Postfix::start_again`]. Its queue and mailboxes stay.
    pub fn stop(&mut self) {
        let master = self
            .master
            .take()
            .or_else(|| process::read_master_pid(&self.layout.queue_directory).ok());
        if let Some(master) = master {
            process::stop_master(master);
        }
    }

    /// Starts a stopped instance again on the same address and waits for
    /// its banner.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        self.run_postfix_start()?;
        self.master = process::read_master_pid(&self.layout.queue_directory).ok();
        wait_for_banner(self.addr, deadline)
            .with_context(|| format!("Postfix restart; maillog:\n{}", self.log()))
    }

    /// The master's process ID (its daemons are its children), for measuring the instance.
    pub fn master_pid(&self) -> Option<u32> {
        self.master.map(|pid| pid as u32)
    }

    /// Asks the queue manager to try every deferred message now (`postqueue -f`), as an admin
    /// does once a destination is back.
    pub fn flush(&self) -> anyhow::Result<()> {
        let status = Command::new(POSTQUEUE_COMMAND)
            .arg("-c")
            .arg(&self.layout.config_directory)
            .arg("-f")
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("running {POSTQUEUE_COMMAND}"))?;
        if !status.success() {
            bail!("postqueue -f failed ({status}); maillog:\n{}", self.log());
        }
        Ok(())
    }

    /// Where the instance's smtpd listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The instance's temp dir (config in `etc/`, queue in `spool/`, mail in `mailboxes/`), for
    /// failure messages and digging by hand.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The maillog so far. It starts with the harness's own banner probe (one connect/disconnect
    /// from 127.0.0.1) and is written asynchronously: use [`Postfix::wait_for_log`] for lines
    /// that must appear.
    pub fn log(&self) -> String {
        fs::read(&self.layout.maillog_file)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the maillog contains `needle` and returns the whole log; the error carries the
    /// log as it was at the deadline.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return Ok(log);
            }
            if Instant::now() >= deadline {
                bail!("{needle:?} not in the Postfix maillog after {within:?}; maillog:\n{log}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Every message stored so far, oldest first, one per delivered recipient. Delivery happens
    /// after the 250 to DATA, so use [`Postfix::wait_for_delivered`] right after sending.
    pub fn delivered(&self) -> Vec<DeliveredMessage> {
        let inbox = self.layout.inbox();
        maildir::read_maildir(&inbox)
            .unwrap_or_else(|error| panic!("reading the test Maildir {}: {error}", inbox.display()))
    }

    /// Waits until at least `count` messages are stored and returns them all; the error carries
    /// the maillog, which says why a message did not arrive.
    pub fn wait_for_delivered(
        &self,
        count: usize,
        within: Duration,
    ) -> anyhow::Result<Vec<DeliveredMessage>> {
        let deadline = Instant::now() + within;
        loop {
            let delivered = self.delivered();
            if delivered.len() >= count {
                return Ok(delivered);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} of {count} messages delivered after {within:?}; maillog:\n{}",
                    delivered.len(),
                    self.log()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Runs swaks against this instance: `--server` is filled in, `args` say the rest.
    pub fn swaks<I, S>(&self, args: I) -> anyhow::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let server = self.addr.to_string();
        let args: Vec<std::ffi::OsString> = ["--server", server.as_str()]
            .into_iter()
            .map(Into::into)
            .chain(args.into_iter().map(|arg| arg.as_ref().to_owned()))
            .collect();
        swaks(args)
    }

    /// Puts a message in as a local program does, with this instance's `sendmail(1)` (`sendmail
    /// -C <config dir> -i -f FROM -- RCPT...`, the message on stdin, LF or CRLF line endings):
    /// Postfix queues it, then sends it to [`PostfixOptions::relayhost`] or stores it. Errors
    /// unless sendmail exits 0 within ~10 s, with what it said.
    pub fn sendmail(&self, from: &str, recipients: &[&str], message: &[u8]) -> anyhow::Result<()> {
        let mut child = Command::new(SENDMAIL_COMMAND)
            .arg("-C")
            .arg(&self.layout.config_directory)
            .args(["-i", "-f", from, "--"])
            .args(recipients)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {SENDMAIL_COMMAND}"))?;
        let mut stdin = child.stdin.take().context("sendmail's stdin")?;
        let written = stdin.write_all(message);
        drop(stdin);
        let deadline = Instant::now() + SENDMAIL_TIMEOUT;
        while child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("sendmail did not finish within {SENDMAIL_TIMEOUT:?}");
            }
            std::thread::sleep(POLL);
        }
        let output = child.wait_with_output()?;
        written.context("writing the message to sendmail")?;
        if !output.status.success() {
            bail!(
                "sendmail failed ({}): {}{}\nmaillog:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                self.log()
            );
        }
        Ok(())
    }

    /// `postfix start`, whose output goes to files: the daemonized master inherits them, and a
    /// pipe would keep the read open for the master's lifetime.
    fn run_postfix_start(&self) -> anyhow::Result<()> {
        let stdout_path = self.dir.path().join("postfix-start.out");
        let stderr_path = self.dir.path().join("postfix-start.err");
        let status = Command::new(POSTFIX_COMMAND)
            .arg("-c")
            .arg(&self.layout.config_directory)
            .arg("start")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path)?)
            .stderr(File::create(&stderr_path)?)
            .status()
            .context("running postfix start")?;
        if status.success() {
            return Ok(());
        }
        let stdout = fs::read_to_string(&stdout_path).unwrap_or_default();
        let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
        let check = self.postfix_check_on_a_terminal();
        bail!(
            "postfix start failed ({status}); stdout:\n{stdout}\nstderr:\n{stderr}\n\
             `postfix check` says:\n{check}"
        )
    }

    /// The reason a start failed when the maillog is silent: Postfix writes a fatal error met
    /// before its logging is set up (a bad main.cf value, say) only to a terminal, so `postfix
    /// check`, which reads the same configuration, is rerun on a pseudo-terminal from `script`.
    /// Not used for the start itself: the daemon would inherit the terminal and keep it open.
    fn postfix_check_on_a_terminal(&self) -> String {
        let config_directory = self.layout.config_directory.display();
        let command = format!("{POSTFIX_COMMAND} -c {config_directory} check");
        let output = Command::new(SCRIPT_COMMAND)
            .args(["--quiet", "--return", "--command", &command, "/dev/null"])
            .stdin(Stdio::null())
            .output();
        match output {
            Ok(output) => String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n"),
            Err(error) => format!("(could not run {SCRIPT_COMMAND}: {error})"),
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let master = self
            .master
            .or_else(|| process::read_master_pid(&self.layout.queue_directory).ok());
        if let Some(master) = master {
            process::stop_master(master);
        }
    }
}

/// Runs `swaks` with `args` (a quick hand-driven client; it speaks XCLIENT with
/// `--xclient-addr` etc.) and returns its output whatever its exit status.
pub fn swaks<I, S>(args: I) -> anyhow::Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(SWAKS_COMMAND)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {SWAKS_COMMAND} (installed by .ci/install-test-deps)"))
}

/// Writes a config file dated in the past: Postfix treats a file changed within the current
/// second as possibly half-written and rereads it up to five times 300 ms apart, which would add
/// 1.5 s to every start.
fn write_config_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    let settled = SystemTime::now() - CONFIG_AGE;
    File::options()
        .write(true)
        .open(path)?
        .set_modified(settled)?;
    Ok(())
}

/// The listen address (127.0.0.1:0 unless `wanted`), with a free port when its port is 0, held by
/// a bound SO_REUSEPORT socket that never listens: Postfix (root, SO_REUSEPORT too) can still bind
/// it, and no other `bind(port 0)` is given it. A given port must be free on that address:
/// SO_REUSEPORT alone would let this instance share it with whoever holds it.
fn reserve_listen_address(wanted: Option<SocketAddr>) -> anyhow::Result<(TcpSocket, SocketAddr)> {
    let wanted = wanted.unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    if !(wanted.is_ipv4() && wanted.ip().is_loopback()) {
        bail!("Postfix listen address {wanted} is not on 127.0.0.0/8");
    }
    if wanted.port() != 0 {
        // No SO_REUSEADDR or SO_REUSEPORT: fails if anything at all is bound there.
        TcpSocket::new_v4()?
            .bind(wanted)
            .with_context(|| format!("Postfix listen address {wanted} is taken"))?;
    }
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(wanted)?;
    let addr = socket.local_addr()?;
    Ok((socket, addr))
}

/// Connects until the server answers with a 220 banner, then quits politely.
fn wait_for_banner(addr: SocketAddr, deadline: Instant) -> anyhow::Result<()> {
    let mut last_problem = String::from("never tried");
    while Instant::now() < deadline {
        match read_banner(addr, deadline) {
            Ok(banner) if banner.starts_with("220") => return Ok(()),
            Ok(banner) => last_problem = format!("banner {banner:?}"),
            Err(error) => last_problem = error.to_string(),
        }
        std::thread::sleep(POLL);
    }
    bail!("no 220 banner from {addr} within {START_TIMEOUT:?}: {last_problem}")
}

fn read_banner(addr: SocketAddr, deadline: Instant) -> std::io::Result<String> {
    let remaining = deadline.saturating_duration_since(Instant::now()).max(POLL);
    let mut stream = TcpStream::connect_timeout(&addr, remaining)?;
    stream.set_read_timeout(Some(remaining))?;
    let mut banner = Vec::new();
    let mut chunk = [0u8; 512];
    while !banner.ends_with(b"\r\n") {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        banner.extend_from_slice(&chunk[..read]);
    }
    // Best effort: a clean QUIT keeps a "lost connection" line out of the log.
    let _ = stream.write_all(b"QUIT\r\n");
    let _ = stream.read(&mut chunk);
    Ok(String::from_utf8_lossy(&banner).trim_end().to_string())
}

/// The uid and primary gid of a system user.
fn user_ids(name: &str) -> anyhow::Result<UserIds> {
    let c_name = CString::new(name)?;
    // SAFETY: passwd is a C struct of integers and pointers, for which all-zero is valid.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: every pointer refers to live memory of the stated size; getpwnam_r writes the entry
    // into `entry` and its strings into `buffer`, and we read only the two integers afterwards.
    let status = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status != 0 || found.is_null() {
        bail!("no system user {name:?} (status {status}): run .ci/install-test-deps as root");
    }
    Ok(UserIds {
        uid: entry.pw_uid,
        gid: entry.pw_gid,
    })
}
