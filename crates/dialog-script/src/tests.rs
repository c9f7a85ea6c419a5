//! The grammar, line by line, and the reply matching rule.

use super::*;

fn steps(script: &str) -> Vec<Step> {
    parse(script).expect("parses").steps
}

fn directive(name: &str, args: &[&str]) -> StepKind {
    StepKind::Directive(Directive {
        name: name.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
    })
}

#[test]
fn every_kind_of_line_with_its_number() {
    let script = "# a comment\n\nS: 220 *\nC: EHLO x\nC:\nC~ A\\r\\nB\\0\\\\\\x7f\\xFF\n= max-bad 2\n=  closed \nS:\n";
    let got = steps(script);
    let want = vec![
        Step {
            line: 3,
            kind: StepKind::Expect(ReplyPattern::new("220 *")),
        },
        Step {
            line: 4,
            kind: StepKind::Send(b"EHLO x\r\n".to_vec()),
        },
        Step {
            line: 5,
            kind: StepKind::Send(b"\r\n".to_vec()),
        },
        Step {
            line: 6,
            kind: StepKind::Send(b"A\r\nB\0\\\x7f\xff".to_vec()),
        },
        Step {
            line: 7,
            kind: directive("max-bad", &["2"]),
        },
        Step {
            line: 8,
            kind: directive("closed", &[]),
        },
        Step {
            line: 9,
            kind: StepKind::Expect(ReplyPattern::new("")),
        },
    ];
    assert_eq!(got, want);
}

#[test]
fn crlf_script_files_read_the_same() {
    assert_eq!(
        steps("C: NOOP\r\nS: 250 OK\r\n"),
        steps("C: NOOP\nS: 250 OK\n")
    );
}

#[test]
fn client_lines_keep_their_text_verbatim() {
    // `C:` text is not unescaped, and UTF-8 goes through as UTF-8.
    assert_eq!(
        steps("C: MAIL FROM:<j\\r@dé.example>")[0].kind,
        StepKind::Send("MAIL FROM:<j\\r@dé.example>\r\n".as_bytes().to_vec())
    );
    assert_eq!(
        steps("C~ é\\xc3\\xa9")[0].kind,
        StepKind::Send("éé".as_bytes().to_vec())
    );
}

#[test]
fn unreadable_lines_are_errors_naming_the_line() {
    for (script, line, needle) in [
        ("C: NOOP\nX: what\n", 2, "cannot read \"X: what\""),
        ("C:NOOP\n", 1, "cannot read"),
        ("\n\nC~ \\q\n", 3, "unknown escape `\\q`"),
        ("C~ a\\x4\n", 1, "two hex digits"),
        ("C~ a\\xzz\n", 1, "two hex digits"),
        ("C~ a\\\n", 1, "lone"),
        ("S: 250\n=\n", 2, "without a name"),
        ("  C: indented\n", 1, "cannot read"),
    ] {
        let error = parse(script).expect_err(script);
        assert_eq!(error.line, line, "{script:?}: {error}");
        assert!(error.message.contains(needle), "{script:?}: {error}");
    }
}

#[test]
fn a_reply_matches_exactly_or_by_prefix_before_a_trailing_star() {
    let exact = ReplyPattern::new("250 OK");
    assert!(exact.matches("250 OK"));
    assert!(!exact.matches("250 OK "));
    assert!(!exact.matches("250 O"));
    let prefix = ReplyPattern::new("250-*");
    assert!(prefix.matches("250-"));
    assert!(prefix.matches("250-PIPELINING"));
    assert!(!prefix.matches("250 PIPELINING"));
    assert_eq!(prefix.to_string(), "250-*");
    assert_eq!(exact.to_string(), "250 OK");
    // Only a trailing star is a wildcard.
    assert!(ReplyPattern::new("5*0").matches("5*0"));
    assert!(!ReplyPattern::new("5*0").matches("550"));
}

#[test]
fn directive_arguments_are_checked_by_shape() {
    let StepKind::Directive(d) = &steps("= silent 300")[0].kind else {
        panic!("not a directive");
    };
    assert_eq!(d.number(), Ok(300));
    assert_eq!(d.single(), Ok("300"));
    assert!(d.no_args().is_err());
    assert_eq!(d.to_string(), "silent 300");
    let StepKind::Directive(d) = &steps("= auth PLAIN LOGIN")[0].kind else {
        panic!("not a directive");
    };
    assert!(d.number().is_err());
    assert!(d.single().is_err());
    let StepKind::Directive(d) = &steps("= sleep soon")[0].kind else {
        panic!("not a directive");
    };
    assert!(d.number().unwrap_err().contains("\"soon\" is not a number"));
}

#[test]
fn failures_name_file_and_line_and_the_summary_lists_them_all() {
    let failures = [
        Failure::at("a.dialog", 7, "expected \"250 OK\", got \"500 no\""),
        Failure::whole("b.dialog", "unexpected server output"),
        Failure::unparsable(
            "c.dialog",
            parse("S: 1\nbad").expect_err("second line is bad"),
        ),
    ];
    assert_eq!(
        failures[0].to_string(),
        "a.dialog:7: expected \"250 OK\", got \"500 no\""
    );
    assert_eq!(
        failures[1].to_string(),
        "b.dialog: unexpected server output"
    );
    assert!(
        failures[2]
            .to_string()
            .starts_with("c.dialog:2: cannot read")
    );
    let summary = summary(5, &failures);
    assert!(
        summary.starts_with("3 failure(s) in 5 dialog(s):"),
        "{summary}"
    );
    for failure in &failures {
        assert!(summary.contains(&failure.to_string()), "{summary}");
    }
}
