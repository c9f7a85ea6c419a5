//! A small MIME reader written only for the tests, independent of the
//! builder, so a builder bug cannot hide itself by being read back the same
//! wrong way.

use chrono::DateTime;

/// Header fields in order, so duplicates can be detected.
pub type Fields = Vec<(String, String)>;

/// Header fields (unfolded, values trimmed) and the body after the blank line.
pub fn split_entity(entity: &[u8]) -> (Fields, &[u8]) {
    let end = find(entity, b"\r\n\r\n").map(|at| at + 2);
    let (head, body) = match end {
        Some(at) => (&entity[..at], &entity[at + 2..]),
        None => (entity, &b""[..]),
    };
    (parse_fields(head), body)
}

pub fn parse_fields(head: &[u8]) -> Fields {
    let text = String::from_utf8(head.to_vec()).expect("generated headers are UTF-8");
    let mut fields: Fields = Vec::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            fields.last_mut().expect("continuation after a field").1 += line;
        } else {
            let (name, value) = line.split_once(':').expect("field has a colon");
            fields.push((name.to_string(), value.to_string()));
        }
    }
    fields
        .into_iter()
        .map(|(n, v)| (n, v.trim().to_string()))
        .collect()
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn get<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    let mut matches = fields.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
    let first = matches.next().map(|(_, v)| v.as_str());
    assert!(matches.next().is_none(), "{name} appears more than once");
    first
}

pub fn must<'a>(fields: &'a Fields, name: &str) -> &'a str {
    get(fields, name).unwrap_or_else(|| panic!("missing {name} in {fields:?}"))
}

/// One body part of the report, as a reader sees it.
pub struct Part {
    pub fields: Fields,
    pub body: Vec<u8>,
}

/// A whole notice taken apart: top-level fields and the parts.
pub struct Notice {
    pub fields: Fields,
    pub boundary: String,
    pub parts: Vec<Part>,
}

impl Notice {
    pub fn parse(message: &[u8]) -> Notice {
        assert_wire_clean(message);
        let (fields, body) = split_entity(message);
        let content_type = must(&fields, "Content-Type");
        let boundary = content_type
            .split("boundary=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("boundary parameter")
            .to_string();
        let delimiter = format!("\r\n--{boundary}");
        let mut pieces = Vec::new();
        let mut rest = body;
        while let Some(at) = find(rest, delimiter.as_bytes()) {
            pieces.push(&rest[..at]);
            rest = &rest[at + delimiter.len()..];
        }
        assert_eq!(rest, b"--\r\n", "close delimiter ends the message");
        let parts = pieces[1..]
            .iter()
            .map(|piece| {
                let piece = piece.strip_prefix(b"\r\n").expect("CRLF after delimiter");
                let (fields, body) = split_entity(piece);
                Part {
                    fields,
                    body: body.to_vec(),
                }
            })
            .collect();
        Notice {
            fields,
            boundary,
            parts,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8(decoded(&self.parts[0])).unwrap()
    }

    /// Per-message fields, then one field list per recipient.
    pub fn report(&self) -> (Fields, Vec<Fields>) {
        let part = &self.parts[1];
        assert_eq!(
            must(&part.fields, "Content-Type"),
            "message/delivery-status"
        );
        let text = String::from_utf8(part.body.clone()).unwrap();
        assert!(text.is_ascii(), "delivery-status is 7-bit");
        let mut groups = text.split("\r\n\r\n").map(|g| parse_fields(g.as_bytes()));
        let per_message = groups.next().unwrap();
        (per_message, groups.collect())
    }
}

pub fn decoded(part: &Part) -> Vec<u8> {
    match get(&part.fields, "Content-Transfer-Encoding") {
        Some("quoted-printable") => qp_decode(&part.body),
        None | Some("7bit") => part.body.clone(),
        Some(other) => panic!("unexpected encoding {other}"),
    }
}

pub fn qp_decode(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'=' {
            if body[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            let hex = std::str::from_utf8(&body[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    out
}

/// CRLF only, no bare CR or LF, no line of 1000 octets or more.
pub fn assert_wire_clean(message: &[u8]) {
    assert!(message.ends_with(b"\r\n"));
    for (i, &b) in message.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(message.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            b'\n' => assert!(i > 0 && message[i - 1] == b'\r', "bare LF at {i}"),
            _ => {}
        }
    }
    for line in message.split(|&b| b == b'\n') {
        assert!(line.len() + 1 < 1000, "line of {} octets", line.len() + 1);
    }
}

pub fn timestamp(date: &str) -> i64 {
    DateTime::parse_from_rfc2822(date)
        .unwrap_or_else(|e| panic!("{date}: {e}"))
        .timestamp()
}
