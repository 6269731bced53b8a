//! Which outbound requests a connector may make: deny by default.
//!
//! A request is allowed only when its origin (`scheme://host:port`) matches
//! an entry the connector's `describe` asks for *and* an entry the tenant
//! grants. After DNS resolution, every address must be public, unless the
//! operator allowed that exact host name to reach private addresses (tests
//! and on-premises destinations need loopback or LAN targets).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A concrete request origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// Lowercase host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port, defaulted from the scheme.
    pub port: u16,
}

impl Origin {
    /// The origin of `uri`, or why it has none.
    pub fn from_uri(uri: &http::Uri) -> Result<Origin, String> {
        let scheme = uri
            .scheme_str()
            .ok_or("URI has no scheme")?
            .to_ascii_lowercase();
        let host = uri.host().ok_or("URI has no host")?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = match (uri.port_u16(), scheme.as_str()) {
            (Some(p), _) => p,
            (None, "http") => 80,
            (None, "https") => 443,
            (None, other) => return Err(format!("unsupported scheme {other:?}")),
        };
        Ok(Origin { scheme, host, port })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// A pattern over origins: `*` (any), or `scheme://host[:port]` where host
/// may start with `*.` (any subdomain) and port may be `*` (any port). A
/// missing port means the scheme's default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OriginPattern {
    raw: String,
    kind: PatternKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternKind {
    Any,
    Origin {
        scheme: String,
        host: HostPattern,
        port: Option<u16>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com` matches `a.example.com`, not `example.com`.
    Suffix(String),
}

impl OriginPattern {
    /// Parses a pattern, or explains what is wrong with it.
    pub fn parse(s: &str) -> Result<Self, String> {
        let raw = s.trim().to_owned();
        if raw == "*" {
            return Ok(OriginPattern {
                raw,
                kind: PatternKind::Any,
            });
        }
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or_else(|| format!("{raw:?}: expected `scheme://host[:port]` or `*`"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!("{raw:?}: scheme must be http or https"));
        }
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.contains('?') || rest.contains('@') {
            return Err(format!(
                "{raw:?}: an origin has no path, query or user info"
            ));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{raw:?}: unclosed `[`"))?;
            (h.to_owned(), after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (rest.to_owned(), None),
            }
        };
        let default_port = if scheme == "https" { 443 } else { 80 };
        let port = match port {
            None => Some(default_port),
            Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| format!("{raw:?}: port {p:?} is not a number or `*`"))?,
            ),
        };
        let host = host.to_ascii_lowercase();
        if host.is_empty() {
            return Err(format!("{raw:?}: empty host"));
        }
        let host = match host.strip_prefix("*.") {
            Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => {
                HostPattern::Suffix(suffix.to_owned())
            }
            _ if host.contains('*') => {
                return Err(format!(
                    "{raw:?}: `*` is allowed only as a leading `*.` label"
                ));
            }
            _ => HostPattern::Exact(host),
        };
        Ok(OriginPattern {
            raw,
            kind: PatternKind::Origin { scheme, host, port },
        })
    }

    /// Whether `origin` matches.
    pub fn matches(&self, origin: &Origin) -> bool {
        match &self.kind {
            PatternKind::Any => true,
            PatternKind::Origin { scheme, host, port } => {
                scheme == &origin.scheme
                    && port.is_none_or(|p| p == origin.port)
                    && match host {
                        HostPattern::Exact(h) => h == &origin.host,
                        HostPattern::Suffix(s) => origin
                            .host
                            .strip_suffix(s.as_str())
                            .is_some_and(|head| head.ends_with('.') && head.len() > 1),
                    }
            }
        }
    }

    /// Whether this is the `*` pattern.
    pub fn is_any(&self) -> bool {
        matches!(self.kind, PatternKind::Any)
    }
}

impl TryFrom<String> for OriginPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        OriginPattern::parse(&s)
    }
}

impl From<OriginPattern> for String {
    fn from(p: OriginPattern) -> String {
        p.raw
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The connector's `describe` does not ask for this origin.
    NotRequested,
    /// The tenant does not grant this origin.
    NotGranted,
    /// The host resolved to a non-public address.
    PrivateAddress(IpAddr),
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::NotRequested => {
                f.write_str("the connector does not declare this origin in describe")
            }
            Denial::NotGranted => f.write_str("the tenant does not grant this origin"),
            Denial::PrivateAddress(ip) => write!(
                f,
                "resolves to non-public address {ip} (an operator allows it by listing the host in `private_hosts`)"
            ),
        }
    }
}

