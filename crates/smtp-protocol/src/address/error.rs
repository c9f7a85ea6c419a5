//! The ways an address can be refused.

use thiserror::Error;

/// Why an address, path or domain was refused.
///
/// It exists so the session can answer `553` with a precise reason (the
/// `Display` text is written to be put in the reply) and log the variant.
/// Offending characters are shown with `escape_default`, so a hostile byte
/// never reaches a reply or a log line unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddressError {
    /// Nothing at all where an address was expected.
    #[error("empty address")]
    Empty,
    /// A mailbox needs `local@domain`.
    #[error("address has no '@' and domain")]
    MissingAt,
    /// A second unquoted `@`, e.g. `user@example.com@evil.org`.
    #[error("more than one '@' in address (a local part containing '@' must be quoted)")]
    MultipleAt,
    /// `@example.com` or `""@example.com`.
    #[error("empty local part")]
    EmptyLocalPart,
    /// RFC 5321 §4.5.3.1.1: at most 64 octets.
    #[error("local part too long ({length} octets, at most {max})")]
    LocalPartTooLong {
        /// Octets received, in wire form.
        length: usize,
        /// The limit that applied.
        max: usize,
    },
    /// `.a@x`, `a.@x` or `a..b@x`.
    #[error("misplaced '.' in local part")]
    MisplacedDot,
    /// A character that is not allowed in an unquoted local part.
    #[error("invalid character '{}' in local part", .found.escape_default())]
    InvalidLocalPartCharacter {
        /// The character refused.
        found: char,
    },
    /// A quoted local part without its closing `"`.
    #[error("unterminated quoted string in local part")]
    UnterminatedQuotedString,
    /// A character that is not allowed inside a quoted string.
    #[error("invalid character '{}' in quoted local part", .found.escape_default())]
    InvalidQuotedCharacter {
        /// The character refused.
        found: char,
    },
    /// Something other than `@` right after the closing quote.
    #[error("unexpected text after quoted local part")]
    TextAfterQuotedString,
    /// `user@` or `user@.`.
    #[error("empty domain")]
    EmptyDomain,
    /// RFC 5321 §4.5.3.1.2: at most 255 octets (counted in A-label form).
    #[error("domain too long ({length} octets, at most 255)")]
    DomainTooLong {
        /// Octets of the A-label form.
        length: usize,
    },
    /// `a..b` or `.a`.
    #[error("empty label in domain")]
    EmptyDomainLabel,
    /// DNS labels have at most 63 octets.
    #[error("domain label too long ({length} octets, at most 63)")]
    DomainLabelTooLong {
        /// Octets of the A-label.
        length: usize,
    },
    /// A character outside letters, digits, `-`, `_` and `.`.
    #[error("invalid character '{}' in domain", .found.escape_default())]
    InvalidDomainCharacter {
        /// The character refused.
        found: char,
    },
    /// `-bad-.com`: a label may not start or end with `-`.
    #[error("domain label starts or ends with '-'")]
    DomainLabelHyphen,
    /// `user@1.2.3.4`: an IP address must be written as a literal `[1.2.3.4]`,
    /// and no top-level domain is numeric.
    #[error("all-numeric top-level domain (write IP addresses as [1.2.3.4])")]
    NumericTopLevelDomain,
    /// IDNA (UTS #46) refused a non-ASCII or `xn--` label.
    #[error("invalid internationalized domain name")]
    InvalidIdna,
    /// Something in `[...]` that is neither IPv4 nor `IPv6:`.
    #[error("invalid address literal")]
    InvalidAddressLiteral,
    /// A path must be written `<...>`.
    #[error("path must start with '<'")]
    MissingOpeningBracket,
    /// `<a@b` without `>`.
    #[error("path has no closing '>'")]
    UnterminatedPath,
    /// Anything after the closing `>`.
    #[error("unexpected text after '>'")]
    TextAfterPath,
    /// RFC 5321 §4.5.3.1.3: at most 256 octets including the brackets.
    #[error("path too long ({length} octets, at most 256)")]
    PathTooLong {
        /// Octets of the path including `<` and `>`.
        length: usize,
    },
    /// `<@a.example,@b.example:user@c.example>` with a malformed route.
    #[error("invalid source route")]
    InvalidSourceRoute,
    /// `RCPT TO:<>`: only a reverse-path may be null.
    #[error("null path not allowed for a recipient")]
    NullForwardPath,
}
