//! What a node address (`host:port`) and a cluster id may look like.
//!
//! Both travel in gossip and are written as space-separated fields of a
//! line in every member's `RING` file, so neither may hold whitespace or
//! control characters: one node started with `--advertise-host "10.0.0.5
//! fe80::1"` (the output of `hostname -i`) would otherwise make every
//! member's file unreadable at its next start.

/// The longest cluster id: a Kubernetes object name and namespace joined
/// by a dot fit.
pub const MAX_CLUSTER_ID_LEN: usize = 253;

/// Why `address` is not `host:port`: the host is a name, an IPv4 address
/// or a bracketed IPv6 address, the port 1 to 65535.
///
/// # Errors
/// A reason, for the caller to put in its own message.
pub fn check_address(address: &str) -> Result<(), &'static str> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err("expected host:port");
    };
    check_host(host)?;
    match port.parse::<u16>() {
        Ok(1..) => Ok(()),
        _ => Err("the port must be a number from 1 to 65535"),
    }
}

/// Why `host` cannot be the host of an address (see [`check_address`]).
///
/// # Errors
/// A reason, for the caller to put in its own message.
pub fn check_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("the host is empty");
    }
    if !host.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the host holds whitespace, control or non-ASCII characters");
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err("the host in brackets is not an IPv6 address"),
        };
    }
    if host.contains(':') {
        return Err("an IPv6 host must be in brackets, like [::1]:7400");
    }
    Ok(())
}

/// The host of an address for `ip`: IPv6 addresses in brackets.
#[must_use]
pub fn host_of(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Why `id` cannot be a cluster id: 1 to [`MAX_CLUSTER_ID_LEN`] visible
/// ASCII characters (no whitespace or control characters).
///
/// # Errors
/// A reason, for the caller to put in its own message.
pub fn check_cluster_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        Err("the cluster id is empty")
    } else if id.len() > MAX_CLUSTER_ID_LEN {
        Err("the cluster id is longer than 253 characters")
    } else if !id.bytes().all(|b| b.is_ascii_graphic()) {
        Err("the cluster id holds whitespace, control or non-ASCII characters")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_one_token_of_host_and_port() {
        for good in [
            "10.0.0.1:7400",
            "kv-0.kv-peers.default.svc:7401",
            "[::1]:7400",
            "[fe80::1]:1",
            "localhost:65535",
        ] {
            assert_eq!(check_address(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "10.0.0.1",
            ":7400",
            "host:0",
            "host:70000",
            "host:x",
            "h :1",
            "10.0.0.5 fe80::1:7400",
            "host\r:7400",
            "::1:7400",
            "[nope]:7400",
            "höst:7400",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hosts_of_ips_are_addresses_once_a_port_is_added() {
        for ip in ["10.1.2.3", "::1", "fe80::1:2"] {
            let host = host_of(ip.parse().expect("ip"));
            assert_eq!(check_address(&format!("{host}:7400")), Ok(()), "{host}");
        }
        assert_eq!(host_of("::1".parse().expect("ip")), "[::1]");
    }

    #[test]
    fn cluster_ids_are_one_visible_token() {
        for good in ["strata", "prod.kv", "a", &"x".repeat(253), "team/kv_1"] {
            assert_eq!(check_cluster_id(good), Ok(()), "{good}");
        }
        for bad in ["", "a b", "prod\r", "tab\tid", "ünï", &"x".repeat(254)] {
            assert!(check_cluster_id(bad).is_err(), "{bad:?}");
        }
    }
}
