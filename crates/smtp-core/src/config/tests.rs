//! Tests of [`ConfigDir`]: lookup, layering with environment overrides,
//! error messages and warnings, and hostile input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::values::{Seconds, setting};
use super::*;

/// A temporary config directory holding `files` (`plugins/x` paths allowed).
pub(crate) fn config_dir(files: &[(&str, &[u8])]) -> (tempfile::TempDir, ConfigDir) {
    let temp = tempfile::tempdir().expect("tempdir");
    for (name, content) in files {
        let path = temp.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, content).expect("write");
    }
    let dir = ConfigDir::open(temp.path())
        .expect("open")
        .with_environment(Vec::<(String, String)>::new());
    (temp, dir)
}

/// The workspace's `tests/fixtures/NAME`.
pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
struct Sample {
    main: SampleMain,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(default)]
struct SampleMain {
    #[serde(deserialize_with = "setting")]
    timeout: Seconds,
    #[serde(deserialize_with = "setting")]
    name: String,
    #[serde(deserialize_with = "setting")]
    flag: bool,
}

impl Default for SampleMain {
    fn default() -> Self {
        Self {
            timeout: Seconds(std::time::Duration::from_secs(7)),
            name: "default".into(),
            flag: true,
        }
    }
}

type AnyIni = BTreeMap<String, BTreeMap<String, IniValue>>;

#[test]
fn dotted_section_names_stay_one_key() {
    let (_temp, dir) = config_dir(&[(
        "smtp_forward.ini",
        b"host=a\n[example.com]\nhost=b\n[sub.example.co.uk]\nport=2525\n[user@example.com]\nhost=c",
    )]);
    let parsed: AnyIni = dir.ini("smtp_forward.ini").expect("load");
    let names: Vec<&str> = parsed.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "example.com",
            "main",
            "sub.example.co.uk",
            "user@example.com"
        ]
    );
    assert_eq!(
        parsed["example.com"]["host"],
        IniValue::Text("b".to_owned())
    );
}

#[test]
fn bare_keys_and_arrays_survive_layering() {
    let (_temp, dir) = config_dir(&[(
        "tls.ini",
        b"[no_tls_hosts]\n10.0.0.1\n192.168.0.0/16\n[message]\ngreeting[]=a\ngreeting[]=b",
    )]);
    let parsed: AnyIni = dir.ini("tls.ini").expect("load");
    assert_eq!(parsed["no_tls_hosts"]["10.0.0.1"], IniValue::Bare);
    assert_eq!(parsed["no_tls_hosts"]["192.168.0.0/16"], IniValue::Bare);
    assert_eq!(
        parsed["message"]["greeting"],
        IniValue::List(vec!["a".into(), "b".into()])
    );
}

#[test]
fn missing_file_gives_defaults() {
    let (_temp, dir) = config_dir(&[]);
    assert_eq!(
        dir.ini::<Sample>("sample.ini").expect("load"),
        Sample::default()
    );
    assert!(dir.take_warnings().is_empty());
}

#[test]
fn environment_overrides_file_and_defaults() {
    let (_temp, dir) = config_dir(&[("sample.ini", b"timeout=30\nname=file")]);
    let dir = dir.with_environment([
        ("POSTERN_SAMPLE__MAIN__NAME", "env"),
        ("POSTERN_SAMPLE__MAIN__FLAG", "off"),
        ("POSTERN_SAMPLEX__MAIN__NAME", "other file"),
        ("POSTERN_OTHER__MAIN__NAME", "other file"),
    ]);
    let sample: Sample = dir.ini("sample.ini").expect("load");
    assert_eq!(
        sample.main.timeout,
        Seconds(std::time::Duration::from_secs(30))
    );
    assert_eq!(sample.main.name, "env");
    assert!(!sample.main.flag);
}

#[test]
fn environment_applies_without_a_file() {
    let (_temp, dir) = config_dir(&[]);
    let dir = dir.with_environment([("POSTERN_SAMPLE__MAIN__TIMEOUT", "9")]);
    let sample: Sample = dir.ini("sample.ini").expect("load");
    assert_eq!(
        sample.main.timeout,
        Seconds(std::time::Duration::from_secs(9))
    );
    assert_eq!(sample.main.name, "default");
}

