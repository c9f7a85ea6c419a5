//! `scenario sink`: the load client straight into the sink, the ceiling of
//! one SMTP hop on this machine (compare smtp-source into smtp-sink).

use super::{Bench, load_phase};
use crate::bench::cli::Load;
use crate::bench::report::ScenarioReport;
use crate::bench::sink::{Offers, query_stats};

pub async fn run(bench: &Bench, load: &Load) -> anyhow::Result<ScenarioReport> {
    let offers = Offers {
        xclient: false,
        starttls: load.tls,
    };
    let (mut sink, addr) = bench.start_sink(offers).await?;
    let tls = match load.tls {
        // The sink's certificate is for 127.0.0.1, the address dialled.
        true => Some(bench.pki()?.client("127.0.0.1")?),
        false => None,
    };
    let phase = load_phase("sink", addr, load, tls, &mut [&mut sink]).await?;
    let counted = query_stats(addr).await?.messages;
    let mut report = ScenarioReport {
        scenario: format!("sink{}", if load.tls { " STARTTLS" } else { " plain" }),
        command: format!("postern-bench scenario sink {}", load.args()),
        ..ScenarioReport::default()
    };
    report.check(
        "the sink counted every accepted message",
        format!("{} accepted, {counted} counted", phase.delivered),
        counted == phase.delivered,
    );
    report.phases.push(phase);
    Ok(report)
}
