//! The proxy's settings: smokescreen's YAML configuration file (`--config-file`) overridden by
//! the flags, validated once at start, and the address rules mapped onto stopover's SSRF
//! [`Policy`].
//!
//! The file is read strictly, as smokescreen reads it (an unknown key is an error). Keys for
//! features this proxy does not have (`statsd_address`, `support_proxy_protocol`,
//! `stats_socket_dir`, `mitm_ca_*`, `time_connect`) are refused by name when they are set,
//! never ignored.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use stopover::client::ssrf::Policy;

use crate::acl::Acl;
use crate::cli::Args;
use crate::dns::Resolver;
use crate::duration;

/// smokescreen's default port.
pub const DEFAULT_PORT: u16 = 4750;
/// smokescreen's default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// smokescreen's default DNS timeout.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// smokescreen's default read-header, read and write timeouts.
pub const DEFAULT_SERVER_TIMEOUT: Duration = Duration::from_secs(300);
/// smokescreen's default time to drain connections after SIGTERM (500 minutes).
pub const DEFAULT_EXIT_TIMEOUT: Duration = Duration::from_secs(500 * 60);

/// The address families names are resolved to (smokescreen's `network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// IPv4 and IPv6 (`ip`, the default).
    Both,
    /// IPv4 only (`ip4`).
    V4,
    /// IPv6 only (`ip6`).
    V6,
}

/// TLS for the listener: the server's certificate, and client certificates for roles.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM file with the server's certificate chain.
    pub cert_file: PathBuf,
    /// PEM file with the server's private key (the same file as `cert_file` for a bundle).
    pub key_file: PathBuf,
    /// PEM files with the CAs that sign client certificates; none means no client
    /// certificates are asked for.
    pub client_ca_files: Vec<PathBuf>,
    /// CRL files (PEM or DER) for the client CAs.
    pub crl_files: Vec<PathBuf>,
}

/// Prometheus metrics endpoint.
#[derive(Debug, Clone)]
pub struct PrometheusSettings {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The path that answers.
    pub endpoint: String,
}

/// Everything the proxy needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address (`None` = every interface).
    pub listen_ip: Option<IpAddr>,
    /// Listen port.
    pub listen_port: u16,
    /// Time allowed to connect to a destination (all its addresses together).
    pub connect_timeout: Duration,
    /// Time allowed to resolve a name.
    pub dns_timeout: Duration,
    /// Where names are resolved.
    pub resolver: Resolver,
    /// Address families kept from answers.
    pub network: Network,
    /// The address policy.
    pub policy: Policy,
    /// The policy without the caller's allow rules, to tell which allow rule let an address
    /// through (for the `resolver_allow_*` counters).
    pub baseline_policy: Policy,
    /// The egress ACL, if any.
    pub acl: Option<Acl>,
    /// Whether a request without a role is judged by the ACL's default entry.
    pub allow_missing_role: bool,
    /// Appended to every error answer.
    pub additional_error_message: Option<String>,
    /// Requests in flight at most (0 = unlimited).
    pub max_concurrent_requests: usize,
    /// Requests per second (0 = unlimited).
    pub max_request_rate: f64,
    /// Burst of the rate limit.
    pub max_request_burst: u64,
    /// CONNECT tunnels open at most (0 = unlimited).
    pub max_concurrent_connect_tunnels: usize,
    /// A tunnel or kept-alive connection with no bytes either way for this long is closed
    /// (zero = never).
    pub idle_timeout: Duration,
    /// Time allowed for a client to send a request's headers.
    pub read_header_timeout: Duration,
    /// Time allowed for an upstream to answer a plain HTTP request with its headers
    /// (smokescreen's `read_timeout`, applied to the upstream's answer).
    pub read_timeout: Duration,
    /// Time allowed to drain connections after SIGTERM.
    pub exit_timeout: Duration,
    /// Idle upstream connections kept for plain HTTP in all (0 = the default, 512).
    pub max_idle_conns: usize,
    /// Idle upstream connections kept per address (0 = the default, 32).
    pub max_idle_conns_per_host: usize,
    /// TLS on the listener.
    pub tls: Option<TlsSettings>,
    /// Prometheus metrics.
    pub prometheus: Option<PrometheusSettings>,
    /// Time allowed for a plain HTTP answer to be written out, from the request's arrival
    /// (smokescreen's `write_timeout`; tunnels are bounded by `idle_timeout` instead).
    pub write_timeout: Duration,
}

