//! The decision: the ACL for the role, then one resolution and the address policy on every
//! address, and the connection to the first address that passed and answers.

use super::*;

impl Proxy {
    /// The ACL decision, then resolution and the address policy.
    pub(super) async fn decide<B>(
        &self,
        ctx: &mut Context,
        request: &Request<B>,
        destination: &Destination,
    ) -> Outcome {
        // smokescreen would chain through the proxy the client names here; this proxy cannot,
        // and going direct instead would ignore the request's intent, so it is refused.
        if request.headers().contains_key(UPSTREAM_PROXY_HEADER) {
            let why = "X-Upstream-Https-Proxy is not supported by stopover-egress".to_owned();
            let decision = Decision {
                allow: false,
                enforce_would_deny: false,
                reason: why.clone(),
                role: ctx.identity.common_name.clone().unwrap_or_default(),
                project: String::new(),
            };
            return Outcome::Denied(decision, why);
        }
        let mut decision = match &self.settings.acl {
            None => Decision {
                allow: true,
                enforce_would_deny: false,
                reason: "Egress ACL is not configured".to_owned(),
                role: String::new(),
                project: String::new(),
            },
            Some(acl) => self.acl_decision(acl, ctx, destination),
        };
        ctx.fields
            .insert("role".into(), decision.role.clone().into());
        ctx.fields
            .insert("project".into(), decision.project.clone().into());
        if !decision.allow {
            let why = decision.reason.clone();
            return Outcome::Denied(decision, why);
        }

        let started = Instant::now();
        let resolved = self.resolve(&destination.host).await;
        ctx.dns_lookup = started.elapsed();
        let addrs = match resolved {
            Ok(addrs) => addrs,
            Err(failure) => return Outcome::Failed(decision, failure),
        };
        let mut allowed = Vec::with_capacity(addrs.len());
        let mut first_denial = None;
        for ip in addrs {
            match self.judge(ip, destination.port) {
                Ok(by_user) => {
                    if allowed.is_empty() {
                        self.count(
                            if by_user {
                                "resolver_allow_user_configured"
                            } else {
                                "resolver_allow_default"
                            },
                            &[],
                        );
                    }
                    allowed.push(SocketAddr::new(ip, destination.port));
                }
                Err(denial) => {
                    first_denial.get_or_insert((ip, denial));
                }
            }
        }
        if allowed.is_empty() {
            let denial = match first_denial {
                Some((ip, denial)) => {
                    self.count("resolver_errors_total", &[]);
                    self.count(denial.smokescreen_class(), &[]);
                    self.count("resolver_deny_rule", &[("rule", denial.rule)]);
                    ctx.fields
                        .insert("stopover_rule".into(), denial.rule.into());
                    format!("{ip} denied by rule '{}'", denial.reason_text())
                }
                None => String::new(),
            };
            decision.allow = false;
            decision.enforce_would_deny = true;
            decision.reason = format!("no valid IP found among resolved addresses - {denial}. ");
            let why = decision.reason.clone();
            return Outcome::Denied(decision, why);
        }
        ctx.decision = Some(decision);
        Outcome::Allowed(allowed)
    }

    pub(super) fn acl_decision(
        &self,
        acl: &acl::Acl,
        ctx: &Context,
        destination: &Destination,
    ) -> Decision {
        let mut decision = Decision {
            allow: false,
            enforce_would_deny: false,
            reason: String::new(),
            role: String::new(),
            project: String::new(),
        };
        let role = match &ctx.identity.common_name {
            Some(common_name) => common_name.clone(),
            None if self.settings.allow_missing_role => String::new(),
            None => {
                self.count("acl_role_not_determined", &[]);
                decision.reason = "Client role cannot be determined".to_owned();
                return decision;
            }
        };
        decision.role = role;
        let acl_decision = acl.decide(&decision.role, &destination.host);
        decision.project = acl_decision.project;
        decision.reason = acl_decision.reason.to_owned();
        let counter = match acl_decision.verdict {
            Verdict::Allow => {
                decision.allow = true;
                "acl_allow"
            }
            Verdict::AllowAndReport => {
                decision.allow = true;
                decision.enforce_would_deny = true;
                "acl_report"
            }
            Verdict::Deny => {
                decision.enforce_would_deny = true;
                "acl_deny"
            }
        };
        let default_rule = if acl_decision.is_default {
            "true"
        } else {
            "false"
        };
        self.count(
            counter,
            &[
                ("role", &decision.role),
                ("def_rule", default_rule),
                ("project", &decision.project),
            ],
        );
        decision
    }

