//! The report itself (RFC 8460 §4): the JSON for one policy domain and
//! period, gzip'ed, and the mail that carries it (§5.3).

use chrono::{DateTime, SecondsFormat, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;
use std::io::Write as _;

use super::result::{Failure, PolicyKey};
use super::store::{Entry, day_start};

/// Who the reports are from (tlsrpt.ini with `me`'s defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reporter {
    pub organization_name: String,
    pub contact_info: String,
    /// `TLS-Report-Submitter`, and the first part of the file name.
    pub submitter: String,
    /// The report mail's `From:` and envelope sender.
    pub from: String,
}

/// RFC 8460 §4.4's top level, field for field (names as the RFC spells
/// them); built from an [`Entry`] only to be serialized.
#[derive(Serialize)]
struct Json<'a> {
    #[serde(rename = "organization-name")]
    organization_name: &'a str,
    #[serde(rename = "date-range")]
    date_range: DateRange,
    #[serde(rename = "contact-info")]
    contact_info: &'a str,
    #[serde(rename = "report-id")]
    report_id: &'a str,
    policies: Vec<PolicyJson<'a>>,
}

/// `date-range`: the period the report covers (RFC 3339, UTC).
#[derive(Serialize)]
struct DateRange {
    #[serde(rename = "start-datetime")]
    start: String,
    #[serde(rename = "end-datetime")]
    end: String,
}

/// One `policies[]` element: the policy, its counts, its failures.
#[derive(Serialize)]
struct PolicyJson<'a> {
    policy: &'a PolicyKey,
    summary: Summary,
    #[serde(rename = "failure-details", skip_serializing_if = "Vec::is_empty")]
    failure_details: Vec<DetailJson<'a>>,
}

/// `summary`: sessions under the policy.
#[derive(Serialize)]
struct Summary {
    #[serde(rename = "total-successful-session-count")]
    successful: u64,
    #[serde(rename = "total-failure-session-count")]
    failed: u64,
}

/// One `failure-details[]` element: where and how, and how often.
#[derive(Serialize)]
struct DetailJson<'a> {
    #[serde(flatten)]
    failure: &'a Failure,
    #[serde(rename = "failed-session-count")]
    count: u64,
}

/// One report, ready to send.
#[derive(Debug, Clone)]
pub struct Report {
    pub domain: String,
    pub report_id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub json: Vec<u8>,
}

impl Report {
    /// The report on `entry`, ending at the end of its day or at `now`,
    /// whichever is first.
    pub fn build(reporter: &Reporter, entry: &Entry, now: DateTime<Utc>) -> Report {
        let day_end = day_start(entry.day) + chrono::Duration::seconds(86_399);
        let end = day_end.min(now).max(entry.since);
        let report_id = format!(
            "{}-{}.{}@{}",
            entry.since.format("%Y%m%dT%H%M%SZ"),
            end.format("%H%M%SZ"),
            entry.domain,
            reporter.submitter
        );
        let policies = entry
            .policies
            .iter()
            .map(|counts| PolicyJson {
                policy: &counts.policy,
                summary: Summary {
                    successful: counts.successful,
                    failed: counts.failed,
                },
                failure_details: counts
                    .details
                    .iter()
                    .map(|(failure, count)| DetailJson {
                        failure,
                        count: *count,
                    })
                    .collect(),
            })
            .collect();
        let json = serde_json::to_vec(&Json {
            organization_name: &reporter.organization_name,
            date_range: DateRange {
                start: entry.since.to_rfc3339_opts(SecondsFormat::Secs, true),
                end: end.to_rfc3339_opts(SecondsFormat::Secs, true),
            },
            contact_info: &reporter.contact_info,
            report_id: &report_id,
            policies,
        })
        .expect("the report serializes");
        Report {
            domain: entry.domain.clone(),
            report_id,
            start: entry.since,
            end,
            json,
        }
    }

