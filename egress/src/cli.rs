//! smokescreen's command line: the same flag names, meanings and defaults.
//!
//! Flags are written `--name value`, `--name=value`, or with one dash as Go's flag packages
//! also accept (`-listen-port 4750`). smokescreen flags this proxy does not implement are
//! refused by name with the reason, never silently ignored.

use std::ffi::OsString;

use clap::Parser;

/// smokescreen's flags that stopover-egress refuses, and why.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "proxy-protocol",
        "PROXY protocol is not implemented; put the proxy behind a load balancer that keeps \
         client addresses, or run smokescreen",
    ),
    (
        "statsd-address",
        "statsd is not implemented; use --expose-prometheus-metrics",
    ),
    (
        "stats-socket-dir",
        "the connection-tracking socket is not implemented",
    ),
    (
        "stats-socket-file-mode",
        "the connection-tracking socket is not implemented",
    ),
    (
        "upstream-http-proxy-addr",
        "chaining to an upstream proxy is not implemented",
    ),
    (
        "upstream-https-proxy-addr",
        "chaining to an upstream proxy is not implemented",
    ),
];

/// The command line, as smokescreen spells it. Every value is optional so that a value from
/// `--config-file` is overridden only by a flag that is present, as in smokescreen.
#[derive(Debug, Default, Parser)]
#[command(
    name = "stopover-egress",
    version,
    about = "An egress proxy that applies stopover's SSRF policy to every connection it \
             opens: a drop-in for stripe/smokescreen (same flags, ACL file, answers and log line).",
    max_term_width = 100,
    after_help = "smokescreen flags refused by name (not implemented): --proxy-protocol, \
                  --statsd-address, --stats-socket-dir, --stats-socket-file-mode, \
                  --upstream-http-proxy-addr, --upstream-https-proxy-addr. allow_missing_role, \
                  idle_timeout, exit_timeout and the other timeouts are set in --config-file, \
                  as in smokescreen."
)]
pub struct Args {
    /// Load configuration from FILE (smokescreen's YAML). Command line options override values
    /// in the file.
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<String>,

    /// Listen on interface with address IP. [default: any]
    #[arg(long, value_name = "IP")]
    pub listen_ip: Option<String>,

    /// Listen on port PORT. [default: 4750]
    #[arg(long, value_name = "PORT")]
    pub listen_port: Option<u16>,

    /// Time out after DURATION when connecting (Go syntax: 10s, 1m30s). [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,

    /// Add RANGE (in CIDR notation) to list of blocked IP ranges. Repeatable.
    #[arg(long, value_name = "RANGE")]
    pub deny_range: Vec<String>,

    /// Add RANGE (in CIDR notation) to list of allowed IP ranges. Repeatable.
    #[arg(long, value_name = "RANGE")]
    pub allow_range: Vec<String>,

    /// An address (IP, or IP and port) to block. Repeatable.
    #[arg(
        long,
        value_name = "IP[:PORT]",
        help = "Add IP[:PORT] to list of blocked IPs. Repeatable."
    )]
    pub deny_address: Vec<String>,

    /// An address (IP, or IP and port) to allow. Repeatable.
    #[arg(
        long,
        value_name = "IP[:PORT]",
        help = "Add IP[:PORT] to list of allowed IPs. Repeatable."
    )]
    pub allow_address: Vec<String>,

    /// Validate egress traffic against FILE (smokescreen's ACL YAML, version v1).
    #[arg(long, value_name = "FILE")]
    pub egress_acl_file: Option<String>,

    /// Make DNS requests to ADDRESS (IP:port). One address, as in smokescreen. [default: the
    /// system's resolver]
    #[arg(long, value_name = "ADDRESS")]
    pub resolver_address: Vec<String>,

    /// Maximum time to wait for DNS resolution. [default: 5s]
    #[arg(long, value_name = "DURATION")]
    pub dns_timeout: Option<String>,

    /// Authenticate to clients using key and certs from FILE (one PEM file with both).
    #[arg(long, value_name = "FILE")]
    pub tls_server_bundle_file: Option<String>,

    /// Validate client certificates using Certificate Authority from FILE. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca_file: Vec<String>,

    /// Verify validity of client certificates against Certificate Revocation List from FILE.
    /// Repeatable.
    #[arg(long, value_name = "FILE")]
    pub tls_crl_file: Vec<String>,

    /// Display MESSAGE in the HTTP response if proxying request is denied.
    #[arg(long, value_name = "MESSAGE")]
    pub additional_error_message_on_deny: Option<String>,

    /// Disable usage of a POLICY ACTION such as "open" in the egress ACL. Repeatable.
    #[arg(long, value_name = "POLICY ACTION")]
    pub disable_acl_policy_action: Vec<String>,

    /// Allow private ip ranges by default (RFC 1918 and fc00::/7; loopback and the other
    /// special ranges stay denied).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true, value_name = "BOOL")]
    pub unsafe_allow_private_ranges: Option<bool>,

    /// Maximum number of requests that can be processed simultaneously; past it, 503.
    /// 0 = unlimited. [default: 0]
    #[arg(long, value_name = "N")]
    pub max_concurrent_requests: Option<i64>,

    /// Maximum number of requests per second; past it, 429. 0 = unlimited. [default: 0]
    #[arg(long, value_name = "RATE")]
    pub max_request_rate: Option<f64>,

    /// Maximum burst capacity for rate limiting. Must be greater than max-request-rate when
    /// specified. [default: 2x max-request-rate]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_request_burst: Option<i64>,

    /// Maximum number of concurrent CONNECT tunnels; past it, 429 with Retry-After.
    /// 0 = unlimited. [default: 0]
    #[arg(long, value_name = "N")]
    pub max_concurrent_connect_tunnels: Option<i64>,

    /// Expose metrics via prometheus.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true, value_name = "BOOL")]
    pub expose_prometheus_metrics: Option<bool>,

    /// Expose prometheus metrics on ENDPOINT. Requires --expose-prometheus-metrics.
    /// [default: /metrics]
    #[arg(long, value_name = "ENDPOINT")]
    pub prometheus_endpoint: Option<String>,

    /// Listen for prometheus metrics on interface with address IP. Requires
    /// --expose-prometheus-metrics. [default: 0.0.0.0]
    #[arg(long, value_name = "IP")]
    pub prometheus_listen_ip: Option<String>,

    /// Expose prometheus metrics on PORT. Requires --expose-prometheus-metrics.
    /// [default: 9810]
    #[arg(long, value_name = "PORT")]
    pub prometheus_port: Option<String>,
}

