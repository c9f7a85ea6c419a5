//! The `_mta-sts.<domain>` TXT record (RFC 8461 §3.1): whether a domain has
//! a policy, and its id (a new id means: fetch the policy again).

/// The policy id of the TXT records at `_mta-sts.<domain>`, or `None` when
/// there is no usable record. §3.1: records not starting with `v=STSv1;`
/// are ignored; other than exactly one such record, or one that does not
/// parse, means no policy is announced.
pub fn policy_id(records: &[String]) -> Option<String> {
    let mut sts = records
        .iter()
        .filter(|r| r.starts_with("v=STSv1;") || r.as_str() == "v=STSv1");
    let record = sts.next()?;
    if sts.next().is_some() {
        return None;
    }
    parse(record)
}

/// `v=STSv1; id=<1-32 alphanumerics>[; ext=value]*` with optional spaces
/// around the fields.
fn parse(record: &str) -> Option<String> {
    let mut fields = record.split(';').map(str::trim);
    if fields.next()? != "v=STSv1" {
        return None;
    }
    let mut id = None;
    for field in fields {
        if field.is_empty() {
            continue;
        }
        let (key, value) = field.split_once('=')?;
        if key.is_empty() || value.is_empty() {
            return None;
        }
        if key == "id" && id.is_none() {
            let valid = value.len() <= 32 && value.bytes().all(|b| b.is_ascii_alphanumeric());
            if !valid {
                return None;
            }
            id = Some(value.to_owned());
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(records: &[&str]) -> Option<String> {
        policy_id(&records.iter().map(|r| r.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn reads_the_id_of_the_one_sts_record() {
        assert_eq!(
            id(&["v=STSv1; id=20160831085700Z;"]),
            Some("20160831085700Z".into())
        );
        assert_eq!(id(&["v=STSv1;id=abc"]), Some("abc".into()));
        assert_eq!(
            id(&["v=spf1 -all", "v=STSv1; id=1; ext=y"]),
            Some("1".into())
        );
    }

    #[test]
    fn anything_else_is_no_policy() {
        assert_eq!(id(&[]), None);
        assert_eq!(id(&["v=STSv1; id=1", "v=STSv1; id=2"]), None);
        assert_eq!(id(&["v=STSv1;"]), None);
        assert_eq!(id(&["v=STSv1; id=has-dash"]), None);
        assert_eq!(id(&["v=STSv1; id=123456789012345678901234567890123"]), None);
        assert_eq!(id(&["id=1; v=STSv1"]), None);
        assert_eq!(id(&["v=STSv1; broken"]), None);
    }
}
