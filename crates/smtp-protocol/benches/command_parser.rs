//! Criterion benchmark of [`Command::parse`]: the command lines of a typical
//! pipelined transaction, in bytes per second of command text.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use smtp_protocol::command::Command;

/// What one inbound transaction sends, as the driver hands it over (no CRLF).
const TRANSACTION: &[&[u8]] = &[
    b"EHLO mail-ed1-f41.google.com",
    b"MAIL FROM:<bounces+12345-abcd-user=example.com@mail.sender.example> SIZE=2048 BODY=8BITMIME",
    b"RCPT TO:<user@example.com>",
    b"RCPT TO:<Another.User+tag@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;another.user@example.com",
    b"DATA",
    b"RSET",
    b"NOOP",
    b"QUIT",
];

fn parse_transaction(c: &mut Criterion) {
    let bytes: usize = TRANSACTION.iter().map(|line| line.len() + 2).sum();
    let mut group = c.benchmark_group("command_parser");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("transaction", |b| {
        b.iter(|| {
            for line in TRANSACTION {
                let _ = black_box(Command::parse(black_box(line)));
            }
        })
    });
    let mail = TRANSACTION[1];
    group.throughput(Throughput::Bytes(mail.len() as u64 + 2));
    group.bench_function("mail_from_with_parameters", |b| {
        b.iter(|| black_box(Command::parse(black_box(mail))))
    });
    let hostile = [b'X'; 510];
    group.throughput(Throughput::Bytes(hostile.len() as u64 + 2));
    group.bench_function("unrecognized_510_octets", |b| {
        b.iter(|| black_box(Command::parse(black_box(&hostile))))
    });
    group.finish();
}

criterion_group!(benches, parse_transaction);
criterion_main!(benches);
