//! `ReplyParser` on octets from a hostile server: it must never panic; any
//! split of the octets into reads must give the same replies (and the same
//! first error) as one read; every reply it returns must be well formed and
//! survive a round trip through its own wire form.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use smtp_protocol::reply_parser::{ReplyError, ReplyParser};
use smtp_protocol::reply::Reply;

/// Everything the parser said about one input: the replies in order, then
/// the error that stopped it (the session ends there) and whether octets of
/// an unfinished reply were left.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    replies: Vec<Reply>,
    error: Option<ReplyError>,
    buffered: bool,
}

fuzz_target!(|bytes: &[u8]| {
    let _ = run(bytes);
});

fn run(bytes: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(bytes);
    let cut_count = u.int_in_range(0..=8)?;
    let mut cuts = Vec::with_capacity(cut_count);
    for _ in 0..cut_count {
        cuts.push(usize::from(u.arbitrary::<u16>()?));
    }
    let input = u.take_rest();
    let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();

    let whole = parse(input, &[]);
    let pieces = parse(input, &cuts);
    assert_eq!(whole, pieces, "split at {cuts:?}");
    for reply in &whole.replies {
        check_reply(reply);
    }
    Ok(())
}

fn parse(input: &[u8], cuts: &[usize]) -> Parsed {
    let mut parser = ReplyParser::new();
    let mut replies = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain(std::iter::once(input.len())) {
        parser.push(&input[start..end]);
        start = end;
        loop {
            match parser.next_reply() {
                Ok(Some(reply)) => replies.push(reply),
                Ok(None) => break,
                Err(error) => {
                    return Parsed {
                        replies,
                        error: Some(error),
                        buffered: true,
                    };
                }
            }
        }
    }
    Parsed {
        replies,
        error: None,
        buffered: parser.has_buffered_input(),
    }
}

fn check_reply(reply: &Reply) {
    assert!((200..600).contains(&reply.code()), "{reply:?}");
    if let Some(enhanced) = reply.enhanced() {
        assert_eq!(u16::from(enhanced.class), reply.code() / 100, "{reply:?}");
    }
    for line in reply.lines() {
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
    let mut wire = Vec::new();
    reply.write_to(&mut wire);
    let mut parser = ReplyParser::new();
    parser.push(&wire);
    let again = parser.next_reply();
    assert_eq!(again, Ok(Some(reply.clone())), "{wire:?}");
    assert!(!parser.has_buffered_input(), "{wire:?}");
}