    pub(super) async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, Failure> {
        self.count("resolver_attempts_total", &[]);
        let resolved = self.lookup(host).await;
        if resolved.is_err() {
            self.count("resolver_errors_total", &[]);
        }
        resolved
    }

    pub(super) async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, Failure> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let found = self
            .settings
            .resolver
            .lookup(host, self.settings.dns_timeout)
            .await;
        let mut addrs = match found {
            Ok(addrs) => addrs,
            Err(ResolveError::Timeout) => {
                return Err(Failure::Timeout(format!(
                    "Timed out connecting to remote host: lookup {host}: i/o timeout"
                )));
            }
            Err(e) => {
                // Go's resolver names the server it asked.
                let server = match &self.settings.resolver {
                    Resolver::Server(server) => format!(" on {server}"),
                    Resolver::System => String::new(),
                };
                return Err(Failure::Connect(format!(
                    "Failed to resolve remote hostname: lookup {host}{server}: {e}"
                )));
            }
        };
        addrs.retain(|ip| match self.settings.network {
            Network::Both => true,
            Network::V4 => ip.is_ipv4(),
            Network::V6 => ip.is_ipv6(),
        });
        if addrs.is_empty() {
            return Err(Failure::Connect(format!(
                "Failed to resolve remote hostname: lookup {host}: no suitable address found"
            )));
        }
        Ok(addrs)
    }

    /// Judges one address on the destination port: the proxy itself, then the policy.
    /// `Ok(true)` when only the caller's allow rules let it through (known only with metrics
    /// on, where it is counted).
    pub(super) fn judge(&self, ip: IpAddr, port: u16) -> Result<bool, Denial> {
        if self.is_self(ip, port) {
            return Err(Denial {
                rule: "self-connection",
                embedded: false,
            });
        }
        let literal = match ip {
            IpAddr::V4(v4) => format!("http://{v4}:{port}/"),
            IpAddr::V6(v6) => format!("http://[{v6}]:{port}/"),
        };
        let url = url::Url::parse(&literal).map_err(|_| Denial {
            rule: "invalid-address",
            embedded: false,
        })?;
        self.settings
            .policy
            .check_url(&url)
            .map_err(|refusal| Denial {
                rule: refusal.rule().as_str(),
                embedded: refusal.embedded().is_some(),
            })?;
        Ok(self.metrics.is_some() && self.settings.baseline_policy.check_url(&url).is_err())
    }

    /// Whether `ip:port` reaches this proxy: a listening address, or, on a wildcard listener,
    /// any address of this host (one that a socket can be bound to).
    pub(super) fn is_self(&self, ip: IpAddr, port: u16) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.listening.iter().any(|listening| {
            listening.port() == port
                && (listening.ip() == ip
                    || (listening.ip().is_unspecified()
                        && (ip.is_unspecified()
                            || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok())))
        })
    }

    /// Connects to the first target that answers, all within `--timeout`.
    pub(super) async fn dial(
        &self,
        ctx: &mut Context,
        targets: &[SocketAddr],
    ) -> Result<(TcpStream, SocketAddr), Failure> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.settings.connect_timeout;
        let mut last_error = None;
        for target in targets {
            let attempt = tokio::time::timeout_at(deadline, TcpStream::connect(target)).await;
            let success = if matches!(attempt, Ok(Ok(_))) {
                "true"
            } else {
                "false"
            };
            self.count("cn_atpt_total", &[("success", success)]);
            match attempt {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    let fields = &mut ctx.fields;
                    fields.insert(
                        "conn_establish_time_ms".into(),
                        (started.elapsed().as_millis() as u64).into(),
                    );
                    if let Ok(local) = stream.local_addr() {
                        fields.insert("outbound_local_addr".into(), local.to_string().into());
                    }
                    fields.insert("outbound_remote_addr".into(), target.to_string().into());
                    return Ok((stream, *target));
                }
                Ok(Err(e)) => {
                    last_error = Some(format!("dial tcp {target}: connect: {}", go_error_text(&e)));
                }
                Err(_) => {
                    ctx.fields.insert(
                        "conn_establish_time_ms".into(),
                        (started.elapsed().as_millis() as u64).into(),
                    );
                    return Err(Failure::Timeout(format!(
                        "Timed out connecting to remote host: dial tcp {target}: i/o timeout"
                    )));
                }
            }
        }
        ctx.fields.insert(
            "conn_establish_time_ms".into(),
            (started.elapsed().as_millis() as u64).into(),
        );
        Err(Failure::Connect(format!(
            "Failed to connect to remote host: {}",
            last_error.unwrap_or_else(|| "no address to connect to".to_owned())
        )))
    }
}

