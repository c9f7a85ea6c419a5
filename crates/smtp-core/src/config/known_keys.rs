//! The sections and keys a settings type reads, found by asking its serde
//! derive, so that the list of keys a loader accepts is never written twice.
//!
//! [`super::ConfigDir::ini`] records them for every file it loads; the
//! key-coverage tests of the relays compare them with the code that uses
//! each key (a key that is read must change behaviour or be reported as not
//! used). The answer comes from a deserializer that reads nothing: it walks
//! one path of section names into the type and notes what the derive asks
//! for there (a struct's field names, a free-form map, or a value).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};

/// The keys of one section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionKeys {
    /// These keys (serde's field names, renames and aliases included).
    Named(Vec<&'static str>),
    /// Any key: the section is a map of its own (`[rate_conn]`,
    /// `[no_tls_hosts]`).
    Any,
}

/// The sections of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKeys {
    /// Named sections.
    Sections(BTreeMap<&'static str, SectionKeys>),
    /// Any section name, each with the same keys (smtp_forward.ini's
    /// per-domain sections).
    AnySection(SectionKeys),
}

impl FileKeys {
    /// Every `(section, key)` named; `*` stands for any section or key.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let keys = |section: &str, keys: &SectionKeys| -> Vec<(String, String)> {
            match keys {
                SectionKeys::Named(names) => names
                    .iter()
                    .map(|key| (section.to_owned(), (*key).to_owned()))
                    .collect(),
                SectionKeys::Any => vec![(section.to_owned(), "*".to_owned())],
            }
        };
        match self {
            FileKeys::Sections(sections) => sections
                .iter()
                .flat_map(|(section, section_keys)| keys(section, section_keys))
                .collect(),
            FileKeys::AnySection(section_keys) => keys("*", section_keys),
        }
    }
}

/// What the derive asked for at the end of the probed path.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Struct(&'static [&'static str]),
    Map,
    Value,
}

/// Stops the walk once the shape is noted: nothing is ever deserialised.
#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe stopped")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

/// The keys `T` reads, as sections of keys.
pub fn keys_of<T: DeserializeOwned>() -> FileKeys {
    let section_keys = |path: &[&str]| match shape_at::<T>(path) {
        Some(Shape::Struct(fields)) => SectionKeys::Named(fields.to_vec()),
        _ => SectionKeys::Any,
    };
    match shape_at::<T>(&[]) {
        Some(Shape::Struct(sections)) => FileKeys::Sections(
            sections
                .iter()
                .map(|section| (*section, section_keys(&[section])))
                .collect(),
        ),
        _ => FileKeys::AnySection(section_keys(&["example.com"])),
    }
}

/// The shape `T` asks for after following the map keys `path`.
fn shape_at<T: DeserializeOwned>(path: &[&str]) -> Option<Shape> {
    let found = RefCell::new(None);
    let _ = T::deserialize(Probe {
        path,
        found: &found,
    });
    found.into_inner()
}

/// The probing deserializer: follows `path`, then notes the shape.
struct Probe<'a> {
    path: &'a [&'a str],
    found: &'a RefCell<Option<Shape>>,
}

impl<'a> Probe<'a> {
    fn note(self, shape: Shape) -> Result<(), Stop> {
        *self.found.borrow_mut() = Some(shape);
        Err(Stop)
    }

    /// Descends one key, or notes `shape` at the end of the path.
    fn enter<'de, V: Visitor<'de>>(self, shape: Shape, visitor: V) -> Result<V::Value, Stop> {
        match self.path.split_first() {
            None => self.note(shape).map(|()| unreachable!("note always stops")),
            Some((key, rest)) => visitor.visit_map(OneKey {
                key: Some(key),
                value: Some(Probe {
                    path: rest,
                    found: self.found,
                }),
            }),
        }
    }
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        self.note(Shape::Value)
            .map(|()| unreachable!("note always stops"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.enter(Shape::Struct(fields), visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.enter(Shape::Map, visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct enum identifier
        ignored_any
    }
}

/// A map of one key whose value is probed further.
struct OneKey<'a> {
    key: Option<&'a str>,
    value: Option<Probe<'a>>,
}

impl<'de> MapAccess<'de> for OneKey<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        match self.key.take() {
            Some(key) => seed
                .deserialize(IntoDeserializer::<Stop>::into_deserializer(key))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        match self.value.take() {
            Some(probe) => seed.deserialize(probe),
            None => Err(Stop),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::config::values::setting;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    #[allow(dead_code)]
    struct Main {
        #[serde(deserialize_with = "setting")]
        timeout: u64,
        #[serde(rename = "maxTempFailures", deserialize_with = "setting")]
        max_temp_failures: u32,
        name: Option<String>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    #[allow(dead_code)]
    struct File {
        main: Main,
        free: BTreeMap<String, String>,
    }

    #[test]
    fn sections_and_keys_of_a_struct_of_sections() {
        assert_eq!(
            keys_of::<File>().pairs(),
            [
                ("free", "*"),
                ("main", "timeout"),
                ("main", "maxTempFailures"),
                ("main", "name"),
            ]
            .map(|(s, k)| (s.to_owned(), k.to_owned()))
        );
    }

    #[test]
    fn a_map_of_sections() {
        assert_eq!(
            keys_of::<BTreeMap<String, Main>>(),
            FileKeys::AnySection(SectionKeys::Named(vec![
                "timeout",
                "maxTempFailures",
                "name"
            ]))
        );
    }
}
