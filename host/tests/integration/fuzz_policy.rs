//! Property tests ("fuzzing" within `cargo test`) of the outbound policy:
//! URL parsing into origins, origin patterns, private-host entries and the
//! address classes, plus every input of `host/tests/corpus/urls.txt`. `make fuzz`
//! runs them with many more cases (`PROPTEST_CASES`).

use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use weft::caps::http::policy::{
    Origin, OriginPattern, is_public, private_host_matches, validate_private_host,
};

fn v6_with_v4(prefix: u128, shift: u32, v4: Ipv4Addr) -> Ipv6Addr {
    Ipv6Addr::from(prefix | (u128::from(u32::from(v4)) << shift))
}

proptest! {
    /// Every IPv6 form that embeds an IPv4 address is judged like that
    /// address: mapped, NAT64 and 6to4.
    #[test]
    fn embedded_ipv4_is_judged_like_the_ipv4(raw in any::<u32>()) {
        let v4 = Ipv4Addr::from(raw);
        let want = is_public(IpAddr::V4(v4));
        prop_assert_eq!(is_public(IpAddr::V6(v4.to_ipv6_mapped())), want);
        let nat64 = v6_with_v4(0x0064_ff9b_u128 << 96, 0, v4);
        prop_assert_eq!(is_public(IpAddr::V6(nat64)), want);
        let six_to_four = v6_with_v4(0x2002_u128 << 112, 80, v4);
        prop_assert_eq!(is_public(IpAddr::V6(six_to_four)), want);
        // The deprecated compatible form is never public.
        prop_assert!(!is_public(IpAddr::V6(v6_with_v4(0, 0, v4))));
    }

    /// A public IPv6 address is global unicast (2000::/3), and never one of
    /// the blocks refused outright.
    #[test]
    fn public_ipv6_is_global_unicast(raw in any::<u128>()) {
        let ip = Ipv6Addr::from(raw);
        if is_public(IpAddr::V6(ip)) {
            let s = ip.segments();
            prop_assert_eq!(s[0] & 0xe000, 0x2000);
            prop_assert!(!(s[0] == 0x2001 && s[1] < 0x200), "{ip}");
            prop_assert!(!(s[0] == 0x2001 && s[1] == 0xdb8), "{ip}");
        }
    }

    /// Parsing never panics, and what parses prints back as written.
    #[test]
    fn patterns_parse_without_panics(s in "\\PC{0,40}") {
        if let Ok(p) = OriginPattern::parse(&s) {
            prop_assert_eq!(p.to_string(), s.trim());
            prop_assert!(OriginPattern::parse(&p.to_string()).is_ok());
        }
        let _ = validate_private_host(&s);
    }

    /// The pattern of an origin matches it; a `*.` pattern matches strict
    /// subdomains only; a pattern with a port matches that port only.
    #[test]
    fn patterns_match_what_they_name(
        labels in proptest::collection::vec("[a-z][a-z0-9-]{0,8}", 1..4),
        sub in "[a-z]{1,8}",
        port in 1u16..,
        other in 1u16..,
        https in any::<bool>(),
    ) {
        let scheme = if https { "https" } else { "http" };
        let host = labels.join(".");
        let origin = |h: &str, p: u16| {
            Origin::from_uri(&format!("{scheme}://{h}:{p}/").parse().unwrap()).unwrap()
        };
        let exact = OriginPattern::parse(&format!("{scheme}://{host}:{port}")).unwrap();
        prop_assert!(exact.matches(&origin(&host, port)));
        prop_assert_eq!(exact.matches(&origin(&host, other)), port == other);
        let wild = OriginPattern::parse(&format!("{scheme}://*.{host}:{port}")).unwrap();
        let subdomain = format!("{sub}.{host}");
        prop_assert!(wild.matches(&origin(&subdomain, port)));
        prop_assert!(!wild.matches(&origin(&host, port)));
        let glued = format!("{sub}{host}");
        prop_assert!(!wild.matches(&origin(&glued, port)));
    }

    /// User info is never taken for the host, whatever it holds.
    #[test]
    fn user_info_never_becomes_the_host(
        user in "[a-zA-Z0-9._~!$&'()*+,;=:-]{0,20}",
        host in "[a-z]{1,10}\\.example",
        port in 1u16..,
    ) {
        let url = format!("http://{user}@{host}:{port}/x");
        if let Ok(uri) = url.parse::<http::Uri>()
            && let Ok(o) = Origin::from_uri(&uri)
        {
            prop_assert_eq!(o.host, host);
            prop_assert_eq!(o.port, port);
        }
    }

    /// A `host:port` entry allows exactly that port; a bare host every port.
    #[test]
    fn private_host_ports(port in 1u16.., other in 1u16..) {
        let o = Origin::from_uri(&format!("http://10.0.0.5:{other}/").parse().unwrap()).unwrap();
        prop_assert_eq!(private_host_matches(&format!("10.0.0.5:{port}"), &o), port == other);
        prop_assert!(private_host_matches("10.0.0.5", &o));
    }
}

/// Every input of the corpus: no panic, and user info is never the host.
#[test]
fn corpus_inputs_hold_the_invariants() {
    let corpus = include_str!("../corpus/urls.txt");
    for line in corpus
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let Ok(uri) = line.parse::<http::Uri>() else {
            continue;
        };
        let Ok(origin) = Origin::from_uri(&uri) else {
            continue;
        };
        assert!(!origin.host.contains('@'), "{line}: {origin:?}");
        if let Some(authority) = uri.authority()
            && let Some((_, after)) = authority.as_str().rsplit_once('@')
        {
            // The host comes from after the last `@`.
            assert!(
                after.to_ascii_lowercase().starts_with(&origin.host) || after.starts_with('['),
                "{line}: {origin:?}"
            );
        }
        if let Ok(ip) = origin.host.parse::<IpAddr>() {
            let _ = is_public(ip);
        }
        let _ = OriginPattern::parse(line);
    }
}
