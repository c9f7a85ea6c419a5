//! Provider-aware shaping: each destination's budget of sessions at once
//! and sessions per minute (shaping.ini), and the automatic back-off when
//! a destination answers with a rate reply (`421`, Gmail's `4.7.28`,
//! Microsoft's `4.7.650`/`4.7.500`).
//!
//! A budget is shared by every domain its shaping.ini section covers: a
//! `[*.google.com]` section puts every domain whose MX is a Google host in
//! one budget. A destination without a section gets a budget of its own
//! with outbound.ini `domain_concurrency_max` sessions, so that the back-off
//! applies to it too. On a rate reply the budget's concurrency halves and
//! it is suspended for the section's `suspend`; afterwards each run of as
//! many deliveries as its current concurrency raises it by one, back to
//! the configured figure. Every change is logged once and shown in the
//! `postern_shaping_*` metrics. Other budgets are never held up: a session
//! waits for its budget before it takes any of the shared slots
//! ([`super::limits`]).

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use smtp_core::dns::{Dns, MxAnswer};
use smtp_core::metrics::{DestinationLabels, metrics};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};

use super::mx::Destination;
use crate::config::{ShapingRule, ShapingRules};

/// The budgets of all destinations and the rules that make them.
#[derive(Debug)]
pub struct Shaper {
    rules: ShapingRules,
    /// The concurrency of a destination without its own figure.
    default_limit: usize,
    budgets: Mutex<HashMap<String, Budget>>,
}

/// Which budget a session counts against.
#[derive(Debug, Clone)]
pub struct BudgetKey {
    /// The shaping.ini section, or the destination for one without.
    name: String,
    rule: Option<ShapingRule>,
}

/// One destination's state.
#[derive(Debug)]
struct Budget {
    /// What shaping.ini (or outbound.ini) allows.
    configured: usize,
    /// What is allowed now: lower after a rate reply.
    limit: usize,
    in_flight: usize,
    suspended_until: Option<Instant>,
    suspend: Duration,
    /// Deliveries since the last step up.
    successes: usize,
    /// `messages_per_minute` as a gap between session starts.
    gap: Option<Duration>,
    next_start: Instant,
    /// From shaping.ini (kept, and shown in metrics, even when idle).
    shaped: bool,
    changed: Arc<Notify>,
}

/// What an attempt told about its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A rate reply: back off.
    RateReply,
    /// Something was delivered: recover a step.
    Delivered,
    /// Neither.
    Nothing,
}

/// A session's place in its budget, given back when dropped.
#[derive(Debug)]
pub struct ShapingPermit {
    shaper: Arc<Shaper>,
    key: String,
}

impl Shaper {
    /// The shaping.ini budgets are in the metrics from the start.
    pub fn new(rules: ShapingRules, default_limit: usize) -> Self {
        let shaper = Shaper {
            default_limit: default_limit.max(1),
            budgets: Mutex::new(HashMap::new()),
            rules,
        };
        for rule in &shaper.rules.rules {
            let key = BudgetKey::of(rule);
            shaper.lock_budget(&key, |_| ());
            shaper.publish(&key);
        }
        shaper
    }

    /// The budget for `destination`: its domain's section, else a suffix
    /// section matching one of its MX hosts (looked up only when there are
    /// suffix sections and the destination is not routed), else its own.
    pub async fn budget_for(
        &self,
        dns: &Dns,
        destination: &Destination,
        routed: bool,
    ) -> BudgetKey {
        let own = || BudgetKey {
            name: destination.to_string(),
            rule: None,
        };
        let Destination::Domain(domain) = destination else {
            return own();
        };
        if let Some(rule) = self.rules.for_domain(domain) {
            return BudgetKey::of(rule);
        }
        if routed || !self.rules.has_suffixes() {
            return own();
        }
        // A failed lookup is the attempt's business (it looks again and
        // reports); the session then counts against the domain alone.
        if let Ok(MxAnswer::Records(records)) = dns.mx(domain).await
            && let Some(rule) = self
                .rules
                .for_mx_hosts(records.iter().map(|record| record.exchange.as_str()))
        {
            return BudgetKey::of(rule);
        }
        own()
    }

