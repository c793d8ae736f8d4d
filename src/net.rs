//! Client identity: the peer address, or the forwarded one when the peer is a trusted proxy.
//!
//! Forwarding headers are believed only from a peer in `server.trusted_proxies`, read
//! right to left (the right-most entries are the ones our own proxies wrote). A header
//! from such a peer that we cannot read (over [`MAX_FORWARDED_HOPS`] entries or
//! [`MAX_FORWARDED_LEN`] bytes, not ASCII) is [`Unreadable`]: the request is refused
//! (`400 invalid_request`, `api::intake`), never charged to the proxy's own address, nor
//! read from the next header (the client writes the others). Limits count an IPv6 client
//! by its /64 ([`limit_bucket`]), since one subscriber usually holds a whole /64.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest forwarding header read; a longer one is [`Unreadable`].
pub const MAX_FORWARDED_LEN: usize = 4096;
/// The most entries of a forwarding header; more are [`Unreadable`]. A chain of proxies
/// this long is walked whole.
pub const MAX_FORWARDED_HOPS: usize = 64;

/// A forwarding header from a trusted proxy that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0} from a trusted proxy is unreadable: over {MAX_FORWARDED_HOPS} entries or {MAX_FORWARDED_LEN} bytes, or not ASCII"
)]
pub struct Unreadable(pub &'static str);

/// The address per-address limits charge: an IPv4 address as is (an IPv4-mapped IPv6 one
/// as IPv4), an IPv6 address by its /64 network.
pub fn limit_bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        },
    }
}

/// The block of `prefix_v4` (IPv4) or `prefix_v6` (IPv6) bits that `ip` is in, as its
/// first address (the per-network limits count a whole allocation together).
pub fn block(ip: IpAddr, prefix_v4: u8, prefix_v6: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix_v4.min(32))).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix_v6.min(128))).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// An address block such as `10.0.0.0/8` or `::1/128` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { net: addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                u128::from(n) & mask == u128::from(i) & mask
            }
            (IpAddr::V6(_), IpAddr::V4(i)) => self.contains(IpAddr::V6(i.to_ipv6_mapped())),
            (IpAddr::V4(_), IpAddr::V6(i)) => i.to_ipv4_mapped().is_some_and(|v4| self.contains(IpAddr::V4(v4))),
        }
    }
}

/// Who is asking: the client's address (for the audit), and the user agent.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub user_agent: String,
}

impl ClientInfo {
    /// The address per-address limits charge ([`limit_bucket`] of `ip`).
    pub fn bucket(&self) -> IpAddr {
        limit_bucket(self.ip)
    }
}

/// The forwarding headers of a request, raw (all lines of each, joined by commas).
#[derive(Debug, Clone, Copy, Default)]
pub struct Forwarding<'a> {
    pub x_forwarded_for: Option<&'a [u8]>,
    pub forwarded: Option<&'a [u8]>,
}

/// A header value we read: short, few entries, ASCII.
fn readable<'a>(raw: &'a [u8], name: &'static str) -> Result<&'a str, Unreadable> {
    let entries = raw.iter().filter(|&&b| b == b',').count() + 1;
    if raw.len() > MAX_FORWARDED_LEN || entries > MAX_FORWARDED_HOPS || !raw.is_ascii() {
        return Err(Unreadable(name));
    }
    std::str::from_utf8(raw).map_err(|_| Unreadable(name))
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711` or `2001:db8::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    hop.parse()
        .ok()
        .or_else(|| hop.rsplit_once(':').and_then(|(a, _)| a.parse::<std::net::Ipv4Addr>().ok()).map(IpAddr::V4))
}