/// smokescreen's YAML configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    ip: Option<String>,
    port: Option<u16>,
    #[serde(default)]
    deny_ranges: Vec<String>,
    #[serde(default)]
    allow_ranges: Vec<String>,
    #[serde(default)]
    deny_addresses: Vec<String>,
    #[serde(default)]
    allow_addresses: Vec<String>,
    #[serde(default)]
    resolver_addresses: Vec<String>,
    statsd_address: Option<String>,
    acl_file: Option<String>,
    #[serde(default)]
    support_proxy_protocol: bool,
    deny_message_extra: Option<String>,
    #[serde(default)]
    allow_missing_role: bool,
    network: Option<String>,
    connect_timeout: Option<GoDuration>,
    idle_timeout: Option<GoDuration>,
    exit_timeout: Option<GoDuration>,
    read_header_timeout: Option<GoDuration>,
    read_timeout: Option<GoDuration>,
    write_timeout: Option<GoDuration>,
    stats_socket_dir: Option<String>,
    stats_socket_file_mode: Option<String>,
    #[serde(default)]
    transport_max_idle_conns: i64,
    #[serde(default)]
    transport_max_idle_conns_per_host: i64,
    #[serde(default)]
    time_connect: bool,
    tls: Option<FileTls>,
    #[serde(default)]
    unsafe_allow_private_ranges: bool,
    mitm_ca_cert_file: Option<String>,
    mitm_ca_key_file: Option<String>,
    #[serde(default)]
    max_concurrent_requests: i64,
    #[serde(default)]
    max_request_rate: f64,
    max_request_burst: Option<i64>,
    #[serde(default)]
    max_concurrent_connect_tunnels: i64,
    dns_timeout: Option<GoDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
    #[serde(default)]
    client_ca_files: Vec<String>,
    #[serde(default)]
    crl_files: Vec<String>,
}

/// A duration as Go's YAML library reads one: a Go duration string, or integer nanoseconds.
#[derive(Debug, Clone, Copy)]
struct GoDuration(Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Nanos(u64),
            Text(String),
        }
        match Raw::deserialize(de)? {
            Raw::Nanos(nanos) => Ok(GoDuration(Duration::from_nanos(nanos))),
            Raw::Text(text) => duration::parse(&text)
                .map(GoDuration)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl FileConfig {
    fn load(path: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!("Couldn't load file \"{path}\" specified by --config-file: {e}")
        })?;
        let config: FileConfig = serde_norway::from_str(&text).map_err(|e| {
            format!("Couldn't load file \"{path}\" specified by --config-file: {e}")
        })?;
        config.refuse_unsupported()?;
        Ok(config)
    }

    fn refuse_unsupported(&self) -> Result<(), String> {
        let set = [
            (
                "statsd_address",
                self.statsd_address.as_ref().is_some_and(|a| !a.is_empty()),
            ),
            ("support_proxy_protocol", self.support_proxy_protocol),
            ("stats_socket_dir", self.stats_socket_dir.is_some()),
            (
                "stats_socket_file_mode",
                self.stats_socket_file_mode.is_some(),
            ),
            ("mitm_ca_cert_file", self.mitm_ca_cert_file.is_some()),
            ("mitm_ca_key_file", self.mitm_ca_key_file.is_some()),
            ("time_connect", self.time_connect),
        ];
        match set.iter().find(|(_, is_set)| *is_set) {
            Some((key, _)) => Err(format!(
                "--config-file: {key} is a smokescreen setting that stopover-egress does not support"
            )),
            None => Ok(()),
        }
    }
}

