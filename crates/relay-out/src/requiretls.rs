//! REQUIRETLS (RFC 8689): what relay-out promises a sender who asks for it,
//! and the `TLS-Required: No` header that asks the opposite.
//!
//! - Intake: REQUIRETLS is offered on every listener after STARTTLS (never
//!   before: the option only means something inside TLS); `MAIL FROM:<…>
//!   REQUIRETLS` in clear text gets `530 5.7.10`. The request is kept in the
//!   queue envelope (`requiretls`), as is a `TLS-Required: No` header found
//!   in a message without REQUIRETLS (`tls_required_no`; RFC 8689 §4.1: with
//!   REQUIRETLS the header is ignored).
//! - Delivery of a REQUIRETLS message (RFC 8689 §4.2.1): only under a TLS
//!   policy that authenticates the host
//!   ([`crate::config::TlsPolicy::authenticates_host`]: `verify` today, DANE
//!   and MTA-STS as they come), or through a route whose hops require
//!   verified TLS; else it is returned at once with [`NO_AUTHENTICATED_TLS`]
//!   (`5.7.10`), since no retry changes a policy. A host that does not offer
//!   REQUIRETLS after STARTTLS is left (QUIT) for the next one; when none
//!   did, the message is returned with [`NOT_OFFERED`] (`5.7.30`). The next
//!   hop gets `REQUIRETLS` on its MAIL FROM. TLS failures under the policy
//!   defer, as for any message under that policy.
//! - A notice about a REQUIRETLS message (RFC 8689 §5) carries REQUIRETLS
//!   itself and returns the headers only, whatever `RET=` said. Sent with
//!   the null sender, it uses REQUIRETLS where the next hop offers it and is
//!   not held back where it does not (§5: the null reverse-path must not
//!   cause the notice to be discarded).
//! - `TLS-Required: No` (RFC 8689 §4.2.2): the sender asks that TLS
//!   policies be ignored; the message is delivered as under `may` (STARTTLS
//!   when offered, any certificate) whatever tls_policy.ini says, and the
//!   header stays in the message for the next hops.

use std::io::Read;

use smtp_core::message::Message;

use crate::submission::missing_headers::{MAX_HEADER_SECTION, field_value, header_end};

/// RFC 8689 §4.2.1's status when no authenticated TLS path exists.
pub const NO_AUTHENTICATED_TLS: &str = "5.7.10";
/// RFC 8689 §4.2.1's status when no host offers REQUIRETLS.
pub const NOT_OFFERED: &str = "5.7.30";

/// The returned message's text when the destination's TLS policy cannot
/// authenticate its hosts.
pub fn unauthenticated_text(domain: &str, policy: &str) -> String {
    format!(
        "The sender required TLS (REQUIRETLS), but the TLS policy for {domain} \
         (policy={policy}) does not authenticate its MX hosts (verify, dane or mta-sts needed)"
    )
}

/// The returned message's text when no host offered REQUIRETLS.
pub fn not_offered_text(hosts: &str) -> String {
    format!("The sender required TLS (REQUIRETLS), but none of the {hosts} offers REQUIRETLS")
}

/// Whether the message's header section has `TLS-Required: No` (any case,
/// folded or not). Reads at most the first [`MAX_HEADER_SECTION`] octets.
pub fn says_tls_not_required(message: &Message) -> std::io::Result<bool> {
    let head = match message {
        Message::Memory(bytes) => {
            let end = bytes.len().min(MAX_HEADER_SECTION as usize);
            return Ok(header_says_no(&bytes[..end]));
        }
        Message::Spooled { .. } => {
            let mut head = Vec::new();
            message
                .reader()?
                .take(MAX_HEADER_SECTION)
                .read_to_end(&mut head)?;
            head
        }
    };
    Ok(header_says_no(&head))
}

fn header_says_no(start: &[u8]) -> bool {
    let section = &start[..header_end(start).unwrap_or(start.len())];
    let mut value: Option<Vec<u8>> = None;
    let mut found = false;
    for line in section.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            // A folded continuation of the field before.
            if let Some(value) = &mut value {
                value.extend_from_slice(line);
            }
            continue;
        }
        if let Some(done) = value.take() {
            found |= done.trim_ascii().eq_ignore_ascii_case(b"no");
        }
        if let Some(start) = field_value(line, "TLS-Required") {
            value = Some(start.to_vec());
        }
    }
    if let Some(done) = value {
        found |= done.trim_ascii().eq_ignore_ascii_case(b"no");
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn says(text: &str) -> bool {
        says_tls_not_required(&Message::Memory(text.as_bytes().to_vec())).unwrap()
    }

    #[test]
    fn tls_required_no_is_found_in_the_header_section_only() {
        assert!(says("Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n"));
        assert!(says("tls-required:no\r\n\r\n"));
        assert!(says("TLS-Required:\r\n  NO \r\nSubject: y\r\n\r\n"));
        assert!(!says("TLS-Required: Yes\r\n\r\n"));
        assert!(!says("Subject: TLS-Required: No\r\n\r\n"));
        assert!(!says("Subject: x\r\n\r\nTLS-Required: No\r\n"));
        assert!(!says("X-TLS-Required: No\r\n\r\n"));
    }
}
