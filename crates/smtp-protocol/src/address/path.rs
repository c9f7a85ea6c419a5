//! Envelope paths: `<...>` in `MAIL FROM:` and `RCPT TO:` (RFC 5321 §4.1.2).

use std::fmt;

use super::{AddressError, Domain, LocalPartLimit, Mailbox};

/// RFC 5321 §4.5.3.1.3, counted including `<` and `>`.
pub const MAX_PATH_OCTETS: usize = 256;

/// The `MAIL FROM` path.
///
/// It exists because the null sender `<>` (bounces) is a legitimate value
/// that must never be confused with a mailbox, and must never be bounced to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReversePath {
    /// `<>`: a bounce or other notification.
    Null,
    /// A sender mailbox.
    Mailbox(Mailbox),
}

impl ReversePath {
    /// The sender mailbox, if not null.
    pub fn mailbox(&self) -> Option<&Mailbox> {
        match self {
            ReversePath::Null => None,
            ReversePath::Mailbox(mailbox) => Some(mailbox),
        }
    }
}

/// Renders the path with brackets, as it is sent on the wire: `<>` or
/// `<user@example.com>` (any source route dropped).
impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Mailbox(mailbox) => write!(f, "<{mailbox}>"),
        }
    }
}

/// The `RCPT TO` path.
///
/// It exists because `<postmaster>` without a domain (RFC 5321 §4.5.1) must be
/// accepted and is not a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ForwardPath {
    /// `<postmaster>` in any case; the text as sent, e.g. `Postmaster`.
    Postmaster(String),
    /// A recipient mailbox.
    Mailbox(Mailbox),
}

impl ForwardPath {
    /// The recipient mailbox, unless this is the bare `<postmaster>`.
    pub fn mailbox(&self) -> Option<&Mailbox> {
        match self {
            ForwardPath::Postmaster(_) => None,
            ForwardPath::Mailbox(mailbox) => Some(mailbox),
        }
    }
}

/// Renders the path with brackets, as it is sent on the wire.
impl fmt::Display for ForwardPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPath::Postmaster(as_sent) => write!(f, "<{as_sent}>"),
            ForwardPath::Mailbox(mailbox) => write!(f, "<{mailbox}>"),
        }
    }
}

/// Parses a complete `<...>` reverse-path.
///
/// Source routes are accepted and ignored (RFC 5321 §4.1.2, §C). The sender's
/// local part may exceed 64 octets (only the 256-octet path limit applies):
/// SRS and VERP senders of mailing lists and forwarders routinely do, and
/// refusing them would lose legitimate mail.
pub fn parse_reverse_path(path: &str) -> Result<ReversePath, AddressError> {
    let inner = path_inner(path)?;
    if inner.is_empty() {
        return Ok(ReversePath::Null);
    }
    let mailbox = strip_source_route(inner)?;
    Mailbox::parse_with_limit(mailbox, LocalPartLimit::PathOnly).map(ReversePath::Mailbox)
}

/// Parses a complete `<...>` forward-path: `<postmaster>` (any case, no
/// domain) or a mailbox, optionally after a source route that is ignored.
pub fn parse_forward_path(path: &str) -> Result<ForwardPath, AddressError> {
    let inner = path_inner(path)?;
    if inner.is_empty() {
        return Err(AddressError::NullForwardPath);
    }
    if inner.eq_ignore_ascii_case("postmaster") {
        return Ok(ForwardPath::Postmaster(inner.to_owned()));
    }
    let mailbox = strip_source_route(inner)?;
    Mailbox::parse_with_limit(mailbox, LocalPartLimit::Rfc5321).map(ForwardPath::Mailbox)
}

/// Byte length of the `<...>` token at the start of `text`, up to and
/// including the `>` that closes it, so a command parser knows where the
/// parameters begin. A `>` inside a quoted local part does not close it.
pub fn path_token_len(text: &str) -> Result<usize, AddressError> {
    if !text.starts_with('<') {
        return Err(AddressError::MissingOpeningBracket);
    }
    let mut in_quotes = false;
    let mut chars = text.char_indices().skip(1);
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => in_quotes = !in_quotes,
            '\\' if in_quotes => {
                chars.next();
            }
            '>' if !in_quotes => return Ok(index + 1),
            _ => {}
        }
    }
    Err(AddressError::UnterminatedPath)
}

/// Checks the brackets and length and returns what is between `<` and `>`.
fn path_inner(path: &str) -> Result<&str, AddressError> {
    if path.is_empty() {
        return Err(AddressError::Empty);
    }
    let token_len = path_token_len(path)?;
    if token_len != path.len() {
        return Err(AddressError::TextAfterPath);
    }
    if path.len() > MAX_PATH_OCTETS {
        return Err(AddressError::PathTooLong { length: path.len() });
    }
    Ok(&path[1..token_len - 1])
}

/// `@a.example,@b.example:user@c.example` → `user@c.example`, after checking
/// that the route is well formed (so garbage cannot hide in it).
fn strip_source_route(inner: &str) -> Result<&str, AddressError> {
    if !inner.starts_with('@') {
        return Ok(inner);
    }
    let (route, mailbox) = inner
        .split_once(':')
        .ok_or(AddressError::InvalidSourceRoute)?;
    for hop in route.split(',') {
        let domain = hop
            .strip_prefix('@')
            .ok_or(AddressError::InvalidSourceRoute)?;
        Domain::parse(domain).map_err(|_| AddressError::InvalidSourceRoute)?;
    }
    Ok(mailbox)
}
