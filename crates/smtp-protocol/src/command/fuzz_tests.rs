//! Seeded, bounded fuzzing of [`Command::parse`]: random bytes and random
//! mutations of valid lines must never panic, and every error text must stay
//! fit for a reply.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// Lines that parse, used as seeds for mutation.
const VALID_LINES: [&str; 14] = [
    "EHLO client.example",
    "HELO [192.0.2.1]",
    "MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME SMTPUTF8",
    "MAIL FROM:<>",
    "MAIL FROM:<@r.example:\"q\\\"x\"@b.example> AUTH=<>",
    "RCPT TO:<postmaster>",
    "RCPT TO:<用户@例子.广告> NOTIFY=NEVER",
    "RCPT TO:<u@[IPv6:2001:db8::1]>",
    "MAIL FROM:<a@b.example> RET=HDRS ENVID=QQ+2B1",
    "RCPT TO:<a@b.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+2Bb@c.example",
    "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
    "VRFY someone",
    "XCLIENT ADDR=192.0.2.1",
    "DATA",
];

/// Bytes that matter to the grammar, so mutations reach deep paths.
const INTERESTING_BYTES: &[u8] = b"<>@:\".\\[] =,%!-_\0\r\n\t\x7f\x80\xc3\xa9\xff";

/// Multi-byte pieces that reach IDNA, address literals and parameters.
const INTERESTING_FRAGMENTS: [&str; 12] = [
    "xn--", "例子", "\u{5d0}", "\u{301}", "ß", "\u{3002}", "\u{2028}", "[IPv6:", "::1]", "SIZE=",
    "BODY=", "\u{85}",
];

fn assert_parse_is_total(line: &[u8]) {
    match Command::parse(line) {
        Ok(command) => {
            let _ = command.verb();
            if let Command::Mail { from, .. } = &command {
                let _ = from.to_string();
            }
            if let Command::Rcpt { to, .. } = &command {
                let _ = to.to_string();
            }
        }
        Err(error) => {
            let text = error.to_string();
            assert!(
                text.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
                "{line:?} gave {text:?}"
            );
            let _ = error.reply().code();
        }
    }
}

#[test]
fn random_input_never_panics() {
    let mut rng = StdRng::seed_from_u64(0x5375_4d54_5000_0001);
    for _ in 0..20_000 {
        let len = rng.random_range(0..520);
        let line: Vec<u8> = (0..len)
            .map(|_| {
                if rng.random_bool(0.5) {
                    INTERESTING_BYTES[rng.random_range(0..INTERESTING_BYTES.len())]
                } else {
                    rng.random()
                }
            })
            .collect();
        assert_parse_is_total(&line);
    }
}

#[test]
fn mutated_valid_lines_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5375_4d54_5000_0002);
    for _ in 0..50_000 {
        let mut line = VALID_LINES[rng.random_range(0..VALID_LINES.len())]
            .as_bytes()
            .to_vec();
        for _ in 0..rng.random_range(1..6) {
            mutate(&mut rng, &mut line);
        }
        assert_parse_is_total(&line);
    }
}

fn mutate(rng: &mut StdRng, line: &mut Vec<u8>) {
    let byte = if rng.random_bool(0.7) {
        INTERESTING_BYTES[rng.random_range(0..INTERESTING_BYTES.len())]
    } else {
        rng.random()
    };
    let position = rng.random_range(0..=line.len());
    match rng.random_range(0..6) {
        0 => line.insert(position, byte),
        1 if position < line.len() => {
            line.remove(position);
        }
        2 if position < line.len() => line[position] = byte,
        3 => line.truncate(position),
        4 => {
            let fragment = INTERESTING_FRAGMENTS[rng.random_range(0..INTERESTING_FRAGMENTS.len())];
            line.splice(position..position, fragment.bytes());
        }
        _ => {
            let end = rng.random_range(position..=line.len());
            let chunk = line[position..end].to_vec();
            line.splice(position..position, chunk);
        }
    }
}
