//! Which origins are allowed, normalised and checked when the layer is built.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::HeaderValue;
use http::request::Parts;
use http::uri::Authority;
use regex::RegexSet;

use super::CorsConfigError;

pub(super) type OriginPredicate = dyn Fn(&str) -> bool + Send + Sync;
pub(super) type PartsPredicate = dyn Fn(&str, &Parts) -> bool + Send + Sync;
pub(super) type BoxedDecision = Pin<Box<dyn Future<Output = bool> + Send>>;
pub(super) type AsyncPredicate = dyn Fn(&str, &Parts) -> BoxedDecision + Send + Sync;

/// The origin half of a CORS policy, ready to answer requests.
#[derive(Clone)]
pub(super) enum OriginPolicy {
    /// `Access-Control-Allow-Origin: *` for everyone (never with credentials).
    Any,
    /// Echo every origin except `null` (credentials with any origin, explicitly dangerous).
    Mirror,
    /// Only the listed origins, patterns and predicates; the origin is echoed.
    List(OriginList),
}

#[derive(Clone, Default)]
pub(super) struct OriginList {
    exact: HashSet<Box<[u8]>>,
    null: bool,
    patterns: Option<RegexSet>,
    predicates: Vec<Arc<OriginPredicate>>,
    parts_predicates: Vec<Arc<PartsPredicate>>,
    async_predicates: Vec<Arc<AsyncPredicate>>,
}

/// Whether a request origin is allowed: known at once, or once an async predicate answers.
pub(super) enum OriginDecision {
    /// Allowed, with the `Access-Control-Allow-Origin` value to send.
    Allowed(HeaderValue),
    /// Not allowed.
    Denied,
    /// Up to the async predicates.
    Pending(PendingOrigin),
}

/// The async predicates' answer for one origin, still to come.
pub(super) struct PendingOrigin {
    decision: BoxedDecision,
    origin: HeaderValue,
}

impl PendingOrigin {
    /// The `Access-Control-Allow-Origin` value once allowed, `None` once refused.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<HeaderValue>> {
        self.decision
            .as_mut()
            .poll(cx)
            .map(|allowed| allowed.then(|| self.origin.clone()))
    }
}

impl fmt::Debug for OriginPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("Any"),
            Self::Mirror => f.write_str("Mirror"),
            Self::List(list) => f
                .debug_struct("List")
                .field("exact", &list.exact.len())
                .field("null", &list.null)
                .field("patterns", &list.patterns.as_ref().map(RegexSet::patterns))
                .field("predicates", &list.predicates.len())
                .field("parts_predicates", &list.parts_predicates.len())
                .field("async_predicates", &list.async_predicates.len())
                .finish(),
        }
    }
}

impl OriginPolicy {
    /// Whether `Access-Control-Allow-Origin` is the same for every request (`*`).
    pub(super) fn is_static(&self) -> bool {
        matches!(self, Self::Any)
    }

    /// Whether this request origin is allowed, with the `Access-Control-Allow-Origin` value
    /// to send. Echoing is a clone of the request's own value. The cheap checks run first
    /// (exact, patterns, then the predicates in the order of their kinds); the async
    /// predicates are asked only when none of them allowed the origin.
    pub(super) fn decide(&self, origin: &HeaderValue, parts: &Parts) -> OriginDecision {
        const ANY: HeaderValue = HeaderValue::from_static("*");
        let bytes = origin.as_bytes();
        let is_null = bytes == b"null";
        let allowed = match self {
            Self::Any => return OriginDecision::Allowed(ANY),
            Self::Mirror => !is_null && !bytes.is_empty(),
            Self::List(list) => return list.decide(origin, is_null, parts),
        };
        if allowed {
            OriginDecision::Allowed(origin.clone())
        } else {
            OriginDecision::Denied
        }
    }
}

impl OriginList {
    fn decide(&self, origin: &HeaderValue, is_null: bool, parts: &Parts) -> OriginDecision {
        if is_null {
            // `null` is the origin of every sandboxed iframe and `data:` page: it counts only
            // when listed, never through a pattern or a predicate.
            return if self.null {
                OriginDecision::Allowed(origin.clone())
            } else {
                OriginDecision::Denied
            };
        }
        if self.exact.contains(origin.as_bytes()) {
            return OriginDecision::Allowed(origin.clone());
        }
        let Ok(text) = origin.to_str() else {
            return OriginDecision::Denied;
        };
        if self.patterns.as_ref().is_some_and(|p| p.is_match(text))
            || self.predicates.iter().any(|p| p(text))
            || self.parts_predicates.iter().any(|p| p(text, parts))
        {
            return OriginDecision::Allowed(origin.clone());
        }
        let decision = match self.async_predicates.as_slice() {
            [] => return OriginDecision::Denied,
            [one] => one(text, parts),
            several => {
                // Every predicate sees the request now (the parts are not kept); their answers
                // are awaited in order, and the first `true` stops the wait.
                let decisions: Vec<BoxedDecision> =
                    several.iter().map(|p| p(text, parts)).collect();
                Box::pin(async move {
                    for decision in decisions {
                        if decision.await {
                            return true;
                        }
                    }
                    false
                })
            }
        };
        OriginDecision::Pending(PendingOrigin {
            decision,
            origin: origin.clone(),
        })
    }
}

