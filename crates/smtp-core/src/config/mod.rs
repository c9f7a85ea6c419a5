//! Reading a Haraka config directory, so Haraka users can point Postern at
//! the directory they already have.
//!
//! A setting passes through these layers, bottom up; each exists for the
//! reason given, and a setting is converted from text exactly once, into the
//! type the code uses.
//!
//! - **Grammars** ([`ini`], [`list`]): Haraka's INI and one-item-per-line
//!   grammars, pure and exact. Haraka's INI is not the `config` crate's:
//!   bare keys (`[no_tls_hosts]` lists addresses as keys), `key[]=` arrays,
//!   dotted section names (`[example.com]`), and errors must carry line
//!   numbers.
//! - **Directory** ([`ConfigDir`]): finds files as `haraka -c DIR` does (root,
//!   then `plugins/`), resolves relative paths against the root, and records
//!   which files were read and every non-fatal finding, so `--check` can list
//!   what Postern ignored.
//! - **Plugin list** ([`plugins`]): Haraka's `plugins` file decides which
//!   features are on; read once per directory and shared by every loader.
//! - **Layering** (`layered`): the `config` crate, for what it is good at:
//!   merging a file with its `POSTERN_<STEM>__<SECTION>__<KEY>` environment
//!   overrides and handing the merged tree to serde. `serde_ignored` watches
//!   that deserialisation to report sections, keys and variables nothing
//!   reads, so the serde derives are the only list of known keys.
//! - **Values** ([`values`], [`endpoint`]): Haraka's per-key conversions
//!   (truthy words, decimals, seconds, address lists) as `deserialize_with`
//!   helpers and [`values::SettingValue`] types, so every bad value is reported
//!   in one shape: file, section, key, value and the expected form.
//! - **File structs** (`core::raw`, and each relay's `…Ini` structs): one
//!   serde struct per file and section, named with Haraka's keys. The
//!   `Default` impl beside each section is the one place its defaults are
//!   written. They stay apart from the settings below because a file's
//!   layout is not the code's: some keys matter by their mere presence (a
//!   key wins over a legacy key or file, a per-domain section over `[main]`),
//!   and some settings combine several files.
//! - **Settings** ([`CoreSettings`], and each relay's own settings built on
//!   the same [`ConfigDir`]): everything a binary uses, typed and defaulted,
//!   read once at startup so every later use is infallible. The SMTP server
//!   takes [`CoreSettings`] as it is.
//! - **Runtime views** (`core::convert`): the protocol engine's
//!   `SessionConfig` and the resolver's `DnsSettings`, built from the
//!   settings because those parts know nothing of config files (relay-out
//!   builds a second `DnsSettings` for delivery from outbound.ini).
//!
//! Every failure is a [`ConfigError`] naming the file (and line or key);
//! non-fatal findings are collected as warnings for `--check`.

pub mod check;
pub mod core;
mod dir;
pub mod domains;
pub mod endpoint;
mod error;
pub mod files;
pub mod ini;
pub mod key_coverage;
pub mod known_keys;
mod layered;
pub mod list;
pub mod plugins;
pub mod retry_schedule;
pub mod values;

#[cfg(test)]
mod tests;

pub use self::core::{
    CoreSettings, DEFAULT_CLOSE_MESSAGE, DEFAULT_HELO_MESSAGE, DEFAULT_MAX_BYTES, TlsFiles,
    TlsMinVersion, TlsSettings,
};
pub use dir::{ConfigDir, ListFile};
pub use error::{ConfigError, expected, expected_for_bare_key};
pub use ini::{IniDocument, IniEntry, IniSection, IniSyntaxError, IniValue};
pub use list::ListLine;
pub use plugins::{Feature, Plugins};
