//! Seeded pseudo-random tests: split-read invariance, agreement with a
//! deliberately naive line-by-line model, and the encoder/decoder round trip.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::tests::{Decoded, decode_in_pieces, decode_whole};
use super::{BareNewlinePolicy, DataOutcome, DotStuffer, dot_stuff};

const ITERATIONS: usize = 20_000;

/// Bytes heavy in everything that matters to DATA framing.
const FRAMING_ALPHABET: &[u8] = b"\r\r\r\n\n\n...x\0";
/// Line content without CR or LF, for messages with CRLF-only line endings.
const LINE_ALPHABET: &[u8] = b"...x \0\xff";

fn random_bytes(rng: &mut StdRng, alphabet: &[u8], max_len: usize) -> Vec<u8> {
    let len = rng.random_range(0..=max_len);
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())])
        .collect()
}

fn random_cuts(rng: &mut StdRng, len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..rng.random_range(0..5))
        .map(|_| rng.random_range(0..=len))
        .collect();
    cuts.sort_unstable();
    cuts
}

fn random_policy(rng: &mut StdRng) -> BareNewlinePolicy {
    if rng.random_bool(0.5) {
        BareNewlinePolicy::Reject
    } else {
        BareNewlinePolicy::Normalize
    }
}

/// The decoder's specification written the slow, obvious way: cut the input
/// into lines by whatever ends them, and look at each whole line. Returns
/// None when the input holds no end marker.
fn naive_decode(input: &[u8], max_size: usize, policy: BareNewlinePolicy) -> Option<Decoded> {
    let mut output = Vec::new();
    let mut line_start = 0;
    let mut previous_ended_in_crlf = true;
    let mut saw_bare = false;
    loop {
        let break_at = line_start
            + input[line_start..]
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')?;
        let is_crlf = input[break_at] == b'\r' && *input.get(break_at + 1)? == b'\n';
        let line = &input[line_start..break_at];
        let next_line = break_at + if is_crlf { 2 } else { 1 };
        if previous_ended_in_crlf && is_crlf && line == b"." {
            let outcome = if output.len() > max_size {
                DataOutcome::TooBig
            } else if saw_bare && policy == BareNewlinePolicy::Reject {
                DataOutcome::BareNewline
            } else {
                DataOutcome::Complete
            };
            output.truncate(max_size);
            return Some(Decoded {
                outcome: Some(outcome),
                output,
                leftover: input[next_line..].to_vec(),
                bytes_received: next_line as u64,
            });
        }
        let unstuffed = match line {
            [b'.', rest @ ..] if !rest.is_empty() => rest,
            _ => line,
        };
        output.extend_from_slice(unstuffed);
        output.extend_from_slice(b"\r\n");
        saw_bare |= !is_crlf;
        previous_ended_in_crlf = is_crlf;
        line_start = next_line;
    }
}

#[test]
fn random_inputs_decode_like_one_read_and_like_the_naive_model() {
    let mut rng = StdRng::seed_from_u64(0x5eed_da7a);
    for _ in 0..ITERATIONS {
        let mut input = random_bytes(&mut rng, FRAMING_ALPHABET, 40);
        if rng.random_bool(0.8) {
            input.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
        }
        let policy = random_policy(&mut rng);
        let max_size = if rng.random_bool(0.3) {
            rng.random_range(0..30)
        } else {
            usize::MAX
        };

        let whole = decode_whole(&input, max_size, policy);
        let cuts = random_cuts(&mut rng, input.len());
        let split = decode_in_pieces(&input, &cuts, max_size, policy);
        assert_eq!(split, whole, "input {input:?} cuts {cuts:?}");

        match naive_decode(&input, max_size, policy) {
            Some(expected) => assert_eq!(whole, expected, "input {input:?}"),
            None => {
                assert_eq!(whole.outcome, None, "input {input:?}");
                assert_eq!(whole.bytes_received, input.len() as u64);
            }
        }
    }
}