impl Args {
    /// Parses a command line (the program name first), refusing smokescreen's unsupported
    /// flags by name.
    pub fn parse_from_env<I>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = OsString>,
    {
        let args = normalize(args)?;
        Args::try_parse_from(args)
    }
}

/// Turns Go's single-dash long flags into clap's double-dash ones, and refuses the
/// unsupported flags by name.
fn normalize<I>(args: I) -> Result<Vec<OsString>, clap::Error>
where
    I: IntoIterator<Item = OsString>,
{
    let mut out = Vec::new();
    let mut after_terminator = false;
    for (index, arg) in args.into_iter().enumerate() {
        let Some(text) = arg.to_str().filter(|_| index > 0 && !after_terminator) else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            after_terminator = true;
            out.push(arg);
            continue;
        }
        let long = match text.strip_prefix("--") {
            Some(rest) => Some(rest),
            None => text.strip_prefix('-').filter(|rest| rest.len() > 1),
        };
        let Some(long) = long else {
            out.push(arg);
            continue;
        };
        let name = long.split_once('=').map_or(long, |(name, _)| name);
        if let Some((_, why)) = UNSUPPORTED.iter().find(|(flag, _)| *flag == name) {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "--{name} is a smokescreen flag that stopover-egress does not support: {why}\n"
                ),
            ));
        }
        if text.starts_with("--") || !is_known(name) {
            out.push(arg);
        } else {
            out.push(OsString::from(format!("-{text}")));
        }
    }
    Ok(out)
}

fn is_known(name: &str) -> bool {
    use clap::CommandFactory;
    name == "help"
        || name == "version"
        || Args::command()
            .get_arguments()
            .any(|a| a.get_long() == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::parse_from_env(
            std::iter::once("stopover-egress")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
    }

    #[test]
    fn single_dash_long_flags_are_go_style() {
        let args = parse(&["-listen-port", "4751", "-allow-range=10.0.0.0/8"]).unwrap();
        assert_eq!(args.listen_port, Some(4751));
        assert_eq!(args.allow_range, ["10.0.0.0/8"]);
    }

    #[test]
    fn repeatable_flags_collect() {
        let args = parse(&["--deny-range", "1.0.0.0/8", "--deny-range", "2.0.0.0/8"]).unwrap();
        assert_eq!(args.deny_range, ["1.0.0.0/8", "2.0.0.0/8"]);
    }

    #[test]
    fn bool_flags_take_no_value_or_an_equals_value() {
        assert_eq!(
            parse(&["--unsafe-allow-private-ranges"])
                .unwrap()
                .unsafe_allow_private_ranges,
            Some(true)
        );
        assert_eq!(
            parse(&["--unsafe-allow-private-ranges=false"])
                .unwrap()
                .unsafe_allow_private_ranges,
            Some(false)
        );
    }

    #[test]
    fn unsupported_flags_are_refused_by_name() {
        for flag in [
            "--proxy-protocol",
            "-statsd-address=1.2.3.4:8125",
            "--upstream-https-proxy-addr",
        ] {
            let err = parse(&[flag]).unwrap_err().to_string();
            assert!(err.contains("does not support"), "{flag}: {err}");
        }
    }

    #[test]
    fn unknown_flags_are_errors() {
        assert!(parse(&["--no-such-flag"]).is_err());
    }
}
