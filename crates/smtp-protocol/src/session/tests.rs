//! Session tests: scripted SMTP dialogs in `dialogs/*.dialog`, run without
//! sockets against a small in-test policy.
//!
//! Every `*.dialog` file in `dialogs/` runs, found by walking the directory:
//! a new file needs no listing. The scripts use the one dialog grammar of
//! the `dialog-script` crate (`C:`, `C~` with `\r \n \0 \\ \xHH`, `S:` with a
//! trailing `*` wildcard, `= directive`, `#` comments); a failing dialog is
//! reported as `file:line: what`, and the others still run.
//!
//! Directives this runner knows:
//! - settings, before the first exchange: `= tls-available` (a certificate is
//!   loaded), `= auth PLAIN LOGIN …` (offer AUTH with these mechanisms; user
//!   `alice`, password `secret`; user `temp` gets a temporary failure),
//!   `= max-recipients N`, `= max-bytes N`, `= max-bad N`, `= max-received N`,
//!   `= normalize` (bare newlines are normalised, not rejected),
//!   `= requiretls` (offer REQUIRETLS, as relay-out does)
//! - events: `= tls` (the TLS handshake completes here), `= timeout` and
//!   `= shutdown` (the driver's timers fire), `= closed` (the session has
//!   closed)
//!
//! Any other directive is an error at its line. Server output left unread at
//! the end of a dialog is a failure too.
//!
//! The policy: recipients at `example.com` (and postmaster) are accepted,
//! `temp.example` gets `451 4.3.0`, anything else `550 5.7.1`; senders at
//! `blocked.example` get `550 5.7.1`; a message is accepted unless its sender's
//! local part is `reject`.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use dialog_script::{Directive, Failure, StepKind};

use super::ClientName;
use super::*;
use super::{AuthVerdict, Verdict};
use crate::address::{ForwardPath, ReversePath};
use crate::reply::{EnhancedCode, Reply};

fn client() -> ClientInfo {
    ClientInfo {
        peer: "192.0.2.1:40000".parse().unwrap(),
        local: "198.51.100.1:25".parse().unwrap(),
        name: ClientName::Unavailable,
        proxy: None,
    }
}

fn recipient_policy(rcpt: &ForwardPath) -> Verdict {
    let ForwardPath::Mailbox(mailbox) = rcpt else {
        return Verdict::accept();
    };
    match mailbox.domain().map(|d| d.as_str()) {
        Some("example.com") => Verdict::accept(),
        Some("temp.example") => Verdict::Reject(Reply::new(
            451,
            Some(EnhancedCode::new(4, 3, 0)),
            "Try again later",
        )),
        _ => Verdict::Reject(Reply::new(
            550,
            Some(EnhancedCode::new(5, 7, 1)),
            format!("I cannot deliver mail for {rcpt}"),
        )),
    }
}

fn sender_policy(from: &ReversePath) -> Verdict {
    match from {
        ReversePath::Mailbox(m) if m.domain().is_some_and(|d| d.as_str() == "blocked.example") => {
            Verdict::Reject(Reply::new(
                550,
                Some(EnhancedCode::new(5, 7, 1)),
                "Sender refused",
            ))
        }
        _ => Verdict::accept(),
    }
}

fn message_policy(envelope: &Envelope, message: &[u8]) -> Verdict {
    assert!(
        message.starts_with(b"Received: from "),
        "own Received header first"
    );
    match &envelope.from {
        ReversePath::Mailbox(m) if m.local_part() == "reject" => Verdict::Reject(Reply::new(
            554,
            Some(EnhancedCode::new(5, 7, 1)),
            "Message refused",
        )),
        _ => Verdict::accept(),
    }
}

/// The date the test driver stamps `Received:` with.
const TEST_DATE: &str = "Thu, 1 Jan 2026 12:00:00 +0000";

/// Runs the driver's side of the protocol against the test policy.
struct Runner {
    session: Session,
    output: std::collections::VecDeque<String>,
    delivered: Vec<Vec<u8>>,
}

impl Runner {
    fn new(config: SessionConfig, tls_available: bool) -> Self {
        Self::with_auth(config, tls_available, Vec::new())
    }

    fn with_auth(config: SessionConfig, tls_available: bool, auth: Vec<SaslMechanism>) -> Self {
        let mut session = Session::new(Arc::new(config), client(), "TESTCONN".into());
        session.set_tls_available(tls_available);
        session.set_auth_mechanisms(auth);
        let action = session.greet();
        let mut runner = Self {
            session,
            output: Default::default(),
            delivered: Vec::new(),
        };
        runner.act(action);
        runner
    }