#[test]
fn bad_value_names_file_section_key_value_and_form() {
    let (temp, dir) = config_dir(&[("sample.ini", b"[main]\ntimeout=soon")]);
    let error = dir.ini::<Sample>("sample.ini").expect_err("bad value");
    assert_eq!(
        error.to_string(),
        format!(
            "{}: [main] timeout = 'soon': expected a whole number of seconds (0 to {})",
            temp.path().join("sample.ini").display(),
            values::MAX_DURATION_SECONDS
        )
    );
}

#[test]
fn bad_environment_value_names_the_variable() {
    let (_temp, dir) = config_dir(&[("sample.ini", b"timeout=1")]);
    let dir = dir.with_environment([("POSTERN_SAMPLE__MAIN__TIMEOUT", "x")]);
    let error = dir.ini::<Sample>("sample.ini").expect_err("bad value");
    assert!(
        error.to_string().starts_with(
            "environment variable POSTERN_SAMPLE__MAIN__TIMEOUT: [main] timeout = 'x'"
        ),
        "{error}"
    );
}

/// Haraka logs a line outside its INI grammar and goes on; so does
/// Postern, with a warning naming the file and line.
#[test]
fn a_line_outside_the_grammar_is_skipped_with_a_warning_naming_file_and_line() {
    let (temp, dir) = config_dir(&[("sample.ini", b"timeout=1\n\nthis is not ini\nname=kept\n")]);
    let sample = dir.ini::<Sample>("sample.ini").expect("loads");
    assert_eq!(
        sample.main.timeout,
        Seconds(std::time::Duration::from_secs(1))
    );
    assert_eq!(sample.main.name, "kept");
    assert_eq!(
        dir.take_warnings(),
        [format!(
            "{} line 3: not a comment, [section], key or key=value line: \"this is not ini\" (skipped, as Haraka does)",
            temp.path().join("sample.ini").display()
        )]
    );
}

#[test]
fn ignored_keys_sections_and_variables_are_warned_about() {
    let (_temp, dir) = config_dir(&[(
        "sample.ini",
        b"timeout=1\nnodes=cpus\n[extra]\nx=1\n[empty]\n",
    )]);
    let dir = dir.with_environment([("POSTERN_SAMPLE__MAIN__TIMEOUTT", "1")]);
    dir.ini::<Sample>("sample.ini").expect("load");
    let warnings = dir.take_warnings();
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(
        warnings[0].ends_with("sample.ini: line 2: [main] nodes is not used by Postern (ignored)")
    );
    assert!(warnings[1].ends_with("sample.ini: section [extra] is not used by Postern (ignored)"));
    assert!(warnings[2].contains("POSTERN_SAMPLE__MAIN__TIMEOUTT"));
}

#[test]
fn lookup_prefers_root_then_plugins_and_reports_shadowing() {
    let (temp, dir) = config_dir(&[
        ("plugins/only.ini", b"name=plugin"),
        ("both.ini", b"name=root"),
        ("plugins/both.ini", b"name=plugin"),
    ]);
    assert_eq!(
        dir.path_of("only.ini"),
        Some(temp.path().join("plugins/only.ini"))
    );
    assert_eq!(dir.path_of("both.ini"), Some(temp.path().join("both.ini")));
    assert_eq!(dir.path_of("none.ini"), None);
    let both: Sample = dir.ini("both.ini").expect("load");
    assert_eq!(both.main.name, "root");
    let warnings = dir.take_warnings();
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("plugins/both.ini: ignored"),
        "{warnings:?}"
    );
}

#[test]
fn instance_directory_with_config_subdirectory() {
    let (temp, _) = config_dir(&[("config/smtp.ini", b"listen=1.2.3.4:25")]);
    let dir = ConfigDir::open(temp.path()).expect("open");
    assert_eq!(dir.root(), temp.path().join("config"));
    assert_eq!(
        dir.resolve("tls_key.pem"),
        temp.path().join("config/tls_key.pem")
    );
    assert_eq!(dir.resolve("/etc/x.pem"), Path::new("/etc/x.pem"));
    assert!(matches!(
        ConfigDir::open(temp.path().join("nope")),
        Err(ConfigError::NotADirectory { .. })
    ));
}

