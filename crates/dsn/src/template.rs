//! Haraka's `outbound.bounce_message` template: header lines, a blank line,
//! body lines, with `{name}` placeholders. Kept compatible so an existing
//! Haraka config directory produces the same human text.

/// Haraka replaces `{word}` with its value and unknown or empty ones with
/// `?` (`values[word] || '?'` in `hmail.js`); we do the same.
const UNKNOWN: &str = "?";

/// Used when no template is configured and the notice reports at least one
/// permanent failure. Starts with the blank line that ends the (empty)
/// template header section.
pub const BUILTIN_FAILED: &str = "\n\
This is the mail delivery system at {me}.

Your message could not be delivered to one or more recipients.
This is a permanent error: the message will not be retried.
The reason for each recipient is given below, in the words of the
receiving server where one answered.

Subject: {subject}

{extended_reason}

The headers of your message are attached.
";

/// Used when no template is configured and every recipient is only delayed.
pub const BUILTIN_DELAYED: &str = "\n\
This is the mail delivery system at {me}.

Your message has not yet been delivered to one or more recipients.
Delivery will be retried (until the time given in the attached report);
there is no need to send it again.
The reason for each recipient is given below, in the words of the
receiving server where one answered.

Subject: {subject}

{extended_reason}

The headers of your message are attached.
";

/// Used for `relayed`/`delivered` notices (`NOTIFY=SUCCESS`); no Haraka
/// template exists for these.
pub const BUILTIN_SUCCESS: &str = "\n\
This is the mail delivery system at {me}.

Your message was successfully delivered to the destination(s) listed
below. If the message was relayed to a system that does not offer
delivery notifications, this is the last notice you will get.

Subject: {subject}

{extended_reason}

The headers of your message are attached.
";

/// The values a template may refer to, by Haraka's names.
pub struct Variables {
    values: Vec<(&'static str, String)>,
}

impl Variables {
    pub fn new(values: Vec<(&'static str, String)>) -> Self {
        Variables { values }
    }

    fn get(&self, name: &str) -> &str {
        self.values
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
            .unwrap_or(UNKNOWN)
    }

    /// Replaces every `{word}` (word = ASCII letters, digits, `_`, as
    /// JavaScript's `\w`); braces around anything else stay literal.
    pub fn substitute(&self, line: &str) -> String {
        let mut out = String::with_capacity(line.len());
        let mut rest = line;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let word_len = after
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            if word_len > 0 && after[word_len..].starts_with('}') {
                out.push_str(self.get(&after[..word_len]));
                rest = &after[word_len + 1..];
            } else {
                out.push('{');
                rest = after;
            }
        }
        out.push_str(rest);
        out
    }
}

/// A template after substitution.
pub struct Rendered {
    /// Header fields the template set, in order, unfolded; values are not yet
    /// sanitised (the header writer does that).
    pub headers: Vec<(String, String)>,
    /// Body lines without line ends; values with line breaks of their own are
    /// already split into lines.
    pub body: Vec<String>,
}

/// Splits the template at its first blank line and fills in the variables.
/// Header lines that are not `Name: value` are dropped rather than passed on.
pub fn render(template: &str, variables: &Variables) -> Rendered {
    let mut lines = template
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut header_line_valid = false;
    for line in lines.by_ref() {
        if line.trim().is_empty() {
            break;
        }
        let line = variables.substitute(line);
        if line.starts_with([' ', '\t']) {
            if let (true, Some((_, value))) = (header_line_valid, headers.last_mut()) {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        header_line_valid = match line.split_once(':') {
            Some((name, value)) if is_field_name(name) => {
                headers.push((name.to_string(), value.trim().to_string()));
                true
            }
            _ => false,
        };
    }
    let mut body: Vec<String> = lines
        .flat_map(|line| {
            variables
                .substitute(line)
                .split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    while body.last().is_some_and(|l| l.trim().is_empty()) {
        body.pop();
    }
    Rendered { headers, body }
}

/// RFC 5322 field names are printable ASCII without `:`; the length cap keeps
/// folded fields within line limits.
fn is_field_name(name: &str) -> bool {
    (1..=76).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variables() -> Variables {
        Variables::new(vec![
            ("me", "mx.example".into()),
            ("subject", String::new()),
            ("extended_reason", "a@x: no\nb@y: gone".into()),
        ])
    }

    #[test]
    fn substitutes_known_unknown_empty_and_literal_braces() {
        let cases = [
            ("at {me}.", "at mx.example."),
            ("{nope} {subject}", "? ?"),
            ("{} {me {x-y} {{me}}", "{} {me {x-y} {mx.example}"),
            ("{me}{me}", "mx.examplemx.example"),
            ("tail {", "tail {"),
            ("\u{e9}{me}\u{e9}", "\u{e9}mx.example\u{e9}"),
        ];
        for (line, expected) in cases {
            assert_eq!(variables().substitute(line), expected, "{line}");
        }
    }

    #[test]
    fn splits_headers_from_body_and_expands_multi_line_values() {
        let template = "Received: (Haraka {pid} invoked for bounce)\r\n\
                        Subject: failure\r\n  notice\r\n\
                        not a header\r\n  orphan continuation\r\n\
                        Bad Name: x\r\n\
                        \r\n\
                        Hi from {me}.\r\n\
                        {extended_reason}\r\n\r\n";
        let rendered = render(template, &variables());
        assert_eq!(
            rendered.headers,
            vec![
                (
                    "Received".to_string(),
                    "(Haraka ? invoked for bounce)".to_string()
                ),
                ("Subject".to_string(), "failure notice".to_string()),
            ]
        );
        assert_eq!(
            rendered.body,
            vec!["Hi from mx.example.", "a@x: no", "b@y: gone"]
        );
    }

    #[test]
    fn template_without_blank_line_has_no_body() {
        let rendered = render("Subject: x", &variables());
        assert_eq!(rendered.headers.len(), 1);
        assert!(rendered.body.is_empty());
    }
}
