//! The daemon's life: load the configuration, resume the queue, serve SMTP
//! and deliver until SIGTERM.
//!
//! SIGHUP (and `relay-out queue flush`, which sends it) reloads the TLS
//! certificate, re-reads outbound.ini `disabled` and auth_flat_file.ini, and
//! makes every deferred recipient due now, as Haraka's SIGHUP drains its
//! temp-fail queue; after `relay-out tlsrpt send` it also sends the pending
//! TLS-RPT reports (crate::tlsrpt).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use smtp_core::config::{ConfigDir, CoreSettings};
use smtp_core::server::Server;
use tracing::{info, warn};

use crate::acl::RelayAcl;
use crate::config::RelayOutSettings;
use crate::courier::{self, DisabledSwitch, Dispatcher};
use crate::policy::{Intake, RelayOut};
use crate::queue;
use crate::submission::Submission;

pub async fn run(config: &Path) -> anyhow::Result<()> {
    let dir = ConfigDir::open(config)?;
    let core = CoreSettings::load(&dir)?;
    let settings = RelayOutSettings::load(&dir)?;
    for warning in core.warnings.iter().chain(&settings.warnings) {
        warn!("config: {warning}");
    }
    let acl = RelayAcl::new(&settings, &core.listen)?;

    let queue_dir = &settings.outbound.queue_dir;
    let spool = queue::open(queue_dir).context("opening the queue")?;
    if let Some(pid) = spool.running_daemon()?
        && pid != std::process::id()
    {
        bail!(
            "another relay-out (PID {pid}) is using the queue {}; two daemons must never share one",
            queue_dir.display()
        );
    }
    // Each envelope is read, reduced to its compact record and dropped, so
    // a large queue is never in memory at once.
    let (loaded, backlog) = {
        let spool = spool.clone();
        tokio::task::spawn_blocking(move || {
            let mut backlog = courier::DueList::default();
            let now = std::time::SystemTime::now();
            let report = spool.load_each(|entry| backlog.resume(&entry.envelope, now))?;
            Ok::<_, spool::SpoolError>((report, backlog))
        })
        .await
        .context("loading the queue")??
    };
    info!(
        queue = %queue_dir.display(),
        messages = backlog.counts().0,
        set_aside = loaded.set_aside.len(),
        temp_files_removed = loaded.temp_files_removed,
        unacknowledged_removed =
            loaded.orphan_data_removed.len() + loaded.cut_short_removed.len(),
        removal_leftovers_removed = loaded.leftover_states_removed,
        spares_kept = loaded.spares_kept,
        "queue loaded"
    );
    spool
        .write_pid_file(std::process::id())
        .context("writing the PID file")?;
    // After the load, which handed over the spares a previous run left.
    spool
        .keep_spares()
        .context("starting the queue's spare files")?;

    let (dispatcher_handle, inbox) = courier::channel();
    let switch = DisabledSwitch::new(dir.root().to_path_buf(), settings.outbound.disabled);
    let context = courier::Context::new(
        &dir,
        &core,
        &settings,
        spool.clone(),
        dispatcher_handle.clone(),
        &switch,
    )?;
    for line in courier::describe(&settings, &core.listen).lines() {
        info!("{}", line.trim_start());
    }
    if switch.is_disabled() {
        info!("outbound.ini: disabled=true, mail is queued but not delivered");
    }
    let dane = context.dane();
    tokio::spawn(async move { dane.check().await });
    let source_check = context.source_check(&settings);
    let tlsrpt = context.tlsrpt();
    let tlsrpt_timer = tokio::spawn(Arc::clone(&tlsrpt).run());
    let slots = courier::Slots::new(
        settings.outbound.concurrency_max,
        settings.outbound.domain_concurrency_max,
    );
    let dispatcher = Dispatcher::new(Arc::new(context), inbox, switch, slots, backlog);
    // The first self-check decides the address family before the first
    // delivery; mail submitted meanwhile waits in the dispatcher's inbox.
    let dispatcher_task = tokio::spawn(async move {
        let rechecks = source_check.start().await;
        dispatcher.run().await;
        rechecks.abort();
    });

    let submission = Arc::new(Submission::new(settings.auth_users.clone(), &core));
    describe_submission(&submission, &core);
    let policy = Arc::new(RelayOut::new(
        acl,
        settings.dest_domains.clone(),
        Intake {
            spool: spool.clone(),
            dispatcher: dispatcher_handle.clone(),
            received_header: settings.outbound.received_header.clone(),
            me: core.me.clone(),
        },
        Arc::clone(&submission),
    ));
    let flush = dispatcher_handle.clone();
    let reload_tlsrpt = Arc::clone(&tlsrpt);
    let config_root = dir.root().to_path_buf();
    let served = match Server::from_settings(&core, policy) {
        Ok(server) => server
            .on_reload(Box::new(move || {
                submission.reload(&config_root);
                flush.flush();
                reload_tlsrpt.on_hangup();
            }))
            .run()
            .await
            .context("serving SMTP"),
        Err(error) => Err(error).context("starting the server"),
    };
    dispatcher_handle
        .shutdown(core.force_shutdown_timeout)
        .await;
    let _ = dispatcher_task.await;
    tlsrpt_timer.abort();
    tlsrpt.save_if_changed().await;
    if let Err(error) = spool.remove_pid_file() {
        warn!(%error, "cannot remove the PID file");
    }
    served
}

/// Startup lines about AUTH and the submission listeners, warning about
/// the setups that cannot work as intended.
fn describe_submission(submission: &Submission, core: &CoreSettings) {
    let listeners = submission.listeners(&core.listen);
    if submission.has_users() {
        info!(
            users = submission.user_count(),
            "AUTH offered inside TLS (and to clients on this host); authenticated clients may relay"
        );
    }
    if listeners.is_empty() {
        return;
    }
    let shown: Vec<String> = listeners.iter().map(|addr| addr.to_string()).collect();
    info!(listeners = %shown.join(","), "submission listeners: MAIL needs AUTH (or relay_acl_allow)");
    if !submission.has_users() {
        warn!(
            "submission listeners but no users in auth_flat_file.ini: only relay_acl_allow clients can send there"
        );
    }
    if core.tls.files.is_none() {
        warn!(
            "submission listeners but no certificate in tls.ini: AUTH is offered only to clients on this host"
        );
    }
}