    fn act(&mut self, mut action: Action) {
        loop {
            action = match action {
                Action::CheckSender(check) => {
                    let verdict = sender_policy(check.from());
                    self.session.sender_verdict(*check, verdict)
                }
                Action::CheckRecipient(check) => {
                    let verdict = recipient_policy(check.recipient());
                    self.session.recipient_verdict(check, verdict)
                }
                Action::StampReceived => self.session.stamp_received(TEST_DATE),
                Action::DeliverMessage(mut delivery) => {
                    let message = delivery.take_message();
                    let verdict = message_policy(delivery.envelope(), &message);
                    self.delivered.push(message);
                    self.session.message_verdict(delivery, verdict)
                }
                Action::IssueChallenge => self.session.issue_challenge("TESTNONCE"),
                Action::Authenticate(check) => {
                    let credentials = check.credentials();
                    let verdict = match credentials.user() {
                        "temp" => AuthVerdict::TemporaryFailure,
                        "alice" if credentials.matches("secret") => AuthVerdict::Accepted,
                        _ => AuthVerdict::Rejected,
                    };
                    self.session.auth_verdict(*check, verdict)
                }
                Action::StartTls
                | Action::Close
                | Action::Continue
                | Action::ReceiveData
                | Action::Reset => break,
            };
        }
        let mut wire = Vec::new();
        self.session.write_replies(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        for line in wire.split_terminator("\r\n") {
            self.output.push_back(line.to_string());
        }
    }

    fn input(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.session.is_receiving_data() {
                let (n, action) = self.session.data(bytes);
                bytes = &bytes[n..];
                self.act(action);
            } else {
                let end = bytes
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| p + 1);
                let line = &bytes[..end];
                bytes = &bytes[end..];
                let line = line.strip_suffix(b"\n").unwrap_or(line);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let action = if line.len() + 2 > 512 {
                    self.session.line_too_long()
                } else {
                    self.session.command_line(line)
                };
                self.act(action);
            }
        }
    }
}

/// The session's configuration, built from a dialog's leading settings.
struct DialogSettings {
    config: SessionConfig,
    tls_available: bool,
    auth: Vec<SaslMechanism>,
}

impl DialogSettings {
    /// The directives that configure the session; they must come before the
    /// first exchange, since the session is built from them.
    const NAMES: &[&str] = &[
        "tls-available",
        "normalize",
        "auth",
        "max-recipients",
        "max-bytes",
        "max-bad",
        "max-received",
        "requiretls",
    ];

    fn new() -> Self {
        DialogSettings {
            config: SessionConfig::with_host_name("mx.test"),
            tls_available: false,
            auth: Vec::new(),
        }
    }

