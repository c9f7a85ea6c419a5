//! Haraka's INI dialect (haraka-config `lib/readers/ini.js`), parsed exactly.
//!
//! Generic INI readers get Haraka files wrong: they let a bare key swallow the
//! rest of the file, do not know `key[]=` arrays, and split `[example.com]`
//! into nested tables. This parser follows Haraka's line grammar instead and
//! keeps the file's section and key order, so diagnostics can point at lines.
//! It is pure (text in, document out) so it can be tested and fuzzed directly.

#[cfg(test)]
mod tests;

use std::fmt;

/// The section that holds keys written before the first `[section]` header.
pub const MAIN_SECTION: &str = "main";

/// How long an offending line may be when quoted back in an error, so a
/// binary blob pasted into a config cannot flood the log.
const QUOTED_LINE_LIMIT: usize = 80;

/// A parsed INI file: sections in the order they first appear, `main` first.
///
/// Kept separate from the `config` crate's value tree because that tree is an
/// unordered map and loses line numbers; both matter for `--check` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniDocument {
    sections: Vec<IniSection>,
}

/// One `[name]` section; repeated headers with the same name merge into one,
/// as in Haraka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniSection {
    /// The text between the brackets, untrimmed and case-sensitive (Haraka
    /// looks sections up verbatim).
    pub name: String,
    /// Entries in first-appearance order; a repeated key keeps its first
    /// position and takes the last value, like a JavaScript object.
    pub entries: Vec<IniEntry>,
}

/// One key of a section and where it was last set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniEntry {
    /// The key without any `[]` array marker.
    pub key: String,
    /// What the key was set to.
    pub value: IniValue,
    /// 1-based line number of the (first physical line of the) last line that
    /// set this key.
    pub line: usize,
}

/// The three shapes a Haraka INI value can take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IniValue {
    /// A key with no `=`: Haraka stores `undefined`. Sections such as
    /// `[no_tls_hosts]` use bare keys as list items.
    Bare,
    /// `key=value`, trimmed, quotes and inline `;` text kept.
    Text(String),
    /// Values collected from `key[]=value` lines, in order.
    List(Vec<String>),
}

/// Why a file is not valid Haraka INI, with the line to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniSyntaxError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong there.
    pub problem: IniSyntaxProblem,
}

/// The ways a line can fail Haraka's grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IniSyntaxProblem {
    /// Neither a comment, a `[section]`, a `key` nor a `key=value` line.
    /// Haraka logs and skips such lines; so does Postern, as a warning that
    /// names the file and line (and `--check` shows).
    MalformedLine(String),
    /// The file ends while a `\` continuation is still open. Haraka drops the
    /// pending text without a word; Postern drops it with a warning.
    DanglingContinuation,
}

impl fmt::Display for IniSyntaxProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MalformedLine(excerpt) => write!(
                f,
                "not a comment, [section], key or key=value line: {excerpt:?}"
            ),
            Self::DanglingContinuation => {
                f.write_str("the file ends after a line continued with '\\'")
            }
        }
    }
}

impl fmt::Display for IniSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

impl std::error::Error for IniSyntaxError {}

impl Default for IniDocument {
    fn default() -> Self {
        Self {
            sections: vec![IniSection {
                name: MAIN_SECTION.to_owned(),
                entries: Vec::new(),
            }],
        }
    }
}

impl IniDocument {
    /// Parses a whole file's text with Haraka's grammar; the first line
    /// outside it is an error.
    pub fn parse(text: &str) -> Result<Self, IniSyntaxError> {
        let (document, mut skipped) = Self::parse_lenient(text);
        match skipped.is_empty() {
            true => Ok(document),
            false => Err(skipped.swap_remove(0)),
        }
    }

    /// Parses as Haraka does: a line outside the grammar is skipped (Haraka
    /// logs it and goes on), and returned so the caller can say so with the
    /// file and line.
    pub fn parse_lenient(text: &str) -> (Self, Vec<IniSyntaxError>) {
        let mut document = Self::default();
        let mut skipped = Vec::new();
        let mut current = 0usize;
        // Text of earlier physical lines that ended in `\`, and where it began.
        let mut pending: Option<(usize, String)> = None;

        for (index, line) in split_lines(text).enumerate() {
            let number = index + 1;
            if is_comment(line) || is_blank(line) {
                continue;
            }
            if let Some(name) = section_header(line) {
                current = document.section_index_or_insert(name);
                continue;
            }
            if let Some(stripped) = strip_continuation(line) {
                pending
                    .get_or_insert_with(|| (number, String::new()))
                    .1
                    .push_str(stripped);
                continue;
            }
            let (start, logical) = match pending.take() {
                Some((start, mut text)) => {
                    text.push_str(line);
                    (start, text)
                }
                None => (number, line.to_owned()),
            };
            let Some((key, value)) = parse_param(&logical) else {
                skipped.push(IniSyntaxError {
                    line: start,
                    problem: IniSyntaxProblem::MalformedLine(quote_excerpt(&logical)),
                });
                continue;
            };
            document.sections[current].set(key, value, start);
        }

        if let Some((start, _)) = pending {
            skipped.push(IniSyntaxError {
                line: start,
                problem: IniSyntaxProblem::DanglingContinuation,
            });
        }
        (document, skipped)
    }

    /// Sections in file order; `main` is always first, even when empty.
    pub fn sections(&self) -> &[IniSection] {
        &self.sections
    }

