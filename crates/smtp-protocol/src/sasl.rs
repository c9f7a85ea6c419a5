//! Server-side SASL for SMTP AUTH (RFC 4954): PLAIN (RFC 4616), LOGIN, and
//! CRAM-MD5 (RFC 2195), decoded without I/O, plus checking a password
//! against what a user file stores.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};

/// The mechanisms the server can offer, in Haraka's `auth_flat_file.ini`
/// `[core] methods` spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    Plain,
    Login,
    CramMd5,
}

impl SaslMechanism {
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Login => "LOGIN",
            SaslMechanism::CramMd5 => "CRAM-MD5",
        }
    }

    /// CRAM-MD5's challenge must be unpredictable (RFC 2195), so it needs a
    /// random token from outside this crate; the others have no challenge.
    pub fn needs_random_challenge(self) -> bool {
        self == SaslMechanism::CramMd5
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(SaslMechanism::Plain),
            "LOGIN" => Some(SaslMechanism::Login),
            "CRAM-MD5" => Some(SaslMechanism::CramMd5),
            _ => None,
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a client proved it knows, ready for the policy to check against its
/// user file. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// PLAIN and LOGIN: the password itself.
    Password { user: String, password: String },
    /// CRAM-MD5: the HMAC of our challenge; checkable only against a
    /// plain-text stored password.
    CramMd5 {
        user: String,
        challenge: String,
        digest_hex: String,
    },
}

impl Credentials {
    pub fn user(&self) -> &str {
        match self {
            Credentials::Password { user, .. } | Credentials::CramMd5 { user, .. } => user,
        }
    }

    /// Checks the credentials against a stored password: plain text, or a
    /// crypt(3) SHA-512 / SHA-256 hash (`$6$…`, `$5$…`, as made by
    /// `mkpasswd -m sha-512` or `openssl passwd -6`).
    pub fn matches(&self, stored: &str) -> bool {
        let hashed = stored.starts_with("$6$") || stored.starts_with("$5$");
        match self {
            Credentials::Password { password, .. } if hashed => sha_crypt_matches(password, stored),
            Credentials::Password { password, .. } => {
                constant_time_eq(password.as_bytes(), stored.as_bytes())
            }
            // CRAM-MD5 needs the clear password to compute the HMAC.
            Credentials::CramMd5 { .. } if hashed => false,
            Credentials::CramMd5 {
                challenge,
                digest_hex,
                ..
            } => {
                let expected = cram_md5_digest(stored, challenge);
                constant_time_eq(
                    expected.as_bytes(),
                    digest_hex.to_ascii_lowercase().as_bytes(),
                )
            }
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Password { user, .. } => {
                write!(f, "Password {{ user: {user:?}, password: <hidden> }}")
            }
            Credentials::CramMd5 { user, .. } => write!(f, "CramMd5 {{ user: {user:?} }}"),
        }
    }
}