    /// Applies a setting directive (one of [`Self::NAMES`]).
    fn apply(&mut self, directive: &Directive) -> Result<(), String> {
        let number = || -> Result<usize, String> {
            usize::try_from(directive.number()?).map_err(|e| e.to_string())
        };
        match directive.name.as_str() {
            "tls-available" => {
                directive.no_args()?;
                self.tls_available = true;
            }
            "normalize" => {
                directive.no_args()?;
                self.config.bare_newline = BareNewlinePolicy::Normalize;
            }
            "auth" => {
                self.auth = directive
                    .args
                    .iter()
                    .map(|name| {
                        SaslMechanism::parse(name)
                            .ok_or_else(|| format!("unknown SASL mechanism {name:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "max-recipients" => self.config.max_recipients = number()?,
            "max-bytes" => self.config.max_message_bytes = number()?,
            "max-bad" => {
                self.config.max_bad_commands =
                    u32::try_from(number()?).map_err(|e| e.to_string())?
            }
            "max-received" => self.config.max_received = number()?,
            "requiretls" => {
                directive.no_args()?;
                self.config.requiretls = true;
            }
            _ => return Err(format!("unknown setting `= {directive}`")),
        }
        Ok(())
    }
}

/// Plays an event directive (`= tls`, `= timeout`, `= shutdown`, `= closed`).
fn play_event(runner: &mut Runner, directive: &Directive) -> Result<(), String> {
    let action = match directive.name.as_str() {
        "closed" => {
            directive.no_args()?;
            return if runner.session.is_closed() {
                Ok(())
            } else {
                Err("the session is still open".into())
            };
        }
        "tls" => {
            directive.no_args()?;
            runner.session.tls_established(TlsInfo {
                protocol: "TLSv1.3".into(),
                cipher: "TLS13_AES_128_GCM_SHA256".into(),
            })
        }
        "timeout" => {
            directive.no_args()?;
            runner.session.timeout()
        }
        "shutdown" => {
            directive.no_args()?;
            runner.session.shutdown()
        }
        name if DialogSettings::NAMES.contains(&name) => {
            return Err(format!(
                "`= {directive}` is a setting: it must come before the first exchange"
            ));
        }
        _ => return Err(format!("unknown directive `= {directive}`")),
    };
    runner.act(action);
    Ok(())
}

/// Plays one dialog script. `line` follows the step being played, so a
/// panic (in the session or the policy) can be blamed on its line.
fn play_dialog(text: &str, line: &Cell<Option<usize>>) -> Result<(), (Option<usize>, String)> {
    let script = dialog_script::parse(text).map_err(|e| (Some(e.line), e.message))?;
    let mut settings = DialogSettings::new();
    let mut steps = script.steps.iter().peekable();
    while let Some(step) = steps.peek() {
        let StepKind::Directive(directive) = &step.kind else {
            break;
        };
        if !DialogSettings::NAMES.contains(&directive.name.as_str()) {
            break;
        }
        line.set(Some(step.line));
        settings
            .apply(directive)
            .map_err(|message| (Some(step.line), message))?;
        steps.next();
    }
    let mut runner = Runner::with_auth(settings.config, settings.tls_available, settings.auth);
    for step in steps {
        line.set(Some(step.line));
        let at = |message: String| (Some(step.line), message);
        match &step.kind {
            StepKind::Send(bytes) => runner.input(bytes),
            StepKind::Expect(expected) => {
                let got = runner.output.pop_front().ok_or_else(|| {
                    at(format!(
                        "expected {:?}, the server sent nothing",
                        expected.to_string()
                    ))
                })?;
                if !expected.matches(&got) {
                    return Err(at(format!(
                        "expected {:?}, got {got:?}",
                        expected.to_string()
                    )));
                }
            }
            StepKind::Directive(directive) => play_event(&mut runner, directive).map_err(at)?,
        }
    }
    if !runner.output.is_empty() {
        return Err((
            None,
            format!("unexpected server output at the end {:?}", runner.output),
        ));
    }
    Ok(())
}

/// What running a directory of dialogs found.
struct DialogRun {
    /// Every dialog that was played (passed or failed), in name order.
    ran: Vec<String>,
    failures: Vec<Failure>,
}

/// Plays every `*.dialog` file in `dir`, in name order. A failure (a wrong
/// reply, an unknown directive, a panic) is recorded as `path:line: what`
/// and the next dialog runs.
fn run_dialog_files(dir: &Path) -> DialogRun {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "dialog"))
        .collect();
    paths.sort();
    let mut run = DialogRun {
        ran: Vec::new(),
        failures: Vec::new(),
    };
    for path in paths {
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                run.failures.push(Failure::whole(&file, e.to_string()));
                continue;
            }
        };
        let line = Cell::new(None);
        let outcome = catch_unwind(AssertUnwindSafe(|| play_dialog(&text, &line)));
        run.ran
            .push(path.file_name().unwrap().to_string_lossy().into_owned());
        let failure = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err((Some(line), message))) => Failure::at(&file, line, message),
            Ok(Err((None, message))) => Failure::whole(&file, message),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                Failure {
                    file,
                    line: line.get(),
                    message: format!("panicked: {message}"),
                }
            }
        };
        run.failures.push(failure);
    }
    run
}

/// The session dialogs, beside this file.
fn dialogs_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/session/dialogs")
}

#[test]
fn every_dialog_file_passes() {
    let run = run_dialog_files(&dialogs_dir());
    assert!(
        run.ran
            .iter()
            .any(|name| name == "basic_transaction.dialog"),
        "dialogs not found in {}: {:?}",
        dialogs_dir().display(),
        run.ran
    );
    assert!(
        run.failures.is_empty(),
        "{}",
        dialog_script::summary(run.ran.len(), &run.failures)
    );
}