    /// Waits until `key`'s budget has room (not suspended, under its
    /// concurrency, past its next start time), then takes a place in it.
    pub async fn acquire(self: &Arc<Self>, key: &BudgetKey) -> ShapingPermit {
        loop {
            let notify = Arc::clone(&self.lock_budget(key, |budget| Arc::clone(&budget.changed)));
            // Registered before the check, so a release in between is not missed.
            let mut notified = pin!(notify.notified());
            notified.as_mut().enable();
            let now = Instant::now();
            let wait_until = self.lock_budget(key, |budget| {
                if let Some(until) = budget.suspended_until {
                    if until > now {
                        return Some(Some(until));
                    }
                    budget.suspended_until = None;
                    info!(destination = %key.name, concurrency = budget.limit, "shaping: destination resumed after its suspension");
                }
                if budget.in_flight >= budget.limit {
                    return Some(None);
                }
                if budget.next_start > now {
                    return Some(Some(budget.next_start));
                }
                budget.in_flight += 1;
                if let Some(gap) = budget.gap {
                    budget.next_start = now + gap;
                }
                None
            });
            self.publish(key);
            match wait_until {
                None => {
                    return ShapingPermit {
                        shaper: Arc::clone(self),
                        key: key.name.clone(),
                    };
                }
                Some(Some(deadline)) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(deadline) => {}
                    }
                }
                Some(None) => notified.await,
            }
        }
    }

    /// Whether sessions of `key`'s budget may be kept idle for the next
    /// message (`session_cache`): not for a shaping.ini section, whose
    /// `max_connections` counts connections and an idle one is still open,
    /// and not while a rate reply's back-off holds the budget below its
    /// figure.
    pub fn keeps_sessions(&self, key: &BudgetKey) -> bool {
        key.rule.is_none()
            && self.lock_budget(key, |budget| {
                budget.limit == budget.configured
                    && budget
                        .suspended_until
                        .is_none_or(|until| until <= Instant::now())
            })
    }

    /// Adjusts `key`'s budget after an attempt (see the module docs).
    pub fn observe(&self, key: &BudgetKey, signal: Signal, reply: &str) {
        let now = Instant::now();
        let changed = self.lock_budget(key, |budget| match signal {
            Signal::RateReply => {
                // Sessions already running answer alike: one back-off per
                // suspension.
                if budget.suspended_until.is_some_and(|until| until > now) {
                    return false;
                }
                let before = budget.limit;
                budget.limit = (budget.limit / 2).max(1);
                budget.suspended_until = Some(now + budget.suspend);
                budget.successes = 0;
                warn!(
                    destination = %key.name,
                    reply,
                    "shaping: rate reply; concurrency {before} -> {}, suspended for {}s",
                    budget.limit,
                    budget.suspend.as_secs_f64()
                );
                true
            }
            // A session that started before the suspension says nothing
            // about the rate now.
            Signal::Delivered
                if budget.limit < budget.configured && budget.suspended_until.is_none() =>
            {
                budget.successes += 1;
                if budget.successes < budget.limit {
                    return false;
                }
                let before = budget.limit;
                budget.limit += 1;
                budget.successes = 0;
                info!(
                    destination = %key.name,
                    "shaping: recovering; concurrency {before} -> {} (configured {})",
                    budget.limit,
                    budget.configured
                );
                true
            }
            Signal::Delivered | Signal::Nothing => false,
        });
        if changed {
            self.publish(key);
            self.notify(&key.name);
        }
    }

    fn release(&self, name: &str) {
        let mut budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(budget) = budgets.get_mut(name) else {
            return;
        };
        budget.in_flight = budget.in_flight.saturating_sub(1);
        // One place came free: one waiter can take it. Waking them all made
        // every delivery of a backlog wake each waiting task of its
        // destination (BENCHMARKS.md, "relay-out drain"); a waiter that is
        // dropped once woken passes the wake-up on (tokio's `Notify`).
        budget.changed.notify_one();
        let in_flight = budget.in_flight;
        // A budget at rest with nothing to remember is dropped, so a queue
        // that saw many domains keeps no state for them.
        let forgettable = !budget.shaped
            && budget.in_flight == 0
            && budget.limit == budget.configured
            && budget
                .suspended_until
                .is_none_or(|until| until <= Instant::now())
            && Arc::strong_count(&budget.changed) == 1;
        if forgettable {
            budgets.remove(name);
            forget_metrics(name);
        } else if budget.shaped {
            metrics()
                .shaping_sessions
                .get_or_create(&labels(name))
                .set(in_flight as i64);
        }
    }

    fn notify(&self, name: &str) {
        let budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(budget) = budgets.get(name) {
            budget.changed.notify_waiters();
        }
    }

    /// Runs `f` on `key`'s budget, creating it if new.
    fn lock_budget<T>(&self, key: &BudgetKey, f: impl FnOnce(&mut Budget) -> T) -> T {
        let mut budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        let budget = budgets
            .entry(key.name.clone())
            .or_insert_with(|| Budget::new(key.rule.as_ref(), self.default_limit));
        f(budget)
    }

    /// The metrics of a shaped budget, or of one that is backed off.
    fn publish(&self, key: &BudgetKey) {
        let budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(budget) = budgets.get(&key.name) else {
            return;
        };
        let backed_off = budget.limit < budget.configured || budget.suspended_until.is_some();
        if !budget.shaped && !backed_off {
            forget_metrics(&key.name);
            return;
        }
        let labels = labels(&key.name);
        let metrics = metrics();
        metrics
            .shaping_concurrency
            .get_or_create(&labels)
            .set(budget.limit as i64);
        metrics
            .shaping_suspended
            .get_or_create(&labels)
            .set(i64::from(budget.suspended_until.is_some()));
        metrics
            .shaping_sessions
            .get_or_create(&labels)
            .set(budget.in_flight as i64);
    }
}