    /// The section called `name`, if the file has one (or it is `main`).
    pub fn section(&self, name: &str) -> Option<&IniSection> {
        self.sections.iter().find(|section| section.name == name)
    }

    /// The value of `key` in section `section`.
    pub fn get(&self, section: &str, key: &str) -> Option<&IniValue> {
        self.section(section)?.get(key)
    }

    fn section_index_or_insert(&mut self, name: &str) -> usize {
        if let Some(index) = self.sections.iter().position(|s| s.name == name) {
            return index;
        }
        self.sections.push(IniSection {
            name: name.to_owned(),
            entries: Vec::new(),
        });
        self.sections.len() - 1
    }
}

impl IniSection {
    /// The entry for `key`, if set.
    pub fn entry(&self, key: &str) -> Option<&IniEntry> {
        self.entries.iter().find(|entry| entry.key == key)
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&IniValue> {
        self.entry(key).map(|entry| &entry.value)
    }

    /// Applies one `key`/`key[]` line with Haraka's merge rules.
    fn set(&mut self, raw_key: &str, value: Option<&str>, line: usize) {
        let (key, is_array) = match array_base(raw_key) {
            Some(base) => (base, true),
            None => (raw_key.to_owned(), false),
        };
        let new_value = match (is_array, value) {
            (false, None) => IniValue::Bare,
            (false, Some(text)) => IniValue::Text(text.to_owned()),
            // Haraka pushes `undefined` for a bare `key[]`; an empty item is
            // the closest text equivalent.
            (true, item) => IniValue::List(vec![item.unwrap_or_default().to_owned()]),
        };
        match self.entries.iter_mut().find(|entry| entry.key == key) {
            Some(entry) => {
                entry.line = line;
                match (&mut entry.value, new_value) {
                    (IniValue::List(items), IniValue::List(mut added)) if is_array => {
                        items.append(&mut added);
                    }
                    (slot, replacement) => *slot = replacement,
                }
            }
            None => self.entries.push(IniEntry {
                key,
                value: new_value,
                line,
            }),
        }
    }
}

/// Splits like JavaScript's `split(/\r\n|\r|\n/)`, which Haraka uses: a lone
/// CR is a line break too.
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\r', '\n']) {
            Some(at) => {
                let after = if current[at..].starts_with("\r\n") {
                    at + 2
                } else {
                    at + 1
                };
                rest = Some(&current[after..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// JavaScript's `\s` class. It differs from Rust's `char::is_whitespace`: it
/// includes the byte-order mark (so a BOM-led first line still parses, as in
/// Haraka) and excludes U+0085.
pub(crate) fn is_js_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202F}'
                | '\u{205F}'
                | '\u{3000}'
                | '\u{FEFF}'
    )
}

/// Trims with JavaScript's `String.prototype.trim` / `\s` semantics.
pub(crate) fn js_trim(text: &str) -> &str {
    text.trim_matches(is_js_space)
}

/// `^\s*[;#]`: only whole-line comments exist in Haraka's INI.
fn is_comment(line: &str) -> bool {
    line.trim_start_matches(is_js_space).starts_with([';', '#'])
}

fn is_blank(line: &str) -> bool {
    line.chars().all(is_js_space)
}

/// `^\s*\[([^\]]*)\]\s*$`: the name is everything between the brackets.
fn section_header(line: &str) -> Option<&str> {
    let inner = js_trim(line).strip_prefix('[')?.strip_suffix(']')?;
    (!inner.contains(']')).then_some(inner)
}

/// `\\[ \t]*$`: a backslash followed only by spaces or tabs continues the line;
/// returns the text before the backslash.
fn strip_continuation(line: &str) -> Option<&str> {
    line.trim_end_matches([' ', '\t']).strip_suffix('\\')
}

/// `^\s*([\w@:._+\-/[\]]+)\s*(?:=\s*(.*?)\s*)?$` with ASCII `\w`.
fn parse_param(line: &str) -> Option<(&str, Option<&str>)> {
    let body = line.trim_start_matches(is_js_space);
    let key_len = body.find(|c: char| !is_key_char(c)).unwrap_or(body.len());
    if key_len == 0 {
        return None;
    }
    let (key, rest) = body.split_at(key_len);
    let rest = rest.trim_start_matches(is_js_space);
    if rest.is_empty() {
        return Some((key, None));
    }
    let value = js_trim(rest.strip_prefix('=')?);
    // JavaScript's `.` does not match these, so Haraka rejects the line.
    if value.contains(['\u{2028}', '\u{2029}']) {
        return None;
    }
    Some((key, Some(value)))
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | ':' | '.' | '+' | '-' | '/' | '[' | ']')
}

/// `^(.+)\[\]$` then `replace('[]', '')`: JavaScript replaces the first `[]`
/// only, so `a[]b[]` becomes `ab[]`.
fn array_base(key: &str) -> Option<String> {
    if key.len() > 2 && key.ends_with("[]") {
        Some(key.replacen("[]", "", 1))
    } else {
        None
    }
}

/// A bounded, single-line rendering of an offending line for error messages.
fn quote_excerpt(line: &str) -> String {
    let mut excerpt: String = line.chars().take(QUOTED_LINE_LIMIT).collect();
    if line.chars().nth(QUOTED_LINE_LIMIT).is_some() {
        excerpt.push('…');
    }
    excerpt
}
