//! smokescreen's egress ACL, YAML version `v1`: which host names each role (service) may reach.
//!
//! ```yaml
//! version: v1
//! services:
//!   - name: billing            # the role: the client certificate's CommonName
//!     project: payments        # logged as `project`
//!     action: enforce          # enforce | report | open
//!     allowed_domains: [api.stripe.com, "*.s3.amazonaws.com"]
//! default:                     # roles without an entry of their own
//!   project: other
//!   action: report
//! global_allow_list: [pypi.org]
//! global_deny_list: ["*.evil.example"]
//! ```
//!
//! The file is read unchanged and validated when it is loaded, with smokescreen's checks and
//! messages: the version must be `v1`, `services` must be present, every action must be known
//! and not disabled (`--disable-acl-policy-action`), a service may appear once, and every glob
//! is a host name or a leading `*.` followed by one, written in its normalized form. The
//! decision order is smokescreen's: the role's `allowed_domains`, then the global deny list,
//! then the global allow list, then the role's action.
//!
//! Two keys smokescreen knows are refused at load time instead of being ignored, because this
//! proxy cannot honour them: `mitm_domains` (TLS interception) and `allowed_external_proxies`
//! (chaining to a client-chosen upstream proxy).
//!
//! The ACL judges host names as written in the request. What a name resolves to is judged by
//! the address policy afterwards, for every role and action.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

/// What a role's entry does with hosts outside its `allowed_domains`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Allow everything.
    Open,
    /// Allow everything, and log the hosts outside the list (`enforce_would_deny`).
    Report,
    /// Deny the hosts outside the list.
    Enforce,
}

impl Action {
    /// Parses an action name as written in the YAML or in `--disable-acl-policy-action`.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "open" => Ok(Action::Open),
            "report" => Ok(Action::Report),
            "enforce" => Ok(Action::Enforce),
            _ => Err(format!("unknown action {name}")),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // smokescreen prints the policy's Go name in its errors.
        f.write_str(match self {
            Action::Open => "Open",
            Action::Report => "Report",
            Action::Enforce => "Enforce",
        })
    }
}

/// The outcome of an ACL decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed.
    Allow,
    /// Allowed, but `enforce` would have denied it.
    AllowAndReport,
    /// Denied.
    Deny,
}

/// An ACL decision for one role and host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow, report or deny.
    pub verdict: Verdict,
    /// smokescreen's reason text (logged as `decision_reason`).
    pub reason: &'static str,
    /// The rule's project, empty when no rule matched.
    pub project: String,
    /// Whether the default entry decided (the `def_rule` metric label).
    pub is_default: bool,
}

#[derive(Debug, Clone)]
struct Rule {
    project: String,
    action: Action,
    domain_globs: Vec<String>,
}