#[test]
fn the_runner_finds_new_files_and_reports_each_failure_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        // Fails at line 4 on purpose; the files after it must still run.
        (
            "a_wrong_reply.dialog",
            "S: 220 *\nC: NOOP\n# the reply is 250\nS: 500 not this\nC: QUIT\nS: 221 *\n",
        ),
        (
            "b_passes.dialog",
            "= max-bad 5\nS: 220 *\nC: NOOP\nS: 250 *\nC: QUIT\nS: 221 *\n= closed\n",
        ),
        ("c_unknown_directive.dialog", "S: 220 *\n= starttls\n"),
        ("d_late_setting.dialog", "S: 220 *\n= max-bad 2\n"),
        ("e_unread_output.dialog", "S: 220 *\nC: NOOP\n"),
        ("f_bad_escape.dialog", "S: 220 *\nC~ NOOP\\q\n"),
        ("not-a-dialog.txt", "S: nothing here runs\n"),
    ];
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let run = run_dialog_files(dir.path());
    assert_eq!(
        run.ran,
        [
            "a_wrong_reply.dialog",
            "b_passes.dialog",
            "c_unknown_directive.dialog",
            "d_late_setting.dialog",
            "e_unread_output.dialog",
            "f_bad_escape.dialog",
        ]
    );
    let located: Vec<(String, Option<usize>)> = run
        .failures
        .iter()
        .map(|f| {
            let name = Path::new(&f.file).file_name().unwrap().to_string_lossy();
            (name.into_owned(), f.line)
        })
        .collect();
    assert_eq!(
        located,
        [
            ("a_wrong_reply.dialog".to_string(), Some(4)),
            ("c_unknown_directive.dialog".to_string(), Some(2)),
            ("d_late_setting.dialog".to_string(), Some(2)),
            ("e_unread_output.dialog".to_string(), None),
            ("f_bad_escape.dialog".to_string(), Some(2)),
        ],
        "{:#?}",
        run.failures
    );
    let summary = dialog_script::summary(run.ran.len(), &run.failures);
    let wrong_reply = format!(
        "{}:4: expected \"500 not this\", got \"250 2.0.0 OK\"",
        dir.path().join("a_wrong_reply.dialog").display()
    );
    assert!(summary.contains(&wrong_reply), "{summary}");
    assert!(
        summary.contains("unknown directive `= starttls`"),
        "{summary}"
    );
    assert!(
        summary.contains("must come before the first exchange"),
        "{summary}"
    );
}

#[test]
fn message_has_received_header_then_data_byte_for_byte() {
    let mut runner = Runner::new(SessionConfig::with_host_name("mx.test"), false);
    runner.input(
        b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n",
    );
    let body = b"Subject: t\r\n\r\n..leading dot\r\nlong line x\x80\xff\r\n";
    let mut wire = body.to_vec();
    wire.extend_from_slice(b".\r\n");
    runner.input(&wire);
    let message = &runner.delivered[0];
    let text = String::from_utf8_lossy(message);
    assert!(text.starts_with("Received: from client.example ([192.0.2.1])\r\n\tby mx.test (Postern) with ESMTP id TESTCONN.1\r\n\tfor <u@example.com>; "), "{text}");
    let body_start = message
        .windows(12)
        .position(|w| w == b"Subject: t\r\n")
        .unwrap();
    assert_eq!(
        &message[body_start..],
        b"Subject: t\r\n\r\n.leading dot\r\nlong line x\x80\xff\r\n"
    );
}

/// The loop check reads the header section however the data is split into
/// reads, and only that: `Received:` lines in a large body do not count.
#[test]
fn the_loop_check_sees_the_header_section_across_reads() {
    for (headers, code) in [(3, "554"), (2, "250")] {
        let mut config = SessionConfig::with_host_name("mx.test");
        config.max_received = 2;
        let mut runner = Runner::new(config, false);
        runner.input(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n");
        let mut wire = b"Received: x\r\n".repeat(headers);
        wire.extend_from_slice(b"Subject: s\r\n\r\n");
        wire.extend_from_slice(&b"Received: in the body\r\n".repeat(10_000));
        wire.extend_from_slice(b".\r\n");
        for piece in wire.chunks(7) {
            runner.input(piece);
        }
        let last = runner.output.back().unwrap().clone();
        assert!(last.starts_with(code), "{headers} headers: {last}");
    }
}

#[test]
fn transaction_record_is_kept_for_the_log() {
    let mut runner = Runner::new(SessionConfig::with_host_name("mx.test"), false);
    runner.input(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nRCPT TO:<v@example.com>\r\nDATA\r\nhello\r\n.\r\n");
    let record = runner.session.take_finished().unwrap();
    assert_eq!(record.envelope.recipients.len(), 2);
    assert_eq!(record.size, 10);
    assert_eq!(record.reply.code(), 250);
    assert!(runner.session.take_finished().is_none());
}

#[test]
fn an_answer_nobody_asked_for_is_a_driver_bug_reported_once() {
    let mut runner = Runner::new(SessionConfig::with_host_name("mx.test"), false);
    runner.input(b"EHLO c\r\n");
    runner.output.clear();
    assert!(!runner.session.take_out_of_sequence());
    let action = runner.session.stamp_received(TEST_DATE);
    assert!(matches!(action, Action::Close), "{action:?}");
    assert!(runner.session.is_closed());
    let replies = runner.session.take_replies();
    assert_eq!(replies, [replies::local_error()]);
    assert!(runner.session.take_out_of_sequence());
    assert!(!runner.session.take_out_of_sequence());
}
