//! What one TLS session came to, in RFC 8460's words: the policy it was
//! made under (§4.4 `policy`), and success or a failure with its
//! `result-type` (§4.3) and where it happened. The recording API of
//! [`super::TlsRpt::record`] takes these; [`classify`] turns today's client
//! errors into result types.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use smtp_core::client::{ClientError, ClientErrorKind, Step};

/// RFC 8460 §4.3 result types, one enum so a report can only say what the
/// RFC defines. MTA-STS (§4.3.2) and DANE (§4.3.3) failures are here for
/// their modules to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResultType {
    // §4.3.1 negotiation failures
    StarttlsNotSupported,
    CertificateHostMismatch,
    CertificateExpired,
    CertificateNotTrusted,
    ValidationFailure,
    // §4.3.2 MTA-STS
    StsPolicyFetchError,
    StsPolicyInvalid,
    StsWebpkiInvalid,
    // §4.3.3 DANE
    TlsaInvalid,
    DnssecInvalid,
    DaneRequired,
}

impl ResultType {
    /// The RFC's spelling, for `tlsrpt show` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultType::StarttlsNotSupported => "starttls-not-supported",
            ResultType::CertificateHostMismatch => "certificate-host-mismatch",
            ResultType::CertificateExpired => "certificate-expired",
            ResultType::CertificateNotTrusted => "certificate-not-trusted",
            ResultType::ValidationFailure => "validation-failure",
            ResultType::StsPolicyFetchError => "sts-policy-fetch-error",
            ResultType::StsPolicyInvalid => "sts-policy-invalid",
            ResultType::StsWebpkiInvalid => "sts-webpki-invalid",
            ResultType::TlsaInvalid => "tlsa-invalid",
            ResultType::DnssecInvalid => "dnssec-invalid",
            ResultType::DaneRequired => "dane-required",
        }
    }
}

/// RFC 8460 §4.4 `policy-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PolicyType {
    #[serde(rename = "sts")]
    Sts,
    #[serde(rename = "tlsa")]
    Tlsa,
    /// No MTA-STS or DANE policy: tls_policy.ini's and the opportunistic
    /// default's sessions.
    #[serde(rename = "no-policy-found")]
    NoPolicyFound,
}

/// The policy a session was made under, as a report names it (§4.4):
/// sessions are aggregated per distinct value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PolicyKey {
    #[serde(rename = "policy-type")]
    pub policy_type: PolicyType,
    /// The policy's text, one line (MTA-STS) or one TLSA record (DANE) per
    /// entry; empty for `no-policy-found`.
    #[serde(
        rename = "policy-string",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub policy_string: Vec<String>,
    /// The recipient domain the policy is for (A-label, lower case).
    #[serde(rename = "policy-domain")]
    pub policy_domain: String,
    /// MTA-STS: the policy's `mx` patterns; DANE: the MX host; else empty.
    #[serde(rename = "mx-host", default, skip_serializing_if = "Vec::is_empty")]
    pub mx_host: Vec<String>,
}

impl PolicyKey {
    /// A destination without an MTA-STS or DANE policy.
    pub fn no_policy(domain: &str) -> Self {
        PolicyKey {
            policy_type: PolicyType::NoPolicyFound,
            policy_string: Vec::new(),
            policy_domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            mx_host: Vec::new(),
        }
    }
}

/// Where one failed session happened (§4.3 `failure-details`, without the
/// count, which aggregation adds). Failures are counted per distinct value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Failure {
    #[serde(rename = "result-type")]
    pub result_type: ResultType,
    #[serde(rename = "sending-mta-ip", skip_serializing_if = "Option::is_none")]
    pub sending_mta_ip: Option<IpAddr>,
    #[serde(
        rename = "receiving-mx-hostname",
        skip_serializing_if = "Option::is_none"
    )]
    pub receiving_mx_hostname: Option<String>,
    #[serde(rename = "receiving-ip", skip_serializing_if = "Option::is_none")]
    pub receiving_ip: Option<IpAddr>,
    /// §4.3 `additional-information`: a URI, when the reporter has one.
    #[serde(
        rename = "additional-information",
        skip_serializing_if = "Option::is_none"
    )]
    pub additional_information: Option<String>,
    /// §4.3 `failure-reason-code`: free text for the receiver's operator.
    #[serde(
        rename = "failure-reason-code",
        skip_serializing_if = "Option::is_none"
    )]
    pub failure_reason_code: Option<String>,
}

