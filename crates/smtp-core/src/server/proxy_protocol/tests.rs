use super::*;

use proxy_header::ProxiedAddress;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn v1(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

/// A v2 header as HAProxy's `send-proxy-v2` writes it (the crate's encoder).
fn v2(addresses: Option<(&str, &str)>) -> Vec<u8> {
    let header = match addresses {
        Some((source, destination)) => proxy_header::ProxyHeader::with_address(
            ProxiedAddress::stream(source.parse().unwrap(), destination.parse().unwrap()),
        ),
        None => proxy_header::ProxyHeader::with_local(),
    };
    let mut buf = Vec::new();
    header.encode_v2(&mut buf).unwrap();
    buf
}

fn addresses(source: &str, destination: &str) -> Option<(SocketAddr, SocketAddr)> {
    Some((source.parse().unwrap(), destination.parse().unwrap()))
}

#[test]
fn complete_headers_end_where_the_smtp_begins() {
    let cases = [
        (
            v1("PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n"),
            1,
            addresses("192.0.2.7:40000", "198.51.100.1:25"),
        ),
        (
            v1("PROXY TCP6 2001:db8::7 2001:db8::1 40000 25\r\n"),
            1,
            addresses("[2001:db8::7]:40000", "[2001:db8::1]:25"),
        ),
        (v1("PROXY UNKNOWN\r\n"), 1, None),
        (
            v1("PROXY UNKNOWN 192.0.2.7 198.51.100.1 40000 25\r\n"),
            1,
            None,
        ),
        (
            v2(Some(("192.0.2.7:40000", "198.51.100.1:25"))),
            2,
            addresses("192.0.2.7:40000", "198.51.100.1:25"),
        ),
        (
            v2(Some(("[2001:db8::7]:40000", "[2001:db8::1]:25"))),
            2,
            addresses("[2001:db8::7]:40000", "[2001:db8::1]:25"),
        ),
        // A mapped IPv4 client is the IPv4 client.
        (
            v2(Some((
                "[::ffff:192.0.2.7]:40000",
                "[::ffff:198.51.100.1]:25",
            ))),
            2,
            addresses("192.0.2.7:40000", "198.51.100.1:25"),
        ),
        // LOCAL: the proxy's own health check.
        (v2(None), 2, None),
    ];
    for (header, version, addresses) in cases {
        let mut input = header.clone();
        input.extend_from_slice(b"EHLO client.example\r\n");
        assert_eq!(
            decode(&input),
            Decoded::Complete {
                header: ProxyHeader { version, addresses },
                length: header.len()
            },
            "{header:?}"
        );
        // Every proper prefix is a header still arriving.
        for cut in 0..header.len() {
            assert_eq!(
                decode(&header[..cut]),
                Decoded::Incomplete,
                "{:?}",
                &header[..cut]
            );
        }
    }
}

#[test]
fn garbage_is_refused_as_soon_as_it_shows() {
    let invalid = [
        &b"EHLO client.example\r\n"[..],
        b"\r\nEHLO",
        b"PROXZ",
        b"PROXY TCP5 192.0.2.7 198.51.100.1 40000 25\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 40000\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 70000\r\n",
        b"PROXY TCP4 2001:db8::7 198.51.100.1 40000 25\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\n",
        // Without CR the header would run into the client's EHLO line.
        b"PROXY UNKNOWN\nEHLO client.example\r\n",
        b"PROXY TCP4 192.0.2.7\r\n",
    ];
    for input in invalid {
        assert!(
            matches!(decode(input), Decoded::Invalid(_)),
            "{:?}: {:?}",
            String::from_utf8_lossy(input),
            decode(input)
        );
    }
}

#[test]
fn oversized_headers_are_refused_at_the_limit() {
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX - 1, b'x');
    assert_eq!(decode(&long), Decoded::Incomplete);
    long.push(b'x');
    assert_eq!(
        decode(&long),
        Decoded::Invalid("v1 header longer than 107 bytes")
    );

    let mut big = v2(None);
    let declared = u16::try_from(V2_MAX - V2_FIXED + 1).unwrap();
    big[14..16].copy_from_slice(&declared.to_be_bytes());
    assert_eq!(
        decode(&big),
        Decoded::Invalid("v2 header longer than 4096 bytes")
    );
}

#[test]
fn v2_with_a_bad_command_or_udp_is_refused() {
    let mut header = v2(Some(("192.0.2.7:40000", "198.51.100.1:25")));
    header[13] = 0x12; // IPv4 over UDP
    assert_eq!(decode(&header), Decoded::Invalid("a UDP connection"));
    header[12] = 0x22; // version 2, command 2: undefined
    assert_eq!(decode(&header), Decoded::Invalid("malformed v2 header"));
}

/// A connected pair: the test's client end and the server's end.
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

/// Whatever the segments, the reader takes the header and leaves the
/// client's bytes, even when they arrive with it.
#[tokio::test]
async fn the_reader_consumes_exactly_the_header() {
    let v1_header = v1("PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n");
    let v2_header = v2(Some(("[2001:db8::7]:40000", "[2001:db8::1]:25")));
    for header in [v1_header, v2_header] {
        for segment in [1, 5, header.len(), header.len() + 6] {
            let (mut client, mut server) = pair().await;
            let mut input = header.clone();
            input.extend_from_slice(b"EHLO x\r\n");
            let writer = tokio::spawn(async move {
                for piece in input.chunks(segment) {
                    client.write_all(piece).await.unwrap();
                    client.flush().await.unwrap();
                    tokio::task::yield_now().await;
                }
                client
            });
            let read = read_header(&mut server, Duration::from_secs(10)).await;
            assert!(read.unwrap().addresses.is_some());
            let _client = writer.await.unwrap();
            let mut rest = [0u8; 8];
            server.read_exact(&mut rest).await.unwrap();
            assert_eq!(&rest, b"EHLO x\r\n", "segment {segment}");
        }
    }
}

#[tokio::test]
async fn the_reader_refuses_garbage_and_reports_a_closed_connection() {
    let (mut client, mut server) = pair().await;
    client.write_all(b"EHLO client.example\r\n").await.unwrap();
    let error = read_header(&mut server, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        matches!(error, HeaderError::Invalid("not a PROXY header")),
        "{error}"
    );

    let (mut client, mut server) = pair().await;
    client.write_all(b"PROXY TCP4 192.0").await.unwrap();
    drop(client);
    let error = read_header(&mut server, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(matches!(error, HeaderError::Closed), "{error}");
}

/// A proxy that stops mid-header is cut off at the timeout (paused time: the
/// clock jumps to it once nothing else can happen).
#[tokio::test(start_paused = true)]
async fn the_reader_gives_up_after_the_timeout() {
    let (mut client, mut server) = pair().await;
    client.write_all(b"PROXY TCP4 192.0").await.unwrap();
    let started = tokio::time::Instant::now();
    let error = read_header(&mut server, HEADER_TIMEOUT).await.unwrap_err();
    assert!(matches!(error, HeaderError::Timeout), "{error}");
    assert_eq!(started.elapsed(), HEADER_TIMEOUT);
    drop(client);
}
