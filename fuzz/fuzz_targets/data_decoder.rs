//! `DataDecoder`: the SMTP-smuggling boundary. Checked here:
//! - any split of the input into reads gives exactly what one read gives
//!   (bytes consumed, outcome, message, byte count);
//! - both agree with a deliberately naive line-by-line reading of RFC 5321;
//! - `dot_stuff` output always decodes back to the message and ends exactly
//!   at its own end marker, whatever bare CRs and LFs the message holds.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use smtp_protocol::data::{BareNewlinePolicy, DataDecoder, DataOutcome, dot_stuff};

/// What one decoding run produced.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    consumed: usize,
    outcome: Option<DataOutcome>,
    output: Vec<u8>,
    bytes_received: u64,
}

fuzz_target!(|bytes: &[u8]| {
    let _ = run(bytes);
});

fn run(bytes: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(bytes);
    let policy = if u.arbitrary::<bool>()? {
        BareNewlinePolicy::Normalize
    } else {
        BareNewlinePolicy::Reject
    };
    // Small limits, so that the size cut is exercised too.
    let max_size = usize::from(u.arbitrary::<u8>()?) * 4;
    let cut_count = u.int_in_range(0..=8)?;
    let mut cuts = Vec::with_capacity(cut_count);
    for _ in 0..cut_count {
        cuts.push(usize::from(u.arbitrary::<u16>()?));
    }
    let input = u.take_rest();
    let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();

    let whole = decode(input, &[], max_size, policy);
    let pieces = decode(input, &cuts, max_size, policy);
    assert_eq!(whole, pieces, "split at {cuts:?}");
    assert!(whole.output.len() <= max_size);
    assert_eq!(whole, naive_decode(input, max_size, policy));

    check_stuffing_round_trip(input);
    Ok(())
}

/// Feeds `input` cut at `cuts` (ascending), as successive reads would.
fn decode(input: &[u8], cuts: &[usize], max_size: usize, policy: BareNewlinePolicy) -> Decoded {
    let mut decoder = DataDecoder::new(max_size, policy);
    let mut output = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain(std::iter::once(input.len())) {
        let piece = &input[start..end];
        let (consumed, outcome) = decoder.feed(piece, &mut output);
        assert!(consumed <= piece.len());
        if outcome.is_some() {
            // A finished decoder takes nothing more and repeats itself.
            assert_eq!(decoder.feed(b"MAIL", &mut output), (0, outcome));
            return Decoded {
                consumed: start + consumed,
                outcome,
                output,
                bytes_received: decoder.bytes_received(),
            };
        }
        assert_eq!(consumed, piece.len(), "unfinished decoder left input");
        start = end;
    }
    assert_eq!(decoder.feed(&[], &mut output), (0, None));
    Decoded {
        consumed: input.len(),
        outcome: None,
        output,
        bytes_received: decoder.bytes_received(),
    }
}

/// The specification written the slow, obvious way: cut into lines at
/// whatever ends them; only `.` alone between two CRLFs ends DATA.
fn naive_decode(input: &[u8], max_size: usize, policy: BareNewlinePolicy) -> Decoded {
    let mut output = Vec::new();
    let mut line_start = 0;
    let mut previous_ended_in_crlf = true;
    let mut saw_bare = false;
    loop {
        let unfinished = |output: Vec<u8>| Decoded {
            consumed: input.len(),
            outcome: None,
            output: truncated(output, max_size),
            bytes_received: input.len() as u64,
        };
        let Some(offset) = input[line_start..]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
        else {
            // An unfinished last line is written out as it stands, except a
            // dot at its start, which may yet turn out to be stuffing or the
            // end marker.
            let rest = &input[line_start..];
            output.extend_from_slice(rest.strip_prefix(b".").unwrap_or(rest));
            return unfinished(output);
        };
        let break_at = line_start + offset;
        let line = &input[line_start..break_at];
        let is_crlf = match (input[break_at], input.get(break_at + 1)) {
            (b'\r', Some(b'\n')) => true,
            (b'\r', None) => {
                // A CR whose LF may follow in the next read: held back.
                output.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
                return unfinished(output);
            }
            _ => false,
        };
        let next_line = break_at + if is_crlf { 2 } else { 1 };
        if previous_ended_in_crlf && is_crlf && line == b"." {
            let outcome = if output.len() > max_size {
                DataOutcome::TooBig
            } else if saw_bare && policy == BareNewlinePolicy::Reject {
                DataOutcome::BareNewline
            } else {
                DataOutcome::Complete
            };
            return Decoded {
                consumed: next_line,
                outcome: Some(outcome),
                output: truncated(output, max_size),
                bytes_received: next_line as u64,
            };
        }
        let unstuffed = match line {
            [b'.', rest @ ..] => rest,
            _ => line,
        };
        // A lone `.` line that cannot end DATA is content.
        let unstuffed = if line == b"." { line } else { unstuffed };
        output.extend_from_slice(unstuffed);
        output.extend_from_slice(b"\r\n");
        saw_bare |= !is_crlf;
        previous_ended_in_crlf = is_crlf;
        line_start = next_line;
    }
}

fn truncated(mut output: Vec<u8>, max_size: usize) -> Vec<u8> {
    output.truncate(max_size);
    output
}

/// `dot_stuff` is what relay-out sends; the decoder is what every receiver
/// runs. The stuffed form must end exactly at its own marker, never before.
fn check_stuffing_round_trip(message: &[u8]) {
    let mut wire = Vec::new();
    dot_stuff(message, &mut wire);

    let has_bare_newline = has_bare_newline(message);
    for policy in [BareNewlinePolicy::Normalize, BareNewlinePolicy::Reject] {
        let decoded = decode(&wire, &[], usize::MAX, policy);
        assert_eq!(decoded.consumed, wire.len(), "ended early: {wire:?}");
        let expected_outcome = if has_bare_newline && policy == BareNewlinePolicy::Reject {
            DataOutcome::BareNewline
        } else {
            DataOutcome::Complete
        };
        assert_eq!(decoded.outcome, Some(expected_outcome), "{wire:?}");

        let mut expected = normalize_newlines(message);
        if !message.is_empty() && !message.ends_with(b"\r\n") {
            expected.extend_from_slice(b"\r\n");
        }
        assert_eq!(decoded.output, expected, "{wire:?}");
    }
}

fn has_bare_newline(message: &[u8]) -> bool {
    normalize_newlines(message) != message
}

/// Every bare CR and bare LF written as CRLF.
fn normalize_newlines(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut index = 0;
    while let Some(&byte) = message.get(index) {
        match (byte, message.get(index + 1)) {
            (b'\r', Some(b'\n')) => {
                out.extend_from_slice(b"\r\n");
                index += 2;
                continue;
            }
            (b'\r' | b'\n', _) => out.extend_from_slice(b"\r\n"),
            _ => out.push(byte),
        }
        index += 1;
    }
    out
}