#[test]
fn dot_stuffed_crlf_messages_round_trip() {
    let mut rng = StdRng::seed_from_u64(0x0d07_5700);
    for _ in 0..ITERATIONS {
        let line_count = rng.random_range(0..6);
        let lines: Vec<Vec<u8>> = (0..line_count)
            .map(|_| random_bytes(&mut rng, LINE_ALPHABET, 6))
            .collect();
        let mut message = lines.join(&b"\r\n"[..]);
        if line_count > 0 && rng.random_bool(0.5) {
            message.extend_from_slice(b"\r\n");
        }

        let mut wire = Vec::new();
        dot_stuff(&message, &mut wire);
        assert_chunked_stuffing_matches(&mut rng, &message, &wire);
        wire.extend_from_slice(b"QUIT\r\n");

        let mut expected = message.clone();
        if !message.is_empty() && !message.ends_with(b"\r\n") {
            expected.extend_from_slice(b"\r\n");
        }
        let policy = random_policy(&mut rng);
        let cuts = random_cuts(&mut rng, wire.len());
        let decoded = decode_in_pieces(&wire, &cuts, usize::MAX, policy);
        assert_eq!(
            decoded.outcome,
            Some(DataOutcome::Complete),
            "message {message:?}"
        );
        assert_eq!(
            decoded.output, expected,
            "message {message:?} wire {wire:?}"
        );
        assert_eq!(decoded.leftover, b"QUIT\r\n", "message {message:?}");
    }
}

/// Messages with bare CR/LF anywhere: the stuffed form must still end exactly
/// at its own terminator, and decode to the message with every bare newline
/// made CRLF (Normalize) or be flagged (Reject).
#[test]
fn dot_stuffed_arbitrary_messages_never_end_early() {
    let mut rng = StdRng::seed_from_u64(0xba4e_11fe);
    for _ in 0..ITERATIONS {
        let message = random_bytes(&mut rng, FRAMING_ALPHABET, 30);
        let mut wire = Vec::new();
        dot_stuff(&message, &mut wire);
        assert_chunked_stuffing_matches(&mut rng, &message, &wire);
        let stuffed_len = wire.len();
        wire.extend_from_slice(b"QUIT\r\n");

        let normalized = normalize_newlines(&message);
        let mut expected = normalized.clone();
        if !message.is_empty() && !message.ends_with(b"\r\n") {
            expected.extend_from_slice(b"\r\n");
        }

        let normalize = decode_whole(&wire, usize::MAX, BareNewlinePolicy::Normalize);
        assert_eq!(
            normalize.outcome,
            Some(DataOutcome::Complete),
            "message {message:?}"
        );
        assert_eq!(normalize.output, expected, "message {message:?}");
        assert_eq!(
            normalize.bytes_received, stuffed_len as u64,
            "message {message:?}"
        );

        let reject = decode_whole(&wire, usize::MAX, BareNewlinePolicy::Reject);
        let outcome = if has_bare_newline(&message) {
            DataOutcome::BareNewline
        } else {
            DataOutcome::Complete
        };
        assert_eq!(reject.outcome, Some(outcome), "message {message:?}");
        assert_eq!(reject.leftover, b"QUIT\r\n");
    }
}

fn assert_chunked_stuffing_matches(rng: &mut StdRng, message: &[u8], wire: &[u8]) {
    let mut stuffer = DotStuffer::new();
    let mut chunked = Vec::new();
    let mut start = 0;
    for cut in random_cuts(rng, message.len()) {
        stuffer.push(&message[start..cut], &mut chunked);
        start = cut;
    }
    stuffer.push(&message[start..], &mut chunked);
    stuffer.finish(&mut chunked);
    assert_eq!(chunked, wire, "message {message:?}");
}

/// Every CRLF kept, every bare CR and bare LF made CRLF.
fn normalize_newlines(message: &[u8]) -> Vec<u8> {
    let mut normalized = Vec::new();
    let mut index = 0;
    while let Some(&byte) = message.get(index) {
        match (byte, message.get(index + 1)) {
            (b'\r', Some(b'\n')) => {
                normalized.extend_from_slice(b"\r\n");
                index += 2;
                continue;
            }
            (b'\r' | b'\n', _) => normalized.extend_from_slice(b"\r\n"),
            _ => normalized.push(byte),
        }
        index += 1;
    }
    normalized
}

/// Whether any CR is not followed by LF, or any LF not preceded by CR.
fn has_bare_newline(message: &[u8]) -> bool {
    message.iter().enumerate().any(|(index, &byte)| match byte {
        b'\r' => message.get(index + 1) != Some(&b'\n'),
        b'\n' => index == 0 || message[index - 1] != b'\r',
        _ => false,
    })
}
