//! Table-driven and split-read tests for [`DataDecoder`].

use super::{BareNewlinePolicy, DataDecoder, DataOutcome};

use BareNewlinePolicy::{Normalize, Reject};
use DataOutcome::{BareNewline, Complete, TooBig};

/// What one decoding run produced, in a form tests can compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decoded {
    pub outcome: Option<DataOutcome>,
    pub output: Vec<u8>,
    pub leftover: Vec<u8>,
    pub bytes_received: u64,
}

/// Feeds `input` cut at `cuts` (ascending offsets), as successive socket reads
/// would deliver it, and collects what the session would see.
pub(super) fn decode_in_pieces(
    input: &[u8],
    cuts: &[usize],
    max_size: usize,
    policy: BareNewlinePolicy,
) -> Decoded {
    let mut decoder = DataDecoder::new(max_size, policy);
    let mut output = Vec::new();
    let mut piece_start = 0;
    let ends = cuts.iter().copied().chain(std::iter::once(input.len()));
    for piece_end in ends {
        let piece = &input[piece_start..piece_end];
        let (consumed, outcome) = decoder.feed(piece, &mut output);
        if outcome.is_some() {
            return Decoded {
                outcome,
                output,
                leftover: input[piece_start + consumed..].to_vec(),
                bytes_received: decoder.bytes_received(),
            };
        }
        assert_eq!(
            consumed,
            piece.len(),
            "an unfinished decoder must consume everything"
        );
        piece_start = piece_end;
    }
    // An empty read must change nothing either.
    assert_eq!(decoder.feed(&[], &mut output), (0, None));
    Decoded {
        outcome: None,
        output,
        leftover: Vec::new(),
        bytes_received: decoder.bytes_received(),
    }
}

pub(super) fn decode_whole(input: &[u8], max_size: usize, policy: BareNewlinePolicy) -> Decoded {
    decode_in_pieces(input, &[], max_size, policy)
}

/// Asserts that every 2-way split and a byte-at-a-time feed of `input`
/// decode exactly like a single read.
pub(super) fn assert_split_invariant(input: &[u8], max_size: usize, policy: BareNewlinePolicy) {
    let whole = decode_whole(input, max_size, policy);
    for cut in 0..=input.len() {
        let split = decode_in_pieces(input, &[cut], max_size, policy);
        assert_eq!(split, whole, "input {input:?} cut at {cut}");
    }
    let every_byte: Vec<usize> = (1..input.len()).collect();
    let bytewise = decode_in_pieces(input, &every_byte, max_size, policy);
    assert_eq!(bytewise, whole, "input {input:?} byte by byte");
}

const UNLIMITED: usize = 1 << 20;

struct Row {
    name: &'static str,
    input: &'static [u8],
    policy: BareNewlinePolicy,
    max_size: usize,
    outcome: Option<DataOutcome>,
    output: &'static [u8],
    leftover: &'static [u8],
}

/// Shorthand for the common row shape: unlimited size.
const fn row(
    name: &'static str,
    input: &'static [u8],
    policy: BareNewlinePolicy,
    outcome: Option<DataOutcome>,
    output: &'static [u8],
    leftover: &'static [u8],
) -> Row {
    Row {
        name,
        input,
        policy,
        max_size: UNLIMITED,
        outcome,
        output,
        leftover,
    }
}

/// The end-of-data lookalikes used in SMTP smuggling, each followed by the
/// real end and a pipelined QUIT. None of them may end DATA. Normalized,
/// every one of them reads as the three lines `a`, `.`, `b`.
const LOOKALIKES: &[(&str, &[u8], bool)] = &[
    // (name, input, contains a bare CR or LF)
    ("LF . LF", b"a\n.\nb\r\n.\r\nQUIT\r\n", true),
    ("LF . CRLF", b"a\n.\r\nb\r\n.\r\nQUIT\r\n", true),
    ("CRLF . LF", b"a\r\n.\nb\r\n.\r\nQUIT\r\n", true),
    ("CR . CR", b"a\r.\rb\r\n.\r\nQUIT\r\n", true),
    ("CRLF . CR", b"a\r\n.\rb\r\n.\r\nQUIT\r\n", true),
    ("CR . CRLF", b"a\r.\r\nb\r\n.\r\nQUIT\r\n", true),
];

#[test]
fn smuggling_lookalikes_never_end_data() {
    for &(name, input, _) in LOOKALIKES {
        for (policy, outcome) in [(Normalize, Complete), (Reject, BareNewline)] {
            let decoded = decode_whole(input, UNLIMITED, policy);
            assert_eq!(decoded.outcome, Some(outcome), "{name} {policy:?}");
            assert_eq!(decoded.output, b"a\r\n.\r\nb\r\n", "{name} {policy:?}");
            assert_eq!(decoded.leftover, b"QUIT\r\n", "{name} {policy:?}");
            assert_split_invariant(input, UNLIMITED, policy);
        }
    }
}

