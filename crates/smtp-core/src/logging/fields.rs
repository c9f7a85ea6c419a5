//! How an event's fields are written on a stderr line.
//!
//! The line is the one tracing-subscriber's default field formatter writes
//! with colours off: the message first, then `name=value` for each other
//! field, one space apart; `log.*` fields (a `log` record's metadata) left
//! out; the message's terminal control characters escaped. It exists for
//! speed alone: the default formatter paints every field name and `=` with
//! an empty ANSI style even when colours are off, and escapes the message a
//! character at a time. With it, relay-in's transaction line cost about
//! 17,000 instructions, the largest single cost on its per-message path in
//! user space (BENCHMARKS.md, issue 19). Colours on a terminal still go
//! through the default formatter (see [`super::init`]).

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;

/// The field formatter for plain (uncoloured) lines.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PlainFields;

impl<'a> MakeVisitor<Writer<'a>> for PlainFields {
    type Visitor = PlainVisitor<'a>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        PlainVisitor {
            writer: target,
            is_empty: true,
            result: Ok(()),
        }
    }
}

/// Writes one event's (or span's) fields.
pub(super) struct PlainVisitor<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// Starts a field: the space before all but the first. False when an
    /// earlier write failed or the field is `log` metadata.
    fn begin(&mut self, name: &str) -> bool {
        if self.result.is_err() || name.starts_with("log.") {
            return false;
        }
        if self.is_empty {
            self.is_empty = false;
        } else {
            self.result = self.writer.write_char(' ');
        }
        self.result.is_ok()
    }

    fn name(&mut self, field: &Field) -> fmt::Result {
        let name = field.name();
        self.writer
            .write_str(name.strip_prefix("r#").unwrap_or(name))?;
        self.writer.write_char('=')
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            if self.begin("message") {
                self.result = Escaping(&mut self.writer).write_str(value);
            }
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if !self.begin(field.name()) {
            return;
        }
        self.result = (|| {
            if field.name() != "message" {
                self.name(field)?;
            }
            write!(Escaping(&mut self.writer), "{value}")?;
            if let Some(source) = value.source() {
                write!(self.writer, " {}.sources=[", field.name())?;
                let mut next = Some(source);
                let mut first = true;
                while let Some(error) = next {
                    if !first {
                        self.writer.write_str(", ")?;
                    }
                    first = false;
                    write!(Escaping(&mut self.writer), "{error}")?;
                    next = error.source();
                }
                self.writer.write_char(']')?;
            }
            Ok(())
        })();
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.begin(field.name()) {
            return;
        }
        self.result = if field.name() == "message" {
            write!(Escaping(&mut self.writer), "{value:?}")
        } else {
            self.name(field)
                .and_then(|()| write!(self.writer, "{value:?}"))
        };
    }
}

impl VisitOutput<fmt::Result> for PlainVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for PlainVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

/// Writes through, escaping what a terminal would act on: ESC, BEL, BS,
/// FF and DEL as `\x1b`, and C1 controls (U+0080 to U+009F) as `\u{9b}`,
/// as tracing-subscriber does. A message may quote a hostile client.
struct Escaping<'w, W: Write>(&'w mut W);

impl<W: Write> Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // C1 controls are encoded as 0xC2 0x80..0x9F: a string without any
        // of these bytes needs no escaping and goes out whole.
        if !s
            .bytes()
            .any(|b| matches!(b, 0x07 | 0x08 | 0x0c | 0x1b | 0x7f | 0xc2))
        {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            match c {
                '\x07' | '\x08' | '\x0c' | '\x1b' | '\x7f' => {
                    write!(self.0, "\\x{:02x}", c as u32)?
                }
                '\u{80}'..='\u{9f}' => write!(self.0, "\\u{{{:x}}}", c as u32)?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// The lines `emit` logs, with the default field formatter and with
    /// ours, without timestamps.
    fn both(emit: impl Fn()) -> (String, String) {
        let default = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_writer(default.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, &emit);
        let plain = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .fmt_fields(PlainFields)
            .with_writer(plain.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, &emit);
        let text = |c: Captured| String::from_utf8(c.0.lock().unwrap().clone()).unwrap();
        (text(default), text(plain))
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer \x1b[31m")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn lines_are_the_default_formatters() {
        let (default, plain) = both(|| {
            let client: std::net::IpAddr = "192.0.2.7".parse().unwrap();
            tracing::info!(
                conn = "ABC",
                client = %client,
                size = 2172,
                tls = false,
                helo = ?"quoted \"name\"",
                r#type = "x",
                "message accepted: {} ({})",
                "250 2.0.0 Ok",
                "ABC.1"
            );
            tracing::warn!("hostile \x1b[2J \u{9b}1m bell\x07 end");
            tracing::error!(name = "\x1b[31m", "field values are Debug-escaped");
            tracing::info!(message = "a str message \x1b", other = 1);
            let error = Outer(std::io::Error::other("inner \u{85}"));
            tracing::warn!(error = &error as &dyn std::error::Error, "with a source");
            tracing::info!("");
        });
        assert!(default.lines().count() == 6, "{default}");
        assert_eq!(plain, default);
    }

    #[test]
    fn log_records_lose_their_metadata_fields_as_before() {
        let (default, plain) = both(|| {
            tracing::info!(log.target = "rustls", log.line = 7, "from the log crate");
        });
        assert_eq!(plain, default);
        assert!(!plain.contains("log."), "{plain}");
    }
}
