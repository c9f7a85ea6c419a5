//! Caps on concurrent connections, in total and per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts open connections so one client (or a botnet) cannot take every
/// file descriptor and task of a 1 GB VPS.
#[derive(Debug)]
pub(crate) struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Which cap a refused connection hit; the two get different replies.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LimitExceeded {
    Total,
    PerIp,
}

/// One open connection's place in the counts, given back on drop so that no
/// exit path (panic included) leaks a slot.
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl ConnectionLimits {
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_ip,
            open: Mutex::new(Counts::default()),
        })
    }

    /// Over 80% of the connection cap: the server shortens its timeouts, as
    /// Postfix does under stress, so slow clients cannot hold every slot.
    pub(crate) fn is_stressed(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total * 5 >= self.max_total * 4
    }

    /// A slot for a connection from `ip`; `per_ip_capped: false` (a client
    /// the policy trusts) counts it but does not hold it to the per-address
    /// cap.
    pub(crate) fn try_acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        per_ip_capped: bool,
    ) -> Result<ConnectionPermit, LimitExceeded> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.max_total {
            return Err(LimitExceeded::Total);
        }
        let from_ip = open.per_ip.entry(ip).or_default();
        if per_ip_capped && *from_ip >= self.max_per_ip {
            return Err(LimitExceeded::PerIp);
        }
        *from_ip += 1;
        open.total += 1;
        Ok(ConnectionPermit {
            limits: Arc::clone(self),
            ip,
        })
    }

    #[cfg(test)]
    fn open_total(&self) -> usize {
        self.open.lock().unwrap().total
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_total_caps() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let p1 = limits.try_acquire(a, true).unwrap();
        let _p2 = limits.try_acquire(a, true).unwrap();
        assert_eq!(
            limits.try_acquire(a, true).unwrap_err(),
            LimitExceeded::PerIp
        );
        let _p3 = limits.try_acquire(b, true).unwrap();
        assert_eq!(
            limits.try_acquire(b, true).unwrap_err(),
            LimitExceeded::Total
        );
        drop(p1);
        assert_eq!(limits.open_total(), 2);
        assert!(limits.try_acquire(a, true).is_ok());
    }

    #[test]
    fn a_trusted_client_is_not_held_to_the_per_ip_cap_but_to_the_total() {
        let limits = ConnectionLimits::new(3, 1);
        let home: IpAddr = "10.0.0.2".parse().unwrap();
        let _p1 = limits.try_acquire(home, false).unwrap();
        let _p2 = limits.try_acquire(home, false).unwrap();
        let _p3 = limits.try_acquire(home, false).unwrap();
        assert_eq!(
            limits.try_acquire(home, false).unwrap_err(),
            LimitExceeded::Total
        );
    }
}
