//! `outbound.ini` `disabled`, re-read without a restart.
//!
//! Haraka re-reads outbound.ini when it changes. Postern does the same by
//! polling: the dispatcher calls [`DisabledSwitch::poll`] every second, which
//! costs one `stat` and re-reads the file only when its size or modification
//! time changed; SIGHUP (and `relay-out queue flush`) re-reads it
//! unconditionally. Only `disabled` takes effect live; every other key needs
//! a restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use smtp_core::config::{ConfigDir, files};
use tracing::{info, warn};

use crate::config::OutboundSettings;

/// The live "delivery disabled" flag and what it was last read from.
#[derive(Debug)]
pub struct DisabledSwitch {
    config_root: PathBuf,
    flag: Arc<AtomicBool>,
    /// (modification time, size) of outbound.ini at the last read; `None`
    /// when the file was absent.
    last_seen: Option<(SystemTime, u64)>,
}

impl DisabledSwitch {
    /// Starts from the value read at startup.
    pub fn new(config_root: PathBuf, disabled: bool) -> Self {
        let mut switch = DisabledSwitch {
            config_root,
            flag: Arc::new(AtomicBool::new(disabled)),
            last_seen: None,
        };
        switch.last_seen = switch.stamp();
        switch
    }

    /// The flag delivery tasks read.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.flag)
    }

    pub fn is_disabled(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Re-reads outbound.ini if it changed since the last look.
    pub fn poll(&mut self) {
        let stamp = self.stamp();
        if stamp != self.last_seen {
            self.last_seen = stamp;
            self.reload();
        }
    }

    /// Re-reads outbound.ini now. A file that no longer parses keeps the
    /// current value (and says so): a half-saved edit must not flip delivery.
    pub fn reload(&mut self) {
        self.last_seen = self.stamp();
        let loaded = ConfigDir::open(&self.config_root)
            .and_then(|dir| OutboundSettings::load(&dir).map(|settings| settings.disabled));
        match loaded {
            Ok(disabled) => {
                let was = self.flag.swap(disabled, Ordering::Relaxed);
                if was != disabled {
                    if disabled {
                        info!(
                            "outbound.ini: disabled=true, delivery paused (mail is still accepted and queued)"
                        );
                    } else {
                        info!("outbound.ini: delivery enabled again");
                    }
                }
            }
            Err(error) => warn!(
                %error,
                disabled = self.is_disabled(),
                "outbound.ini cannot be read; keeping the current delivery setting"
            ),
        }
    }

    fn stamp(&self) -> Option<(SystemTime, u64)> {
        let path = ConfigDir::open(&self.config_root)
            .ok()?
            .path_of(files::OUTBOUND_INI)?;
        let metadata = std::fs::metadata(path).ok()?;
        Some((metadata.modified().ok()?, metadata.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_file_and_keeps_the_value_when_it_breaks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ini = dir.path().join("outbound.ini");
        let mut switch = DisabledSwitch::new(dir.path().to_path_buf(), false);
        switch.poll();
        assert!(!switch.is_disabled());

        std::fs::write(&ini, "disabled=true\n").expect("write");
        switch.poll();
        assert!(switch.is_disabled());
        assert!(switch.flag().load(Ordering::Relaxed));

        std::fs::write(&ini, "disabled=true\nconcurrency_max=zero\n").expect("write");
        switch.poll();
        assert!(switch.is_disabled(), "a broken file changes nothing");

        std::fs::write(&ini, "disabled=false\n").expect("write");
        switch.reload();
        assert!(!switch.is_disabled());

        std::fs::remove_file(&ini).expect("remove");
        switch.poll();
        assert!(!switch.is_disabled(), "no file: Haraka's default, enabled");
    }
}
