//! From settings to the parameters of the parts that know nothing of config
//! files (the protocol engine, the resolver), in one place, so that no key is
//! interpreted twice. The SMTP server needs no such view: it keeps the
//! [`CoreSettings`] themselves.

use super::CoreSettings;
use crate::dns::DnsSettings;
use smtp_protocol::session::SessionConfig;

impl CoreSettings {
    /// The protocol engine's settings, shared by every session.
    pub fn session_config(&self) -> SessionConfig {
        SessionConfig {
            me: self.me.clone(),
            greeting: self.greeting.clone(),
            helo_message: self.helo_message.clone(),
            close_message: self.close_message.clone(),
            max_message_bytes: usize::try_from(self.max_bytes).unwrap_or(usize::MAX),
            max_recipients: self.max_recipients,
            max_bad_commands: u32::try_from(self.max_unrecognized_commands).unwrap_or(u32::MAX),
            smtputf8: self.smtputf8,
            requiretls: false,
            bare_newline: self.bare_newline,
            add_received: self.add_received,
            max_received: self.max_received,
        }
    }

    /// The resolver for the client reverse lookup (smtp.ini `rdns`,
    /// `nameservers`, `dns_timeout`).
    pub fn dns_settings(&self) -> DnsSettings {
        DnsSettings {
            nameservers: self.nameservers.clone(),
            timeout: self.dns_timeout,
            reverse_lookups: self.rdns,
        }
    }
}
