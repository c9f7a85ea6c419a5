//! MAIL and RCPT parameters (RFC 5321 `esmtp-param`).

use super::ParameterError;
use crate::dsn_params::{Envid, Notify, Orcpt, Ret};

/// The longest parameter text echoed back in an error.
const MAX_ECHOED_PARAMETER_CHARS: usize = 64;

/// Parameters of `MAIL FROM`, with the ones the relays act on pulled out.
///
/// It exists so the session checks SIZE, BODY and SMTPUTF8 against what it
/// advertised without re-parsing text, the relays carry DSN's `RET`/`ENVID`
/// as checked values, and anything else is kept for refusing with 555.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=n` (RFC 1870).
    pub size: Option<u64>,
    /// `BODY=7BIT|8BITMIME` (RFC 6152).
    pub body: Option<Body>,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `AUTH=<mailbox xtext>` (RFC 4954), as sent.
    pub auth: Option<String>,
    /// `RET=FULL|HDRS` (RFC 3461).
    pub ret: Option<Ret>,
    /// `ENVID=xtext` (RFC 3461).
    pub envid: Option<Envid>,
    /// `REQUIRETLS` (RFC 8689): every hop onwards must use authenticated
    /// TLS to a host that offers REQUIRETLS, else the message is returned.
    pub requiretls: bool,
    /// Everything else: keyword uppercased, value as sent.
    pub other: Vec<(String, Option<String>)>,
}

/// The message body type declared with `BODY=`.
///
/// It exists because 8BITMIME is the only body extension we advertise; the
/// rest (BINARYMIME) are refused at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// Parameters of `RCPT TO`.
///
/// It exists so DSN's `NOTIFY`/`ORCPT` reach the session checked and typed,
/// and any other parameter validated for syntax and duplicates, for 555.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// `NOTIFY=` (RFC 3461).
    pub notify: Option<Notify>,
    /// `ORCPT=addr-type;xtext` (RFC 3461).
    pub orcpt: Option<Orcpt>,
    /// Keyword uppercased, value as sent.
    pub other: Vec<(String, Option<String>)>,
}

/// One `keyword[=value]`, syntax-checked.
struct RawParameter<'a> {
    keyword: String,
    value: Option<&'a str>,
}

/// Splits the text after the path into validated parameters, refusing
/// duplicates. Runs of spaces are tolerated.
fn split_parameters(text: &str) -> Result<Vec<RawParameter<'_>>, ParameterError> {
    if !text.is_ascii() {
        return Err(ParameterError::NonAscii);
    }
    let mut parameters: Vec<RawParameter<'_>> = Vec::new();
    for parameter in text.split(' ').filter(|word| !word.is_empty()) {
        let (keyword, value) = match parameter.split_once('=') {
            Some((keyword, value)) => (keyword, Some(value)),
            None => (parameter, None),
        };
        let malformed = || ParameterError::Malformed {
            parameter: parameter.chars().take(MAX_ECHOED_PARAMETER_CHARS).collect(),
        };
        if !is_esmtp_keyword(keyword) {
            return Err(malformed());
        }
        let keyword = keyword.to_ascii_uppercase();
        match value {
            Some("") => return Err(ParameterError::EmptyValue { keyword }),
            Some(value) if !value.bytes().all(is_esmtp_value_byte) => return Err(malformed()),
            _ => {}
        }
        if parameters.iter().any(|seen| seen.keyword == keyword) {
            return Err(ParameterError::Duplicate { keyword });
        }
        parameters.push(RawParameter { keyword, value });
    }
    Ok(parameters)
}

/// `esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")`
fn is_esmtp_keyword(keyword: &str) -> bool {
    let mut bytes = keyword.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `esmtp-value = 1*(%d33-60 / %d62-126)`: printable ASCII except `=`.
fn is_esmtp_value_byte(byte: u8) -> bool {
    matches!(byte, 33..=60 | 62..=126)
}

pub(super) fn parse_mail_params(text: &str) -> Result<MailParams, ParameterError> {
    let mut params = MailParams::default();
    for RawParameter { keyword, value } in split_parameters(text)? {
        match keyword.as_str() {
            "SIZE" => {
                let value = value.ok_or(ParameterError::MissingValue { keyword: "SIZE" })?;
                params.size = Some(parse_size(value)?);
            }
            "BODY" => {
                let value = value.ok_or(ParameterError::MissingValue { keyword: "BODY" })?;
                params.body = Some(parse_body(value)?);
            }
            "SMTPUTF8" => {
                if value.is_some() {
                    return Err(ParameterError::UnexpectedValue {
                        keyword: "SMTPUTF8",
                    });
                }
                params.smtputf8 = true;
            }
            "REQUIRETLS" => {
                if value.is_some() {
                    return Err(ParameterError::UnexpectedValue {
                        keyword: "REQUIRETLS",
                    });
                }
                params.requiretls = true;
            }
            "AUTH" => {
                let value = value.ok_or(ParameterError::MissingValue { keyword: "AUTH" })?;
                params.auth = Some(value.to_owned());
            }
            "RET" => {
                let value = value.ok_or(ParameterError::MissingValue { keyword: "RET" })?;
                params.ret = Some(Ret::parse(value)?);
            }
            "ENVID" => {
                let value = value.ok_or(ParameterError::MissingValue { keyword: "ENVID" })?;
                params.envid = Some(Envid::parse(value)?);
            }
            _ => params.other.push((keyword, value.map(str::to_owned))),
        }
    }
    Ok(params)
}

pub(super) fn parse_rcpt_params(text: &str) -> Result<RcptParams, ParameterError> {
    let mut params = RcptParams::default();
    for RawParameter { keyword, value } in split_parameters(text)? {
        match keyword.as_str() {
            "NOTIFY" => {
                let value = value.ok_or(ParameterError::MissingValue { keyword: "NOTIFY" })?;
                params.notify = Some(Notify::parse(value)?);
            }
            "ORCPT" => {
                let value = value.ok_or(ParameterError::MissingValue { keyword: "ORCPT" })?;
                params.orcpt = Some(Orcpt::parse(value)?);
            }
            _ => params.other.push((keyword, value.map(str::to_owned))),
        }
    }
    Ok(params)
}

/// Decimal digits only: `u64::from_str` alone would also take a leading `+`.
fn parse_size(value: &str) -> Result<u64, ParameterError> {
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParameterError::InvalidSize);
    }
    value.parse().map_err(|_| ParameterError::InvalidSize)
}

fn parse_body(value: &str) -> Result<Body, ParameterError> {
    if value.eq_ignore_ascii_case("7BIT") {
        Ok(Body::SevenBit)
    } else if value.eq_ignore_ascii_case("8BITMIME") {
        Ok(Body::EightBitMime)
    } else {
        Err(ParameterError::UnsupportedBody)
    }
}