impl Settings {
    /// Builds the settings from the command line (and the file it names).
    pub fn from_args(args: &Args) -> Result<Self, String> {
        let file = match &args.config_file {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };

        let listen_ip = match args.listen_ip.as_deref().or(file.ip.as_deref()) {
            None | Some("") => None,
            Some(text) => Some(listen_address(text, "listen-ip")?),
        };
        let listen_port = args.listen_port.or(file.port).unwrap_or(DEFAULT_PORT);
        let parse_flag = |name: &str, value: &Option<String>| -> Result<Option<Duration>, String> {
            value
                .as_deref()
                .map(|text| duration::parse(text).map_err(|e| format!("--{name}: {e}")))
                .transpose()
        };
        let file_duration = |d: Option<GoDuration>| d.map(|d| d.0);
        let connect_timeout = parse_flag("timeout", &args.timeout)?
            .or(file_duration(file.connect_timeout).filter(|d| !d.is_zero()))
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let dns_timeout = parse_flag("dns-timeout", &args.dns_timeout)?
            .or(file_duration(file.dns_timeout))
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_DNS_TIMEOUT);

        let resolvers = if args.resolver_address.is_empty() {
            &file.resolver_addresses
        } else {
            &args.resolver_address
        };
        let resolver = match resolvers.as_slice() {
            [] => Resolver::System,
            [one] => Resolver::Server(
                one.parse()
                    .map_err(|_| format!("invalid resolver address {one:?}: expected IP:port"))?,
            ),
            many => {
                return Err(format!(
                    "only one resolver address allowed, {} provided",
                    many.len()
                ));
            }
        };
        let network = match file.network.as_deref() {
            None | Some("") | Some("ip") => Network::Both,
            Some("ip4") => Network::V4,
            Some("ip6") => Network::V6,
            Some(other) => return Err(format!("invalid network type: {other}")),
        };

        let unsafe_allow_private = args
            .unsafe_allow_private_ranges
            .unwrap_or(file.unsafe_allow_private_ranges);
        let rules = AddressRules {
            allow_ranges: [file.allow_ranges.as_slice(), &args.allow_range].concat(),
            deny_ranges: [file.deny_ranges.as_slice(), &args.deny_range].concat(),
            allow_addresses: [file.allow_addresses.as_slice(), &args.allow_address].concat(),
            deny_addresses: [file.deny_addresses.as_slice(), &args.deny_address].concat(),
            unsafe_allow_private,
        };
        let policy = rules.policy(dns_timeout)?;
        let baseline_policy = AddressRules {
            allow_ranges: Vec::new(),
            allow_addresses: Vec::new(),
            unsafe_allow_private: false,
            ..rules
        }
        .policy(dns_timeout)?;

        let acl = match args.egress_acl_file.as_deref().or(file.acl_file.as_deref()) {
            None | Some("") => None,
            Some(path) => Some(Acl::load(path.as_ref(), &args.disable_acl_policy_action)?),
        };

        let count = |name: &str, value: Option<i64>, file_value: i64| -> Result<usize, String> {
            let value = value.unwrap_or(file_value);
            usize::try_from(value).map_err(|_| format!("{name} must be >= 0, got {value}"))
        };
        let max_concurrent_requests = count(
            "maxConcurrent",
            args.max_concurrent_requests,
            file.max_concurrent_requests,
        )?;
        let max_request_rate = args.max_request_rate.unwrap_or(file.max_request_rate);
        if max_request_rate.is_nan() || max_request_rate < 0.0 {
            return Err(format!("maxRate must be >= 0, got {max_request_rate:.2}"));
        }
        let burst = args
            .max_request_burst
            .or(file.max_request_burst)
            .unwrap_or(-1);
        if burst >= 0 && max_request_rate > 0.0 && burst as f64 <= max_request_rate {
            return Err(format!(
                "maxRequestBurst ({burst}) must be greater than maxRequestRate \
                 ({max_request_rate:.2}); omit to use default (2x rate)"
            ));
        }
        let max_request_burst = if burst < 0 {
            (max_request_rate * 2.0) as u64
        } else {
            burst as u64
        };
        let max_concurrent_connect_tunnels = count(
            "max-concurrent-connect-tunnels",
            args.max_concurrent_connect_tunnels,
            file.max_concurrent_connect_tunnels,
        )?;

        let nonzero_or = |d: Option<GoDuration>, default| {
            d.map(|d| d.0).filter(|d| !d.is_zero()).unwrap_or(default)
        };
        let tls = tls_settings(args, &file)?;
        let prometheus = prometheus_settings(args)?;

