//! Which recipients of a message are due, grouped into one SMTP transaction
//! per destination (the order in which hosts are then tried is in `tls`).
//!
//! Sans-IO and unit-tested; the async code in `message` and `attempt` only
//! follows it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use smtp_core::client::DsnRecipient;
use smtp_protocol::address::{ForwardPath, Host, parse_forward_path};

use super::mx::Destination;
use super::outcome::{RecipientOutcome, Verdict};
use spool::Envelope;

/// Recipients of one message delivered in one SMTP transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub destination: Destination,
    /// Indexes into the envelope's recipient list.
    pub recipients: Vec<usize>,
    /// Their forward paths with their DSN parameters, in the same order.
    pub paths: Vec<DsnRecipient>,
}

/// The due work of one message: groups to attempt, and recipients that
/// fail before any attempt because their address cannot be delivered to.
#[derive(Debug, Default)]
pub struct DueWork {
    pub groups: Vec<Group>,
    pub unroutable: Vec<(usize, RecipientOutcome)>,
}

/// Pending recipients whose next attempt is due at `now` (or have none),
/// grouped by destination in first-appearance order; with `always_split`,
/// one group per recipient (Haraka's `always_split`).
pub fn due_work(envelope: &Envelope, now: SystemTime, always_split: bool) -> DueWork {
    let mut work = DueWork::default();
    let mut by_destination: BTreeMap<Destination, usize> = BTreeMap::new();
    for (index, recipient) in envelope.recipients.iter().enumerate() {
        if recipient.status != spool::RecipientStatus::Pending {
            continue;
        }
        if recipient.next_attempt.is_some_and(|due| due > now) {
            continue;
        }
        let (path, destination) = match destination_of(&recipient.address) {
            Ok((path, destination)) => (
                DsnRecipient {
                    path,
                    notify: dsn::request::notify(recipient),
                    orcpt: dsn::request::orcpt(recipient),
                },
                destination,
            ),
            Err(text) => {
                let outcome = RecipientOutcome::local(Verdict::Failed, "5.1.3", text, None);
                work.unroutable.push((index, outcome));
                continue;
            }
        };
        let existing = (!always_split)
            .then(|| by_destination.get(&destination).copied())
            .flatten();
        match existing {
            Some(group) => {
                work.groups[group].recipients.push(index);
                work.groups[group].paths.push(path);
            }
            None => {
                by_destination.insert(destination.clone(), work.groups.len());
                work.groups.push(Group {
                    destination,
                    recipients: vec![index],
                    paths: vec![path],
                });
            }
        }
    }
    work
}

/// Parses a queued recipient (wire form, no brackets) into the path to send
/// and where it goes. The address was validated at intake, so an error
/// means a hand-edited or damaged envelope.
fn destination_of(address: &str) -> Result<(ForwardPath, Destination), String> {
    let path = parse_forward_path(&format!("<{address}>"))
        .map_err(|error| format!("Invalid recipient address {address:?}: {error}"))?;
    let destination = match path.mailbox().map(|mailbox| mailbox.host()) {
        Some(Host::Domain { domain, .. }) => Destination::Domain(domain.as_str().to_string()),
        Some(Host::Literal(ip)) => Destination::Literal(*ip),
        None => {
            return Err(format!("Recipient {address:?} has no domain to deliver to"));
        }
    };
    Ok((path, destination))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spool::{QueueId, RecipientState, RecipientStatus};
    use std::time::Duration;

    fn envelope(recipients: &[&str]) -> Envelope {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Envelope {
            id: QueueId::generate_at(now),
            arrival: now,
            sender: "a@origin.test".into(),
            recipients: recipients
                .iter()
                .map(|r| RecipientState::new(*r, now))
                .collect(),
            client: None,
            smtputf8: false,
            eight_bit_mime: false,
            ret: None,
            envid: None,
            delay_warned: None,
            requiretls: false,
            tls_required_no: false,
            extras: spool::NoExtras {},
        }
    }

    fn destinations(work: &DueWork) -> Vec<(String, Vec<usize>)> {
        work.groups
            .iter()
            .map(|g| (g.destination.to_string(), g.recipients.clone()))
            .collect()
    }

    #[test]
    fn recipients_group_by_domain_in_order() {
        let envelope = envelope(&[
            "a@one.test",
            "b@Two.Test",
            "c@ONE.test",
            "d@[192.0.2.1]",
            "e@two.test.",
        ]);
        let work = due_work(&envelope, envelope.arrival, false);
        assert_eq!(
            destinations(&work),
            [
                ("one.test".to_string(), vec![0, 2]),
                ("two.test".to_string(), vec![1, 4]),
                ("[192.0.2.1]".to_string(), vec![3]),
            ]
        );
        // The wire form is kept for sending.
        assert_eq!(work.groups[1].paths[0].path.to_string(), "<b@Two.Test>");
        assert!(work.unroutable.is_empty());
    }

    #[test]
    fn always_split_gives_one_group_per_recipient() {
        let envelope = envelope(&["a@one.test", "b@one.test"]);
        let work = due_work(&envelope, envelope.arrival, true);
        assert_eq!(
            destinations(&work),
            [
                ("one.test".to_string(), vec![0]),
                ("one.test".to_string(), vec![1]),
            ]
        );
    }

    #[test]
    fn only_due_pending_recipients_are_attempted() {
        let mut envelope = envelope(&["a@one.test", "b@one.test", "c@one.test", "d@one.test"]);
        let now = envelope.arrival + Duration::from_secs(100);
        envelope.recipients[0].status = RecipientStatus::Delivered;
        envelope.recipients[1].next_attempt = Some(now + Duration::from_secs(1));
        envelope.recipients[2].next_attempt = Some(now);
        envelope.recipients[3].next_attempt = None;
        let work = due_work(&envelope, now, false);
        assert_eq!(destinations(&work), [("one.test".to_string(), vec![2, 3])]);
    }

    #[test]
    fn damaged_addresses_fail_without_an_attempt() {
        let envelope = envelope(&["ok@one.test", "not an address", "Postmaster"]);
        let work = due_work(&envelope, envelope.arrival, false);
        assert_eq!(destinations(&work), [("one.test".to_string(), vec![0])]);
        let failed: Vec<usize> = work.unroutable.iter().map(|(i, _)| *i).collect();
        assert_eq!(failed, [1, 2]);
        assert!(
            work.unroutable
                .iter()
                .all(|(_, o)| o.verdict == Verdict::Failed)
        );
    }
}
