//! Haraka's `constrain_sender` (auth/flat_file, on by default): a user who
//! logs in as `name@example.com` may only send from addresses in
//! example.com's organizational domain, so a stolen password cannot send
//! as anyone else's domain.
//!
//! The organizational domain is the registrable one under the public
//! suffix list (`mail.example.co.uk` → `example.co.uk`), from the `psl`
//! crate, as Haraka takes it from haraka-tld.

use smtp_protocol::reply::{EnhancedCode, Reply};

/// The refusal for a MAIL FROM in `sender_domain` by `auth_user`, or `None`
/// when the rule lets it through: a user name without `@`, or a sender
/// without a domain (the null sender), is not constrained, as in Haraka.
pub fn refusal(auth_user: &str, sender_domain: Option<&str>) -> Option<Reply> {
    let (_, auth_domain) = auth_user.rsplit_once('@')?;
    let sender_domain = sender_domain?;
    let auth_org = organizational_domain(auth_domain);
    let sender_org = organizational_domain(sender_domain);
    (auth_org != sender_org).then(|| {
        Reply::new(
            550,
            Some(EnhancedCode::new(5, 7, 1)),
            format!("Envelope domain '{sender_org}' doesn't match AUTH domain '{auth_org}'"),
        )
    })
}

/// The registrable domain of `domain`, lower-cased; the name itself when
/// the list has none (a public suffix, or a bare label).
fn organizational_domain(domain: &str) -> String {
    let lowered = domain.trim_end_matches('.').to_ascii_lowercase();
    psl::domain_str(&lowered)
        .map(str::to_owned)
        .unwrap_or(lowered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_organizational_domain_passes_another_is_refused() {
        assert_eq!(refusal("alice@example.com", Some("example.com")), None);
        assert_eq!(
            refusal("alice@example.com", Some("Lists.Example.COM")),
            None
        );
        assert_eq!(
            refusal("alice@mail.example.co.uk", Some("example.co.uk")),
            None
        );
        let reply = refusal("alice@example.com", Some("other.org")).expect("refused");
        assert_eq!(
            reply.to_string(),
            "550 5.7.1 Envelope domain 'other.org' doesn't match AUTH domain 'example.com'"
        );
        assert!(refusal("alice@a.co.uk", Some("b.co.uk")).is_some());
    }

    #[test]
    fn users_without_a_domain_and_the_null_sender_are_not_constrained() {
        assert_eq!(refusal("alice", Some("anything.example")), None);
        assert_eq!(refusal("alice@example.com", None), None);
    }
}
