//! SMTP AUTH (RFC 4954) as a client, for smart hosts: PLAIN and LOGIN, the two
//! mechanisms Haraka's `auth_type` offers. The wire forms are built here,
//! sans-IO; the session only sends them.

use std::fmt;

use super::capabilities::Capabilities;

/// Which mechanism to authenticate with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMechanism {
    Plain,
    Login,
    /// Whichever the server offers, PLAIN first (one round trip instead of three).
    #[default]
    Any,
}

/// A user name and password for AUTH.
///
/// Its `Debug` never shows the password, so a configuration can be logged
/// whole without leaking it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub mechanism: AuthMechanism,
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A mechanism both sides support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChosenMechanism {
    Plain,
    Login,
}

/// The mechanism to use with this server, if any fits.
pub(crate) fn choose_mechanism(
    wanted: AuthMechanism,
    capabilities: &Capabilities,
) -> Option<ChosenMechanism> {
    let plain = capabilities
        .offers_auth("PLAIN")
        .then_some(ChosenMechanism::Plain);
    let login = capabilities
        .offers_auth("LOGIN")
        .then_some(ChosenMechanism::Login);
    match wanted {
        AuthMechanism::Plain => plain,
        AuthMechanism::Login => login,
        AuthMechanism::Any => plain.or(login),
    }
}

/// `AUTH PLAIN <initial response>` (RFC 4616: no authorization identity,
/// then the user and the password, NUL-separated).
pub(crate) fn plain_command(credentials: &Credentials) -> String {
    let mut message = Vec::with_capacity(credentials.user.len() + credentials.password.len() + 2);
    message.push(0);
    message.extend_from_slice(credentials.user.as_bytes());
    message.push(0);
    message.extend_from_slice(credentials.password.as_bytes());
    format!("AUTH PLAIN {}", base64(&message))
}

/// Standard base64 with padding (RFC 4648 §4), as AUTH requires.
pub(crate) fn base64(input: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smtp_protocol::reply_parser::ReplyParser;

    fn capabilities(auth_line: &str) -> Capabilities {
        let mut parser = ReplyParser::new();
        parser.push(format!("250-x\r\n250 {auth_line}\r\n").as_bytes());
        Capabilities::from_ehlo(&parser.next_reply().unwrap().unwrap())
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
            (b"\xff\xfe\xfd", "//79"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64(input), *expected);
        }
    }

    #[test]
    fn plain_initial_response() {
        let credentials = Credentials {
            mechanism: AuthMechanism::Plain,
            user: "user".into(),
            password: "pass".into(),
        };
        assert_eq!(plain_command(&credentials), "AUTH PLAIN AHVzZXIAcGFzcw==");
    }

    #[test]
    fn mechanism_choice() {
        use AuthMechanism::*;
        let cases = [
            (Any, "AUTH LOGIN PLAIN", Some(ChosenMechanism::Plain)),
            (Any, "AUTH LOGIN", Some(ChosenMechanism::Login)),
            (Any, "AUTH CRAM-MD5", None),
            (Plain, "AUTH LOGIN", None),
            (Login, "AUTH=LOGIN", Some(ChosenMechanism::Login)),
            (Any, "PIPELINING", None),
        ];
        for (wanted, line, expected) in cases {
            assert_eq!(
                choose_mechanism(wanted, &capabilities(line)),
                expected,
                "{wanted:?} {line}"
            );
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let credentials = Credentials {
            mechanism: AuthMechanism::Any,
            user: "user".into(),
            password: "s3cret".into(),
        };
        let shown = format!("{credentials:?}");
        assert!(
            shown.contains("user") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
