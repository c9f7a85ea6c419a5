//! relay-out's source address self-check (issue 17 point 5): the reverse
//! DNS of the address it sends from decides whether MX delivery uses IPv6.
//! The kernel's source is found by routing towards the probe targets the
//! test sets. For IPv4 that is 127.0.0.1, whose reverse name the resolver
//! answers itself (RFC 6761: `localhost`, confirmed). The resolver does the
//! same for ::1, so the IPv6 source is [`V6_SOURCE`], an address these tests
//! add to `lo` of their private network namespace (the kernel picks it as
//! the source towards itself); the test DNS says what its PTR is. The MX
//! host has an A (127.0.0.2) and an AAAA (::1) record, with a recording
//! server on each.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use postern_tests::backend::{Behaviour, RecordingBackend};
use postern_tests::dns::TestZone;
use postern_tests::outbound::{MxFarm, Outbound, OutboundOptions, ip, wait_until};
use postern_tests::process::{run_with_env, running_as_root};

const WAIT: Duration = Duration::from_secs(15);

/// The IPv6 source address: a documentation address on `lo`.
const V6_SOURCE: &str = "2001:db8::25";

const PROBE_ENV: [(&str, &str); 2] = [
    ("POSTERN_SOURCE_PROBE_V4", "127.0.0.1"),
    ("POSTERN_SOURCE_PROBE_V6", V6_SOURCE),
];

fn v6_source() -> Ipv6Addr {
    V6_SOURCE.parse().expect("valid IPv6 address")
}

/// Puts [`V6_SOURCE`] on `lo`, only where `lo` is the only interface: in
/// the private network namespace the tests run in, never on a real host.
fn add_v6_source() -> anyhow::Result<()> {
    anyhow::ensure!(
        running_as_root(),
        "this test adds an address to lo of its network namespace: run it as root in one (the README's .ci/test does)"
    );
    // /proc/self/net is this process's namespace (/sys/class/net may be
    // the host's).
    let interfaces: Vec<String> = std::fs::read_to_string("/proc/self/net/dev")?
        .lines()
        .skip(2)
        .filter_map(|line| Some(line.split_once(':')?.0.trim().to_owned()))
        .collect();
    anyhow::ensure!(
        interfaces == ["lo"],
        "run this test in a private network namespace (interfaces here: {interfaces:?})"
    );
    let output = Command::new("ip")
        // `replace`: another test of this module may have added it already.
        .args([
            "-6",
            "addr",
            "replace",
            &format!("{V6_SOURCE}/128"),
            "dev",
            "lo",
            "nodad",
        ])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "ip addr replace {V6_SOURCE}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn options() -> OutboundOptions {
    OutboundOptions {
        env: PROBE_ENV
            .iter()
            .map(|(key, value)| (*key, value.to_string()))
            .collect(),
        ..OutboundOptions::default()
    }
}

/// dual.test's MX has both families; the IPv6 source gets what `v6_ptr`
/// adds.
fn zone(v6_ptr: impl FnOnce(TestZone) -> TestZone) -> TestZone {
    let zone = TestZone::new()
        .mx("dual.test", 10, "mx.dual.test")
        .a("mx.dual.test", ip(2))
        .aaaa("mx.dual.test", Ipv6Addr::LOCALHOST);
    v6_ptr(zone)
}

/// The two MX servers: (IPv4 farm at 127.0.0.2, IPv6 server at [::1], same
/// port), and the IPv6 source address in place.
async fn dual_mx() -> anyhow::Result<(MxFarm, RecordingBackend)> {
    add_v6_source()?;
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let v6 = RecordingBackend::start_on(
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), farm.port),
        Behaviour::default(),
    )
    .await?;
    Ok((farm, v6))
}

/// Which MX server took a message.
#[derive(Debug, PartialEq, Eq)]
enum TakenOver {
    Ipv4,
    Ipv6,
}