/// The `for=` addresses of a `Forwarded` header (RFC 7239), left to right.
pub fn forwarded_for(header: &str) -> String {
    header
        .split(',')
        .filter_map(|elem| {
            elem.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                if !k.trim().eq_ignore_ascii_case("for") {
                    return None;
                }
                let v = v.trim().trim_matches('"');
                // `[2001:db8::1]:4711` or `192.0.2.60:80` or a bare address.
                let v = match v.strip_prefix('[') {
                    Some(rest) => rest.split(']').next().unwrap_or(""),
                    None if v.matches(':').count() == 1 => v.split(':').next().unwrap_or(""),
                    None => v,
                };
                Some(v.to_string())
            })
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Decides which address a request is charged to.
#[derive(Debug, Clone, Default)]
pub struct ClientIpPolicy {
    trusted: Vec<Cidr>,
}

impl ClientIpPolicy {
    pub fn new(cidrs: &[String]) -> Self {
        Self { trusted: cidrs.iter().filter_map(|c| Cidr::parse(c)).collect() }
    }

    /// Whether `ip` is one of `server.trusted_proxies`.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }

    /// The client behind `peer`: `X-Forwarded-For` when the peer is trusted, else its
    /// `Forwarded` (only when there is no `X-Forwarded-For` at all), else the peer; an
    /// error when the header to read is [`Unreadable`].
    pub fn resolve(&self, peer: IpAddr, headers: Forwarding<'_>) -> Result<IpAddr, Unreadable> {
        if !self.is_trusted(peer) {
            return Ok(peer);
        }
        let list = match (headers.x_forwarded_for, headers.forwarded) {
            (Some(xff), _) => readable(xff, "X-Forwarded-For")?.to_string(),
            (None, Some(fwd)) => forwarded_for(readable(fwd, "Forwarded")?),
            (None, None) => return Ok(peer),
        };
        Ok(self.client_ip(peer, Some(&list)))
    }

    /// [`ClientIpPolicy::resolve`], with the peer for an unreadable header (such a request
    /// is refused before any handler asks: this is only the fallback).
    pub fn client(&self, peer: IpAddr, headers: Forwarding<'_>) -> IpAddr {
        self.resolve(peer, headers).unwrap_or(peer)
    }

    /// Walks `X-Forwarded-For` from the right, skipping trusted proxies, so a client
    /// cannot choose its identity by prepending addresses. Untrusted peers' headers are ignored.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let Some(header) = forwarded_for else {
            return peer;
        };
        let mut last = peer;
        for hop in header.rsplit(',').take(MAX_FORWARDED_HOPS) {
            match parse_hop(hop) {
                Some(ip) => {
                    last = ip;
                    if !self.is_trusted(ip) {
                        return ip;
                    }
                }
                None => return last,
            }
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.1.2.3")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(Cidr::parse("::1/128").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
    }

    #[test]
    fn forwarded_header_is_parsed() {
        assert_eq!(forwarded_for("for=192.0.2.60;proto=http;by=203.0.113.43"), "192.0.2.60");
        assert_eq!(
            forwarded_for("for=\"[2001:db8:cafe::17]:4711\", for=198.51.100.17:80"),
            "2001:db8:cafe::17,198.51.100.17"
        );
    }

    #[test]
    fn forwarded_only_from_trusted_peers() {
        let p = ClientIpPolicy::new(&["127.0.0.0/8".into()]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), Some("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(p.client_ip(ip("198.51.100.1"), Some("203.0.113.9")), ip("198.51.100.1"));
        // A spoofed left-most entry is not believed: the right-most untrusted hop wins.
        assert_eq!(p.client_ip(ip("127.0.0.1"), Some("1.1.1.1, 203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(p.client_ip(ip("127.0.0.1"), Some("garbage")), ip("127.0.0.1"));
        assert_eq!(p.client_ip(ip("127.0.0.1"), None), ip("127.0.0.1"));
        assert_eq!(p.client_ip(ip("127.0.0.1"), Some("203.0.113.9:4711")), ip("203.0.113.9"));
        assert_eq!(p.client_ip(ip("127.0.0.1"), Some("[2001:db8::1]:80")), ip("2001:db8::1"));
    }

    #[test]
    fn an_unreadable_forwarding_header_means_the_peer_never_the_other_header() {
        let p = ClientIpPolicy::new(&["127.0.0.0/8".into()]);
        let peer = ip("127.0.0.1");
        let fwd = Some(&b"for=198.51.100.7"[..]);
        let long = "1.1.1.1,".repeat(MAX_FORWARDED_HOPS);
        for xff in [long.as_bytes(), "203.0.113.9\u{e9}".as_bytes(), &[0xff, 0xfe][..]] {
            assert_eq!(p.client(peer, Forwarding { x_forwarded_for: Some(xff), forwarded: fwd }), peer);
        }
        assert_eq!(p.client(peer, Forwarding { x_forwarded_for: None, forwarded: fwd }), ip("198.51.100.7"));
        let untrusted = ip("192.0.2.1");
        assert_eq!(p.client(untrusted, Forwarding { x_forwarded_for: None, forwarded: fwd }), untrusted);
    }

    #[test]
    fn an_unreadable_header_from_a_trusted_peer_is_an_error() {
        let p = ClientIpPolicy::new(&["127.0.0.0/8".into()]);
        let peer = ip("127.0.0.1");
        fn xff(v: &[u8]) -> Forwarding<'_> {
            Forwarding { x_forwarded_for: Some(v), forwarded: None }
        }
        let at_most = format!("{}203.0.113.9", "198.51.100.1,".repeat(MAX_FORWARDED_HOPS - 1));
        assert_eq!(p.resolve(peer, xff(at_most.as_bytes())), Ok(ip("203.0.113.9")));
        let many = format!("198.51.100.1,{at_most}");
        let long = format!("{}203.0.113.9", " ".repeat(MAX_FORWARDED_LEN));
        for bad in [many.as_bytes(), long.as_bytes(), "203.0.113.9\u{e9}".as_bytes(), &[0xff, 0xfe][..]] {
            assert_eq!(p.resolve(peer, xff(bad)), Err(Unreadable("X-Forwarded-For")));
        }
        let fwd = Forwarding { x_forwarded_for: None, forwarded: Some(long.as_bytes()) };
        assert_eq!(p.resolve(peer, fwd), Err(Unreadable("Forwarded")));
        // An untrusted peer's headers are not read at all.
        assert_eq!(p.resolve(ip("192.0.2.1"), xff(many.as_bytes())), Ok(ip("192.0.2.1")));
    }

    #[test]
    fn a_chain_of_up_to_64_hops_is_walked_to_the_first_untrusted_one() {
        let p = ClientIpPolicy::new(&["10.0.0.0/8".into()]);
        let hops: Vec<String> = (1..=40).map(|i| format!("10.0.0.{i}")).collect();
        let xff = format!("203.0.113.5, {}", hops.join(", "));
        assert_eq!(p.client_ip(ip("10.9.9.9"), Some(&xff)), ip("203.0.113.5"));
    }

    #[test]
    fn ipv6_clients_are_bucketed_by_their_64() {
        assert_eq!(limit_bucket(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(limit_bucket(ip("2001:db8:1:2:ffff::9")), limit_bucket(ip("2001:db8:1:2::1")));
        assert_ne!(limit_bucket(ip("2001:db8:1:3::1")), limit_bucket(ip("2001:db8:1:2::1")));
        assert_eq!(limit_bucket(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(limit_bucket(ip("192.0.2.1")), ip("192.0.2.1"));
    }
}
