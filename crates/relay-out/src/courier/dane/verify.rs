//! What a DANE TLSA set accepts (RFC 7672 §3.1, RFC 7671): the matching of
//! one certificate against one record, and the rustls verifier that judges
//! an MX host's certificate chain by the host's TLSA set instead of by CAs.
//!
//! No crate does DANE over rustls, hence this file; the chain and name
//! checks of DANE-TA(2) are rustls's own (`verify_server_cert_signed_by_trust_anchor`
//! with the matching certificate as the only trust anchor).

use std::sync::Arc;

use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, RootCertStore};
use smtp_core::client::CertificateCheck;

/// One usable TLSA record: DANE-TA(2) or DANE-EE(3), selector 0 or 1,
/// matching type 0, 1 or 2 (every other combination is unusable and never
/// becomes one of these; RFC 7672 §3.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: Usage,
    pub selector: Selector,
    pub matching: Matching,
    pub data: Vec<u8>,
}

/// The certificate usages RFC 7672 lets SMTP use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// 2: a trust anchor the chain must lead to; the name is checked.
    DaneTa,
    /// 3: the server's own certificate or key; nothing else is checked.
    DaneEe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    /// 0: the whole certificate.
    Cert,
    /// 1: its SubjectPublicKeyInfo.
    Spki,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    /// 0: the selected bytes themselves.
    Exact,
    Sha256,
    Sha512,
}

impl Tlsa {
    /// The record with these numeric fields if SMTP can use it: usages 0
    /// and 1 (PKIX) and unknown values are unusable (RFC 7672 §3.1.3).
    pub fn usable(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> Option<Tlsa> {
        let usage = match usage {
            2 => Usage::DaneTa,
            3 => Usage::DaneEe,
            _ => return None,
        };
        let selector = match selector {
            0 => Selector::Cert,
            1 => Selector::Spki,
            _ => return None,
        };
        let matching = match matching {
            0 => Matching::Exact,
            1 => Matching::Sha256,
            2 => Matching::Sha512,
            _ => return None,
        };
        // A digest of the wrong length can match nothing (RFC 7671 §10.1.2
        // asks clients to treat it as unusable).
        let expected = match matching {
            Matching::Exact => None,
            Matching::Sha256 => Some(32),
            Matching::Sha512 => Some(64),
        };
        if expected.is_some_and(|len| len != data.len()) || data.is_empty() {
            return None;
        }
        Some(Tlsa {
            usage,
            selector,
            matching,
            data,
        })
    }

    /// Whether `cert` (DER) is the certificate or key this record names.
    pub fn matches(&self, cert: &CertificateDer<'_>) -> bool {
        let selected = match self.selector {
            Selector::Cert => cert.as_ref().to_vec(),
            Selector::Spki => match ParsedCertificate::try_from(cert) {
                Ok(parsed) => parsed.subject_public_key_info().as_ref().to_vec(),
                Err(_) => return false,
            },
        };
        match self.matching {
            Matching::Exact => selected == self.data,
            Matching::Sha256 => {
                ring::digest::digest(&ring::digest::SHA256, &selected).as_ref() == self.data
            }
            Matching::Sha512 => {
                ring::digest::digest(&ring::digest::SHA512, &selected).as_ref() == self.data
            }
        }
    }
}

/// Judges a server's certificate by its host's usable TLSA records: the
/// chain passes when one record accepts it (RFC 7672 §3.1).
#[derive(Debug)]
pub struct DaneVerifier {
    records: Vec<Tlsa>,
    /// The names a DANE-TA(2) chain's leaf may carry: the MX host name (RFC
    /// 7672 §3.2.2; without CNAMEs it is also the TLSA base domain).
    names: Vec<ServerName<'static>>,
    provider: Arc<CryptoProvider>,
}

impl DaneVerifier {
    pub fn new(records: Vec<Tlsa>, names: Vec<ServerName<'static>>) -> Self {
        DaneVerifier {
            records,
            names,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    /// Whether one record accepts the chain: DANE-EE the leaf alone (no
    /// name or expiry check, RFC 7672 §3.1.1); DANE-TA a certificate of the
    /// chain that the leaf chains to, with the name checked (§3.1.2).
    fn accepts(
        &self,
        record: &Tlsa,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> bool {
        match record.usage {
            Usage::DaneEe => record.matches(end_entity),
            Usage::DaneTa => intermediates
                .iter()
                .chain(std::iter::once(end_entity))
                .filter(|cert| record.matches(cert))
                .any(|anchor| self.chains_to(anchor, end_entity, intermediates, now)),
        }
    }

    fn chains_to(
        &self,
        anchor: &CertificateDer<'_>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> bool {
        let Ok(leaf) = ParsedCertificate::try_from(end_entity) else {
            return false;
        };
        let mut roots = RootCertStore::empty();
        if roots.add(anchor.clone().into_owned()).is_err() {
            return false;
        }
        let others: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .filter(|cert| *cert != anchor)
            .cloned()
            .collect();
        verify_server_cert_signed_by_trust_anchor(
            &leaf,
            &roots,
            &others,
            now,
            self.provider.signature_verification_algorithms.all,
        )
        .is_ok()
            && self
                .names
                .iter()
                .any(|name| verify_server_name(&leaf, name).is_ok())
    }
}

impl CertificateCheck for DaneVerifier {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        if self
            .records
            .iter()
            .any(|record| self.accepts(record, end_entity, intermediates, now))
        {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(NoTlsaMatch)),
            )))
        }
    }
}