/// One session's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionResult {
    Success,
    Failure(Failure),
}

/// `sending-mta-ip` for a session with `peer`: the configured source
/// address, else the one the kernel routes to `peer` from (a UDP socket's
/// `connect` sends nothing; the client error does not carry the TCP
/// socket's own address).
pub fn sending_ip(configured: Option<IpAddr>, peer: IpAddr) -> Option<IpAddr> {
    configured.or_else(|| {
        let any: IpAddr = if peer.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        let socket = std::net::UdpSocket::bind((any, 0)).ok()?;
        socket.connect((peer, 25)).ok()?;
        Some(socket.local_addr().ok()?.ip())
    })
}

/// The result type of a session that failed with `error` under a policy
/// that required TLS (`required`: encrypt, verify, and later MTA-STS and
/// DANE) or used it opportunistically. `None`: not a TLS failure (refused
/// connection, a 4xx greeting) or, opportunistically, nothing a report
/// counts (a host without STARTTLS gets clear text, not a failed session).
pub fn classify(error: &ClientError, required: bool) -> Option<ResultType> {
    match error.kind() {
        ClientErrorKind::TlsNotOffered => Some(ResultType::StarttlsNotSupported),
        // STARTTLS refused (4xx/5xx) under a required policy: the host
        // does not really support it.
        ClientErrorKind::Rejected(_) if error.step() == Step::StartTls && required => {
            Some(ResultType::StarttlsNotSupported)
        }
        ClientErrorKind::TlsHandshake(io) => Some(
            io.get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .map_or(ResultType::ValidationFailure, of_rustls),
        ),
        ClientErrorKind::PrematureTlsData => Some(ResultType::ValidationFailure),
        _ if error.step() == Step::TlsHandshake => Some(ResultType::ValidationFailure),
        _ => None,
    }
}

/// rustls's verdict on the certificate, in RFC 8460's terms; anything
/// else about the handshake is a `validation-failure`.
fn of_rustls(error: &rustls::Error) -> ResultType {
    use rustls::CertificateError as C;
    match error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                ResultType::CertificateHostMismatch
            }
            C::Expired | C::ExpiredContext { .. } => ResultType::CertificateExpired,
            C::UnknownIssuer | C::BadSignature | C::Revoked => ResultType::CertificateNotTrusted,
            _ => ResultType::ValidationFailure,
        },
        _ => ResultType::ValidationFailure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_types_serialize_as_the_rfc_spells_them() {
        for result in [
            ResultType::StarttlsNotSupported,
            ResultType::CertificateHostMismatch,
            ResultType::CertificateExpired,
            ResultType::CertificateNotTrusted,
            ResultType::ValidationFailure,
            ResultType::StsPolicyFetchError,
            ResultType::StsPolicyInvalid,
            ResultType::StsWebpkiInvalid,
            ResultType::TlsaInvalid,
            ResultType::DnssecInvalid,
            ResultType::DaneRequired,
        ] {
            let json = serde_json::to_string(&result).unwrap();
            assert_eq!(json, format!("\"{}\"", result.as_str()));
        }
        let policy = serde_json::to_string(&PolicyKey::no_policy("Dest.Test.")).unwrap();
        assert_eq!(
            policy,
            r#"{"policy-type":"no-policy-found","policy-domain":"dest.test"}"#
        );
    }

    #[test]
    fn the_sending_ip_is_the_configured_one_else_the_routed_one() {
        let configured: IpAddr = "192.0.2.7".parse().unwrap();
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(sending_ip(Some(configured), loopback), Some(configured));
        assert_eq!(sending_ip(None, loopback), Some(loopback));
    }

    #[test]
    fn rustls_certificate_errors_map_to_result_types() {
        use rustls::CertificateError as C;
        let of = |c| of_rustls(&rustls::Error::InvalidCertificate(c));
        assert_eq!(of(C::NotValidForName), ResultType::CertificateHostMismatch);
        assert_eq!(of(C::Expired), ResultType::CertificateExpired);
        assert_eq!(of(C::UnknownIssuer), ResultType::CertificateNotTrusted);
        assert_eq!(of(C::BadEncoding), ResultType::ValidationFailure);
        assert_eq!(
            of_rustls(&rustls::Error::HandshakeNotComplete),
            ResultType::ValidationFailure
        );
    }
}