        Ok(Settings {
            listen_ip,
            listen_port,
            connect_timeout,
            dns_timeout,
            resolver,
            network,
            policy,
            baseline_policy,
            acl,
            allow_missing_role: file.allow_missing_role,
            additional_error_message: args
                .additional_error_message_on_deny
                .clone()
                .or(file.deny_message_extra)
                .filter(|m| !m.is_empty()),
            max_concurrent_requests,
            max_request_rate,
            max_request_burst,
            max_concurrent_connect_tunnels,
            idle_timeout: file.idle_timeout.map(|d| d.0).unwrap_or(Duration::ZERO),
            read_header_timeout: nonzero_or(file.read_header_timeout, DEFAULT_SERVER_TIMEOUT),
            read_timeout: nonzero_or(file.read_timeout, DEFAULT_SERVER_TIMEOUT),
            exit_timeout: file
                .exit_timeout
                .map(|d| d.0)
                .unwrap_or(DEFAULT_EXIT_TIMEOUT),
            max_idle_conns: usize::try_from(file.transport_max_idle_conns).unwrap_or(0),
            max_idle_conns_per_host: usize::try_from(file.transport_max_idle_conns_per_host)
                .unwrap_or(0),
            tls,
            prometheus,
            write_timeout: nonzero_or(file.write_timeout, DEFAULT_SERVER_TIMEOUT),
        })
    }
}

fn tls_settings(args: &Args, file: &FileConfig) -> Result<Option<TlsSettings>, String> {
    let paths = |list: &[String]| list.iter().map(PathBuf::from).collect::<Vec<_>>();
    if let Some(bundle) = &args.tls_server_bundle_file {
        return Ok(Some(TlsSettings {
            cert_file: bundle.into(),
            key_file: bundle.into(),
            client_ca_files: paths(&args.tls_client_ca_file),
            crl_files: paths(&args.tls_crl_file),
        }));
    }
    if (!args.tls_client_ca_file.is_empty() || !args.tls_crl_file.is_empty()) && file.tls.is_none()
    {
        return Err(
            "--tls-client-ca-file and --tls-crl-file need --tls-server-bundle-file".to_owned(),
        );
    }
    let Some(tls) = &file.tls else {
        return Ok(None);
    };
    if tls.cert_file.is_empty() {
        return Err("'tls' section requires 'cert_file'".to_owned());
    }
    let key_file = if tls.key_file.is_empty() {
        &tls.cert_file
    } else {
        &tls.key_file
    };
    Ok(Some(TlsSettings {
        cert_file: tls.cert_file.as_str().into(),
        key_file: key_file.as_str().into(),
        client_ca_files: paths(&tls.client_ca_files),
        crl_files: paths(if args.tls_crl_file.is_empty() {
            &tls.crl_files
        } else {
            &args.tls_crl_file
        }),
    }))
}

fn prometheus_settings(args: &Args) -> Result<Option<PrometheusSettings>, String> {
    if args.expose_prometheus_metrics != Some(true) {
        return Ok(None);
    }
    let ip = args.prometheus_listen_ip.as_deref().unwrap_or("0.0.0.0");
    let port = args.prometheus_port.as_deref().unwrap_or("9810");
    let port: u16 = port
        .parse()
        .map_err(|_| format!("invalid prometheus-port {port:?}"))?;
    let addr = SocketAddr::new(listen_address(ip, "prometheus-listen-ip")?, port);
    let endpoint = args
        .prometheus_endpoint
        .clone()
        .unwrap_or_else(|| "/metrics".to_owned());
    if !endpoint.starts_with('/') {
        return Err(format!(
            "invalid prometheus endpoint {endpoint:?}: must start with /"
        ));
    }
    Ok(Some(PrometheusSettings { addr, endpoint }))
}

/// A listening address: an IP literal, or a name resolved once at start (Go's `net.Listen`
/// takes `localhost` too).
fn listen_address(text: &str, flag: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(ip);
    }
    use std::net::ToSocketAddrs;
    (text, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .map(|addr| addr.ip())
        .ok_or_else(|| {
            format!("invalid {flag} {text:?}: not an IP address or a name that resolves")
        })
}

