//! Taking relay-out's log lines apart field by field.
//!
//! The daemon logs through tracing's text formatter: the message, then
//! `key=value` pairs, where text fields are quoted Rust-style
//! (`reply="450 4.2.0 Mailbox busy"`) and displayed ones are bare
//! (`result=deferred`). Tests compare fields, not substrings, so a field's
//! position or a neighbour's change cannot make them pass or fail.

use std::collections::BTreeMap;

/// One log line's fields after `message`, or `None` when the line does not
/// carry that message.
pub fn fields_after(line: &str, message: &str) -> Option<BTreeMap<String, String>> {
    let start = line.find(message)? + message.len();
    Some(parse_fields(&line[start..]))
}

/// `key=value key="quoted \"text\""` into a map (later keys win).
pub fn parse_fields(text: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut rest = text.trim_start();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().to_string();
        rest = &rest[eq + 1..];
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((at, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            out.push(escaped);
                        }
                    }
                    '"' => {
                        end = at + 1;
                        break;
                    }
                    other => out.push(other),
                }
            }
            value = out;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            value = rest[..end].to_string();
            rest = &rest[end..];
        }
        fields.insert(key, value);
        rest = rest.trim_start();
    }
    fields
}

/// The `delivery attempt` lines of message `queue_id`, in log order.
pub fn delivery_attempts(log: &str, queue_id: &str) -> Vec<BTreeMap<String, String>> {
    log.lines()
        .filter_map(|line| fields_after(line, "delivery attempt"))
        .filter(|fields| fields.get("queue_id").map(String::as_str) == Some(queue_id))
        .collect()
}

/// The last `delivery attempt` line of `queue_id` whose `result` is one of
/// `results`.
pub fn last_attempt(
    log: &str,
    queue_id: &str,
    results: &[&str],
) -> Option<BTreeMap<String, String>> {
    delivery_attempts(log, queue_id)
        .into_iter()
        .rev()
        .find(|fields| {
            fields
                .get("result")
                .is_some_and(|result| results.contains(&result.as_str()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_and_bare_values() {
        let line = r#"2026-01-01T00:00:00Z  INFO delivery attempt queue_id=Q1 domain=d.test port=25 reply="450 4.2.0 \"busy\" now" route="outbound_routes.ini [*]" delay_s=0.3"#;
        let fields = fields_after(line, "delivery attempt").expect("fields");
        assert_eq!(fields["queue_id"], "Q1");
        assert_eq!(fields["reply"], "450 4.2.0 \"busy\" now");
        assert_eq!(fields["route"], "outbound_routes.ini [*]");
        assert_eq!(fields["delay_s"], "0.3");
        assert!(fields_after(line, "queued").is_none());
    }
}
