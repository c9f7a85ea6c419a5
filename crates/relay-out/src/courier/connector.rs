//! How to talk to a next hop, built once at startup: the MX default from
//! outbound.ini, and one per route hop setting (TLS as `tls` chooses it,
//! AUTH, LMTP, source address).
//!
//! Built at startup because a CA file or the system's CA bundle is read
//! there, where an error can stop the service naming the file, not at every
//! connection.

use std::fmt;
use std::net::IpAddr;

use smtp_core::client::{ClientConfig, ClientTls, ClientTlsError, StepTimeouts, TlsVerify};
use smtp_core::config::CoreSettings;

use super::tls::TlsUse;
use crate::config::{HopSettings, OutboundSettings};

/// The protocol spoken with a next hop, as the delivery log's `mode`
/// (Haraka's `delivered` hook reports the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Smtp,
    Lmtp,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Smtp => "SMTP",
            Mode::Lmtp => "LMTP",
        })
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct Connector {
    with_tls: ClientConfig,
    without_tls: ClientConfig,
    pub tls: TlsUse,
    /// Retry a failed handshake's host in clear text after all others.
    pub fallback_plain: bool,
}

impl Connector {
    /// The MX default: outbound.ini `enable_tls` (any certificate, as
    /// Haraka and Postfix `may`), `local_address`, no AUTH, SMTP.
    /// MX hosts under a TLS policy (tls_policy.ini, else outbound.ini
    /// `enable_tls`; see `tls::MxTls`): `tls`, verified with `verify` when
    /// required.
    pub fn mx_with(
        core: &CoreSettings,
        outbound: &OutboundSettings,
        tls: TlsUse,
        verify: Option<TlsVerify>,
    ) -> Result<Self, ClientTlsError> {
        Self::build(core, outbound, tls, verify, |config| config)
    }

    /// A route hop's: its TLS, AUTH, LMTP, and `bind` (else `local_address`).
    pub fn for_hop(
        core: &CoreSettings,
        outbound: &OutboundSettings,
        hop: &HopSettings,
    ) -> Result<Self, ClientTlsError> {
        let (tls, verify) = TlsUse::for_route(&hop.tls);
        Self::build(core, outbound, tls, verify, |mut config| {
            config.auth.clone_from(&hop.auth);
            config.lmtp = hop.lmtp;
            if hop.bind.is_some() {
                config.source_address = hop.bind;
            }
            config
        })
    }

    fn build(
        core: &CoreSettings,
        outbound: &OutboundSettings,
        tls: TlsUse,
        verify: Option<TlsVerify>,
        adapt: impl Fn(ClientConfig) -> ClientConfig,
    ) -> Result<Self, ClientTlsError> {
        let config = |tls: ClientTls| {
            adapt(ClientConfig {
                helo_name: core.me.clone(),
                connect_timeout: outbound.connect_timeout,
                timeouts: StepTimeouts::default(),
                tls,
                auth: None,
                source_address: outbound.local_address,
                lmtp: false,
            })
        };
        let with_tls = tls.client_tls(verify.as_ref())?;
        Ok(Connector {
            with_tls: config(with_tls),
            without_tls: config(ClientTls::off()),
            tls,
            fallback_plain: tls == TlsUse::Opportunistic && outbound.tls_fallback_plain,
        })
    }

    /// This connector with another TLS setup (DANE's per-host one): the
    /// same source address, EHLO name and timeouts.
    pub fn with_tls(&self, tls: TlsUse, client_tls: ClientTls) -> Self {
        Connector {
            with_tls: ClientConfig {
                tls: client_tls,
                ..self.without_tls.clone()
            },
            without_tls: self.without_tls.clone(),
            tls,
            fallback_plain: false,
        }
    }

    /// The client configuration for an attempt with or without STARTTLS.
    pub fn config(&self, use_tls: bool) -> &ClientConfig {
        if use_tls && self.tls != TlsUse::Off {
            &self.with_tls
        } else {
            &self.without_tls
        }
    }

    /// Whether the first attempt with a host uses STARTTLS.
    pub fn starts_with_tls(&self) -> bool {
        self.tls != TlsUse::Off
    }

    pub fn mode(&self) -> Mode {
        if self.without_tls.lmtp {
            Mode::Lmtp
        } else {
            Mode::Smtp
        }
    }

    /// The AUTH user name, when mail must only go out authenticated.
    pub fn auth_user(&self) -> Option<&str> {
        self.without_tls
            .auth
            .as_ref()
            .map(|auth| auth.user.as_str())
    }

    /// Where connections come from (`bind`, else `local_address`).
    pub fn source(&self) -> Option<IpAddr> {
        self.without_tls.source_address
    }

    /// A connector that talks plain SMTP from anywhere, for unit tests of
    /// the code that only passes connectors around.
    #[cfg(test)]
    pub fn plain_for_tests(tls: TlsUse, fallback_plain: bool) -> Self {
        let config = ClientConfig::new("test.example");
        Connector {
            with_tls: config.clone(),
            without_tls: config,
            tls,
            fallback_plain,
        }
    }
}