    /// The JSON, gzip'ed (§5.3: `application/tlsrpt+gzip`).
    pub fn gzip(&self) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(&self.json).expect("writing to memory");
        encoder.finish().expect("writing to memory")
    }

    /// §5.3's file name: `submitter!policy-domain!begin!end.json.gz`,
    /// times in seconds since the epoch.
    pub fn file_name(&self, submitter: &str) -> String {
        format!(
            "{submitter}!{}!{}!{}.json.gz",
            self.domain,
            self.start.timestamp(),
            self.end.timestamp()
        )
    }

    /// The mail to `to` carrying the report (§5.3): `multipart/report;
    /// report-type="tlsrpt"` with a text part and the gzip'ed JSON.
    pub fn mail(&self, reporter: &Reporter, to: &str, now: DateTime<Utc>) -> Vec<u8> {
        use base64::Engine as _;
        let boundary = format!("tlsrpt-{}", now.timestamp_micros());
        let encoded = base64::engine::general_purpose::STANDARD.encode(self.gzip());
        let mut body = String::new();
        for chunk in encoded.as_bytes().chunks(76) {
            body.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            body.push_str("\r\n");
        }
        let submitter = &reporter.submitter;
        let message_id = format!(
            "<tlsrpt.{}.{}@{}>",
            now.timestamp_micros(),
            std::process::id(),
            submitter
        );
        format!(
            "From: {from}\r\n\
             To: {to}\r\n\
             Date: {date}\r\n\
             Message-ID: {message_id}\r\n\
             Subject: Report Domain: {domain}\r\n Submitter: {submitter}\r\n Report-ID: <{id}>\r\n\
             TLS-Report-Domain: {domain}\r\n\
             TLS-Report-Submitter: {submitter}\r\n\
             Auto-Submitted: auto-generated\r\n\
             TLS-Required: No\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n boundary=\"{boundary}\"\r\n\
             \r\n\
             This is a multipart message in MIME format.\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Type: text/plain; charset=\"us-ascii\"\r\n\
             Content-Transfer-Encoding: 7bit\r\n\
             \r\n\
             This is an aggregate TLS report (RFC 8460) from {submitter}\r\n\
             about mail to {domain}, {start} to {end}.\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Type: application/tlsrpt+gzip\r\n\
             Content-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment;\r\n filename=\"{file}\"\r\n\
             \r\n\
             {body}\r\n\
             --{boundary}--\r\n",
            from = reporter.from,
            date = now.to_rfc2822(),
            domain = self.domain,
            id = self.report_id,
            start = self.start.to_rfc3339_opts(SecondsFormat::Secs, true),
            end = self.end.to_rfc3339_opts(SecondsFormat::Secs, true),
            file = self.file_name(submitter),
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsrpt::dns_record::ReportUri;
    use crate::tlsrpt::result::{ResultType, SessionResult};
    use crate::tlsrpt::store::State;
    use flate2::read::GzDecoder;
    use std::io::Read as _;

    fn reporter() -> Reporter {
        Reporter {
            organization_name: "Example Org".into(),
            contact_info: "postmaster@out.test".into(),
            submitter: "out.test".into(),
            from: "tlsrpt-noreply@out.test".into(),
        }
    }

    fn entry() -> Entry {
        let mut state = State::default();
        let t: DateTime<Utc> = "2026-12-06T10:00:00Z".parse().unwrap();
        let rua = [ReportUri::Mailto("r@x.test".into())];
        let policy = PolicyKey::no_policy("dest.test");
        state.add(t, &rua, &policy, &SessionResult::Success);
        state.add(
            t,
            &rua,
            &policy,
            &SessionResult::Failure(Failure {
                result_type: ResultType::CertificateNotTrusted,
                sending_mta_ip: Some("192.0.2.9".parse().unwrap()),
                receiving_mx_hostname: Some("mx1.dest.test".into()),
                receiving_ip: Some("192.0.2.1".parse().unwrap()),
                additional_information: None,
                failure_reason_code: None,
            }),
        );
        state.entries.remove(0)
    }

    #[test]
    fn the_json_has_the_rfc_fields() {
        let now: DateTime<Utc> = "2026-12-07T00:05:00Z".parse().unwrap();
        let report = Report::build(&reporter(), &entry(), now);
        let json: serde_json::Value = serde_json::from_slice(&report.json).unwrap();
        let expected = serde_json::json!({
            "organization-name": "Example Org",
            "date-range": {
                "start-datetime": "2026-12-06T00:00:00Z",
                "end-datetime": "2026-12-06T23:59:59Z"
            },
            "contact-info": "postmaster@out.test",
            "report-id": report.report_id,
            "policies": [{
                "policy": {"policy-type": "no-policy-found", "policy-domain": "dest.test"},
                "summary": {
                    "total-successful-session-count": 1,
                    "total-failure-session-count": 1
                },
                "failure-details": [{
                    "result-type": "certificate-not-trusted",
                    "sending-mta-ip": "192.0.2.9",
                    "receiving-mx-hostname": "mx1.dest.test",
                    "receiving-ip": "192.0.2.1",
                    "failed-session-count": 1
                }]
            }]
        });
        assert_eq!(json, expected);
        assert_eq!(
            report.file_name("out.test"),
            "out.test!dest.test!1796515200!1796601599.json.gz"
        );
        let mut unzipped = Vec::new();
        GzDecoder::new(report.gzip().as_slice())
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, report.json);
    }

    #[test]
    fn the_mail_has_the_rfc_headers() {
        let now: DateTime<Utc> = "2026-12-06T12:00:00Z".parse().unwrap();
        let report = Report::build(&reporter(), &entry(), now);
        assert_eq!(report.end, now);
        let mail = String::from_utf8(report.mail(&reporter(), "r@x.test", now)).unwrap();
        for needle in [
            "Subject: Report Domain: dest.test\r\n Submitter: out.test\r\n Report-ID: <",
            "TLS-Report-Domain: dest.test\r\n",
            "TLS-Report-Submitter: out.test\r\n",
            "Content-Type: multipart/report; report-type=\"tlsrpt\";",
            "Content-Type: application/tlsrpt+gzip\r\n",
            "filename=\"out.test!dest.test!1796515200!1796558400.json.gz\"",
        ] {
            assert!(mail.contains(needle), "{needle} in\n{mail}");
        }
    }
}
