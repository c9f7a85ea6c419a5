//! Criterion benchmark of the DATA path in bytes per second: the server's
//! [`DataDecoder`] (end-of-data detection and dot-unstuffing) fed the way
//! the driver feeds it (8 KiB reads), and the client's dot-stuffing.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use smtp_protocol::data::{BareNewlinePolicy, DataDecoder, DataOutcome, dot_stuff};

/// The server driver's read size.
const READ_CHUNK: usize = 8 * 1024;

/// A message of about `size` octets of text in 76-character CRLF lines, with
/// a stuffed dot line now and then, as it arrives on the wire (terminator
/// included).
fn wire_message(size: usize) -> Vec<u8> {
    let mut wire =
        b"From: <a@example.org>\r\nTo: <b@example.com>\r\nSubject: bench\r\n\r\n".to_vec();
    let mut line = 0;
    while wire.len() < size {
        if line % 40 == 39 {
            wire.extend_from_slice(b"..a line that began with a dot\r\n");
        } else {
            wire.extend((0..74).map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789 "[(i + line) % 37]));
            wire.extend_from_slice(b"\r\n");
        }
        line += 1;
    }
    wire.extend_from_slice(b".\r\n");
    wire
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("data_decoder");
    for size in [2 * 1024, 100 * 1024, 1024 * 1024] {
        let wire = wire_message(size);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        let mut out = Vec::with_capacity(wire.len());
        group.bench_with_input(
            BenchmarkId::new("decode_8k_reads", size),
            &wire,
            |b, wire| {
                b.iter(|| {
                    out.clear();
                    let mut decoder = DataDecoder::new(usize::MAX, BareNewlinePolicy::Reject);
                    for chunk in wire.chunks(READ_CHUNK) {
                        let (_, outcome) = decoder.feed(black_box(chunk), &mut out);
                        if let Some(outcome) = outcome {
                            assert_eq!(outcome, DataOutcome::Complete);
                        }
                    }
                    black_box(out.len())
                })
            },
        );
        let content = &wire[..wire.len() - 3];
        let mut stuffed = Vec::with_capacity(wire.len() + wire.len() / 8);
        group.bench_with_input(
            BenchmarkId::new("dot_stuff", size),
            content,
            |b, content| {
                b.iter(|| {
                    stuffed.clear();
                    dot_stuff(black_box(content), &mut stuffed);
                    black_box(stuffed.len())
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
