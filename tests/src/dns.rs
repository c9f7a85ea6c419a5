//! A real DNS server for tests, so the binaries under test resolve through the same code paths
//! as in production while nothing ever leaves loopback.
//!
//! The binaries are pointed at it with `nameservers=127.0.0.1:PORT`. It speaks DNS on the wire
//! over UDP and TCP (hickory-server does the framing), answering from an in-memory table built
//! with [`TestZone`].

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use hickory_proto::op::{Metadata, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX, PTR, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

/// TTL of every answer; short so nothing a test sees is stale for long, non-zero so the
/// resolver's cache is exercised as in production.
const TTL_SECONDS: u32 = 60;
/// How long an idle TCP client may keep its connection.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// hickory-server's per-connection outgoing response buffer.
const TCP_RESPONSE_BUFFER: usize = 16;

/// One record as the test wrote it; names are parsed when the server starts so the builder
/// methods stay infallible.
#[derive(Debug, Clone)]
enum TestRecord {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Mx { preference: u16, exchange: String },
    Ptr(String),
    Txt(String),
}

/// What the server does for one owner name.
#[derive(Debug, Clone)]
enum TestEntry {
    Records(Vec<TestRecord>),
    NxDomain,
    ServFail,
}

/// Owner name as written by a test: either text or an address whose reverse name is the owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TestOwner {
    Name(String),
    Reverse(IpAddr),
}

/// The in-memory zone data for a [`TestDns`]: each test states exactly the DNS world it needs.
///
/// Names not in the table answer NXDOMAIN; a name present with other types but not the one asked
/// answers NOERROR with no answers (NODATA). Names are absolute whether or not they end in a dot,
/// and matched case-insensitively.
#[derive(Debug, Default, Clone)]
pub struct TestZone {
    entries: Vec<(TestOwner, TestEntry)>,
}

impl TestZone {
    /// An empty zone: every name is NXDOMAIN.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an A record.
    pub fn a(self, name: &str, ip: Ipv4Addr) -> Self {
        self.record(TestOwner::Name(name.to_string()), TestRecord::A(ip))
    }

    /// Adds an AAAA record.
    pub fn aaaa(self, name: &str, ip: Ipv6Addr) -> Self {
        self.record(TestOwner::Name(name.to_string()), TestRecord::Aaaa(ip))
    }

    /// Adds an MX record.
    pub fn mx(self, name: &str, pref: u16, exchange: &str) -> Self {
        self.record(
            TestOwner::Name(name.to_string()),
            TestRecord::Mx {
                preference: pref,
                exchange: exchange.to_string(),
            },
        )
    }

    /// Adds a TXT record with `text` as its one character-string (split in
    /// 255-byte strings by the encoder when longer): MTA-STS's `_mta-sts`,
    /// TLS-RPT's `_smtp._tls`.
    pub fn txt(self, name: &str, text: &str) -> Self {
        self.record(
            TestOwner::Name(name.to_string()),
            TestRecord::Txt(text.to_string()),
        )
    }

    /// Adds the RFC 7505 null MX (`0 .`).
    pub fn null_mx(self, name: &str) -> Self {
        self.mx(name, 0, ".")
    }

    /// Adds a PTR record for `ip` (under in-addr.arpa or ip6.arpa) pointing at `name`.
    pub fn ptr(self, ip: IpAddr, name: &str) -> Self {
        self.record(TestOwner::Reverse(ip), TestRecord::Ptr(name.to_string()))
    }

    /// Makes `name` answer NXDOMAIN explicitly (the default for unknown names; this documents
    /// intent and overrides records added for the same name).
    pub fn nxdomain(mut self, name: &str) -> Self {
        self.set(TestOwner::Name(name.to_string()), TestEntry::NxDomain);
        self
    }

    /// Makes every query for `name` answer SERVFAIL.
    pub fn servfail(mut self, name: &str) -> Self {
        self.set(TestOwner::Name(name.to_string()), TestEntry::ServFail);
        self
    }

    /// Makes every query for the reverse name of `ip` answer SERVFAIL.
    pub fn ptr_servfail(mut self, ip: IpAddr) -> Self {
        self.set(TestOwner::Reverse(ip), TestEntry::ServFail);
        self
    }

    fn record(mut self, owner: TestOwner, record: TestRecord) -> Self {
        match self.entries.iter_mut().find(|(o, _)| *o == owner) {
            Some((_, TestEntry::Records(records))) => records.push(record),
            Some((_, entry)) => *entry = TestEntry::Records(vec![record]),
            None => self.entries.push((owner, TestEntry::Records(vec![record]))),
        }
        self
    }

    fn set(&mut self, owner: TestOwner, entry: TestEntry) {
        match self.entries.iter_mut().find(|(o, _)| *o == owner) {
            Some((_, existing)) => *existing = entry,
            None => self.entries.push((owner, entry)),
        }
    }

