//! From settings to the runtime parameters each part takes, in one place,
//! so that no key is interpreted twice.

use std::sync::Arc;

use super::CoreSettings;
use crate::dns::DnsSettings;
use crate::server::ServerConfig;
use crate::session::SessionConfig;

impl CoreSettings {
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
            bare_newline: self.bare_newline,
            add_received: self.add_received,
            max_received: self.max_received,
        }
    }

    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            listen: self.listen.clone(),
            session: Arc::new(self.session_config()),
            inactivity_timeout: self.inactivity_timeout,
            // Postfix's stress timeout and smtpd_min_data_rate defaults.
            stress_timeout: self
                .inactivity_timeout
                .min(std::time::Duration::from_secs(10)),
            min_data_rate: 500,
            shutdown_grace: self.force_shutdown_timeout,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            max_line_length: self.max_line_length,
            early_talker_pause: self.early_talker_pause,
            early_talker_reject: self.early_talker_reject,
            tls_handshake_timeout: std::time::Duration::from_secs(30),
            no_tls_hosts: self.tls.no_tls_hosts.clone(),
            implicit_tls_ports: vec![self.smtps_port],
            connection_rate: self.connection_rate.clone(),
            recipient_rate: self.recipient_rate.clone(),
            metrics_listen: self.metrics_listen,
            spool_after: self.spool_after,
            spool_dir: self.spool_dir.clone(),
            freebind: self.freebind,
        }
    }

    pub fn dns_settings(&self) -> DnsSettings {
        DnsSettings {
            nameservers: self.nameservers.clone(),
            timeout: self.dns_timeout,
            reverse_lookups: self.rdns,
        }
    }
}