/// Whether a `private_hosts` entry lets `origin` reach a non-public
/// address: `host:port` (`[v6]:port` for IPv6) allows that port only; a bare
/// `host` (or `[v6]`) allows every port of it. Names compare ignoring case.
pub fn private_host_matches(entry: &str, origin: &Origin) -> bool {
    let entry = entry.trim().to_ascii_lowercase();
    let (host, port) = if let Some(v6) = entry.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, rest)) => (h.to_owned(), rest.strip_prefix(':')),
            None => return false,
        }
    } else if entry.matches(':').count() > 1 {
        // A bare IPv6 literal: every port.
        (entry.clone(), None)
    } else {
        match entry.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (entry.clone(), None),
        }
    };
    if host != origin.host {
        return false;
    }
    match port {
        None => true,
        Some(p) => p.parse::<u16>().is_ok_and(|p| p == origin.port),
    }
}

/// Checks a `private_hosts` entry when the configuration is loaded.
pub fn validate_private_host(entry: &str) -> Result<(), String> {
    let e = entry.trim();
    if e.is_empty() || e.contains('/') || e.contains('@') || e.contains('*') {
        return Err(format!(
            "{entry:?}: expected `host`, `host:port` or `[ipv6]:port`"
        ));
    }
    let port = if let Some(v6) = e.strip_prefix('[') {
        let (_, rest) = v6
            .split_once(']')
            .ok_or_else(|| format!("{entry:?}: unclosed `[`"))?;
        rest.strip_prefix(':')
    } else if e.matches(':').count() > 1 {
        None
    } else {
        e.rsplit_once(':').map(|(_, p)| p)
    };
    match port {
        Some(p) if p.parse::<u16>().is_err() => {
            Err(format!("{entry:?}: port {p:?} is not a number"))
        }
        _ => Ok(()),
    }
}

/// The outbound policy of one connector for one tenant.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// What the connector asks for.
    pub requested: Vec<OriginPattern>,
    /// What the tenant grants.
    pub granted: Vec<OriginPattern>,
    /// Hosts (`host` or `host:port`) the operator lets reach non-public
    /// addresses.
    pub private_hosts: Vec<String>,
}

impl Policy {
    /// Checks an origin against both lists.
    pub fn check_origin(&self, origin: &Origin) -> Result<(), Denial> {
        if !self.requested.iter().any(|p| p.matches(origin)) {
            return Err(Denial::NotRequested);
        }
        if !self.granted.iter().any(|p| p.matches(origin)) {
            return Err(Denial::NotGranted);
        }
        Ok(())
    }

    /// Checks the addresses the host of `origin` resolved to.
    pub fn check_addrs(&self, origin: &Origin, addrs: &[IpAddr]) -> Result<(), Denial> {
        if self
            .private_hosts
            .iter()
            .any(|h| private_host_matches(h, origin))
        {
            return Ok(());
        }
        match addrs.iter().find(|ip| !is_public(**ip)) {
            Some(ip) => Err(Denial::PrivateAddress(*ip)),
            None => Ok(()),
        }
    }
}

/// Whether `ip` may be reached by a connector without the operator's say:
/// a globally reachable unicast address by the IANA special-purpose address
/// registries (IPv4 and IPv6), judging IPv6 forms that embed an IPv4 address
/// by the address they embed.
///
/// IPv4: refused are `0/8`, `10/8`, `100.64/10`, `127/8`, `169.254/16`,
/// `172.16/12`, `192.0.0/24`, `192.0.2/24`, `192.88.99/24`, `192.168/16`,
/// `198.18/15`, `198.51.100/24`, `203.0.113/24`, multicast `224/4`, `240/4`
/// and the broadcast address.
///
/// IPv6: `::ffff:a.b.c.d` (mapped) and `64:ff9b::a.b.c.d` (NAT64) are judged
/// by `a.b.c.d`, and so is `2002:AABB:CCDD::/48` (6to4, `AA.BB.CC.DD`);
/// refused are `::/128`, `::1`, the rest of `::/96` (IPv4-compatible,
/// deprecated), `64:ff9b:1::/48` (local NAT64), everything outside global
/// unicast `2000::/3` (so `100::/64` discard, `5f00::/16` SRv6, `fc00::/7`
/// unique local, `fe80::/10` link-local, `fec0::/10` site-local, `ff00::/8`
/// multicast), `2001::/23` (IETF protocol assignments, Teredo's
/// `2001::/32` among them), `2001:db8::/32` and `3fff::/20`
/// (documentation).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// The IPv4 address in the last 32 bits of `v6`.
fn low_v4(v6: Ipv6Addr) -> Ipv4Addr {
    let o = v6.octets();
    Ipv4Addr::new(o[12], o[13], o[14], o[15])
}

