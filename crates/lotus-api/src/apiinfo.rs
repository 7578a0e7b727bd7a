//! `TOKEN:MULTIADDR` strings (`MINER_API_INFO`) and listen addresses in multiaddr form.

use multiaddr::{Multiaddr, Protocol};
use std::fmt;
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApiInfoError {
    #[error("invalid API info {input:?}: {why}. Expected TOKEN:/ip4/<host>/tcp/<port>/http as printed by `lotus-miner auth api-info --perm admin`")]
    Invalid { input: String, why: String },
    #[error(
        "invalid address {input:?}: {why}. Expected a multiaddr such as /ip4/127.0.0.1/tcp/2345/http or a host:port"
    )]
    Address { input: String, why: String },
}

/// Where an API lives and how to authenticate to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiInfo {
    /// Empty when the string had no token part.
    pub token: String,
    /// `host:port`.
    pub host_port: String,
    /// `http` or `https`.
    pub scheme: &'static str,
}

impl ApiInfo {
    /// Parse `TOKEN:MULTIADDR`, `TOKEN:http://host:port`, or a bare address. Only the first of
    /// several comma-separated entries is used.
    pub fn parse(input: &str) -> Result<ApiInfo, ApiInfoError> {
        let bad = |why: &str| ApiInfoError::Invalid { input: redact(input), why: why.to_string() };
        let first = input.trim().split(',').next().unwrap_or("").trim();
        if first.is_empty() {
            return Err(bad("it is empty"));
        }
        let is_url = ["http://", "https://", "ws://", "wss://"].iter().any(|p| first.starts_with(p));
        let (token, addr) = if first.starts_with('/') || is_url {
            ("", first)
        } else {
            match first.split_once(':') {
                Some((t, a)) => (t, a),
                None => return Err(bad("there is no ':' between the token and the address")),
            }
        };
        if token.contains(char::is_whitespace) {
            return Err(bad("the token contains whitespace"));
        }
        let (host_port, scheme) = parse_addr(addr).map_err(|e| match e {
            ApiInfoError::Address { why, .. } => bad(&why),
            other => other,
        })?;
        Ok(ApiInfo { token: token.to_string(), host_port, scheme })
    }

    pub fn rpc_url(&self) -> String {
        format!("{}://{}/rpc/v0", self.scheme, self.host_port)
    }

    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.host_port)
    }
}

impl fmt::Display for ApiInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.token, to_multiaddr(&self.host_port))
    }
}

fn redact(s: &str) -> String {
    // Never echo a whole token into logs: keep its first characters only.
    match s.split_once(':') {
        // By characters: a byte slice could cut a multibyte one (and panic).
        Some((t, rest)) if t.chars().count() > 12 && !t.starts_with('/') => {
            format!("{}…:{}", t.chars().take(8).collect::<String>(), rest)
        }
        _ => s.to_string(),
    }
}

/// `/ip4/1.2.3.4/tcp/2345/http` for `1.2.3.4:2345`.
pub fn to_multiaddr(host_port: &str) -> String {
    match host_port.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(a)) => format!("/ip4/{}/tcp/{}/http", a.ip(), a.port()),
        Ok(SocketAddr::V6(a)) => format!("/ip6/{}/tcp/{}/http", a.ip(), a.port()),
        Err(_) => match host_port.rsplit_once(':') {
            Some((h, p)) => format!("/dns/{h}/tcp/{p}/http"),
            None => host_port.to_string(),
        },
    }
}