/// Checks `password` against a crypt(3) SHA-crypt string as glibc writes
/// it: `$6$[rounds=N$]salt$hash` (SHA-512) or `$5$…` (SHA-256). The parse is
/// ours because sha-crypt's own check needs its `simple` feature, which
/// brings a random number generator this crate has no use for. A malformed
/// string, or rounds outside what sha-crypt allows, matches nothing.
fn sha_crypt_matches(password: &str, stored: &str) -> bool {
    let mut fields = stored.split('$');
    let (Some(""), Some(id), Some(mut salt)) = (fields.next(), fields.next(), fields.next()) else {
        return false;
    };
    let mut rounds = sha_crypt::ROUNDS_DEFAULT;
    if let Some(value) = salt.strip_prefix("rounds=") {
        let (Ok(value), Some(next)) = (value.parse(), fields.next()) else {
            return false;
        };
        rounds = value;
        salt = next;
    }
    let (Some(hash), None) = (fields.next(), fields.next()) else {
        return false;
    };
    let (password, salt) = (password.as_bytes(), salt.as_bytes());
    let computed = match id {
        "6" => sha_crypt::Sha512Params::new(rounds)
            .ok()
            .and_then(|params| sha_crypt::sha512_crypt_b64(password, salt, &params).ok()),
        "5" => sha_crypt::Sha256Params::new(rounds)
            .ok()
            .and_then(|params| sha_crypt::sha256_crypt_b64(password, salt, &params).ok()),
        _ => None,
    };
    computed.is_some_and(|computed| constant_time_eq(computed.as_bytes(), hash.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `hex(HMAC-MD5(password, challenge))`, RFC 2195.
pub fn cram_md5_digest(password: &str, challenge: &str) -> String {
    let Ok(mut mac) = Hmac::<md5::Md5>::new_from_slice(password.as_bytes()) else {
        return String::new();
    };
    mac.update(challenge.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why a SASL exchange failed before any password was checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("not valid base64")]
    BadBase64,
    #[error("malformed {0} response")]
    Malformed(&'static str),
    #[error("authentication cancelled")]
    Cancelled,
}

/// The server's side of one exchange: what to send next, or the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    /// Send `334 <base64 challenge>` and wait for a response line.
    Challenge(String),
    /// The exchange is complete.
    Done(Credentials),
}

/// One SASL exchange in progress.
#[derive(Debug, Clone)]
pub struct SaslExchange {
    mechanism: SaslMechanism,
    state: ExchangeState,
}

#[derive(Debug, Clone)]
enum ExchangeState {
    Start,
    LoginUser,
    LoginPassword { user: String },
    CramResponse { challenge: String },
}

fn decode(text: &str) -> Result<Vec<u8>, SaslError> {
    let text = text.trim();
    if text == "*" {
        return Err(SaslError::Cancelled);
    }
    if text == "=" {
        return Ok(Vec::new());
    }
    BASE64.decode(text).map_err(|_| SaslError::BadBase64)
}

fn utf8(bytes: Vec<u8>, what: &'static str) -> Result<String, SaslError> {
    String::from_utf8(bytes).map_err(|_| SaslError::Malformed(what))
}

impl SaslExchange {
    /// `challenge_id` makes CRAM-MD5's challenge unique (RFC 2195 asks for
    /// `<random.timestamp@host>`); the other mechanisms ignore it.
    pub fn start(
        mechanism: SaslMechanism,
        initial_response: Option<&str>,
        challenge_id: &str,
    ) -> Result<(Self, SaslStep), SaslError> {
        let mut exchange = SaslExchange {
            mechanism,
            state: ExchangeState::Start,
        };
        let step = match (mechanism, initial_response) {
            (SaslMechanism::Plain, Some(initial)) => exchange.respond(initial)?,
            (SaslMechanism::Plain, None) => SaslStep::Challenge(String::new()),
            (SaslMechanism::Login, Some(initial)) => {
                exchange.state = ExchangeState::LoginUser;
                exchange.respond(initial)?
            }
            (SaslMechanism::Login, None) => {
                exchange.state = ExchangeState::LoginUser;
                SaslStep::Challenge(BASE64.encode("Username:"))
            }
            (SaslMechanism::CramMd5, _) => {
                let challenge = format!("<{challenge_id}>");
                let encoded = BASE64.encode(&challenge);
                exchange.state = ExchangeState::CramResponse { challenge };
                SaslStep::Challenge(encoded)
            }
        };
        Ok((exchange, step))
    }

    pub fn mechanism(&self) -> SaslMechanism {
        self.mechanism
    }

    /// The client's response line to our last challenge.
    pub fn respond(&mut self, line: &str) -> Result<SaslStep, SaslError> {
        let bytes = decode(line)?;
        match std::mem::replace(&mut self.state, ExchangeState::Start) {
            ExchangeState::Start => {
                // PLAIN: authzid NUL authcid NUL passwd (RFC 4616 §2).
                let mut parts = bytes.split(|&b| b == 0);
                let (Some(_authzid), Some(user), Some(password), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(SaslError::Malformed("PLAIN"));
                };
                let user = utf8(user.to_vec(), "PLAIN")?;
                let password = utf8(password.to_vec(), "PLAIN")?;
                if user.is_empty() {
                    return Err(SaslError::Malformed("PLAIN"));
                }
                Ok(SaslStep::Done(Credentials::Password { user, password }))
            }
            ExchangeState::LoginUser => {
                let user = utf8(bytes, "LOGIN")?;
                self.state = ExchangeState::LoginPassword { user };
                Ok(SaslStep::Challenge(BASE64.encode("Password:")))
            }
            ExchangeState::LoginPassword { user } => {
                let password = utf8(bytes, "LOGIN")?;
                Ok(SaslStep::Done(Credentials::Password { user, password }))
            }
            ExchangeState::CramResponse { challenge } => {
                let response = utf8(bytes, "CRAM-MD5")?;
                let Some((user, digest_hex)) = response.rsplit_once(' ') else {
                    return Err(SaslError::Malformed("CRAM-MD5"));
                };
                if user.is_empty() || digest_hex.len() != 32 {
                    return Err(SaslError::Malformed("CRAM-MD5"));
                }
                Ok(SaslStep::Done(Credentials::CramMd5 {
                    user: user.to_string(),
                    challenge,
                    digest_hex: digest_hex.to_string(),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> String {
        BASE64.encode(s)
    }

    #[test]
    fn plain_with_initial_response() {
        let (_, step) =
            SaslExchange::start(SaslMechanism::Plain, Some(&b64(b"\0alice\0secret")), "x").unwrap();
        assert_eq!(
            step,
            SaslStep::Done(Credentials::Password {
                user: "alice".into(),
                password: "secret".into()
            })
        );
    }

    #[test]
    fn plain_after_an_empty_challenge() {
        let (mut ex, step) = SaslExchange::start(SaslMechanism::Plain, None, "x").unwrap();
        assert_eq!(step, SaslStep::Challenge(String::new()));
        let done = ex.respond(&b64(b"admin\0alice\0pw")).unwrap();
        assert!(matches!(done, SaslStep::Done(c) if c.user() == "alice"));
    }

    #[test]
    fn login_two_steps() {
        let (mut ex, step) = SaslExchange::start(SaslMechanism::Login, None, "x").unwrap();
        assert_eq!(step, SaslStep::Challenge("VXNlcm5hbWU6".into()));
        assert_eq!(
            ex.respond(&b64(b"bob")).unwrap(),
            SaslStep::Challenge("UGFzc3dvcmQ6".into())
        );
        let done = ex.respond(&b64(b"hunter2")).unwrap();
        let SaslStep::Done(creds) = done else {
            panic!()
        };
        assert!(creds.matches("hunter2"));
        assert!(!creds.matches("hunter3"));
    }

    #[test]
    fn cram_md5_rfc_2195_example() {
        // RFC 2195 §2: user tim, password tanstaaftanstaaf.
        let challenge = "<1896.697170952@postoffice.reston.mci.net>";
        assert_eq!(
            cram_md5_digest("tanstaaftanstaaf", challenge),
            "b913a602c7eda7a495b4e6e7334d3890"
        );
        let (mut ex, step) = SaslExchange::start(
            SaslMechanism::CramMd5,
            None,
            "1896.697170952@postoffice.reston.mci.net",
        )
        .unwrap();
        assert_eq!(step, SaslStep::Challenge(b64(challenge.as_bytes())));
        let SaslStep::Done(creds) = ex
            .respond(&b64(b"tim b913a602c7eda7a495b4e6e7334d3890"))
            .unwrap()
        else {
            panic!()
        };
        assert!(creds.matches("tanstaaftanstaaf"));
        assert!(!creds.matches("wrong"));
        assert!(
            !creds.matches("$6$salt$hash"),
            "CRAM-MD5 cannot check a hash"
        );
    }

    #[test]
    fn hashed_passwords() {
        // `openssl passwd -6 -salt NaClNaClNaCl s3cret`
        let hash = "$6$NaClNaClNaCl$I05c89UwgLFWWKzQn4KIrII96V90RNi35pp9lVG10F2zhdbn2pJnZjeaG98nzQsLxxIU49ctzpPIfHygmaiHD0";
        let good = Credentials::Password {
            user: "u".into(),
            password: "s3cret".into(),
        };
        let bad = Credentials::Password {
            user: "u".into(),
            password: "nope".into(),
        };
        assert!(good.matches(hash));
        assert!(!bad.matches(hash));
    }

    #[test]
    fn sha_crypt_variants_and_malformed_strings() {
        let good = Credentials::Password {
            user: "u".into(),
            password: "s3cret".into(),
        };
        // `openssl passwd -5 -salt pepper s3cret`
        assert!(good.matches("$5$pepper$HEqIcXsQ/VGqsnpY.FzO0H2YCzkgwtok90ffVQH3RpB"));
        // glibc crypt("s3cret", "$6$rounds=6000$NaClNaClNaCl")
        let rounds = "$6$rounds=6000$NaClNaClNaCl$W/MaiXaiFix0U2C69MkKdGGUAFxewIvGNqXjZE0GVs.5y3WQCeBYr9OzIcvCxLo5IcoHWOhoBHlpcGF6MBi3Z/";
        assert!(good.matches(rounds));
        assert!(!good.matches(&rounds.replace("6000", "6001")));
        for malformed in [
            "$6$",
            "$6$salt",
            "$6$salt$hash",
            "$6$rounds=x$salt$hash",
            "$6$rounds=10$salt$hash",
            "$6$salt$hash$trailing",
            "$5$pepper$HEqIcXsQ/VGqsnpY.FzO0H2YCzkgwtok90ffVQH3RpB$",
        ] {
            assert!(!good.matches(malformed), "{malformed}");
        }
    }

    #[test]
    fn malformed_and_cancelled() {
        assert_eq!(
            SaslExchange::start(SaslMechanism::Plain, Some("!!!"), "x").unwrap_err(),
            SaslError::BadBase64
        );
        assert_eq!(
            SaslExchange::start(SaslMechanism::Plain, Some(&b64(b"no-nuls")), "x").unwrap_err(),
            SaslError::Malformed("PLAIN")
        );
        let (mut ex, _) = SaslExchange::start(SaslMechanism::Login, None, "x").unwrap();
        assert_eq!(ex.respond("*").unwrap_err(), SaslError::Cancelled);
    }

    #[test]
    fn debug_hides_the_password() {
        let creds = Credentials::Password {
            user: "u".into(),
            password: "topsecret".into(),
        };
        assert!(!format!("{creds:?}").contains("topsecret"));
    }
}