/// Submits one message to dual.test and waits until one of the servers has
/// it; a second one would be a duplicate delivery.
async fn deliver_one(
    out: &Outbound,
    farm: &MxFarm,
    v6: &RecordingBackend,
) -> anyhow::Result<TakenOver> {
    let reply = out
        .submit("a@origin.test", &["u@dual.test"], "Subject: hi\n\nhi\n")
        .await?;
    anyhow::ensure!(reply.code == 250, "{reply:?}");
    let count = || (farm.get(2).accepted().len(), v6.accepted().len());
    wait_until(WAIT, "delivery", || count() != (0, 0))
        .await
        .map_err(|error| error.context(out.log()))?;
    match count() {
        (1, 0) => Ok(TakenOver::Ipv4),
        (0, 1) => Ok(TakenOver::Ipv6),
        other => anyhow::bail!("accepted (IPv4, IPv6): {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_source_without_ptr_makes_delivery_use_ipv4() -> anyhow::Result<()> {
    let (farm, v6) = dual_mx().await?;
    let out = Outbound::start(zone(|zone| zone), farm.port, options()).await?;
    out.wait_for_log("IPv6 source 2001:db8::25 has no PTR record", WAIT)
        .await?;
    let log = out.log();
    let warning = log
        .lines()
        .find(|line| line.contains("IPv6 source 2001:db8::25 has no PTR record"))
        .unwrap_or_default();
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("IPv4 only"), "{warning}");
    assert!(warning.contains("set its PTR"), "{warning}");
    assert!(
        log.contains("IPv4 source 127.0.0.1 has forward-confirmed reverse DNS: localhost"),
        "{log}"
    );

    // IPv6 comes first in the resolver's order: had it been used, the
    // IPv6 server would have taken the message.
    assert_eq!(deliver_one(&out, &farm, &v6).await?, TakenOver::Ipv4);
    assert_eq!(v6.record().connections, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_source_with_a_matching_ptr_delivers_over_ipv6() -> anyhow::Result<()> {
    let (farm, v6) = dual_mx().await?;
    let zone = zone(|zone| {
        zone.ptr(v6_source().into(), "relay6.test")
            .aaaa("relay6.test", v6_source())
    });
    let out = Outbound::start(zone, farm.port, options()).await?;
    out.wait_for_log(
        "IPv6 source 2001:db8::25 has forward-confirmed reverse DNS: relay6.test",
        WAIT,
    )
    .await?;

    assert_eq!(deliver_one(&out, &farm, &v6).await?, TakenOver::Ipv6);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inet_prefer_v6_overrides_a_failed_check() -> anyhow::Result<()> {
    let (farm, v6) = dual_mx().await?;
    // A PTR whose name does not resolve back to the source.
    let zone = zone(|zone| {
        zone.ptr(v6_source().into(), "elsewhere.test")
            .aaaa("elsewhere.test", "2001:db8::1".parse().expect("ip"))
    });
    let options = OutboundOptions {
        outbound: "temp_fail_intervals=5s*5\ninet_prefer=v6\n".into(),
        ..options()
    };
    let out = Outbound::start(zone, farm.port, options).await?;
    out.wait_for_log(
        "IPv6 source 2001:db8::25 has the PTR elsewhere.test, but elsewhere.test has no AAAA record for 2001:db8::25",
        WAIT,
    )
    .await?;
    assert!(out.log().contains("inet_prefer=v6"), "{}", out.log());

    assert_eq!(deliver_one(&out, &farm, &v6).await?, TakenOver::Ipv6);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_probe_prints_both_families() -> anyhow::Result<()> {
    let (farm, _v6) = dual_mx().await?;
    let options = OutboundOptions {
        files: vec![(
            "outbound_routes.ini".into(),
            "[bound.test]\nhosts = 127.0.0.6:25\nbind = 127.0.0.3\n".into(),
        )],
        ..options()
    };
    let out = Outbound::start(zone(|zone| zone), farm.port, options).await?;
    let dir = out.config_dir().display().to_string();
    let args = ["-c", dir.as_str(), "--check", "--probe"];

    let (status, text) = run_with_env("relay-out", &args, &PROBE_ENV)?;
    assert_eq!(status, 0, "{text}");
    assert!(
        text.contains("probe: IPv4 source 127.0.0.1 has forward-confirmed reverse DNS: localhost"),
        "{text}"
    );
    assert!(
        text.contains("warning: IPv6 source 2001:db8::25 has no PTR record"),
        "{text}"
    );
    // A route's own source is checked too, and only warned about.
    assert!(
        text.contains("warning: route source (bind) 127.0.0.3 has the PTR localhost, but localhost has no A record for 127.0.0.3"),
        "{text}"
    );

    // The configured source is checked instead of the kernel's; its PTR
    // (the resolver's `localhost`) does not lead back to it, and receivers
    // would refuse the mail: exit 1.
    out.write_outbound(farm.port, "local_address=127.0.0.9\n")?;
    let (status, text) = run_with_env("relay-out", &args, &PROBE_ENV)?;
    assert_eq!(status, 1, "{text}");
    assert!(
        text.contains("error: IPv4 source 127.0.0.9 has the PTR localhost, but localhost has no A record for 127.0.0.9"),
        "{text}"
    );
    assert!(
        text.contains("IPv6 source not checked: local_address is of the other family"),
        "{text}"
    );
    Ok(())
}