/// Why an address was refused: stopover's rule id, and whether it carried an IPv4 address
/// inside IPv6.
#[derive(Debug, Clone, Copy)]
pub(super) struct Denial {
    pub(super) rule: &'static str,
    pub(super) embedded: bool,
}

impl Denial {
    /// The rule as `decision_reason` names it: smokescreen's class where smokescreen denies
    /// the address for the same reason (so log pipelines matching on it keep working),
    /// stopover's rule id where smokescreen would have let the address through.
    pub(super) fn reason_text(self) -> std::borrow::Cow<'static, str> {
        let class = match self.rule {
            "self-connection" => "Deny: Self Connection",
            "user-deny" => "Deny: User Configured",
            _ if self.embedded => "Deny: IPv6 Embedding",
            "ipv4-private" | "ipv6-unique-local" => "Deny: Private Range",
            "ipv4-shared" => "Deny: CGNAT Range",
            "ipv4-loopback" | "ipv4-link-local" | "ipv4-multicast" | "ipv4-broadcast"
            | "ipv4-this-host" | "ipv6-unspecified" | "ipv6-loopback" | "ipv6-link-local"
            | "ipv6-multicast" | "ipv6-6to4" | "ipv6-teredo" => {
                if matches!(self.rule, "ipv6-6to4" | "ipv6-teredo") {
                    "Deny: IPv6 Embedding"
                } else {
                    "Deny: Not Global Unicast"
                }
            }
            rule => return format!("Deny: {rule}").into(),
        };
        class.into()
    }

    /// smokescreen's classification counter for this denial.
    pub(super) fn smokescreen_class(self) -> &'static str {
        match self.rule {
            "self-connection" => "resolver_deny_self_connection",
            "user-deny" => "resolver_deny_user_configured",
            _ if self.embedded => "resolver_deny_ipv6_embedding",
            "ipv4-private" | "ipv6-unique-local" => "resolver_deny_private_range",
            "ipv4-shared" => "resolver_deny_cgnat_range",
            _ => "resolver_deny_not_global_unicast",
        }
    }
}

/// What was decided before connecting.
pub(super) enum Outcome {
    Allowed(Vec<SocketAddr>),
    Denied(Decision, String),
    Failed(Decision, Failure),
}

/// smokescreen's decision, as logged.
#[derive(Debug, Clone)]
pub(super) struct Decision {
    pub(super) allow: bool,
    pub(super) enforce_would_deny: bool,
    pub(super) reason: String,
    pub(super) role: String,
    pub(super) project: String,
}

/// A destination as requested: normalized host and port.
#[derive(Debug)]
pub(super) struct Destination {
    pub(super) host: String,
    pub(super) port: u16,
}

/// `host:port` as Go's `net.SplitHostPort` reads it, the host normalized.
pub(super) fn split_host_port(text: &str) -> Result<Destination, String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("address {text}: missing ']' in address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("address {text}: missing port in address"))?;
        (host, port)
    } else {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("address {text}: missing port in address"))?;
        if host.contains(':') {
            return Err(format!("address {text}: too many colons in address"));
        }
        (host, port)
    };
    let port: u16 = port
        .parse()
        .map_err(|e| format!("invalid port number {port:?}: {e}"))?;
    let host = acl::normalize_host(host)?;
    Ok(Destination { host, port })
}

/// An absolute-form authority: `host`, `host:port`, `[v6]` or `[v6]:port`.
pub(super) fn split_host_port_or(text: &str, default_port: u16) -> Result<Destination, String> {
    let has_port = text.rfind(':') > text.rfind(']');
    if has_port {
        split_host_port(text)
    } else {
        let host = text
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(text);
        Ok(Destination {
            host: acl::normalize_host(host)?,
            port: default_port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_splits_as_go_does() {
        let d = split_host_port("Example.COM:443").unwrap();
        assert_eq!((d.host.as_str(), d.port), ("example.com", 443));
        let d = split_host_port("[::1]:8080").unwrap();
        assert_eq!((d.host.as_str(), d.port), ("::1", 8080));
        assert_eq!(
            split_host_port("example.com").unwrap_err(),
            "address example.com: missing port in address"
        );
        assert!(split_host_port("example.com:http").is_err());
        // The URL standard's IPv4 spellings become the address they name.
        let d = split_host_port("0x7f.1:80").unwrap();
        assert_eq!(d.host, "127.0.0.1");
    }

    #[test]
    fn absolute_form_defaults_the_port() {
        let d = split_host_port_or("example.com", 80).unwrap();
        assert_eq!((d.host.as_str(), d.port), ("example.com", 80));
        let d = split_host_port_or("[2001:db8::1]", 80).unwrap();
        assert_eq!((d.host.as_str(), d.port), ("2001:db8::1", 80));
    }
}
