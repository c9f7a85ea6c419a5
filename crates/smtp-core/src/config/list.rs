//! Haraka's one-item-per-line files (`host_list`, `relay_acl_allow`, `me`).
//!
//! haraka-config's flat reader: split on CRLF/CR/LF, drop blank lines and
//! lines whose first non-space character is `#` or `;`, trim the rest. Pure,
//! so callers validate entries with the line numbers kept here.

use super::ini::{is_js_space, js_trim};

/// One meaningful line of a list file and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListLine {
    /// 1-based line number in the file, for error messages.
    pub number: usize,
    /// The trimmed text.
    pub text: String,
}

/// Returns the meaningful lines of a list file, in order.
pub fn parse_list(text: &str) -> Vec<ListLine> {
    let mut lines = Vec::new();
    let mut rest = text;
    let mut number = 0usize;
    loop {
        number += 1;
        let (line, next) = match rest.find(['\r', '\n']) {
            Some(at) => {
                let after = if rest[at..].starts_with("\r\n") {
                    at + 2
                } else {
                    at + 1
                };
                (&rest[..at], Some(&rest[after..]))
            }
            None => (rest, None),
        };
        let trimmed = js_trim(line);
        let is_comment = line.trim_start_matches(is_js_space).starts_with(['#', ';']);
        if !trimmed.is_empty() && !is_comment {
            lines.push(ListLine {
                number,
                text: trimmed.to_owned(),
            });
        }
        match next {
            Some(next) => rest = next,
            None => return lines,
        }
    }
}

/// The machine's host name, Haraka's fallback for an empty or missing `me`
/// (`os.hostname()`).
pub fn system_host_name() -> String {
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let name = name.trim();
        if !name.is_empty() {
            return name.to_owned();
        }
    }
    libc_host_name().unwrap_or_else(|| "localhost".to_owned())
}

/// `gethostname(2)`, for systems without `/proc`.
fn libc_host_name() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the pointer and length describe `buffer`, which outlives the
    // call; gethostname writes at most `len` bytes.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if status != 0 {
        return None;
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    let name = String::from_utf8_lossy(&buffer[..end]).trim().to_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(input: &str) -> Vec<(usize, &'static str)> {
        parse_list(input)
            .into_iter()
            .map(|line| (line.number, &*Box::leak(line.text.into_boxed_str())))
            .collect()
    }

    #[test]
    fn skips_blank_and_comment_lines_and_trims() {
        let cases: &[(&str, &[(usize, &str)])] = &[
            ("", &[]),
            ("\n\n", &[]),
            ("example.com", &[(1, "example.com")]),
            ("example.com\n", &[(1, "example.com")]),
            (
                "# comment\n  ; other\n a.example \r\nb.example\rc.example",
                &[(3, "a.example"), (4, "b.example"), (5, "c.example")],
            ),
            ("\u{FEFF}example.com", &[(1, "example.com")]),
            ("x # not a comment", &[(1, "x # not a comment")]),
        ];
        for (input, expected) in cases {
            assert_eq!(texts(input), expected.to_vec(), "input {input:?}");
        }
    }

    #[test]
    fn host_name_is_never_empty() {
        assert!(!system_host_name().is_empty());
    }
}
