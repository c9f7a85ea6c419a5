//! Reading a Haraka config directory, so Haraka users can point Postern at
//! the directory they already have.
//!
//! Layers, bottom up:
//! - [`ini`] and [`list`]: Haraka's file grammars, pure and exact.
//! - [`ConfigDir`]: finds files (root, then `plugins/`), feeds INI files
//!   through the `config` crate with `POSTERN_<STEM>__<SECTION>__<KEY>`
//!   environment overrides, deserialises them with the [`values`] helpers,
//!   and records what was read and what was ignored.
//! - [`CoreSettings`]: the typed settings both relays share. Each relay
//!   builds its own settings on the same [`ConfigDir`].
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
mod layered;
pub mod list;
mod shape;
pub mod values;

#[cfg(test)]
mod tests;

pub use self::core::{
    BareNewline, CoreSettings, DEFAULT_CLOSE_MESSAGE, DEFAULT_HELO_MESSAGE, DEFAULT_MAX_BYTES,
    TlsFiles, TlsMinVersion, TlsSettings,
};
pub use dir::{ConfigDir, ListFile};
pub use error::{ConfigError, expected, expected_for_bare_key};
pub use ini::{IniDocument, IniEntry, IniSection, IniSyntaxError, IniValue};
pub use layered::{ENV_PREFIX, ENV_SEPARATOR, IniSource};
pub use list::ListLine;