impl BudgetKey {
    fn of(rule: &ShapingRule) -> Self {
        BudgetKey {
            name: rule.name.clone(),
            rule: Some(rule.clone()),
        }
    }
}

impl Budget {
    fn new(rule: Option<&ShapingRule>, default_limit: usize) -> Self {
        let configured = rule
            .and_then(|rule| rule.max_connections)
            .unwrap_or(default_limit)
            .max(1);
        Budget {
            configured,
            limit: configured,
            in_flight: 0,
            suspended_until: None,
            suspend: rule.map_or(crate::config::DEFAULT_SUSPEND, |rule| rule.suspend),
            successes: 0,
            gap: rule
                .and_then(|rule| rule.messages_per_minute)
                .map(|per_minute| Duration::from_secs(60) / per_minute),
            next_start: Instant::now(),
            shaped: rule.is_some(),
            changed: Arc::new(Notify::new()),
        }
    }
}

impl Drop for ShapingPermit {
    fn drop(&mut self) {
        self.shaper.release(&self.key);
    }
}

fn labels(name: &str) -> DestinationLabels {
    DestinationLabels {
        destination: name.to_owned(),
    }
}

fn forget_metrics(name: &str) {
    let labels = labels(name);
    let metrics = metrics();
    metrics.shaping_concurrency.remove(&labels);
    metrics.shaping_suspended.remove(&labels);
    metrics.shaping_sessions.remove(&labels);
}