/// smokescreen's address flags, before they become policy rules.
#[derive(Debug, Default)]
pub struct AddressRules {
    /// `--allow-range`: CIDR networks.
    pub allow_ranges: Vec<String>,
    /// `--deny-range`: CIDR networks.
    pub deny_ranges: Vec<String>,
    /// `--allow-address`: `IP` or `IP:PORT`.
    pub allow_addresses: Vec<String>,
    /// `--deny-address`: `IP` or `IP:PORT`.
    pub deny_addresses: Vec<String>,
    /// `--unsafe-allow-private-ranges`.
    pub unsafe_allow_private: bool,
}

/// What `--unsafe-allow-private-ranges` frees: Go's `IP.IsPrivate`, RFC 1918 and fc00::/7.
const PRIVATE_RANGES: &[&str] = &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"];

impl AddressRules {
    /// Maps the rules onto a policy: allow rules lift the built-in denials, deny rules win
    /// over everything.
    pub fn policy(&self, dns_timeout: Duration) -> Result<Policy, String> {
        let mut builder = Policy::builder().dns_timeout(dns_timeout);
        for range in &self.allow_ranges {
            builder = builder.allow_addr(&cidr_rule(range)?);
        }
        for range in &self.deny_ranges {
            builder = builder.deny_addr(&cidr_rule(range)?);
        }
        for address in &self.allow_addresses {
            builder = builder.allow_addr(&address_rule(address)?);
        }
        for address in &self.deny_addresses {
            builder = builder.deny_addr(&address_rule(address)?);
        }
        if self.unsafe_allow_private {
            for range in PRIVATE_RANGES {
                builder = builder.allow_addr(range);
            }
        }
        builder.build().map_err(|e| e.to_string())
    }
}

/// A CIDR range as Go's `net.ParseCIDR` reads it: host bits after the prefix are dropped.
fn cidr_rule(text: &str) -> Result<String, String> {
    let net: ipnet::IpNet = text
        .parse()
        .map_err(|_| format!("invalid CIDR address: {text}"))?;
    Ok(net.trunc().to_string())
}

