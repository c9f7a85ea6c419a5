//! How many SMTP sessions run at once: `concurrency_max` overall and
//! `domain_concurrency_max` per destination.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::mx::Destination;

/// Past this many destinations in the map, idle ones are dropped so a queue
/// that saw many domains does not keep a semaphore for each forever.
const PRUNE_ABOVE: usize = 1024;

/// The two limits every session must fit in. The per-destination one exists
/// so that one slow or throttling domain cannot take every slot.
#[derive(Debug)]
pub struct Limits {
    global: Arc<Semaphore>,
    per_destination_max: usize,
    per_destination: Mutex<HashMap<Destination, Arc<Semaphore>>>,
}

/// Held for the duration of one session.
#[derive(Debug)]
pub struct Permits {
    _destination: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

impl Limits {
    pub fn new(global: usize, per_destination: usize) -> Self {
        Limits {
            global: Arc::new(Semaphore::new(global.max(1))),
            per_destination_max: per_destination.max(1),
            per_destination: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a slot for `destination`, taking the destination's slot
    /// first so that a session waiting on a busy domain never holds one of
    /// the global slots others could use. `None` only if the semaphores
    /// were closed, which never happens.
    pub async fn acquire(&self, destination: &Destination) -> Option<Permits> {
        let semaphore = self.semaphore_for(destination);
        let destination_permit = semaphore.acquire_owned().await.ok()?;
        let global_permit = Arc::clone(&self.global).acquire_owned().await.ok()?;
        Some(Permits {
            _destination: destination_permit,
            _global: global_permit,
        })
    }

    fn semaphore_for(&self, destination: &Destination) -> Arc<Semaphore> {
        let mut map = self
            .per_destination
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.len() > PRUNE_ABOVE {
            // Only the map holds an idle semaphore: permits and waiters keep
            // their own reference.
            map.retain(|_, semaphore| Arc::strong_count(semaphore) > 1);
        }
        let max = self.per_destination_max;
        Arc::clone(
            map.entry(destination.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(max))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn domain(name: &str) -> Destination {
        Destination::Domain(name.to_string())
    }

    #[tokio::test]
    async fn per_destination_and_global_caps() {
        let limits = Limits::new(3, 2);
        let (a, b, c) = (domain("a"), domain("b"), domain("c"));
        let wait = Duration::from_millis(50);
        let a1 = limits.acquire(&a).await.expect("permit");
        let _a2 = limits.acquire(&a).await.expect("permit");
        let blocked = tokio::time::timeout(wait, limits.acquire(&a)).await;
        assert!(blocked.is_err(), "third session to a must wait");
        let _b1 = limits.acquire(&b).await.expect("permit");
        let blocked = tokio::time::timeout(wait, limits.acquire(&c)).await;
        assert!(blocked.is_err(), "global cap of 3 reached");
        drop(a1);
        let freed = tokio::time::timeout(wait * 10, limits.acquire(&c)).await;
        assert!(freed.is_ok(), "a freed slot is usable by another domain");
    }

    #[tokio::test]
    async fn idle_destinations_are_pruned() {
        let limits = Limits::new(10, 1);
        for n in 0..=PRUNE_ABOVE + 1 {
            drop(limits.acquire(&domain(&format!("d{n}"))).await);
        }
        let size = limits
            .per_destination
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        assert!(size <= 2, "{size}");
    }
}