/// A loaded and validated ACL.
#[derive(Debug, Clone)]
pub struct Acl {
    rules: HashMap<String, Rule>,
    default_rule: Option<Rule>,
    global_deny_list: Vec<String>,
    global_allow_list: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct YamlConfig {
    services: Option<Vec<YamlRule>>,
    default: Option<YamlRule>,
    version: Option<String>,
    global_deny_list: Option<Vec<String>>,
    global_allow_list: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct YamlRule {
    #[serde(default)]
    name: String,
    #[serde(default)]
    project: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    allowed_domains: Vec<String>,
    #[serde(default)]
    mitm_domains: Vec<serde_norway::Value>,
    #[serde(default)]
    allowed_external_proxies: Vec<String>,
}

impl Acl {
    /// Reads, parses and validates an ACL file; `disabled` are the actions refused by
    /// `--disable-acl-policy-action`.
    pub fn load(path: &Path, disabled: &[String]) -> Result<Self, String> {
        // An ACL is a few kilobytes; a file far larger than any real one is refused.
        const MAX_ACL_BYTES: u64 = 16 << 20;
        let size = std::fs::metadata(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        if size > MAX_ACL_BYTES {
            return Err(format!("{}: larger than 16 MiB", path.display()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text, disabled)
    }

    /// Parses and validates ACL YAML text.
    pub fn parse(text: &str, disabled: &[String]) -> Result<Self, String> {
        let config: YamlConfig = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        if config.version.as_deref() != Some("v1") {
            return Err(match &config.version {
                Some(v) => format!("expected version \"v1\" got {v:?}"),
                None => "expected version \"v1\" got \"\"".to_owned(),
            });
        }
        let services = config
            .services
            .ok_or("Top level list 'services' is missing")?;
        let disabled = disabled
            .iter()
            .map(|name| Action::parse(name))
            .collect::<Result<Vec<_>, _>>()?;

        let mut rules = HashMap::new();
        for service in services {
            let rule = Rule::from_yaml(&service.name, &service)?;
            check_rule(&service.name, &rule, &disabled)?;
            if rules.contains_key(&service.name) {
                return Err(format!("rule already exists for service {}", service.name));
            }
            rules.insert(service.name, rule);
        }
        let default_rule = match &config.default {
            Some(default) => {
                let rule = Rule::from_yaml("default_rule", default)?;
                check_rule("default_rule", &rule, &disabled)?;
                Some(rule)
            }
            None => None,
        };
        let global_deny_list = config.global_deny_list.unwrap_or_default();
        for glob in &global_deny_list {
            validate_glob("global_deny_list", glob)?;
        }
        let global_allow_list = config.global_allow_list.unwrap_or_default();
        for glob in &global_allow_list {
            validate_glob("global_allow_list", glob)?;
        }
        Ok(Acl {
            rules,
            default_rule,
            global_deny_list,
            global_allow_list,
        })
    }

    /// Whether the ACL has a default entry (smokescreen warns at start when it has none).
    pub fn has_default(&self) -> bool {
        self.default_rule.is_some()
    }

    /// Decides whether `role` may reach `host` (a host name or IP literal as requested).
    pub fn decide(&self, role: &str, host: &str) -> Decision {
        let Some(rule) = self.rules.get(role).or(self.default_rule.as_ref()) else {
            return Decision {
                verdict: Verdict::Deny,
                reason: "no rule matched",
                project: String::new(),
                is_default: false,
            };
        };
        let is_default = !self.rules.contains_key(role);
        let decision = |verdict, reason| Decision {
            verdict,
            reason,
            project: rule.project.clone(),
            is_default,
        };
        if rule.domain_globs.iter().any(|g| host_matches_glob(host, g)) {
            return decision(Verdict::Allow, "host matched allowed domain in rule");
        }
        if self
            .global_deny_list
            .iter()
            .any(|g| host_matches_glob(host, g))
        {
            return decision(Verdict::Deny, "host matched rule in global deny list");
        }
        if self
            .global_allow_list
            .iter()
            .any(|g| host_matches_glob(host, g))
        {
            return decision(Verdict::Allow, "host matched rule in global allow list");
        }
        let (verdict, reason) = match rule.action {
            Action::Report => (Verdict::AllowAndReport, "rule has allow and report policy"),
            Action::Enforce => (Verdict::Deny, "rule has enforce policy"),
            Action::Open => (Verdict::Allow, "rule has open enforcement policy"),
        };
        if is_default {
            decision(verdict, "default rule policy used")
        } else {
            decision(verdict, reason)
        }
    }
}

impl Rule {
    fn from_yaml(service: &str, yaml: &YamlRule) -> Result<Self, String> {
        let action = Action::parse(&yaml.action)?;
        if !yaml.mitm_domains.is_empty() {
            return Err(format!(
                "{service}: mitm_domains is not supported by stopover-egress (no TLS interception)"
            ));
        }
        if !yaml.allowed_external_proxies.is_empty() {
            return Err(format!(
                "{service}: allowed_external_proxies is not supported by stopover-egress \
                 (no upstream proxies)"
            ));
        }
        Ok(Rule {
            project: yaml.project.clone(),
            action,
            domain_globs: yaml.allowed_domains.clone(),
        })
    }
}

fn check_rule(service: &str, rule: &Rule, disabled: &[Action]) -> Result<(), String> {
    for glob in &rule.domain_globs {
        validate_glob(service, glob)?;
    }
    if disabled.contains(&rule.action) {
        return Err(format!(
            "rule for svc:{service} utilizes a disabled policy:{}",
            rule.action
        ));
    }
    Ok(())
}

/// smokescreen's glob rules: not empty, not everything, `*` only as a leading `*.`, and the
/// name written as its normalized form.
fn validate_glob(service: &str, glob: &str) -> Result<(), String> {
    if glob.is_empty() {
        return Err("glob cannot be empty".to_owned());
    }
    if glob == "*" || glob == "*." {
        return Err(format!(
            "{service}: {glob}: domain glob must not match everything"
        ));
    }
    if !glob.starts_with("*.") && glob.starts_with('*') {
        return Err(format!(
            "{service}: {glob}: domain glob must represent a full prefix (sub)domain"
        ));
    }
    let domain = glob.strip_prefix("*.").unwrap_or(glob);
    if domain.contains('*') {
        return Err(format!(
            "{service}: {glob}: domain globs are only supported as prefix"
        ));
    }
    let normalized = normalize_host(domain)
        .map_err(|e| format!("{service}: {glob}: incorrect ACL entry: {e}"))?;
    if normalized != domain {
        let suggestion = if glob.starts_with("*.") {
            format!("*.{normalized}")
        } else {
            normalized
        };
        return Err(format!(
            "{service}: {glob}: incorrect ACL entry; use {suggestion:?}"
        ));
    }
    Ok(())
}

/// A host as smokescreen compares it: an IP literal in its canonical text, or a name mapped
/// by IDNA (UTS 46) to lower-case ASCII, of letters, digits, `.`, `-` and `_` only.
pub fn normalize_host(host: &str) -> Result<String, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(ip.to_string());
    }
    let ascii = url::Host::parse(host)
        .map_err(|e| format!("invalid domain {host:?}: {e}"))?
        .to_string();
    if let Some(bad) = ascii
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "invalid domain {host:?}: disallowed rune U+{:04X}",
            u32::from(bad)
        ));
    }
    Ok(ascii)
}

