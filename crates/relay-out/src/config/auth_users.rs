//! auth_flat_file.ini (Haraka's `auth/flat_file` plugin): who may
//! authenticate to submit mail, and with which SASL mechanisms.
//!
//! ```ini
//! [core]
//! methods = PLAIN,LOGIN,CRAM-MD5
//! constrain_sender = true
//!
//! [users]
//! alice = clear-text password
//! bob = $6$rounds=5000$salt$hash...
//! ```
//!
//! As in Haraka a password may be written in clear text. Postern also
//! accepts a crypt(3) SHA-512 or SHA-256 hash (`$6$…`, `$5$…`, as made by
//! `mkpasswd -m sha-512` or `openssl passwd -6`), so the file need not hold
//! passwords. CRAM-MD5 needs the clear text on the server side, so it is
//! not offered while any user has a hashed password (a client that prefers
//! CRAM-MD5 would otherwise fail for those users).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use smtp_core::config::values::{is_haraka_true, split_comma_list};
use smtp_core::config::{ConfigDir, ConfigError, Feature, IniDocument, IniValue, expected, files};
use smtp_protocol::sasl::{Credentials, SaslMechanism};

/// Haraka's shipped `methods`.
const DEFAULT_METHODS: [SaslMechanism; 3] = [
    SaslMechanism::Plain,
    SaslMechanism::Login,
    SaslMechanism::CramMd5,
];

/// The users who may authenticate. Its `Debug` shows user names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthUsers {
    /// Mechanisms to offer, in the file's order; empty when there are no
    /// users (AUTH is then never offered).
    pub methods: Vec<SaslMechanism>,
    /// `[core] constrain_sender` (Haraka's default: on): a user named
    /// `name@domain` may only send from addresses in the same
    /// organizational domain.
    pub constrain_sender: bool,
    /// User name → stored password (clear text or a crypt hash).
    passwords: BTreeMap<String, String>,
}