/// The certificate error a deferral names (RFC 8460 calls it
/// `validation-failure`). A certificate error rather than a general one, so
/// the server gets a `bad_certificate` alert.
#[derive(thiserror::Error)]
#[error("DANE: no TLSA record of the MX host matches its certificate chain")]
struct NoTlsaMatch;

/// rustls shows a certificate error's cause with `Debug`: the deferral text
/// must read as a sentence.
impl std::fmt::Debug for NoTlsaMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PublicKeyData};

    struct Chain {
        ca: CertificateDer<'static>,
        leaf: CertificateDer<'static>,
        leaf_spki: Vec<u8>,
    }

    fn chain(host: &str) -> Chain {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec![host.to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        Chain {
            ca: ca.der().clone(),
            leaf: leaf.der().clone(),
            leaf_spki: leaf_key.subject_public_key_info(),
        }
    }

    fn sha256(bytes: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, bytes)
            .as_ref()
            .to_vec()
    }

    fn sha512(bytes: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA512, bytes)
            .as_ref()
            .to_vec()
    }

    fn verify(records: Vec<Tlsa>, name: &str, chain: &Chain, with_ca: bool) -> bool {
        let verifier = DaneVerifier::new(
            records,
            vec![ServerName::try_from(name.to_owned()).unwrap()],
        );
        let intermediates = if with_ca {
            vec![chain.ca.clone()]
        } else {
            Vec::new()
        };
        verifier
            .check(&chain.leaf, &intermediates, UnixTime::now())
            .is_ok()
    }

    #[test]
    fn only_dane_ta_and_dane_ee_with_known_fields_are_usable() {
        let digest = vec![0; 32];
        assert!(Tlsa::usable(3, 1, 1, digest.clone()).is_some());
        assert!(Tlsa::usable(2, 0, 1, digest.clone()).is_some());
        assert!(Tlsa::usable(0, 1, 1, digest.clone()).is_none(), "PKIX-TA");
        assert!(Tlsa::usable(1, 1, 1, digest.clone()).is_none(), "PKIX-EE");
        assert!(Tlsa::usable(3, 2, 1, digest.clone()).is_none(), "selector");
        assert!(Tlsa::usable(3, 1, 3, digest.clone()).is_none(), "matching");
        assert!(
            Tlsa::usable(3, 1, 2, digest).is_none(),
            "SHA-512 of 32 bytes"
        );
        assert!(Tlsa::usable(3, 0, 0, Vec::new()).is_none(), "empty data");
    }

    #[test]
    fn every_selector_and_matching_type_matches_the_right_certificate() {
        let mine = chain("mx.example");
        let other = chain("mx.example");
        let cases = [
            (0, 0, mine.leaf.as_ref().to_vec()),
            (0, 1, sha256(mine.leaf.as_ref())),
            (0, 2, sha512(mine.leaf.as_ref())),
            (1, 0, mine.leaf_spki.clone()),
            (1, 1, sha256(&mine.leaf_spki)),
            (1, 2, sha512(&mine.leaf_spki)),
        ];
        for (selector, matching, data) in cases {
            let record = Tlsa::usable(3, selector, matching, data).unwrap();
            assert!(record.matches(&mine.leaf), "3 {selector} {matching}");
            assert!(!record.matches(&other.leaf), "3 {selector} {matching}");
        }
    }

    #[test]
    fn dane_ee_ignores_the_name_and_the_issuer() {
        let mine = chain("mx.example");
        let record = Tlsa::usable(3, 1, 1, sha256(&mine.leaf_spki)).unwrap();
        assert!(verify(vec![record.clone()], "other.example", &mine, false));
        let stranger = chain("mx.example");
        assert!(!verify(vec![record], "mx.example", &stranger, false));
    }

    #[test]
    fn dane_ta_needs_the_anchor_in_the_chain_and_the_right_name() {
        let mine = chain("mx.example");
        let record = Tlsa::usable(2, 0, 1, sha256(mine.ca.as_ref())).unwrap();
        assert!(verify(vec![record.clone()], "mx.example", &mine, true));
        assert!(!verify(vec![record.clone()], "other.example", &mine, true));
        assert!(
            !verify(vec![record], "mx.example", &mine, false),
            "the server must send its trust anchor"
        );
        let stranger = chain("mx.example");
        let record = Tlsa::usable(2, 0, 1, sha256(stranger.ca.as_ref())).unwrap();
        assert!(!verify(vec![record], "mx.example", &mine, true));
    }

    #[test]
    fn one_matching_record_in_the_set_is_enough() {
        let mine = chain("mx.example");
        let wrong = Tlsa::usable(3, 1, 1, vec![7; 32]).unwrap();
        let right = Tlsa::usable(3, 1, 1, sha256(&mine.leaf_spki)).unwrap();
        assert!(!verify(vec![wrong.clone()], "mx.example", &mine, false));
        assert!(verify(vec![wrong, right], "mx.example", &mine, false));
    }
}
