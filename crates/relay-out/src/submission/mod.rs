//! Message submission with SMTP AUTH (seed 000: Haraka on port 587 with
//! `tls` and `auth/flat_file`): mail clients authenticate with a user from
//! auth_flat_file.ini and may then relay like an address in
//! relay_acl_allow.
//!
//! - Submission listeners are those on smtp.ini `submission_port` (587,
//!   STARTTLS then AUTH) and `smtps_port` (465, TLS from the first byte).
//!   There, MAIL from a client that neither authenticated nor is in
//!   relay_acl_allow gets `550 5.7.0 Authentication required`.
//! - AUTH is offered on every listener when users exist, but only inside
//!   TLS, except to a client on this very host: the client address is the
//!   listener's own address, or 127.0.0.1 or ::1. Other loopback addresses
//!   (127.0.0.9) count as remote, so the rule is the same whatever the
//!   route to the host. (Haraka's flat_file also exempts private networks;
//!   Postern never lets a password cross a network in clear text.)
//! - Failed attempts are slowed down and locked out per client network
//!   ([`throttle`]); the log names the user, never the password.
//! - SIGHUP re-reads auth_flat_file.ini (Haraka re-reads it when it
//!   changes); a file that no longer loads keeps the users in effect.

mod constrain;
pub mod missing_headers;
mod throttle;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use smtp_core::config::{ConfigDir, CoreSettings, Plugins};
use smtp_protocol::sasl::{Credentials, SaslMechanism};
use smtp_protocol::session::{AuthVerdict, SessionInfo};
use tracing::{error, info, warn};

use crate::config::AuthUsers;
use throttle::AuthThrottle;

/// Who may authenticate, where AUTH is required, and the failure counts.
#[derive(Debug)]
pub struct Submission {
    /// Replaced whole on SIGHUP; sessions take a snapshot per check.
    users: RwLock<Arc<AuthUsers>>,
    /// `submission_port` and `smtps_port`.
    ports: [u16; 2],
    /// The plugin list read at startup: a reload keeps `auth/flat_file`
    /// on or off as it was, as Haraka loads plugins only when it starts.
    plugins: Arc<Plugins>,
    throttle: Mutex<AuthThrottle>,
}

impl Submission {
    pub fn new(users: AuthUsers, core: &CoreSettings) -> Self {
        Submission {
            users: RwLock::new(Arc::new(users)),
            ports: [core.submission_port, core.smtps_port],
            plugins: Arc::clone(&core.plugins),
            throttle: Mutex::new(AuthThrottle::default()),
        }
    }

    /// Whether connections to `local` must authenticate (or be in the ACL)
    /// before MAIL.
    pub fn is_submission_listener(&self, local: SocketAddr) -> bool {
        self.ports.contains(&local.port())
    }