fn rows() -> Vec<Row> {
    vec![
        row(
            "CRLF . CRLF ends",
            b"a\r\n.\r\nb\r\n.\r\nQUIT\r\n",
            Reject,
            Some(Complete),
            b"a\r\n",
            b"b\r\n.\r\nQUIT\r\n",
        ),
        row(
            "CRLF NUL . CRLF is content",
            b"a\r\n\0.\r\nb\r\n.\r\nQUIT\r\n",
            Reject,
            Some(Complete),
            b"a\r\n\0.\r\nb\r\n",
            b"QUIT\r\n",
        ),
        row(
            "CRLF SP . CRLF is content",
            b"a\r\n .\r\n.\r\nQUIT\r\n",
            Reject,
            Some(Complete),
            b"a\r\n .\r\n",
            b"QUIT\r\n",
        ),
        row(
            "message that is only the end",
            b".\r\nQUIT\r\n",
            Reject,
            Some(Complete),
            b"",
            b"QUIT\r\n",
        ),
        row(
            "end with nothing after",
            b"hi\r\n.\r\n",
            Reject,
            Some(Complete),
            b"hi\r\n",
            b"",
        ),
        row(
            "pipelined commands after end",
            b"hi\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n",
            Reject,
            Some(Complete),
            b"hi\r\n",
            b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n",
        ),
        row(
            "a second end marker is leftover",
            b".\r\n.\r\n",
            Reject,
            Some(Complete),
            b"",
            b".\r\n",
        ),
        row(
            "empty lines",
            b"\r\n\r\n.\r\n",
            Reject,
            Some(Complete),
            b"\r\n\r\n",
            b"",
        ),
        row(
            "dot dot at line start",
            b"..foo\r\nx\r\n..bar\r\n.\r\n",
            Reject,
            Some(Complete),
            b".foo\r\nx\r\n.bar\r\n",
            b"",
        ),
        row(
            "line of only dot dot",
            b"a\r\n..\r\n.\r\n",
            Reject,
            Some(Complete),
            b"a\r\n.\r\n",
            b"",
        ),
        row(
            "line of three dots",
            b"...\r\n.\r\n",
            Reject,
            Some(Complete),
            b"..\r\n",
            b"",
        ),
        row(
            "dot x at line start",
            b".x\r\n.\r\n",
            Reject,
            Some(Complete),
            b"x\r\n",
            b"",
        ),
        row(
            "dot NUL at line start",
            b".\0\r\n.\r\n",
            Reject,
            Some(Complete),
            b"\0\r\n",
            b"",
        ),
        row(
            "mid-line dots untouched",
            b"a.b..c.\r\n.\r\n",
            Reject,
            Some(Complete),
            b"a.b..c.\r\n",
            b"",
        ),
        row(
            "8-bit and NUL pass",
            b"\xff\0\x80 \t\r\n.\r\n",
            Reject,
            Some(Complete),
            b"\xff\0\x80 \t\r\n",
            b"",
        ),
        row(
            "incomplete: held dot",
            b"hello\r\n.",
            Reject,
            None,
            b"hello\r\n",
            b"",
        ),
        row(
            "incomplete: held dot CR",
            b"hello\r\n.\r",
            Reject,
            None,
            b"hello\r\n",
            b"",
        ),
        row(
            "incomplete: held CR",
            b"hello\r",
            Reject,
            None,
            b"hello",
            b"",
        ),
        row("incomplete: empty input", b"", Reject, None, b"", b""),
        row(
            "bare LF rejected",
            b"line1\nline2\r\n.\r\nQUIT\r\n",
            Reject,
            Some(BareNewline),
            b"line1\r\nline2\r\n",
            b"QUIT\r\n",
        ),
        row(
            "bare LF normalized",
            b"line1\nline2\r\n.\r\nQUIT\r\n",
            Normalize,
            Some(Complete),
            b"line1\r\nline2\r\n",
            b"QUIT\r\n",
        ),
        row(
            "bare CR rejected",
            b"x\ry\r\n.\r\n",
            Reject,
            Some(BareNewline),
            b"x\r\ny\r\n",
            b"",
        ),
        row(
            "bare CR normalized",
            b"x\ry\r\n.\r\n",
            Normalize,
            Some(Complete),
            b"x\r\ny\r\n",
            b"",
        ),
        row(
            "bare CR before CRLF",
            b"x\r\r\n.\r\n",
            Normalize,
            Some(Complete),
            b"x\r\n\r\n",
            b"",
        ),
        row(
            "bare LF then the real end",
            b"a\n\r\n.\r\n",
            Normalize,
            Some(Complete),
            b"a\r\n\r\n",
            b"",
        ),
        row(
            "leading bare LF",
            b"\n.\r\n.\r\n",
            Normalize,
            Some(Complete),
            b"\r\n.\r\n",
            b"",
        ),
        row(
            "leading dot LF",
            b".\n\r\n.\r\n",
            Reject,
            Some(BareNewline),
            b".\r\n\r\n",
            b"",
        ),
        row(
            "unstuffing after bare LF",
            b"a\n..x\r\n.\r\n",
            Normalize,
            Some(Complete),
            b"a\r\n.x\r\n",
            b"",
        ),
        row(
            "unstuffing after bare CR",
            b"a\r.x\r\n.\r\n",
            Normalize,
            Some(Complete),
            b"a\r\nx\r\n",
            b"",
        ),
        row(
            "CR CR LF dot",
            b"a\r\r\n.\r\n",
            Reject,
            Some(BareNewline),
            b"a\r\n\r\n",
            b"",
        ),
        Row {
            name: "exactly max_size",
            input: b"abc\r\n.\r\nQUIT\r\n",
            policy: Reject,
            max_size: 5,
            outcome: Some(Complete),
            output: b"abc\r\n",
            leftover: b"QUIT\r\n",
        },
        Row {
            name: "max_size + 1",
            input: b"abc\r\n.\r\nQUIT\r\n",
            policy: Reject,
            max_size: 4,
            outcome: Some(TooBig),
            output: b"abc\r",
            leftover: b"QUIT\r\n",
        },
        Row {
            name: "stuffing dot not counted",
            input: b"..c\r\n.\r\n",
            policy: Reject,
            max_size: 4,
            outcome: Some(Complete),
            output: b".c\r\n",
            leftover: b"",
        },
        Row {
            name: "empty message, zero limit",
            input: b".\r\nQUIT\r\n",
            policy: Reject,
            max_size: 0,
            outcome: Some(Complete),
            output: b"",
            leftover: b"QUIT\r\n",
        },
        Row {
            name: "one empty line, zero limit",
            input: b"\r\n.\r\n",
            policy: Reject,
            max_size: 0,
            outcome: Some(TooBig),
            output: b"",
            leftover: b"",
        },
        Row {
            name: "TooBig beats BareNewline",
            input: b"a\nbc\r\n.\r\n",
            policy: Reject,
            max_size: 3,
            outcome: Some(TooBig),
            output: b"a\r\n",
            leftover: b"",
        },
        Row {
            name: "normalized CRLF counts two",
            input: b"a\nb\r\n.\r\n",
            policy: Normalize,
            max_size: 5,
            outcome: Some(TooBig),
            output: b"a\r\nb\r",
            leftover: b"",
        },
    ]
}

