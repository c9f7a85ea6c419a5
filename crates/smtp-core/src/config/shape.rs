//! Which sections and keys a settings type reads, learned from its serde
//! derive, so keys Postern ignores can be reported by `--check`.
//!
//! Haraka files are full of keys Postern has no use for (`nodes`,
//! `daemonize`, …) and a typo looks exactly like one of them. Listing the
//! known keys by hand next to each struct would state every fact twice;
//! instead a probing deserialiser walks the type: `#[derive(Deserialize)]`
//! hands it the field names of each struct. Sections are probed with an empty
//! map, so field helpers never run and the probe cannot fail on them.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, Visitor};

/// The keys a settings type accepts within one section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionKeys {
    /// A struct: exactly these keys.
    Fields(Vec<&'static str>),
    /// A map (e.g. `[no_tls_hosts]`): any key.
    Any,
}

/// The sections a settings type accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileShape {
    /// A struct of sections: exactly these sections.
    Sections(Vec<(&'static str, SectionKeys)>),
    /// A map of sections (e.g. smtp_forward's per-domain sections): any
    /// section name, each with these keys.
    AnySection(SectionKeys),
}

impl FileShape {
    /// Learns the shape of `T`; `None` when `T` is not a struct or map of
    /// sections (then nothing is reported as ignored).
    pub fn of<T: DeserializeOwned>() -> Option<Self> {
        let mut shape = Probed::Unknown;
        let _ = T::deserialize(Probe {
            depth: 0,
            shape: &mut shape,
        });
        match shape {
            Probed::Struct(fields) => Some(FileShape::Sections(
                fields
                    .into_iter()
                    .map(|(name, inner)| (name, inner.section_keys()))
                    .collect(),
            )),
            Probed::Map(inner) => Some(FileShape::AnySection(inner.section_keys())),
            Probed::Unknown => None,
        }
    }

    /// Whether `section` is read at all.
    pub fn knows_section(&self, section: &str) -> bool {
        self.keys_of(section).is_some()
    }

    /// Whether `key` in `section` is read.
    pub fn knows_key(&self, section: &str, key: &str) -> bool {
        match self.keys_of(section) {
            Some(SectionKeys::Any) => true,
            Some(SectionKeys::Fields(fields)) => fields.contains(&key),
            None => false,
        }
    }

    fn keys_of(&self, section: &str) -> Option<&SectionKeys> {
        match self {
            FileShape::Sections(sections) => sections
                .iter()
                .find(|(name, _)| *name == section)
                .map(|(_, keys)| keys),
            FileShape::AnySection(keys) => Some(keys),
        }
    }
}

/// What the probe saw at one level.
enum Probed {
    Unknown,
    Struct(Vec<(&'static str, Probed)>),
    Map(Box<Probed>),
}

impl Probed {
    fn section_keys(self) -> SectionKeys {
        match self {
            Probed::Struct(fields) => {
                SectionKeys::Fields(fields.into_iter().map(|(name, _)| name).collect())
            }
            Probed::Map(_) | Probed::Unknown => SectionKeys::Any,
        }
    }
}

/// The probe never produces data; its only error says so.
#[derive(Debug)]
struct ProbeError(String);

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ProbeError(msg.to_string())
    }
}

/// Depth 0 is the file (its fields are sections, so they are visited);
/// depth 1 is a section (recorded, then given an empty map).
struct Probe<'a> {
    depth: u8,
    shape: &'a mut Probed,
}

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, ProbeError> {
        Err(ProbeError("not a struct or map".into()))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_none()
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        let mut children: Vec<(&'static str, Probed)> = fields
            .iter()
            .map(|field| (*field, Probed::Unknown))
            .collect();
        let visit_fields = self.depth == 0;
        let result = visitor.visit_map(FieldAccess {
            depth: self.depth,
            children: if visit_fields {
                &mut children[..]
            } else {
                &mut []
            },
            next: 0,
        });
        *self.shape = Probed::Struct(children);
        result
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        let mut value_shape = Probed::Unknown;
        let result = if self.depth == 0 {
            visitor.visit_map(AnyKeyAccess {
                value_shape: &mut value_shape,
                yielded: false,
            })
        } else {
            visitor.visit_map(FieldAccess {
                depth: self.depth,
                children: &mut [],
                next: 0,
            })
        };
        *self.shape = Probed::Map(Box::new(value_shape));
        result
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct enum identifier ignored_any
    }
}

/// Yields each struct field once so nested section types get probed.
struct FieldAccess<'a> {
    depth: u8,
    children: &'a mut [(&'static str, Probed)],
    next: usize,
}

impl<'de> MapAccess<'de> for FieldAccess<'_> {
    type Error = ProbeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        let Some((name, _)) = self.children.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize(de::value::BorrowedStrDeserializer::new(name))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ProbeError> {
        let index = self.next;
        self.next += 1;
        let Some((_, shape)) = self.children.get_mut(index) else {
            return Err(ProbeError("value without key".into()));
        };
        seed.deserialize(Probe {
            depth: self.depth + 1,
            shape,
        })
    }
}

/// Yields one placeholder section name so a map-of-sections' value type is
/// probed.
struct AnyKeyAccess<'a> {
    value_shape: &'a mut Probed,
    yielded: bool,
}

impl<'de> MapAccess<'de> for AnyKeyAccess<'_> {
    type Error = ProbeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        if self.yielded {
            return Ok(None);
        }
        seed.deserialize(de::value::BorrowedStrDeserializer::new("*"))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ProbeError> {
        self.yielded = true;
        seed.deserialize(Probe {
            depth: 1,
            shape: self.value_shape,
        })
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
        no_tls_hosts: BTreeMap<String, Option<String>>,
    }

    #[test]
    fn struct_of_sections() {
        let shape = FileShape::of::<File>().expect("shape");
        assert!(shape.knows_key("main", "timeout"));
        assert!(shape.knows_key("main", "maxTempFailures"));
        assert!(shape.knows_key("main", "name"));
        assert!(!shape.knows_key("main", "nodes"));
        assert!(shape.knows_key("no_tls_hosts", "10.0.0.1"));
        assert!(!shape.knows_section("other"));
    }

    #[test]
    fn map_of_sections() {
        let shape = FileShape::of::<BTreeMap<String, Main>>().expect("shape");
        assert!(shape.knows_key("example.com", "timeout"));
        assert!(!shape.knows_key("example.com", "bogus"));
    }

    #[test]
    fn non_section_types_have_no_shape() {
        assert_eq!(FileShape::of::<String>(), None);
    }
}
