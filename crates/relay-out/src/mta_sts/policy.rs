//! The MTA-STS policy text (RFC 8461 §3.2), parsed strictly: a policy that
//! does not parse is no policy (and is reported as `sts-policy-invalid`).

use std::time::Duration;

use thiserror::Error;

/// RFC 8461 §3.2: "maximum value of 31557600" (one year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// What a policy asks of senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to matching MX hosts over verified TLS.
    Enforce,
    /// Deliver as without a policy; report what would have failed.
    Testing,
    /// The domain withdrew its policy.
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// One parsed policy; it exists so the courier never looks at policy text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// Lower-case, without trailing dots; `*.example.com` matches exactly one
    /// more left-most label.
    pub mx: Vec<String>,
    pub max_age: Duration,
}

/// Why a policy text is not a policy.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("line {0} is not `key: value`")]
    BadLine(usize),
    #[error("no `version: STSv1`")]
    Version,
    #[error("mode {0:?} is not enforce, testing or none")]
    Mode(String),
    #[error("no mode")]
    NoMode,
    #[error("max_age {0:?} is not a number of seconds up to 31557600")]
    MaxAge(String),
    #[error("no max_age")]
    NoMaxAge,
    #[error("mx {0:?} is not a host name or `*.` pattern")]
    Mx(String),
    #[error("mode {0} needs at least one mx")]
    NoMx(&'static str),
}

impl Policy {
    /// Parses the body of `/.well-known/mta-sts.txt`. Lines end in LF or
    /// CRLF; unknown keys are ignored (§3.2); of a repeated key other than
    /// `mx`, the first counts.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let mut version = None;
        let mut mode = None;
        let mut max_age = None;
        let mut mx = Vec::new();
        for (index, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                continue;
            }
            let (key, value) = line
                .split_once(':')
                .ok_or(PolicyError::BadLine(index + 1))?;
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(PolicyError::BadLine(index + 1));
            }
            match key {
                "version" => {
                    version.get_or_insert(value);
                }
                "mode" => {
                    mode.get_or_insert(value);
                }
                "max_age" => {
                    max_age.get_or_insert(value);
                }
                "mx" => mx.push(parse_mx(value)?),
                _ => {}
            }
        }
        if version != Some("STSv1") {
            return Err(PolicyError::Version);
        }
        let mode = match mode.ok_or(PolicyError::NoMode)? {
            "enforce" => Mode::Enforce,
            "testing" => Mode::Testing,
            "none" => Mode::None,
            other => return Err(PolicyError::Mode(other.to_owned())),
        };
        let max_age = max_age.ok_or(PolicyError::NoMaxAge)?;
        let seconds = (max_age.len() <= 10 && max_age.bytes().all(|b| b.is_ascii_digit()))
            .then(|| max_age.parse::<u64>().ok())
            .flatten()
            .filter(|s| *s <= MAX_AGE_LIMIT)
            .ok_or_else(|| PolicyError::MaxAge(max_age.to_owned()))?;
        if mode != Mode::None && mx.is_empty() {
            return Err(PolicyError::NoMx(mode.as_str()));
        }
        Ok(Policy {
            mode,
            mx,
            max_age: Duration::from_secs(seconds),
        })
    }

    /// Whether the MX host `host` is one the policy names (§4.1).
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(parent) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
                None => *pattern == host,
            })
    }
}

/// One `mx:` value: a host name, or `*.` and a host name.
fn parse_mx(value: &str) -> Result<String, PolicyError> {
    let bad = || PolicyError::Mx(value.to_owned());
    let pattern = value.trim_end_matches('.').to_ascii_lowercase();
    let name = pattern.strip_prefix("*.").unwrap_or(&pattern);
    let labels_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if labels_ok { Ok(pattern) } else { Err(bad()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n";

    #[test]
    fn parses_the_rfc_example() {
        let policy = Policy::parse(GOOD).unwrap();
        assert_eq!(policy.mode, Mode::Enforce);
        assert_eq!(policy.mx, ["mail.example.com", "*.example.net"]);
        assert_eq!(policy.max_age, Duration::from_secs(604_800));
        // LF only, unknown keys and odd spacing are fine.
        let lf = "version:STSv1\nmode:   testing\nmx: A.Example.COM.\nextension: x\nmax_age: 0\n";
        let policy = Policy::parse(lf).unwrap();
        assert_eq!(policy.mode, Mode::Testing);
        assert_eq!(policy.mx, ["a.example.com"]);
    }

    #[test]
    fn wildcards_match_exactly_one_left_most_label() {
        let policy = Policy::parse(GOOD).unwrap();
        assert!(policy.matches("mail.example.com"));
        assert!(policy.matches("MAIL.example.com."));
        assert!(policy.matches("mx1.example.net"));
        assert!(!policy.matches("example.net"));
        assert!(!policy.matches("a.mx1.example.net"));
        assert!(!policy.matches("other.example.com"));
        assert!(!policy.matches("xexample.net"));
    }

    #[test]
    fn rejects_what_the_rfc_does_not_allow() {
        let cases = [
            ("mode: enforce\nmx: a.b\nmax_age: 1\n", PolicyError::Version),
            (
                "version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n",
                PolicyError::Version,
            ),
            (
                "version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1\n",
                PolicyError::Mode("strict".into()),
            ),
            ("version: STSv1\nmx: a.b\nmax_age: 1\n", PolicyError::NoMode),
            (
                "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 31557601\n",
                PolicyError::MaxAge("31557601".into()),
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n",
                PolicyError::MaxAge("-1".into()),
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a.b\n",
                PolicyError::NoMaxAge,
            ),
            (
                "version: STSv1\nmode: enforce\nmax_age: 5\n",
                PolicyError::NoMx("enforce"),
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a.*.b\nmax_age: 5\n",
                PolicyError::Mx("a.*.b".into()),
            ),
            (
                "version: STSv1\nmode: enforce\nmx: *a.b\nmax_age: 5\n",
                PolicyError::Mx("*a.b".into()),
            ),
            ("<html>\n", PolicyError::BadLine(1)),
        ];
        for (text, error) in cases {
            assert_eq!(Policy::parse(text), Err(error), "{text:?}");
        }
        // mode none needs no mx.
        let none = Policy::parse("version: STSv1\nmode: none\nmax_age: 86400\n").unwrap();
        assert_eq!(none.mode, Mode::None);
    }

    #[test]
    fn the_first_of_a_repeated_key_counts() {
        let text =
            "version: STSv1\nmode: testing\nmode: enforce\nmx: a.b\nmax_age: 5\nmax_age: x\n";
        let policy = Policy::parse(text).unwrap();
        assert_eq!(policy.mode, Mode::Testing);
        assert_eq!(policy.max_age, Duration::from_secs(5));
    }
}