    /// Parses every name into the lookup table the server answers from.
    fn compile(&self) -> anyhow::Result<HashMap<Name, Answer>> {
        let mut table = HashMap::new();
        for (owner, entry) in &self.entries {
            let owner = match owner {
                TestOwner::Name(text) => absolute(text)?,
                TestOwner::Reverse(ip) => {
                    let mut name = Name::from(*ip);
                    name.set_fqdn(true);
                    name
                }
            };
            let answer = match entry {
                TestEntry::NxDomain => Answer::NxDomain,
                TestEntry::ServFail => Answer::ServFail,
                TestEntry::Records(records) => Answer::Records(
                    records
                        .iter()
                        .map(|record| {
                            Ok(Record::from_rdata(
                                owner.clone(),
                                TTL_SECONDS,
                                rdata(record)?,
                            ))
                        })
                        .collect::<anyhow::Result<Vec<Record>>>()?,
                ),
            };
            table.insert(owner, answer);
        }
        Ok(table)
    }
}

fn absolute(text: &str) -> anyhow::Result<Name> {
    let mut name = Name::from_str(text).with_context(|| format!("test zone name {text:?}"))?;
    name.set_fqdn(true);
    Ok(name)
}

fn rdata(record: &TestRecord) -> anyhow::Result<RData> {
    Ok(match record {
        TestRecord::A(ip) => RData::A(A(*ip)),
        TestRecord::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        TestRecord::Mx {
            preference,
            exchange,
        } => RData::MX(MX::new(*preference, absolute(exchange)?)),
        TestRecord::Ptr(target) => RData::PTR(PTR(absolute(target)?)),
        TestRecord::Txt(text) => RData::TXT(TXT::new(vec![text.clone()])),
    })
}

/// What the handler answers for one owner name.
#[derive(Debug)]
enum Answer {
    Records(Vec<Record>),
    NxDomain,
    ServFail,
}

/// The hickory-server request handler answering from the compiled table, authoritatively.
struct TableHandler {
    table: HashMap<Name, Answer>,
}

impl TableHandler {
    async fn answer<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;

        let Ok(info) = request.request_info() else {
            // Not exactly one query: nothing a resolver under test sends.
            metadata.response_code = ResponseCode::FormErr;
            return send(
                &mut response_handle,
                builder.build_no_records(metadata),
                request,
            )
            .await;
        };
        let query_name: &Name = info.query.name();
        let query_type = info.query.query_type();

        let (response_code, answers): (ResponseCode, Vec<&Record>) =
            match self.table.get(query_name) {
                None | Some(Answer::NxDomain) => (ResponseCode::NXDomain, Vec::new()),
                Some(Answer::ServFail) => (ResponseCode::ServFail, Vec::new()),
                Some(Answer::Records(records)) => (
                    ResponseCode::NoError,
                    records
                        .iter()
                        .filter(|r| query_type == RecordType::ANY || r.record_type() == query_type)
                        .collect(),
                ),
            };
        metadata.response_code = response_code;
        let response = builder.build(metadata, answers, [], [], []);
        send(&mut response_handle, response, request).await
    }
}

async fn send<'a, R: ResponseHandler>(
    response_handle: &mut R,
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Request,
) -> ResponseInfo {
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(_) => {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            hickory_proto::op::Header {
                metadata,
                counts: Default::default(),
            }
            .into()
        }
    }
}

// Written out by hand instead of with `#[async_trait]` (what the trait was declared with) so the
// tests crate needs no extra dependency; this is exactly the signature the macro generates.
impl RequestHandler for TableHandler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        T: 'async_trait + Time,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.answer(request, response_handle))
    }
}

/// Authoritative test DNS server on 127.0.0.1 (UDP and TCP on the same ephemeral port),
/// answering from a [`TestZone`]. It runs on the test's tokio runtime and stops when dropped.
pub struct TestDns {
    addr: SocketAddr,
    // Owning the server owns its tasks: dropping it aborts them and closes the sockets.
    _server: Server<TableHandler>,
}

impl TestDns {
    /// Binds 127.0.0.1:0 for UDP, then TCP on the same port, and starts answering.
    pub async fn start(zone: TestZone) -> anyhow::Result<TestDns> {
        let handler = TableHandler {
            table: zone.compile()?,
        };
        let (udp, tcp) = bind_same_port().await?;
        let addr = udp.local_addr().context("test DNS UDP address")?;
        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        Ok(TestDns {
            addr,
            _server: server,
        })
    }

    /// Where the server listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `nameservers=` value that points a binary under test at this server.
    pub fn nameservers_setting(&self) -> String {
        self.addr.to_string()
    }
}

/// The UDP port is chosen by the kernel; the TCP port must match it, and another test may grab
/// it in between, so retry a few times.
async fn bind_same_port() -> anyhow::Result<(UdpSocket, TcpListener)> {
    const TRIES: usize = 20;
    let mut last_error = None;
    for _ in 0..TRIES {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding test DNS UDP socket")?;
        let addr = udp.local_addr().context("test DNS UDP address")?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) => last_error = Some(error),
        }
    }
    Err(anyhow::anyhow!(
        "no port free for both UDP and TCP after {TRIES} tries: {last_error:?}"
    ))
}

/// A UDP socket on 127.0.0.1 that receives queries and never answers, to test resolver
/// timeouts. Nothing listens on the same TCP port, so a TCP fallback is refused at once.
pub struct SilentDns {
    socket: UdpSocket,
}

impl SilentDns {
    /// Binds 127.0.0.1:0.
    pub async fn start() -> anyhow::Result<SilentDns> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding silent DNS UDP socket")?;
        Ok(SilentDns { socket })
    }

    /// Where queries go to be ignored.
    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        self.socket.local_addr().context("silent DNS address")
    }
}