fn is_public_v6(v6: Ipv6Addr) -> bool {
    let seg = v6.segments();
    let bits = u128::from(v6);
    // ::ffff:0:0/96, IPv4-mapped.
    if bits >> 32 == 0xffff {
        return is_public_v4(low_v4(v6));
    }
    // ::/96: unspecified, loopback, and the deprecated IPv4-compatible form.
    if bits >> 32 == 0 {
        return false;
    }
    // 64:ff9b::/96, NAT64: reaches the IPv4 address it embeds.
    if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return is_public_v4(low_v4(v6));
    }
    // 64:ff9b:1::/48, local-use NAT64.
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1 {
        return false;
    }
    // Only global unicast, 2000::/3.
    if seg[0] & 0xe000 != 0x2000 {
        return false;
    }
    // 2001::/23, IETF protocol assignments (Teredo 2001::/32 among them).
    if seg[0] == 0x2001 && seg[1] < 0x0200 {
        return false;
    }
    // 2001:db8::/32 and 3fff::/20, documentation.
    if (seg[0] == 0x2001 && seg[1] == 0x0db8) || (seg[0] == 0x3fff && seg[1] & 0xf000 == 0) {
        return false;
    }
    // 2002::/16, 6to4: reaches the IPv4 address in bits 16..48.
    if seg[0] == 0x2002 {
        let o = v6.octets();
        return is_public_v4(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    true
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(o[0] == 0 // "this network" 0/8
        || o[0] == 10 // private 10/8
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space 100.64/10
        || o[0] == 127 // loopback 127/8
        || (o[0] == 169 && o[1] == 254) // link-local 169.254/16
        || (o[0] == 172 && (o[1] & 0xf0) == 16) // private 172.16/12
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments 192.0.0/24
        || (o[0] == 192 && o[1] == 0 && o[2] == 2) // TEST-NET-1
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 6to4 relay anycast (deprecated)
        || (o[0] == 192 && o[1] == 168) // private 192.168/16
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || (o[0] == 198 && o[1] == 51 && o[2] == 100) // TEST-NET-2
        || (o[0] == 203 && o[1] == 0 && o[2] == 113) // TEST-NET-3
        || o[0] >= 224) // multicast 224/4, reserved 240/4, broadcast
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(s: &str) -> Origin {
        Origin::from_uri(&s.parse().unwrap()).unwrap()
    }

    fn pats(list: &[&str]) -> Vec<OriginPattern> {
        list.iter()
            .map(|s| OriginPattern::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn origin_defaults_ports_and_lowercases() {
        assert_eq!(
            origin("https://API.Acme.com/x").to_string(),
            "https://api.acme.com:443"
        );
        assert_eq!(
            origin("http://[::1]:8080/").to_string(),
            "http://[::1]:8080"
        );
    }

    #[test]
    fn patterns_match_as_documented() {
        let p = OriginPattern::parse("https://*.acme-crm.example").unwrap();
        assert!(p.matches(&origin("https://northwind.acme-crm.example/api")));
        assert!(!p.matches(&origin("https://acme-crm.example/")));
        assert!(!p.matches(&origin("https://evilacme-crm.example/")));
        assert!(!p.matches(&origin("http://northwind.acme-crm.example/")));
        assert!(!p.matches(&origin("https://northwind.acme-crm.example:8443/")));
        let any_port = OriginPattern::parse("http://127.0.0.1:*").unwrap();
        assert!(any_port.matches(&origin("http://127.0.0.1:4242/")));
        assert!(!any_port.matches(&origin("http://127.0.0.2:4242/")));
        assert!(
            OriginPattern::parse("*")
                .unwrap()
                .matches(&origin("https://x.y/"))
        );
    }

    #[test]
    fn bad_patterns_are_explained() {
        for bad in [
            "acme.com",
            "ftp://x",
            "https://x/path",
            "https://a.*.com",
            "https://x:port",
            "https://",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn deny_by_default_and_both_lists_needed() {
        let empty = Policy::default();
        assert_eq!(
            empty.check_origin(&origin("https://a.com/")),
            Err(Denial::NotRequested)
        );
        let p = Policy {
            requested: pats(&["https://*.acme.com"]),
            granted: pats(&["https://northwind.acme.com"]),
            private_hosts: vec![],
        };
        assert_eq!(
            p.check_origin(&origin("https://northwind.acme.com/")),
            Ok(())
        );
        assert_eq!(
            p.check_origin(&origin("https://other.acme.com/")),
            Err(Denial::NotGranted)
        );
        assert_eq!(
            p.check_origin(&origin("https://evil.com/")),
            Err(Denial::NotRequested)
        );
    }

    #[test]
    fn private_addresses_denied_unless_exact_host_allowed() {
        let p = Policy {
            private_hosts: vec!["127.0.0.1".into()],
            ..Policy::default()
        };
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let meta: IpAddr = "169.254.169.254".parse().unwrap();
        let at = |h: &str| origin(&format!("http://{h}:8080/"));
        assert_eq!(p.check_addrs(&at("127.0.0.1"), &[lo]), Ok(()));
        assert_eq!(
            p.check_addrs(&at("evil.test"), &[lo]),
            Err(Denial::PrivateAddress(lo))
        );
        assert_eq!(
            p.check_addrs(&at("metadata.test"), &[meta]),
            Err(Denial::PrivateAddress(meta))
        );
        assert!(
            Denial::PrivateAddress(meta)
                .to_string()
                .contains("`private_hosts`"),
            "a refusal names the setting that allows it"
        );
        let public: IpAddr = "93.184.216.34".parse().unwrap();
        assert_eq!(
            p.check_addrs(&at("example.com"), &[public, lo]),
            Err(Denial::PrivateAddress(lo))
        );
        assert_eq!(p.check_addrs(&at("example.com"), &[public]), Ok(()));
    }

    #[test]
    fn address_classes() {
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    /// Every row of the IANA IPv4 and IPv6 special-purpose registries, and the
    /// IPv6 forms that embed an IPv4 address.
    #[test]
    fn address_classes_follow_the_special_purpose_registries() {
        let refused = [
            // IPv4
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.255",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.0.9",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
            // IPv6
            "::",
            "::1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "100::1",
            "100:0:0:1::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:10::1",
            "2001:1ff::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:101::1",
            "3fff::1",
            "3fff:fff::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
        ];
        for a in refused {
            let ip: IpAddr = a.parse().unwrap();
            assert!(!is_public(ip), "{a} must be refused");
        }
        let allowed = [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "192.88.98.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:200::1",
            "2001:4860:4860::8888",
            "2606:4700:4700::1111",
            "2a00:1450::1",
            "3ff0::1",
            "3fff:1000::1",
        ];
        for a in allowed {
            let ip: IpAddr = a.parse().unwrap();
            assert!(is_public(ip), "{a} must be allowed");
        }
    }

    #[test]
    fn private_hosts_entries_name_a_port_or_every_port() {
        let o = |s: &str| origin(s);
        assert!(private_host_matches(
            "127.0.0.1:8080",
            &o("http://127.0.0.1:8080/")
        ));
        assert!(!private_host_matches(
            "127.0.0.1:8080",
            &o("http://127.0.0.1:8081/")
        ));
        assert!(private_host_matches("127.0.0.1", &o("http://127.0.0.1:9/")));
        assert!(private_host_matches(
            "CalDAV.local:443",
            &o("https://caldav.local/")
        ));
        assert!(private_host_matches("[::1]:80", &o("http://[::1]/")));
        assert!(!private_host_matches("[::1]:80", &o("http://[::1]:81/")));
        assert!(private_host_matches("::1", &o("http://[::1]:81/")));
        assert!(!private_host_matches("evil.test", &o("http://127.0.0.1/")));
        for bad in ["", "host:port", "http://x", "a@b", "*.x", "[::1"] {
            assert!(validate_private_host(bad).is_err(), "{bad:?}");
        }
        for good in ["x", "x:1", "[::1]:80", "::1", "127.0.0.1:8080"] {
            assert!(validate_private_host(good).is_ok(), "{good:?}");
        }
        let p = Policy {
            private_hosts: vec!["127.0.0.1:8080".into()],
            ..Policy::default()
        };
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(p.check_addrs(&o("http://127.0.0.1:8080/"), &[lo]), Ok(()));
        assert_eq!(
            p.check_addrs(&o("http://127.0.0.1:22/"), &[lo]),
            Err(Denial::PrivateAddress(lo)),
            "an unlisted port is refused"
        );
    }
}