#[test]
fn decoder_table() {
    for row in rows() {
        let decoded = decode_whole(row.input, row.max_size, row.policy);
        assert_eq!(decoded.outcome, row.outcome, "{}: outcome", row.name);
        assert_eq!(decoded.output, row.output, "{}: output", row.name);
        assert_eq!(decoded.leftover, row.leftover, "{}: leftover", row.name);
        let consumed = row.input.len() - row.leftover.len();
        assert_eq!(
            decoded.bytes_received, consumed as u64,
            "{}: bytes_received",
            row.name
        );
        assert_split_invariant(row.input, row.max_size, row.policy);
    }
}

#[test]
fn long_lines_are_not_rewrapped() {
    let mut input = vec![b'y'; 5000];
    input.extend_from_slice(b"\r\n.\r\n");
    let decoded = decode_whole(&input, UNLIMITED, Reject);
    assert_eq!(decoded.outcome, Some(Complete));
    assert_eq!(decoded.output, input[..5002]);
}

#[test]
fn end_marker_split_at_every_position() {
    let input = b"body line\r\n.\r\nNEXT";
    let marker_start = b"body line".len();
    let expected = decode_whole(input, UNLIMITED, Reject);
    assert_eq!(expected.outcome, Some(Complete));
    assert_eq!(expected.output, b"body line\r\n");
    assert_eq!(expected.leftover, b"NEXT");
    for cut in marker_start..=marker_start + 5 {
        assert_eq!(
            decode_in_pieces(input, &[cut], UNLIMITED, Reject),
            expected,
            "cut at {cut}"
        );
        for second_cut in cut..=marker_start + 5 {
            let cuts = [cut, second_cut];
            assert_eq!(
                decode_in_pieces(input, &cuts, UNLIMITED, Reject),
                expected,
                "cuts {cuts:?}"
            );
        }
    }
}

#[test]
fn finished_decoder_consumes_nothing_more() {
    let mut decoder = DataDecoder::new(UNLIMITED, Reject);
    let mut output = Vec::new();
    assert_eq!(
        decoder.feed(b"x\r\n.\r\nQUIT\r\n", &mut output),
        (6, Some(Complete))
    );
    assert_eq!(decoder.feed(b"QUIT\r\n", &mut output), (0, Some(Complete)));
    assert_eq!(decoder.bytes_received(), 6);
    assert_eq!(output, b"x\r\n");
}

#[test]
fn policy_parses_from_config_text() {
    assert_eq!("reject".parse(), Ok(Reject));
    assert_eq!(" Normalize ".parse(), Ok(Normalize));
    assert!("allow".parse::<BareNewlinePolicy>().is_err());
    assert_eq!(BareNewlinePolicy::default(), Reject);
}
