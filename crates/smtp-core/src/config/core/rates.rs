//! limit.ini `[rate_conn]` and `[rate_rcpt_host]` (haraka-plugin-limit's
//! names and `count/interval` grammar), kept in memory instead of Redis.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnetwork::IpNetwork;

/// At most `count` events per `period`; a count of 0 means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

/// One rate section: a default and per-network overrides (most specific
/// network wins). Empty: no limit, as in Haraka and Postfix by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateRule {
    pub default: Option<Rate>,
    pub networks: Vec<(IpNetwork, Rate)>,
}

impl RateRule {
    /// The limit for `ip`, or `None` when unlimited.
    pub fn for_ip(&self, ip: IpAddr) -> Option<Rate> {
        let ip = ip.to_canonical();
        let rate = self
            .networks
            .iter()
            .filter(|(net, _)| net.contains(ip))
            .max_by_key(|(net, _)| net.prefix())
            .map(|(_, rate)| *rate)
            .or(self.default)?;
        (rate.count > 0).then_some(rate)
    }

    pub fn is_unlimited(&self) -> bool {
        self.default.is_none_or(|r| r.count == 0) && self.networks.iter().all(|(_, r)| r.count == 0)
    }
}

/// `30/60s`, `5/5m`, `100` (per 60 s, Haraka's default interval).
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let (count, period) = match text.trim().split_once('/') {
        Some((count, period)) => (count.trim(), Some(period.trim())),
        None => (text.trim(), None),
    };
    let count: u32 = count
        .parse()
        .map_err(|_| format!("expected COUNT/INTERVAL such as 30/60s, found '{text}'"))?;
    let period = match period {
        None | Some("") => Duration::from_secs(60),
        Some(period) => parse_interval(period).ok_or_else(|| {
            format!("expected an interval such as 60s, 5m, 1h or 1d, found '{period}'")
        })?,
    };
    Ok(Rate { count, period })
}

fn parse_interval(text: &str) -> Option<Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit.to_ascii_lowercase().as_str() {
        "" | "s" => number,
        "m" => number.checked_mul(60)?,
        "h" => number.checked_mul(3600)?,
        "d" => number.checked_mul(86_400)?,
        _ => return None,
    };
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// Builds a rule from a section's keys: `default`, IP addresses and CIDR
/// networks. Other keys (Haraka also allows rDNS names) are reported.
pub fn rate_rule(section: &BTreeMap<String, String>) -> Result<RateRule, (String, String)> {
    let mut rule = RateRule::default();
    for (key, value) in section {
        let rate = parse_rate(value).map_err(|e| (key.clone(), e))?;
        if key == "default" {
            rule.default = Some(rate);
            continue;
        }
        let network = key
            .parse::<IpNetwork>()
            .or_else(|_| key.parse::<IpAddr>().map(IpNetwork::from))
            .map_err(|_| {
                (
                    key.clone(),
                    "expected 'default', an IP address or a CIDR network".to_string(),
                )
            })?;
        rule.networks.push((network, rate));
    }
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(
            parse_rate("30/60s").unwrap(),
            Rate {
                count: 30,
                period: Duration::from_secs(60)
            }
        );
        assert_eq!(parse_rate("5/5m").unwrap().period, Duration::from_secs(300));
        assert_eq!(parse_rate("100").unwrap().period, Duration::from_secs(60));
        assert_eq!(
            parse_rate("2/1h").unwrap().period,
            Duration::from_secs(3600)
        );
        for bad in ["", "x/60s", "5/0s", "5/10y", "-1/5m"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn most_specific_network_wins_and_zero_is_unlimited() {
        let section: BTreeMap<String, String> = [
            ("default", "10/1m"),
            ("127.0.0.0/8", "0"),
            ("192.0.2.0/24", "100/1m"),
            ("192.0.2.7", "1/1m"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let rule = rate_rule(&section).unwrap();
        assert_eq!(
            rule.for_ip("203.0.113.1".parse().unwrap()).unwrap().count,
            10
        );
        assert_eq!(rule.for_ip("127.0.0.1".parse().unwrap()), None);
        assert_eq!(
            rule.for_ip("192.0.2.5".parse().unwrap()).unwrap().count,
            100
        );
        assert_eq!(rule.for_ip("192.0.2.7".parse().unwrap()).unwrap().count, 1);
        assert!(RateRule::default().is_unlimited());
    }
}
