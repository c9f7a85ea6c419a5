//! Why a command line was refused, and which reply that calls for.

use thiserror::Error;

use crate::address::AddressError;

/// The four kinds of negative reply a refused command line maps to.
///
/// It exists so the mapping from error to reply code lives in one place
/// (here) instead of in every caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorReply {
    /// `500 5.5.1`: unknown or empty command.
    UnknownCommand,
    /// `501 5.5.4`: bad syntax or arguments.
    SyntaxError,
    /// `555 5.5.4`: MAIL/RCPT parameters not recognised or not valid.
    InvalidParameters,
    /// `553 5.1.7`: the MAIL FROM address is malformed.
    BadSenderAddress,
    /// `553 5.1.3`: the RCPT TO address is malformed.
    BadRecipientAddress,
}

impl ErrorReply {
    /// The basic reply code.
    pub fn code(self) -> u16 {
        match self {
            ErrorReply::UnknownCommand => 500,
            ErrorReply::SyntaxError => 501,
            ErrorReply::InvalidParameters => 555,
            ErrorReply::BadSenderAddress | ErrorReply::BadRecipientAddress => 553,
        }
    }

    /// The RFC 3463 enhanced status code.
    pub fn enhanced_code(self) -> &'static str {
        match self {
            ErrorReply::UnknownCommand => "5.5.1",
            ErrorReply::SyntaxError | ErrorReply::InvalidParameters => "5.5.4",
            ErrorReply::BadSenderAddress => "5.1.7",
            ErrorReply::BadRecipientAddress => "5.1.3",
        }
    }
}

/// Why a command line could not be turned into a [`super::Command`].
///
/// The `Display` text is written to follow the reply code and never contains
/// control or non-ASCII characters, whatever the input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    /// An empty (or all-space) line.
    #[error("empty command")]
    EmptyLine,
    /// A verb we do not implement; the verb is kept, sanitized and
    /// truncated, for logging only.
    #[error("command unrecognized")]
    Unrecognized {
        /// Printable ASCII only, at most 16 characters.
        verb: String,
    },
    /// NUL, CR, LF, TAB or any other C0 control or DEL anywhere in the line.
    #[error("control characters are not allowed in commands")]
    ControlCharacter {
        /// The first offending byte.
        byte: u8,
    },
    /// 8-bit bytes outside the address of MAIL or RCPT.
    #[error("8-bit characters are not allowed in {verb}")]
    NonAscii {
        /// The command.
        verb: &'static str,
    },
    /// 8-bit bytes in MAIL or RCPT that are not valid UTF-8.
    #[error("invalid UTF-8 in {verb}")]
    InvalidUtf8 {
        /// The command.
        verb: &'static str,
    },
    /// `QUIT x`, `DATA x`, ...
    #[error("{verb} takes no arguments")]
    NoArgumentsAllowed {
        /// The command.
        verb: &'static str,
    },
    /// `EHLO`, `VRFY`, `AUTH` without their argument.
    #[error("{verb} requires an argument")]
    MissingArgument {
        /// The command.
        verb: &'static str,
    },
    /// The argument does not have the required shape.
    #[error("Syntax: {usage}")]
    Syntax {
        /// The correct form, e.g. `MAIL FROM:<address> [parameters]`.
        usage: &'static str,
    },
    /// The MAIL FROM path is malformed.
    #[error("invalid sender address: {0}")]
    InvalidSender(AddressError),
    /// The RCPT TO path is malformed.
    #[error("invalid recipient address: {0}")]
    InvalidRecipient(AddressError),
    /// A MAIL or RCPT parameter is malformed, duplicated or has a bad value.
    #[error(transparent)]
    InvalidParameter(#[from] ParameterError),
}

impl CommandError {
    /// Which reply this error calls for.
    pub fn reply(&self) -> ErrorReply {
        match self {
            CommandError::EmptyLine | CommandError::Unrecognized { .. } => {
                ErrorReply::UnknownCommand
            }
            CommandError::ControlCharacter { .. }
            | CommandError::NonAscii { .. }
            | CommandError::InvalidUtf8 { .. }
            | CommandError::NoArgumentsAllowed { .. }
            | CommandError::MissingArgument { .. }
            | CommandError::Syntax { .. } => ErrorReply::SyntaxError,
            CommandError::InvalidSender(_) => ErrorReply::BadSenderAddress,
            CommandError::InvalidRecipient(_) => ErrorReply::BadRecipientAddress,
            CommandError::InvalidParameter(_) => ErrorReply::InvalidParameters,
        }
    }
}

/// Why a MAIL or RCPT parameter (RFC 5321 `esmtp-param`) was refused.
///
/// Separate from [`CommandError`] because all of these share the `555`
/// reply, and the parameter parser can be tested on its own.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParameterError {
    /// Not `keyword[=value]` with a keyword of letters, digits and `-`.
    #[error("malformed parameter {parameter}")]
    Malformed {
        /// The parameter as sent, truncated to 64 characters.
        parameter: String,
    },
    /// `KEYWORD=` with nothing after `=`.
    #[error("empty value for parameter {keyword}")]
    EmptyValue {
        /// Uppercased.
        keyword: String,
    },
    /// The same keyword twice (case-insensitive).
    #[error("duplicate parameter {keyword}")]
    Duplicate {
        /// Uppercased.
        keyword: String,
    },
    /// `SIZE`, `AUTH` or a DSN parameter without `=value`.
    #[error("parameter {keyword} requires a value")]
    MissingValue {
        /// Uppercased.
        keyword: &'static str,
    },
    /// `SMTPUTF8=x`.
    #[error("parameter {keyword} takes no value")]
    UnexpectedValue {
        /// Uppercased.
        keyword: &'static str,
    },
    /// `SIZE` that is not decimal digits fitting in 64 bits.
    #[error("invalid SIZE value")]
    InvalidSize,
    /// `BODY` other than `7BIT` or `8BITMIME` (e.g. `BINARYMIME`, which
    /// needs CHUNKING).
    #[error("unsupported BODY value (7BIT or 8BITMIME only)")]
    UnsupportedBody,
    /// 8-bit bytes in the parameters (only the address may be UTF-8).
    #[error("8-bit characters are not allowed in parameters")]
    NonAscii,
    /// A DSN parameter (`RET`, `ENVID`, `NOTIFY`, `ORCPT`) with a bad value.
    #[error(transparent)]
    Dsn(#[from] crate::dsn_params::DsnParamError),
}