/// Parse a multiaddr (`/ip4/../tcp/../http`, `/http` optional, `/dns*`, `/ip6`), a URL
/// (`http://host:port[/rpc/v0]`) or `host:port`. Returns `host:port` and the scheme.
pub fn parse_addr(addr: &str) -> Result<(String, &'static str), ApiInfoError> {
    let bad = |why: String| ApiInfoError::Address { input: addr.to_string(), why };
    let addr = addr.trim();
    if let Some((scheme, rest)) = addr.split_once("://") {
        let scheme = match scheme {
            "http" | "ws" => "http",
            "https" | "wss" => "https",
            other => return Err(bad(format!("unsupported scheme {other:?}"))),
        };
        let host_port = rest.split('/').next().unwrap_or("");
        if !host_port.contains(':') {
            return Err(bad("the URL has no port".into()));
        }
        return Ok((host_port.to_string(), scheme));
    }
    if !addr.starts_with('/') {
        return match addr.parse::<SocketAddr>() {
            Ok(a) => Ok((a.to_string(), "http")),
            Err(_) if addr.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) => {
                Ok((addr.to_string(), "http"))
            }
            Err(e) => Err(bad(e.to_string())),
        };
    }
    let ma: Multiaddr = addr.parse().map_err(|e: multiaddr::Error| bad(e.to_string()))?;
    let (mut host, mut port, mut scheme) = (None, None, "http");
    for p in ma.iter() {
        match p {
            Protocol::Ip4(ip) => host = Some(ip.to_string()),
            Protocol::Ip6(ip) => host = Some(format!("[{ip}]")),
            Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h) => host = Some(h.to_string()),
            Protocol::Tcp(p) => port = Some(p),
            Protocol::Http | Protocol::Ws(_) => scheme = "http",
            Protocol::Https | Protocol::Wss(_) | Protocol::Tls => scheme = "https",
            other => return Err(bad(format!("unsupported protocol {other}"))),
        }
    }
    match (host, port) {
        (Some(h), Some(p)) => Ok((format!("{h}:{p}"), scheme)),
        (None, _) => Err(bad("no /ip4, /ip6 or /dns part".into())),
        (_, None) => Err(bad("no /tcp/<port> part".into())),
    }
}

/// A listen address from config (`/ip4/0.0.0.0/tcp/2345/http` or `host:port`).
pub fn listen_addr(addr: &str) -> Result<SocketAddr, ApiInfoError> {
    let (hp, _) = parse_addr(addr)?;
    hp.parse::<SocketAddr>().map_err(|_| ApiInfoError::Address {
        input: addr.to_string(),
        why: "a listen address needs an IP address, not a host name".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token of multibyte characters is redacted by characters, not cut mid-character.
    #[test]
    fn a_multibyte_token_is_redacted_without_panicking() {
        let e = ApiInfo::parse("ééééééééééééééé:/ip4/127.0.0.1/tcp/x").unwrap_err().to_string();
        assert!(e.contains("éééééééé…:"), "{e}");
        assert!(!e.contains("ééééééééé"), "no more than 8 characters of the token: {e}");
    }

    #[test]
    fn parses_the_guides_forms() {
        let a = ApiInfo::parse("eyJhbGc.x.y:/ip4/127.0.0.1/tcp/2345/http").unwrap();
        assert_eq!((a.token.as_str(), a.host_port.as_str()), ("eyJhbGc.x.y", "127.0.0.1:2345"));
        assert_eq!(a.rpc_url(), "http://127.0.0.1:2345/rpc/v0");
        // The seeds also write it without /http.
        assert_eq!(ApiInfo::parse("tok:/ip4/10.0.0.2/tcp/2345").unwrap().host_port, "10.0.0.2:2345");
        assert_eq!(ApiInfo::parse("tok:http://10.0.0.2:2345/rpc/v0").unwrap().host_port, "10.0.0.2:2345");
        assert_eq!(ApiInfo::parse("tok:/dns/miner.lan/tcp/2345/http").unwrap().host_port, "miner.lan:2345");
        assert_eq!(ApiInfo::parse("tok:/ip6/::1/tcp/1/http").unwrap().host_port, "[::1]:1");
        assert_eq!(ApiInfo::parse("a:/ip4/1.2.3.4/tcp/1/http,b:/ip4/5.6.7.8/tcp/2/http").unwrap().token, "a");
        assert_eq!(a.to_string(), "eyJhbGc.x.y:/ip4/127.0.0.1/tcp/2345/http");
    }

    #[test]
    fn rejects_bad_strings_with_a_hint() {
        for bad in [
            "",
            "justatoken",
            "tok:/ip4/1.2.3.4/http",
            "tok:/ip4/999.0.0.1/tcp/1",
            "tok:ftp://x:1",
            "t k:/ip4/1.2.3.4/tcp/1",
        ] {
            let e = ApiInfo::parse(bad).unwrap_err().to_string();
            assert!(e.contains("Expected TOKEN:/ip4/"), "{bad}: {e}");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(listen_addr("/ip4/0.0.0.0/tcp/3456/http").unwrap().to_string(), "0.0.0.0:3456");
        assert_eq!(listen_addr("127.0.0.1:0").unwrap().port(), 0);
        assert!(listen_addr("/dns/x/tcp/1").is_err());
    }
}