#[test]
fn list_files_and_me() {
    let (_temp, dir) = config_dir(&[(
        "host_list",
        b"# domains\nexample.com\n\n ; x\nexample.net \n",
    )]);
    assert_eq!(
        dir.list("host_list").expect("read"),
        Some(vec!["example.com".to_owned(), "example.net".to_owned()])
    );
    assert_eq!(dir.list("missing").expect("read"), None);
    assert!(!dir.me().expect("me").is_empty());

    let (_temp, dir) = config_dir(&[("me", b"\n# name\nmx.example.com\nignored\n")]);
    assert_eq!(dir.me().expect("me"), "mx.example.com");
}

#[test]
fn invalid_utf8_is_replaced_and_reported() {
    let (_temp, dir) = config_dir(&[("host_list", b"caf\xe9.example\nexample.com\n")]);
    let list = dir.list("host_list").expect("read").expect("present");
    assert_eq!(list[1], "example.com");
    assert!(dir.take_warnings()[0].contains("not valid UTF-8"));
}

#[test]
fn unrecognized_files_are_those_neither_read_nor_known() {
    let (_temp, dir) = config_dir(&[
        ("smtp.ini", b""),
        ("plugins", b"relay\n"),
        ("log.ini", b""),
        ("plugins_dir_not/x", b""),
        (".hidden", b""),
        ("relay_acl_allow", b""),
    ]);
    assert_eq!(
        dir.unrecognized_files(files::KNOWN_FILES),
        ["log.ini", "plugins", "plugins_dir_not/"]
    );

    let (_temp, dir) = config_dir(&[("plugins/xclient.ini", b""), ("plugins/custom.ini", b"")]);
    assert_eq!(
        dir.unrecognized_files(files::KNOWN_FILES),
        ["plugins/custom.ini"]
    );
    dir.ini_document("custom.ini").expect("read");
    assert!(dir.unrecognized_files(files::KNOWN_FILES).is_empty());
}

/// A small deterministic generator (xorshift64*), so the hostile-input test
/// is reproducible without extra dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// Bytes biased towards the grammar's special characters, so the parser's
/// interesting paths are hit far more often than with uniform noise.
fn hostile_bytes(rng: &mut Rng) -> Vec<u8> {
    const ALPHABET: &[u8] = b"[]=;#\\ \t\r\n.:@_-/+abcXYZ019,*\"'";
    const TOKENS: &[&[u8]] = &[
        b"[main]\n",
        b"[example.com]\n",
        b"[no_tls_hosts]\n",
        b"listen=",
        b"key[]=",
        b"\\\n",
        b"\r\n",
        "\u{FEFF}".as_bytes(),
        "\u{2028}".as_bytes(),
        b"\xff\xfe",
        b"99999999999999999999999",
        b"[::1]:25",
        b"temp_fail_intervals=1m*",
    ];
    let len = rng.below(300);
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        match rng.below(4) {
            0 => bytes.extend_from_slice(TOKENS[rng.below(TOKENS.len())]),
            1 => bytes.push(rng.next() as u8),
            _ => bytes.push(ALPHABET[rng.below(ALPHABET.len())]),
        }
    }
    bytes
}

#[test]
fn hostile_input_never_panics() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    for _ in 0..5_000 {
        let bytes = hostile_bytes(&mut rng);
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(document) = IniDocument::parse(&text) {
            for section in document.sections() {
                assert!(section.entries.iter().all(|e| e.line >= 1));
            }
        }
        let _ = list::parse_list(&text);
    }
    // Through the whole stack: the config crate, serde helpers, settings.
    for _ in 0..150 {
        let bytes = hostile_bytes(&mut rng);
        let (_temp, dir) = config_dir(&[
            ("smtp.ini", &bytes),
            ("connection.ini", &bytes),
            ("tls.ini", &bytes),
            ("host_list", &bytes),
        ]);
        let _ = CoreSettings::load(&dir);
        let _ = dir.ini::<AnyIni>("smtp.ini");
    }
}
