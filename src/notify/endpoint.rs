//! Where push messages may go: push services on the public internet, never the gateway's own
//! network.
//!
//! A push subscription's endpoint is a URL any logged-in user chooses, and the gateway POSTs to
//! it. Without a check, a user could make the gateway call its own loopback admin endpoints, a
//! cloud metadata service (169.254.169.254) or hosts of the private network behind it. So an
//! endpoint's host must be, or resolve only to, public unicast addresses: when the subscription
//! is added, and again when each message is sent, by the resolver the push client connects
//! through ([`PublicOnly`]), so that a name that resolved to a public address at registration
//! and to a private one later (DNS rebinding) is refused too: the addresses checked are the
//! addresses connected to. The operator's `--danger-allow-private-push-endpoints` lifts this for
//! a push service on a private network (and for tests' loopback receivers).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an endpoint's host is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error(
        "the push endpoint's host {host} is {address}, not a public address (loopback, private, \
         link-local, shared, multicast and reserved addresses are refused unless the gateway \
         runs with danger_allow_private_push_endpoints)"
    )]
    NotPublic { host: String, address: IpAddr },
    #[error("the push endpoint's host {host} could not be resolved: {reason}")]
    Unresolved { host: String, reason: String },
}

/// Whether `address` is a public unicast address: not loopback, private (RFC 1918), shared
/// (CGNAT, RFC 6598), link-local (which holds cloud metadata services), unique-local,
/// unspecified, multicast, broadcast, documentation, benchmarking or otherwise reserved; an
/// IPv6 address that carries an IPv4 one (mapped, compatible, NAT64, 6to4) is judged by it.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    !(a == 0 // "this network", including the unspecified address
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254) // link-local: cloud metadata services
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168)
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224) // multicast, reserved and broadcast
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    let segments = address.segments();
    let embedded_v4 = |high: u16, low: u16| {
        Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8)
    };
    match segments {
        // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d, which also covers the
        // unspecified and loopback addresses).
        [0, 0, 0, 0, 0, 0xffff, high, low] | [0, 0, 0, 0, 0, 0, high, low] => {
            is_public_v4(embedded_v4(high, low))
        }
        // NAT64 (64:ff9b::a.b.c.d).
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => is_public_v4(embedded_v4(high, low)),
        // 6to4 (2002:aabb:ccdd::).
        [0x2002, high, low, ..] => is_public_v4(embedded_v4(high, low)),
        // Teredo, benchmarking, ORCHID and documentation blocks inside 2001::/16.
        [0x2001, second, ..] if second < 0x0200 || second == 0x0db8 => false,
        // Global unicast is 2000::/3; everything else (unique-local fc00::/7, link-local
        // fe80::/10, multicast ff00::/8, discard 100::/64, ...) is not public.
        [first, ..] => (0x2000..0x4000).contains(&first),
    }
}

/// The first address of `addresses` that is not public, if any.
fn first_private(addresses: &[SocketAddr]) -> Option<IpAddr> {
    addresses
        .iter()
        .map(SocketAddr::ip)
        .find(|address| !is_public(*address))
}

/// Checks the host of `url` now: an address literal must be public, and a name must resolve
/// only to public addresses. A name that does not resolve now is let through: it cannot be
/// reached either, and the push client checks whatever it resolves to when it sends.
pub async fn check(url: &url::Url) -> Result<(), EndpointError> {
    check_literal(url)?;
    if let Some(url::Host::Domain(name)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(443);
        let resolved = tokio::time::timeout(RESOLVE_TIMEOUT, resolve(name, port)).await;
        if let Ok(Ok(addresses)) = resolved
            && let Some(address) = first_private(&addresses)
        {
            return Err(EndpointError::NotPublic {
                host: name.to_owned(),
                address,
            });
        }
    }
    Ok(())
}

/// How long a subscription waits for its endpoint's name to resolve.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Checks the host of `url` if it is an address literal (which no resolver sees).
pub fn check_literal(url: &url::Url) -> Result<(), EndpointError> {
    let address = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if is_public(address) {
        Ok(())
    } else {
        Err(EndpointError::NotPublic {
            host: url.host_str().unwrap_or_default().to_owned(),
            address,
        })
    }
}

/// Every address `name` resolves to, or why it did not.
async fn resolve(name: &str, port: u16) -> Result<Vec<SocketAddr>, EndpointError> {
    let unresolved = |reason: String| EndpointError::Unresolved {
        host: name.to_owned(),
        reason,
    };
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
        .await
        .map_err(|e| unresolved(e.to_string()))?
        .collect();
    if addresses.is_empty() {
        return Err(unresolved("no addresses".to_owned()));
    }
    Ok(addresses)
}

/// The push client's resolver: the system's, refusing a name if any of its addresses is not
/// public. The client connects only to the addresses it returns, so the check cannot be
/// bypassed by a second, different answer. (Address literals never reach a resolver: the
/// gateway checks them with [`check`] before sending.)
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let addresses = resolve(&name, 0).await?;
            if let Some(address) = first_private(&addresses) {
                return Err(EndpointError::NotPublic {
                    host: name,
                    address,
                }
                .into());
            }
            let addresses: Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_unicast_addresses_are_public() {
        let refused = [
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "2002:c0a8:0101::1",
            "2002:7f00:1::",
            "2001::1",
            "2001:db8::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "100::1",
        ];
        for address in refused {
            assert!(!is_public(address.parse().unwrap()), "{address}");
        }
        let allowed = [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "169.255.0.1",
            "192.169.0.1",
            "223.255.255.254",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:0808:0808::1",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
        ];
        for address in allowed {
            assert!(is_public(address.parse().unwrap()), "{address}");
        }
    }

    #[tokio::test]
    async fn endpoints_on_private_hosts_are_refused_before_sending() {
        for url in [
            "https://127.0.0.1/push",
            "https://[::1]:8443/push",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.7/push",
            "https://localhost/push",
        ] {
            let url = url::Url::parse(url).unwrap();
            assert!(
                matches!(check(&url).await, Err(EndpointError::NotPublic { .. })),
                "{url}"
            );
        }
        let public = url::Url::parse("https://8.8.8.8/push").unwrap();
        assert_eq!(check(&public).await, Ok(()));
    }
}
