//! DNS queries whose answers say whether the resolver validated them: the
//! AD bit of a loopback validating resolver (Postfix's design; RFC 7672
//! §1.3 and RFC 6698 §A.3.2 allow it only over a trusted path).
//!
//! hickory-resolver hides the response header, so these queries are built
//! and sent with hickory-proto directly: RD, AD and EDNS DO set, UDP with a
//! 1232-byte payload, TCP when the answer is truncated.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::verify::Tlsa;

/// What one query came to, with the resolver's verdict on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The resolver validated the answer (or the proof of its absence).
    pub authenticated: bool,
    pub kind: AnswerKind,
    /// How long it may be reused: the records' smallest TTL (`None`: no
    /// records, whose absence is not cached).
    pub ttl: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerKind {
    /// NOERROR with records of the asked type (after any CNAME).
    Records(Vec<RData>),
    /// NXDOMAIN, or NOERROR without records of the type.
    NoRecords,
}

/// Why a query gave no answer: the resolver failed it (SERVFAIL: bogus or
/// unreachable), or never answered in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LookupError(pub String);

/// Asks `server` for `name`'s `rtype` records.
pub async fn query(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    timeout: Duration,
) -> Result<Answer, LookupError> {
    let fqdn = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    let name = Name::from_ascii(&fqdn)
        .map_err(|error| LookupError(format!("{fqdn:?} is not a domain name: {error}")))?;
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.metadata.authentic_data = true;
    let mut edns = Edns::new();
    edns.set_dnssec_ok(true).set_max_payload(1232);
    message.set_edns(edns);
    message.add_query(Query::query(name.clone(), rtype));
    let request = message
        .to_vec()
        .map_err(|error| LookupError(format!("cannot encode the query: {error}")))?;
    let ask = async {
        let response = udp(server, &request, message.metadata.id).await?;
        if response.metadata.truncation {
            tcp(server, &request, message.metadata.id).await
        } else {
            Ok(response)
        }
    };
    let response = tokio::time::timeout(timeout, ask).await.map_err(|_| {
        LookupError(format!(
            "no answer from {server} for {fqdn} {rtype} within {timeout:?}"
        ))
    })??;
    let authenticated = response.metadata.authentic_data;
    match response.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        code => {
            return Err(LookupError(format!(
                "{server} answered {code} for {fqdn} {rtype}"
            )));
        }
    }
    let matching = || {
        response
            .answers
            .iter()
            .filter(|record| record.record_type() == rtype)
    };
    let records: Vec<RData> = matching().map(|record| record.data.clone()).collect();
    let ttl = matching()
        .map(|record| record.ttl)
        .min()
        .map(|seconds| Duration::from_secs(u64::from(seconds)));
    Ok(Answer {
        authenticated,
        ttl,
        kind: if records.is_empty() {
            AnswerKind::NoRecords
        } else {
            AnswerKind::Records(records)
        },
    })
}

/// The usable TLSA records among `records` (none usable among some still
/// means "STARTTLS required": the caller knows there were some).
pub fn usable_tlsa(records: &[RData]) -> Vec<Tlsa> {
    records
        .iter()
        .filter_map(|record| match record {
            RData::TLSA(tlsa) => Tlsa::usable(
                tlsa.cert_usage.into(),
                tlsa.selector.into(),
                tlsa.matching.into(),
                tlsa.cert_data.clone(),
            ),
            _ => None,
        })
        .collect()
}

async fn udp(server: SocketAddr, request: &[u8], id: u16) -> Result<Message, LookupError> {
    let io = |error: std::io::Error| LookupError(format!("query to {server} failed: {error}"));
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal address")
    } else {
        "[::]:0".parse().expect("literal address")
    };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    socket.connect(server).await.map_err(io)?;
    socket.send(request).await.map_err(io)?;
    let mut buffer = vec![0; 65535];
    // Datagrams with another id are stray answers: bounded by the caller's
    // timeout and by this count.
    for _ in 0..8 {
        let len = socket.recv(&mut buffer).await.map_err(io)?;
        if let Ok(response) = Message::from_vec(&buffer[..len])
            && response.metadata.id == id
        {
            return Ok(response);
        }
    }
    Err(LookupError(format!("no matching answer from {server}")))
}

async fn tcp(server: SocketAddr, request: &[u8], id: u16) -> Result<Message, LookupError> {
    let io = |error: std::io::Error| LookupError(format!("query to {server} failed: {error}"));
    let mut stream = TcpStream::connect(server).await.map_err(io)?;
    let len = u16::try_from(request.len()).map_err(|_| LookupError("query too long".into()))?;
    stream.write_all(&len.to_be_bytes()).await.map_err(io)?;
    stream.write_all(request).await.map_err(io)?;
    let mut len = [0; 2];
    stream.read_exact(&mut len).await.map_err(io)?;
    let mut buffer = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buffer).await.map_err(io)?;
    let response = Message::from_vec(&buffer)
        .map_err(|error| LookupError(format!("undecodable answer from {server}: {error}")))?;
    if response.metadata.id != id {
        return Err(LookupError(format!("mismatched answer from {server}")));
    }
    Ok(response)
}