/// The origin settings as given to the builder, validated by [`OriginSpec::build`].
#[derive(Default)]
pub(super) struct OriginSpec {
    pub(super) any: bool,
    pub(super) exact: Vec<String>,
    pub(super) patterns: Vec<String>,
    pub(super) predicates: Vec<Arc<OriginPredicate>>,
    pub(super) parts_predicates: Vec<Arc<PartsPredicate>>,
    pub(super) async_predicates: Vec<Arc<AsyncPredicate>>,
}

impl OriginSpec {
    pub(super) fn build(self, mirror: bool) -> Result<OriginPolicy, CorsConfigError> {
        let listed = !self.exact.is_empty()
            || !self.patterns.is_empty()
            || !self.predicates.is_empty()
            || !self.parts_predicates.is_empty()
            || !self.async_predicates.is_empty();
        if self.any {
            if listed {
                return Err(CorsConfigError::AnyOriginWithOtherOrigins);
            }
            return Ok(if mirror {
                OriginPolicy::Mirror
            } else {
                OriginPolicy::Any
            });
        }
        let mut list = OriginList::default();
        for origin in &self.exact {
            let normalised = normalize_origin(origin)?;
            if normalised == "null" {
                list.null = true;
            } else {
                list.exact
                    .insert(normalised.into_bytes().into_boxed_slice());
            }
        }
        if !self.patterns.is_empty() {
            let mut anchored = Vec::with_capacity(self.patterns.len());
            for pattern in &self.patterns {
                // Compiled one by one first so the error names the bad pattern.
                let whole = format!("^(?:{pattern})$");
                regex::Regex::new(&whole).map_err(|source| {
                    CorsConfigError::InvalidOriginRegex {
                        pattern: pattern.clone(),
                        source,
                    }
                })?;
                anchored.push(whole);
            }
            list.patterns = Some(RegexSet::new(&anchored).map_err(|source| {
                CorsConfigError::InvalidOriginRegex {
                    pattern: self.patterns.join(" | "),
                    source,
                }
            })?);
        }
        list.predicates = self.predicates;
        list.parts_predicates = self.parts_predicates;
        list.async_predicates = self.async_predicates;
        Ok(OriginPolicy::List(list))
    }
}

fn invalid(origin: &str, reason: &'static str) -> CorsConfigError {
    CorsConfigError::InvalidOrigin {
        origin: origin.to_owned(),
        reason,
    }
}

/// Brings an origin to the form browsers send (`Origin` serialisation): lower-case scheme and
/// host, no default port, nothing after the authority. `null` stays `null`.
pub(super) fn normalize_origin(origin: &str) -> Result<String, CorsConfigError> {
    if origin == "null" {
        return Ok(origin.to_owned());
    }
    if origin == "*" {
        return Err(CorsConfigError::WildcardInOriginList);
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(invalid(origin, "expected scheme://host[:port]"));
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(invalid(origin, "the scheme is not valid"));
    }
    if rest.contains('*') {
        return Err(invalid(
            origin,
            "`*` is not a pattern inside an origin; use allow_origin_regex or a predicate",
        ));
    }
    if rest.contains(['/', '?', '#']) {
        return Err(invalid(
            origin,
            "an origin has no path, query, fragment or trailing slash",
        ));
    }
    if rest.contains('@') {
        return Err(invalid(origin, "an origin has no user information"));
    }
    let authority =
        Authority::try_from(rest).map_err(|_| invalid(origin, "the host or port is not valid"))?;
    if authority.host().is_empty() || rest.ends_with(':') {
        return Err(invalid(origin, "the host or port is not valid"));
    }
    let scheme = scheme.to_ascii_lowercase();
    let host = authority.host().to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    };
    Ok(match authority.port_u16() {
        Some(port) if Some(port) != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_default_port_are_normalised() {
        assert_eq!(
            normalize_origin("HTTPS://App.Example:443").unwrap(),
            "https://app.example"
        );
        assert_eq!(
            normalize_origin("http://app.example:80").unwrap(),
            "http://app.example"
        );
        assert_eq!(
            normalize_origin("http://app.example:8080").unwrap(),
            "http://app.example:8080"
        );
        assert_eq!(
            normalize_origin("http://[::1]:3000").unwrap(),
            "http://[::1]:3000"
        );
    }

    #[test]
    fn non_origins_are_refused() {
        for bad in [
            "https://app.example/",
            "https://app.example/path",
            "app.example",
            "https://*.example",
            "https://user@app.example",
            "https://app.example?x",
            "https://",
            "https://app.example:",
            "1http://x",
        ] {
            assert!(normalize_origin(bad).is_err(), "{bad} accepted");
        }
    }
}
