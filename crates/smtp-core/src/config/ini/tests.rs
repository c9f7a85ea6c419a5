use super::*;

/// Compact rendering: `[section] key=value key~ key[a,b]` per section, so a
/// table of cases stays readable. `~` marks a bare key.
fn render(document: &IniDocument) -> String {
    document
        .sections()
        .iter()
        .map(|section| {
            let mut out = format!("[{}]", section.name);
            for entry in &section.entries {
                out.push(' ');
                out.push_str(&entry.key);
                match &entry.value {
                    IniValue::Bare => out.push('~'),
                    IniValue::Text(text) => {
                        out.push('=');
                        out.push_str(text);
                    }
                    IniValue::List(items) => {
                        out.push('[');
                        out.push_str(&items.join(","));
                        out.push(']');
                    }
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn parsed(input: &str) -> String {
    match IniDocument::parse(input) {
        Ok(document) => render(&document),
        Err(error) => format!("ERROR {error}"),
    }
}

#[test]
fn grammar_table() {
    let cases: &[(&str, &str, &str)] = &[
        ("empty file", "", "[main]"),
        ("only blank lines", "\n \n\t\n", "[main]"),
        (
            "keys before a section go to main",
            "a=1\n[s]\nb=2",
            "[main] a=1 [s] b=2",
        ),
        (
            "bare key",
            "[no_tls_hosts]\n10.0.0.1\n192.168.0.0/16",
            "[main] [no_tls_hosts] 10.0.0.1~ 192.168.0.0/16~",
        ),
        ("empty value is not bare", "a=", "[main] a="),
        (
            "values and keys are trimmed",
            "  a  =   x y  ",
            "[main] a=x y",
        ),
        ("quotes are kept", "a=\"quoted\"", "[main] a=\"quoted\""),
        (
            "inline ; stays in the value",
            "a=1 ; note",
            "[main] a=1 ; note",
        ),
        ("inline # stays in the value", "a=x#y", "[main] a=x#y"),
        (
            "whole-line comments",
            "; c\n# c\n   ;indented\na=1",
            "[main] a=1",
        ),
        ("= in value", "a=b=c", "[main] a=b=c"),
        ("arrays", "g[]=one\ng[]=two", "[main] g[one,two]"),
        ("bare array item", "g[]", "[main] g[]"),
        ("scalar after array replaces it", "g[]=1\ng=2", "[main] g=2"),
        ("array after scalar restarts", "g=1\ng[]=2", "[main] g[2]"),
        (
            "repeated key keeps first position",
            "a=1\nb=2\na=3",
            "[main] a=3 b=2",
        ),
        (
            "repeated section merges",
            "[s]\na=1\n[t]\nb=2\n[s]\nc=3",
            "[main] [s] a=1 c=3 [t] b=2",
        ),
        (
            "dotted section is one name",
            "[example.com]\nhost=10.0.0.2",
            "[main] [example.com] host=10.0.0.2",
        ),
        (
            "user@domain section",
            "[user@example.com]\nhost=h",
            "[main] [user@example.com] host=h",
        ),
        (
            "section name is not trimmed inside",
            "[ s ]\na=1",
            "[main] [ s ] a=1",
        ),
        (
            "explicit main merges with implicit",
            "a=1\n[main]\nb=2",
            "[main] a=1 b=2",
        ),
        ("empty section name", "[]\na=1", "[main] [] a=1"),
        ("continuation", "a=one,\\\n  two", "[main] a=one,  two"),
        (
            "continuation with trailing blanks",
            "a=1\\ \t\n2",
            "[main] a=12",
        ),
        (
            "continuation skips comments",
            "a=1\\\n; c\n2",
            "[main] a=12",
        ),
        (
            "key charset",
            "a@b:c.d_e+f-g/h[i]=v",
            "[main] a@b:c.d_e+f-g/h[i]=v",
        ),
        ("CRLF", "[s]\r\na=1\r\nb=2\r\n", "[main] [s] a=1 b=2"),
        ("lone CR breaks lines", "a=1\rb=2", "[main] a=1 b=2"),
        ("UTF-8 values", "helo=Grüße ✉", "[main] helo=Grüße ✉"),
        ("BOM is whitespace", "\u{FEFF}[s]\na=1", "[main] [s] a=1"),
        (
            "camelCase keys kept",
            "maxTempFailures=13",
            "[main] maxTempFailures=13",
        ),
        (
            "space inside key",
            "a b=1",
            "ERROR line 1: not a comment, [section], key or key=value line: \"a b=1\"",
        ),
        (
            "garbage",
            "a=1\n=oops",
            "ERROR line 2: not a comment, [section], key or key=value line: \"=oops\"",
        ),
        (
            "non-ASCII key",
            "clé=1",
            "ERROR line 1: not a comment, [section], key or key=value line: \"clé=1\"",
        ),
        (
            "section with trailing text",
            "[main] ; x",
            "ERROR line 1: not a comment, [section], key or key=value line: \"[main] ; x\"",
        ),
        ("unclosed section", "[main", "[main] [main~"),
        (
            "dangling continuation",
            "a=1\nb=2\\",
            "ERROR line 2: the file ends after a line continued with '\\'",
        ),
        (
            "continued garbage names its first line",
            "x\ny y\\\nz",
            "ERROR line 2: not a comment, [section], key or key=value line: \"y yz\"",
        ),
        (
            "line separator in value",
            "a=x\u{2028}y",
            "ERROR line 1: not a comment, [section], key or key=value line: \"a=x\\u{2028}y\"",
        ),
    ];
    for (name, input, expected) in cases {
        assert_eq!(parsed(input), *expected, "case: {name}");
    }
}

#[test]
fn line_numbers_point_at_the_setting_line() {
    let document = IniDocument::parse("; c\n\n[s]\na=1\r\nb=2\\\n3").expect("valid");
    let section = document.section("s").expect("section");
    assert_eq!(section.entry("a").map(|e| e.line), Some(4));
    assert_eq!(section.entry("b").map(|e| e.line), Some(5));
    assert_eq!(
        document.get("s", "b"),
        Some(&IniValue::Text("23".to_owned()))
    );
}

#[test]
fn long_garbage_is_quoted_briefly() {
    let line = "!".repeat(10_000);
    let error = IniDocument::parse(&line).expect_err("garbage");
    let IniSyntaxProblem::MalformedLine(excerpt) = error.problem else {
        panic!("wrong problem");
    };
    assert!(excerpt.chars().count() <= QUOTED_LINE_LIMIT + 1);
}