impl fmt::Debug for AuthUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthUsers")
            .field("methods", &self.methods)
            .field("constrain_sender", &self.constrain_sender)
            .field("users", &self.passwords.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl AuthUsers {
    /// Reads auth_flat_file.ini; no file, or a plugin list without
    /// `auth/flat_file`, means no users.
    pub fn load(dir: &ConfigDir) -> Result<Self, ConfigError> {
        let loaded = dir.plugins()?.enabled(Feature::AuthFlatFile);
        let document = match loaded {
            true => dir.ini_document(files::AUTH_FLAT_FILE_INI)?,
            false => None,
        };
        match document {
            None => Ok(Self {
                constrain_sender: true,
                ..Self::default()
            }),
            Some((path, document)) => Self::from_document(dir, &path, &document),
        }
    }

    fn from_document(
        dir: &ConfigDir,
        path: &Path,
        document: &IniDocument,
    ) -> Result<Self, ConfigError> {
        let error = |section: &str, key: &str, detail: String| ConfigError::BadValue {
            origin: path.display().to_string(),
            section: section.to_owned(),
            key: key.to_owned(),
            detail,
        };
        let mut methods = DEFAULT_METHODS.to_vec();
        let mut constrain_sender = true;
        for section in document.sections() {
            match section.name.as_str() {
                "core" => {
                    for entry in &section.entries {
                        if entry.key == "constrain_sender" {
                            constrain_sender = match &entry.value {
                                IniValue::Text(text) => is_haraka_true(text),
                                _ => false,
                            };
                            continue;
                        }
                        if entry.key != "methods" {
                            dir.warn(format!(
                                "{}: [core] {} is not used",
                                path.display(),
                                entry.key
                            ));
                            continue;
                        }
                        let IniValue::Text(text) = &entry.value else {
                            return Err(error(
                                "core",
                                "methods",
                                "expected a list such as PLAIN,LOGIN".into(),
                            ));
                        };
                        methods = parse_methods(text)
                            .map_err(|form| error("core", "methods", expected(text, &form)))?;
                    }
                }
                "users" => {}
                "main" if section.entries.is_empty() => {}
                other => dir.warn(format!("{}: section [{other}] is not used", path.display())),
            }
        }
        let mut passwords = BTreeMap::new();
        if let Some(section) = document.section("users") {
            for entry in &section.entries {
                match &entry.value {
                    IniValue::Text(password) if !password.is_empty() => {
                        passwords.insert(entry.key.clone(), password.clone());
                    }
                    // The value is never quoted back: it is a password.
                    _ => {
                        return Err(error(
                            "users",
                            &entry.key,
                            "expected name = password (or a $6$/$5$ crypt hash)".into(),
                        ));
                    }
                }
            }
        }
        let hashed: Vec<&str> = passwords
            .iter()
            .filter(|(_, stored)| is_hash(stored))
            .map(|(user, _)| user.as_str())
            .collect();
        if !hashed.is_empty() && methods.contains(&SaslMechanism::CramMd5) {
            methods.retain(|m| *m != SaslMechanism::CramMd5);
            dir.warn(format!(
                "{}: CRAM-MD5 is not offered: it cannot check the hashed passwords of {}",
                path.display(),
                hashed.join(", ")
            ));
        }
        if passwords.is_empty() {
            methods.clear();
        }
        Ok(Self {
            methods,
            constrain_sender,
            passwords,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.passwords.is_empty()
    }

    pub fn user_count(&self) -> usize {
        self.passwords.len()
    }

    /// Whether `credentials` name a user and prove their password. Slow
    /// for hashed passwords (that is their point): call off the runtime.
    pub fn verify(&self, credentials: &Credentials) -> bool {
        match self.passwords.get(credentials.user()) {
            Some(stored) => credentials.matches(stored),
            None => false,
        }
    }
}

fn is_hash(stored: &str) -> bool {
    stored.starts_with("$6$") || stored.starts_with("$5$")
}

/// `PLAIN,LOGIN,CRAM-MD5` in any case, order kept, duplicates dropped.
fn parse_methods(text: &str) -> Result<Vec<SaslMechanism>, String> {
    let form = || "a comma list of PLAIN, LOGIN and CRAM-MD5".to_owned();
    let mut methods = Vec::new();
    for name in split_comma_list(text) {
        let method = SaslMechanism::parse(name).ok_or_else(form)?;
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    if methods.is_empty() {
        return Err(form());
    }
    Ok(methods)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> (Result<AuthUsers, ConfigError>, Vec<String>) {
        let temp = tempfile::tempdir().expect("tempdir");
        std::fs::write(temp.path().join(files::AUTH_FLAT_FILE_INI), text).expect("write");
        let dir = ConfigDir::open(temp.path())
            .expect("open")
            .with_environment(Vec::<(String, String)>::new());
        let users = AuthUsers::load(&dir);
        (users, dir.take_warnings())
    }

    fn password(user: &str, password: &str) -> Credentials {
        Credentials::Password {
            user: user.into(),
            password: password.into(),
        }
    }

    #[test]
    fn haraka_file_with_clear_and_hashed_passwords() {
        let params = sha_crypt_hash("hunter2");
        let (users, warnings) = load(&format!(
            "[core]\nmethods=PLAIN, login,CRAM-MD5\n[users]\nalice=s3cret\nbob={params}\n"
        ));
        let users = users.expect("load");
        assert!(users.verify(&password("alice", "s3cret")));
        assert!(!users.verify(&password("alice", "wrong")));
        assert!(users.verify(&password("bob", "hunter2")));
        assert!(!users.verify(&password("carol", "s3cret")));
        assert_eq!(users.methods, [SaslMechanism::Plain, SaslMechanism::Login]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("CRAM-MD5 is not offered"),
            "{warnings:?}"
        );
        let shown = format!("{users:?}");
        assert!(
            shown.contains("alice") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn defaults_and_empty_files() {
        let (users, warnings) = load("[users]\nalice=pw\n");
        assert_eq!(users.expect("load").methods, DEFAULT_METHODS);
        assert!(warnings.is_empty());
        let (users, _) = load("[core]\nmethods=PLAIN\n");
        let users = users.expect("load");
        assert!(users.is_empty() && users.methods.is_empty());
    }

    #[test]
    fn bad_entries_name_the_key_and_never_the_password() {
        for (text, expected) in [
            (
                "[core]\nmethods=PLAIN,DIGEST-MD5",
                "[core] methods = 'PLAIN,DIGEST-MD5'",
            ),
            ("[users]\nalice", "[users] alice = expected name = password"),
            (
                "[users]\nalice[]=a\nalice[]=secretpw",
                "[users] alice = expected",
            ),
        ] {
            let (users, _) = load(text);
            let error = users.expect_err(text).to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("secretpw"), "{error}");
        }
    }

    fn sha_crypt_hash(password: &str) -> String {
        // The fixed SHA-512 crypt of "hunter2" with salt "saltsalt" and the
        // default 5000 rounds, made with `openssl passwd -6 -salt saltsalt`.
        assert_eq!(password, "hunter2");
        "$6$saltsalt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWNW0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj.".to_owned()
    }
}
