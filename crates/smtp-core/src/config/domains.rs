//! Domain names from `host_list`, normalised once so lookups can compare
//! strings.
//!
//! Haraka lower-cases `host_list` and compares exactly; Postern additionally
//! drops a trailing dot and turns internationalised names into their ASCII
//! (A-label) form, so `Bücher.example.` and `xn--bcher-kva.example` are the
//! same entry. Recipient domains must be normalised the same way before
//! lookup: use [`normalize_domain`].

use super::dir::ListFile;
use super::error::ConfigError;

/// DNS limits (RFC 1035 §2.3.4).
const MAX_DOMAIN_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Lower-cased A-label form of `text` without a trailing dot; the error is
/// the expected form, for messages.
pub fn normalize_domain(text: &str) -> Result<String, String> {
    let form = || "a domain name such as example.com".to_owned();
    let without_dot = text.strip_suffix('.').unwrap_or(text);
    let ascii = idna::domain_to_ascii(without_dot).map_err(|_| form())?;
    let well_formed = !ascii.is_empty()
        && ascii.len() <= MAX_DOMAIN_LEN
        && ascii.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if well_formed { Ok(ascii) } else { Err(form()) }
}

/// Normalises every line of a domain list file, dropping duplicates and
/// failing on the first bad line.
pub fn domain_list(file: &ListFile) -> Result<Vec<String>, ConfigError> {
    let mut domains: Vec<String> = Vec::with_capacity(file.lines.len());
    for line in &file.lines {
        let domain = normalize_domain(&line.text).map_err(|form| ConfigError::BadEntry {
            path: file.path.clone(),
            line: line.number,
            entry: line.text.clone(),
            expected: format!("expected {form}"),
        })?;
        if !domains.contains(&domain) {
            domains.push(domain);
        }
    }
    Ok(domains)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        let cases = [
            ("example.com", Ok("example.com")),
            ("Example.COM.", Ok("example.com")),
            ("bücher.example", Ok("xn--bcher-kva.example")),
            ("xn--bcher-kva.example", Ok("xn--bcher-kva.example")),
            ("_dmarc.example", Ok("_dmarc.example")),
            ("", Err(())),
            (".", Err(())),
            ("a..b", Err(())),
            ("user@example.com", Err(())),
            ("exa mple.com", Err(())),
            ("*.example.com", Err(())),
        ];
        for (input, expected) in cases {
            let got = normalize_domain(input).map_err(|_| ());
            assert_eq!(got.as_deref().map_err(|_| ()), expected, "input {input:?}");
        }
        assert!(normalize_domain(&"a".repeat(64)).is_err());
    }
}