/// Whether `host` matches `glob` (`example.com`, or `*.example.com` for the names under it),
/// both normalized and compared without a trailing dot.
pub fn host_matches_glob(host: &str, glob: &str) -> bool {
    if host.is_empty() {
        return false;
    }
    let Ok(host) = normalize_host(host) else {
        return false;
    };
    let (wildcard, domain) = match glob.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, glob),
    };
    let Ok(domain) = normalize_host(domain) else {
        return false;
    };
    let host = host.trim_end_matches('.');
    let domain = domain.trim_end_matches('.');
    if wildcard {
        host.strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
    } else {
        host == domain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
version: v1
services:
  - name: enforce-dummy-srv
    project: usersec
    action: enforce
    allowed_domains:
      - example1.com
      - example2.com
  - name: report-dummy-srv
    project: security
    action: report
    allowed_domains:
      - example3.com
  - name: open-dummy-srv
    project: automation
    action: open
  - name: dummy-glob
    project: phony
    action: enforce
    allowed_domains:
      - "*.example.com"
default:
    project: other
    action: enforce
    allowed_domains:
      - default.example.com
global_deny_list: [badexample1.com]
global_allow_list: [goodexample1.com]
"#;

    fn sample() -> Acl {
        Acl::parse(SAMPLE, &[]).expect("sample ACL loads")
    }

    #[test]
    fn enforce_allows_listed_and_denies_the_rest() {
        let acl = sample();
        let allowed = acl.decide("enforce-dummy-srv", "example1.com");
        assert_eq!(allowed.verdict, Verdict::Allow);
        assert_eq!(allowed.reason, "host matched allowed domain in rule");
        assert_eq!(allowed.project, "usersec");
        let denied = acl.decide("enforce-dummy-srv", "example3.com");
        assert_eq!(denied.verdict, Verdict::Deny);
        assert_eq!(denied.reason, "rule has enforce policy");
    }

    #[test]
    fn report_allows_and_reports() {
        let d = sample().decide("report-dummy-srv", "unlisted.com");
        assert_eq!(d.verdict, Verdict::AllowAndReport);
        assert_eq!(d.reason, "rule has allow and report policy");
    }

    #[test]
    fn global_deny_beats_open_but_not_the_roles_own_list() {
        let acl = sample();
        assert_eq!(
            acl.decide("open-dummy-srv", "badexample1.com").reason,
            "host matched rule in global deny list"
        );
        assert_eq!(
            acl.decide("enforce-dummy-srv", "goodexample1.com").verdict,
            Verdict::Allow
        );
    }

    #[test]
    fn unknown_role_uses_the_default_rule() {
        let acl = sample();
        assert_eq!(
            acl.decide("who", "default.example.com").verdict,
            Verdict::Allow
        );
        let d = acl.decide("who", "other.com");
        assert_eq!(
            (d.verdict, d.reason),
            (Verdict::Deny, "default rule policy used")
        );
        assert_eq!(d.project, "other");
    }

    #[test]
    fn no_default_means_no_rule_matched() {
        let acl = Acl::parse("version: v1\nservices: []\n", &[]).unwrap();
        let d = acl.decide("who", "example.com");
        assert_eq!((d.verdict, d.reason), (Verdict::Deny, "no rule matched"));
    }

    #[test]
    fn glob_matches_subdomains_only() {
        assert!(host_matches_glob("a.example.com", "*.example.com"));
        assert!(host_matches_glob("A.B.Example.COM.", "*.example.com"));
        assert!(!host_matches_glob("example.com", "*.example.com"));
        assert!(!host_matches_glob("badexample.com", "*.example.com"));
        assert!(host_matches_glob("bücher.example", "xn--bcher-kva.example"));
    }

    #[test]
    fn load_time_errors_are_smokescreens() {
        let err = |text: &str| Acl::parse(text, &[]).unwrap_err();
        assert_eq!(
            err("version: v2\nservices: []\n"),
            "expected version \"v1\" got \"v2\""
        );
        assert_eq!(err("version: v1\n"), "Top level list 'services' is missing");
        assert_eq!(
            err("version: v1\nservices:\n  - name: a\n    action: block\n"),
            "unknown action block"
        );
        assert_eq!(
            err(
                "version: v1\nservices:\n  - {name: a, action: open}\n  - {name: a, action: open}\n"
            ),
            "rule already exists for service a"
        );
        assert_eq!(
            err("version: v1\nservices:\n  - {name: a, action: open, allowed_domains: ['*']}\n"),
            "a: *: domain glob must not match everything"
        );
        assert_eq!(
            err(
                "version: v1\nservices:\n  - {name: a, action: open, allowed_domains: ['*example.com']}\n"
            ),
            "a: *example.com: domain glob must represent a full prefix (sub)domain"
        );
        assert_eq!(
            err(
                "version: v1\nservices:\n  - {name: a, action: open, allowed_domains: ['a.*.com']}\n"
            ),
            "a: a.*.com: domain globs are only supported as prefix"
        );
        assert_eq!(
            err(
                "version: v1\nservices:\n  - {name: a, action: open, allowed_domains: ['Example.com']}\n"
            ),
            "a: Example.com: incorrect ACL entry; use \"example.com\""
        );
        assert_eq!(
            err("version: v1\nservices: []\nglobal_deny_list: ['*']\n"),
            "global_deny_list: *: domain glob must not match everything"
        );
    }

    #[test]
    fn disabled_action_is_refused() {
        let err = Acl::parse(SAMPLE, &["open".to_owned()]).unwrap_err();
        assert_eq!(
            err,
            "rule for svc:open-dummy-srv utilizes a disabled policy:Open"
        );
        assert_eq!(
            Acl::parse(SAMPLE, &["shut".to_owned()]).unwrap_err(),
            "unknown action shut"
        );
    }

    #[test]
    fn the_example_acl_loads_and_decides() {
        let acl = Acl::parse(include_str!("../examples/acl.yaml"), &[]).expect("example ACL");
        assert_eq!(
            acl.decide("billing", "api.stripe.com").verdict,
            Verdict::Allow
        );
        assert_eq!(
            acl.decide("billing", "bucket.s3.amazonaws.com").verdict,
            Verdict::Allow
        );
        assert_eq!(
            acl.decide("billing", "s3.amazonaws.com").verdict,
            Verdict::Deny
        );
        assert_eq!(
            acl.decide("webhook-sender", "example.com").verdict,
            Verdict::AllowAndReport
        );
        assert_eq!(
            acl.decide("ci-runner", "x.pastebin.com").verdict,
            Verdict::Deny
        );
        assert_eq!(acl.decide("someone", "pypi.org").verdict, Verdict::Allow);
        assert_eq!(
            acl.decide("someone", "time.cloudflare.com").verdict,
            Verdict::Allow
        );
    }

    #[test]
    fn unsupported_keys_are_refused_not_ignored() {
        let mitm = "version: v1\nservices:\n  - name: a\n    action: open\n    allowed_domains: [x.com]\n    mitm_domains: [{domain: x.com}]\n";
        assert!(Acl::parse(mitm, &[]).unwrap_err().contains("mitm_domains"));
        let chained = "version: v1\nservices:\n  - name: a\n    action: open\n    allowed_external_proxies: [p.com]\n";
        assert!(
            Acl::parse(chained, &[])
                .unwrap_err()
                .contains("allowed_external_proxies")
        );
    }
}
