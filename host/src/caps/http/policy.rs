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

/// The outbound policy of one connector for one tenant.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// What the connector asks for.
    pub requested: Vec<OriginPattern>,
    /// What the tenant grants.
    pub granted: Vec<OriginPattern>,
    /// Host names the operator lets reach non-public addresses.
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

    /// Checks the addresses `host` resolved to.
    pub fn check_addrs(&self, host: &str, addrs: &[IpAddr]) -> Result<(), Denial> {
        if self
            .private_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
        {
            return Ok(());
        }
        match addrs.iter().find(|ip| !is_public(**ip)) {
            Some(ip) => Err(Denial::PrivateAddress(*ip)),
            None => Ok(()),
        }
    }
}

/// Whether `ip` is a globally routable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let seg0 = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg0 & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (seg0 == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                || v6 == Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0))
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240)
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
        assert_eq!(p.check_addrs("127.0.0.1", &[lo]), Ok(()));
        assert_eq!(
            p.check_addrs("evil.test", &[lo]),
            Err(Denial::PrivateAddress(lo))
        );
        assert_eq!(
            p.check_addrs("metadata.test", &[meta]),
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
            p.check_addrs("example.com", &[public, lo]),
            Err(Denial::PrivateAddress(lo))
        );
        assert_eq!(p.check_addrs("example.com", &[public]), Ok(()));
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
}