/// `IP` or `IP:PORT` (`[v6]:PORT`) as smokescreen reads them; port 0 means any port.
fn address_rule(text: &str) -> Result<String, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("address must be in the form ip[:port], got {text}"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: IpAddr = host
        .parse()
        .map_err(|_| format!("invalid IP address '{host}'"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("invalid port number '{port}'"))?;
    Ok(match (ip, port) {
        (_, 0) => ip.to_string(),
        (IpAddr::V4(v4), port) => format!("{v4}:{port}"),
        (IpAddr::V6(v6), port) => format!("[{v6}]:{port}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn settings(args: &[&str]) -> Result<Settings, String> {
        let args = Args::parse_from_env(
            std::iter::once("stopover-egress")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
        .map_err(|e| e.to_string())?;
        Settings::from_args(&args)
    }

    fn allowed(policy: &Policy, dest: &str) -> bool {
        policy
            .check_url(&url::Url::parse(&format!("http://{dest}/")).unwrap())
            .is_ok()
    }

    #[test]
    fn defaults_are_smokescreens() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.listen_port, 4750);
        assert_eq!(s.listen_ip, None);
        assert_eq!(s.connect_timeout, Duration::from_secs(10));
        assert_eq!(s.dns_timeout, Duration::from_secs(5));
        assert!(s.acl.is_none());
        assert!(!allowed(&s.policy, "10.0.0.1:80"));
        assert!(!allowed(&s.policy, "127.0.0.1:80"));
    }

    #[test]
    fn allow_range_lifts_builtin_denials_and_deny_wins() {
        let s = settings(&[
            "--allow-range",
            "10.0.0.1/8",
            "--deny-address",
            "10.1.2.3",
            "--allow-address",
            "127.0.0.1:8080",
        ])
        .unwrap();
        assert!(allowed(&s.policy, "10.9.9.9:80"));
        assert!(!allowed(&s.policy, "10.1.2.3:80"));
        assert!(allowed(&s.policy, "127.0.0.1:8080"));
        assert!(!allowed(&s.policy, "127.0.0.1:8081"));
    }

    #[test]
    fn unsafe_allow_private_ranges_frees_rfc1918_only() {
        let s = settings(&["--unsafe-allow-private-ranges"]).unwrap();
        assert!(allowed(&s.policy, "192.168.1.1:80"));
        assert!(allowed(&s.policy, "[fd00::1]:80"));
        assert!(!allowed(&s.policy, "127.0.0.1:80"));
        assert!(!allowed(&s.policy, "169.254.169.254:80"));
        assert!(!allowed(&s.policy, "100.64.0.1:80"));
    }

    // The documented differences from smokescreen's classification, pinned.
    #[test]
    fn special_ranges_smokescreen_allows_are_denied() {
        let s = settings(&[]).unwrap();
        for dest in [
            "192.0.0.192:80",
            "198.18.0.1:80",
            "192.0.2.1:80",
            "240.0.0.1:80",
            "0.1.2.3:80",
            "[3fff::1]:80",
            "[5f00::1]:80",
            "[fec0::1]:80",
            "[::7f00:1]:80",
            "[::ffff:0:7f00:1]:80",
            "[64:ff9b:1::1]:80",
            "[2001:db8::1]:80",
        ] {
            assert!(!allowed(&s.policy, dest), "{dest}");
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_by_what_it_carries() {
        let s = settings(&[]).unwrap();
        // NAT64 of a public address passes (smokescreen denies all of 64:ff9b::/96), NAT64 of a
        // private one does not; 6to4 and Teredo are denied whatever they carry, as in smokescreen.
        assert!(allowed(&s.policy, "[64:ff9b::808:808]:443"));
        assert!(!allowed(&s.policy, "[64:ff9b::a00:1]:443"));
        assert!(allowed(&s.policy, "[::ffff:8.8.8.8]:443"));
        assert!(!allowed(&s.policy, "[2002:808:808::1]:443"));
        assert!(!allowed(
            &s.policy,
            "[2001:0:4136:e378:8000:63bf:3fff:fdd2]:443"
        ));
    }

    #[test]
    fn bad_values_name_the_input() {
        assert!(
            settings(&["--deny-range", "10.0.0.0"])
                .unwrap_err()
                .contains("10.0.0.0")
        );
        assert!(
            settings(&["--allow-address", "example.com:80"])
                .unwrap_err()
                .contains("example.com")
        );
        assert!(
            settings(&["--timeout", "10"])
                .unwrap_err()
                .contains("--timeout")
        );
        assert_eq!(
            settings(&[
                "--resolver-address",
                "127.0.0.1:53",
                "--resolver-address",
                "127.0.0.1:54"
            ])
            .unwrap_err(),
            "only one resolver address allowed, 2 provided"
        );
        assert!(
            settings(&["--max-request-rate", "10", "--max-request-burst", "5"])
                .unwrap_err()
                .contains("must be greater than")
        );
    }

    #[test]
    fn burst_defaults_to_twice_the_rate() {
        let s = settings(&["--max-request-rate", "10"]).unwrap();
        assert_eq!(s.max_request_burst, 20);
    }

    #[test]
    fn config_file_is_strict_and_flags_override_it() {
        let dir = std::env::temp_dir().join(format!("egress-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.yaml");
        std::fs::write(
            &path,
            "port: 4000\nconnect_timeout: 3s\nallow_ranges: [10.0.0.0/8]\ndns_timeout: 2000000000\n",
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let s = settings(&["--config-file", file, "--listen-port", "4001"]).unwrap();
        assert_eq!(s.listen_port, 4001);
        assert_eq!(s.connect_timeout, Duration::from_secs(3));
        assert_eq!(s.dns_timeout, Duration::from_secs(2));
        assert!(allowed(&s.policy, "10.1.1.1:80"));

        std::fs::write(&path, "port: 4000\nno_such_key: 1\n").unwrap();
        assert!(
            settings(&["--config-file", file])
                .unwrap_err()
                .contains("no_such_key")
        );
        std::fs::write(&path, "statsd_address: 127.0.0.1:8200\n").unwrap();
        assert!(
            settings(&["--config-file", file])
                .unwrap_err()
                .contains("statsd_address")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