    /// The listeners among `listen` that are for submission.
    pub fn listeners<'a>(&self, listen: &'a [SocketAddr]) -> Vec<&'a SocketAddr> {
        listen
            .iter()
            .filter(|addr| self.is_submission_listener(**addr))
            .collect()
    }

    pub fn has_users(&self) -> bool {
        !self.users().is_empty()
    }

    pub fn user_count(&self) -> usize {
        self.users().user_count()
    }

    /// Re-reads auth_flat_file.ini from `config_root`, keeping the current
    /// users if it cannot be loaded.
    pub fn reload(&self, config_root: &Path) {
        let loaded = ConfigDir::open(config_root).and_then(|dir| {
            let dir = dir.with_plugins(Arc::clone(&self.plugins));
            let users = AuthUsers::load(&dir)?;
            Ok((users, dir.take_warnings()))
        });
        match loaded {
            Ok((users, warnings)) => {
                for warning in warnings {
                    warn!("config: {warning}");
                }
                info!(users = users.user_count(), "auth_flat_file.ini reloaded");
                *self.users.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(users);
            }
            Err(failure) => {
                error!(error = %failure, "auth_flat_file.ini cannot be loaded; keeping the current users")
            }
        }
    }

    fn users(&self) -> Arc<AuthUsers> {
        Arc::clone(&self.users.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// auth_flat_file.ini `constrain_sender`: the refusal of a MAIL FROM
    /// (in `sender_domain`) that the authenticated user may not use, if any.
    pub fn sender_refusal(
        &self,
        session: &SessionInfo,
        sender_domain: Option<&str>,
    ) -> Option<smtp_protocol::reply::Reply> {
        let user = session.authenticated.as_deref()?;
        if !self.users().constrain_sender {
            return None;
        }
        constrain::refusal(user, sender_domain)
    }

    /// The mechanisms to offer this session: none without users, and none
    /// before TLS unless the client is on this host.
    pub fn mechanisms(&self, session: &SessionInfo) -> Vec<SaslMechanism> {
        let client = &session.client;
        if session.tls.is_some() || same_host(client.peer.ip(), client.local.ip()) {
            self.users().methods.clone()
        } else {
            Vec::new()
        }
    }

    /// Checks credentials, after the throttle allows it; a failure is
    /// answered only after the throttle's delay.
    pub async fn authenticate(
        &self,
        session: &SessionInfo,
        credentials: &Credentials,
    ) -> AuthVerdict {
        let client = session.client.peer.ip();
        if !self.lock().allows(client, Instant::now()) {
            warn!(conn = %session.conn_id, %client, user = %credentials.user(), "AUTH refused: too many failed attempts from this network; 454 until the lockout ends");
            return AuthVerdict::TemporaryFailure;
        }
        let users = self.users();
        let checked = credentials.clone();
        // Hashed passwords are slow to check on purpose: not on the runtime.
        let valid = match tokio::task::spawn_blocking(move || users.verify(&checked)).await {
            Ok(valid) => valid,
            Err(failure) => {
                error!(conn = %session.conn_id, error = %failure, "AUTH check failed");
                return AuthVerdict::TemporaryFailure;
            }
        };
        if valid {
            self.lock().succeeded(client);
            return AuthVerdict::Accepted;
        }
        let (delay, locked) = self.lock().failed(client, Instant::now());
        if locked {
            warn!(conn = %session.conn_id, %client, minutes = throttle::WINDOW.as_secs() / 60, "too many failed AUTH attempts from this network: locked out");
        }
        tokio::time::sleep(delay).await;
        AuthVerdict::Rejected
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AuthThrottle> {
        self.throttle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The client is on this host: it connects from the listener's own
/// address, or from 127.0.0.1 or ::1 (see the module docs).
fn same_host(peer: IpAddr, local: IpAddr) -> bool {
    let peer = peer.to_canonical();
    peer == local.to_canonical()
        || peer == IpAddr::V4(Ipv4Addr::LOCALHOST)
        || peer == IpAddr::V6(Ipv6Addr::LOCALHOST)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smtp_protocol::session::{ClientInfo, ClientName, TlsInfo};

    fn session(peer: &str, local: &str, tls: bool) -> SessionInfo {
        SessionInfo {
            conn_id: "C1".into(),
            client: ClientInfo {
                peer: peer.parse().unwrap(),
                local: local.parse().unwrap(),
                name: ClientName::Unavailable,
                proxy: None,
            },
            greeting: None,
            tls: tls.then(|| TlsInfo {
                protocol: "TLSv1.3".into(),
                cipher: "x".into(),
            }),
            authenticated: None,
        }
    }

    #[test]
    fn same_host_is_the_listeners_own_address_or_the_canonical_loopback() {
        for (peer, local, expected) in [
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "203.0.113.5", true),
            ("::1", "::1", true),
            ("::ffff:127.0.0.1", "127.0.0.1", true),
            ("203.0.113.5", "203.0.113.5", true),
            ("127.0.0.9", "127.0.0.1", false),
            ("10.0.0.2", "10.0.0.1", false),
            ("198.51.100.7", "203.0.113.5", false),
        ] {
            assert_eq!(
                same_host(peer.parse().unwrap(), local.parse().unwrap()),
                expected,
                "{peer} -> {local}"
            );
        }
    }

    fn submission(users: &str) -> Submission {
        let temp = tempfile::tempdir().expect("tempdir");
        std::fs::write(temp.path().join("auth_flat_file.ini"), users).expect("write");
        std::fs::write(
            temp.path().join("smtp.ini"),
            "submission_port=10587\nsmtps_port=10465\n",
        )
        .expect("write");
        let dir = smtp_core::config::ConfigDir::open(temp.path())
            .expect("open")
            .with_environment(Vec::<(String, String)>::new());
        let core = CoreSettings::load(&dir).expect("core");
        Submission::new(AuthUsers::load(&dir).expect("users"), &core)
    }

    #[test]
    fn auth_is_offered_only_inside_tls_or_on_this_host() {
        let with_users = submission("[core]\nmethods=PLAIN,LOGIN\n[users]\nalice=pw\n");
        let offered = [SaslMechanism::Plain, SaslMechanism::Login];
        for (peer, tls, expected) in [
            ("127.0.0.9:4000", false, &[][..]),
            ("127.0.0.9:4000", true, &offered[..]),
            ("127.0.0.1:4000", false, &offered[..]),
        ] {
            let session = session(peer, "127.0.0.1:10587", tls);
            assert_eq!(
                with_users.mechanisms(&session),
                expected,
                "{peer} tls={tls}"
            );
        }
        let without = submission("[core]\nmethods=PLAIN\n");
        assert!(
            without
                .mechanisms(&session("127.0.0.1:4000", "127.0.0.1:10587", true))
                .is_empty()
        );
        assert!(with_users.is_submission_listener("[::]:10587".parse().unwrap()));
        assert!(with_users.is_submission_listener("127.0.0.1:10465".parse().unwrap()));
        assert!(!with_users.is_submission_listener("127.0.0.1:2525".parse().unwrap()));
    }

    #[test]
    fn sighup_reloads_the_users_and_keeps_them_when_the_file_breaks() {
        let temp = tempfile::tempdir().expect("tempdir");
        let file = temp.path().join("auth_flat_file.ini");
        std::fs::write(&file, "[users]\nalice=pw\n").expect("write");
        let dir = ConfigDir::open(temp.path())
            .expect("open")
            .with_environment(Vec::<(String, String)>::new());
        let core = CoreSettings::load(&dir).expect("core");
        let submission = Submission::new(AuthUsers::load(&dir).expect("users"), &core);
        let check = |user: &str, password: &str| {
            submission.users().verify(&Credentials::Password {
                user: user.into(),
                password: password.into(),
            })
        };
        assert!(check("alice", "pw") && !check("bob", "pw2"));
        std::fs::write(&file, "[users]\nbob=pw2\n").expect("write");
        submission.reload(temp.path());
        assert!(!check("alice", "pw") && check("bob", "pw2"));
        std::fs::write(&file, "[core]\nmethods=NOPE\n[users]\ncarol=x\n").expect("write");
        submission.reload(temp.path());
        assert!(check("bob", "pw2"), "a broken file changes nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_slowed_down_then_refused() {
        let submission = submission("[users]\nalice=pw\n");
        let remote = session("127.0.0.9:4000", "127.0.0.1:10587", true);
        let good = Credentials::Password {
            user: "alice".into(),
            password: "pw".into(),
        };
        let bad = Credentials::Password {
            user: "alice".into(),
            password: "guess".into(),
        };
        assert_eq!(
            submission.authenticate(&remote, &good).await,
            AuthVerdict::Accepted
        );
        for _ in 0..throttle::MAX_FAILURES {
            let started = tokio::time::Instant::now();
            assert_eq!(
                submission.authenticate(&remote, &bad).await,
                AuthVerdict::Rejected
            );
            assert!(started.elapsed() >= std::time::Duration::from_secs(1));
        }
        assert_eq!(
            submission.authenticate(&remote, &good).await,
            AuthVerdict::TemporaryFailure,
            "locked out, even with the right password"
        );
        let other = session("127.0.0.1:4000", "127.0.0.1:10587", false);
        assert_eq!(
            submission.authenticate(&other, &good).await,
            AuthVerdict::Accepted
        );
    }
}