/// For the startup log and `--check`: one line per shaping.ini section,
/// or one saying there are none.
pub fn describe(rules: &ShapingRules) -> Vec<String> {
    if rules.rules.is_empty() {
        return vec![format!(
            "shaping: no shaping.ini budgets; a rate reply (421, 4.7.28, 4.7.650, 4.7.500) still halves a destination's sessions and rests it {}s",
            crate::config::DEFAULT_SUSPEND.as_secs()
        )];
    }
    rules
        .rules
        .iter()
        .map(|rule| {
            let what = match &rule.matches {
                crate::config::ShapingMatch::Domain(domain) => format!("domain {domain}"),
                crate::config::ShapingMatch::MxSuffix(suffix) => {
                    format!("every domain whose MX host ends in .{suffix}")
                }
            };
            let connections = rule
                .max_connections
                .map_or("domain_concurrency_max".to_owned(), |n| n.to_string());
            let rate = rule
                .messages_per_minute
                .map_or("no per-minute limit".to_owned(), |n| {
                    format!("{n} messages per minute")
                });
            format!(
                "shaping [{}] for {what}: up to {connections} sessions at once, {rate}, suspended {}s on a rate reply — shaping.ini",
                rule.name,
                rule.suspend.as_secs()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ShapingMatch;

    fn rule(max: usize) -> ShapingRule {
        ShapingRule {
            matches: ShapingMatch::MxSuffix("mx.test".to_owned()),
            name: "*.mx.test".to_owned(),
            max_connections: Some(max),
            messages_per_minute: None,
            suspend: Duration::from_millis(200),
        }
    }

    fn shaper(max: usize) -> (Arc<Shaper>, BudgetKey) {
        let rules = ShapingRules {
            rules: vec![rule(max)],
        };
        (Arc::new(Shaper::new(rules, 20)), BudgetKey::of(&rule(max)))
    }

    #[tokio::test]
    async fn a_budget_caps_sessions_and_frees_on_drop() {
        let (shaper, key) = shaper(2);
        let wait = Duration::from_millis(50);
        let first = shaper.acquire(&key).await;
        let _second = shaper.acquire(&key).await;
        assert!(
            tokio::time::timeout(wait, shaper.acquire(&key))
                .await
                .is_err()
        );
        drop(first);
        assert!(
            tokio::time::timeout(wait * 10, shaper.acquire(&key))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_rate_reply_halves_suspends_and_recovers_step_by_step() {
        let (shaper, key) = shaper(4);
        let limit = |shaper: &Shaper| shaper.lock_budget(&key, |budget| budget.limit);
        shaper.observe(&key, Signal::RateReply, "421 4.7.28 slow down");
        assert_eq!(limit(&shaper), 2);
        // A second reply from a session already running does not halve again.
        shaper.observe(&key, Signal::RateReply, "421 4.7.28 slow down");
        assert_eq!(limit(&shaper), 2);
        let started = Instant::now();
        drop(shaper.acquire(&key).await);
        assert!(started.elapsed() >= Duration::from_millis(150), "suspended");
        shaper.observe(&key, Signal::Delivered, "");
        assert_eq!(limit(&shaper), 2);
        shaper.observe(&key, Signal::Delivered, "");
        assert_eq!(limit(&shaper), 3);
        for _ in 0..3 {
            shaper.observe(&key, Signal::Delivered, "");
        }
        assert_eq!(limit(&shaper), 4);
        for _ in 0..10 {
            shaper.observe(&key, Signal::Delivered, "");
        }
        assert_eq!(limit(&shaper), 4, "never above the configured figure");
    }

    #[tokio::test]
    async fn messages_per_minute_spaces_session_starts() {
        let mut fast = rule(10);
        fast.messages_per_minute = Some(600);
        let shaper = Arc::new(Shaper::new(
            ShapingRules {
                rules: vec![fast.clone()],
            },
            20,
        ));
        let key = BudgetKey::of(&fast);
        let started = Instant::now();
        for _ in 0..3 {
            drop(shaper.acquire(&key).await);
        }
        assert!(
            started.elapsed() >= Duration::from_millis(190),
            "{:?}",
            started.elapsed()
        );
    }
}
