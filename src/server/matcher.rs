//! The one path matcher behind every `urls`, `ignore` and per-path rule of the server layers.
//!
//! # Example
//!
//! ```
//! use http::Method;
//! use stopover::server::matcher::{PathMap, PathMatcher, PathRule, PathRules};
//!
//! # fn main() -> Result<(), stopover::server::matcher::MatcherError> {
//! // The regex must match the whole path: `/items/12/edit` is not an item.
//! let item = PathMatcher::regex(r"/items/\d+")?;
//! assert!(item.is_match("/items/12"));
//! assert!(!item.is_match("/items/12/edit"));
//!
//! // Any rule may match; a rule can be limited to some methods.
//! let ignore = PathRules::new()
//!     .with(PathMatcher::prefix("/stream/")?)
//!     .with(PathRule::with_methods(PathMatcher::exact("/upload")?, [Method::POST])?);
//! assert!(ignore.matches(&Method::GET, "/stream/live"));
//! assert!(ignore.matches(&Method::POST, "/upload"));
//! assert!(!ignore.matches(&Method::GET, "/upload"));
//!
//! // First matching rule wins.
//! let limits = PathMap::new()
//!     .with(PathMatcher::exact("/reports/yearly")?, 60)
//!     .with(PathMatcher::prefix("/reports/")?, 10);
//! assert_eq!(limits.get(&Method::GET, "/reports/yearly"), Some(&60));
//! assert_eq!(limits.get(&Method::GET, "/reports/daily"), Some(&10));
//! assert_eq!(limits.get(&Method::GET, "/"), None);
//! # Ok(())
//! # }
//! ```
//!
//! # Compared with aiohttp-middlewares and tower-http
//!
//! A [`PathMatcher`] is an exact path, a prefix, or a regular expression that must match the
//! **whole** path. aiohttp-middlewares uses `re.match`, which is anchored at the start only, so
//! `^/api` there also matches `/api-internal/x`; here a regex is always anchored at both ends,
//! and a prefix is a separate, explicit constructor. A [`PathRule`] adds an optional set of methods
//! (path-and-method pairs), [`PathRules`] is a list where any rule may match, and [`PathMap`] maps
//! rules to values (per-path handlers, per-path durations) where the first matching rule wins.
//! tower-http has no path rules: its layers apply to whatever they wrap. Every layer's `urls`,
//! `paths`, `ignore` and `skip_path` setter takes a matcher, a rule or a list, and each call adds
//! its rules to the earlier ones ([`PathRules::append`]).
//!
//! # Which form of the path is matched
//!
//! Every matcher sees the **raw** path of the request URI, `req.uri().path()`: still
//! percent-encoded, without the query string, without dot-segment removal. That is the exact
//! string axum's router routes on, so a rule and a route always agree on what a request is:
//!
//! - `/a%2Fb` is one segment. It matches `exact("/a%2Fb")`, not `exact("/a/b")` nor
//!   `prefix("/a/")`. Decoding first (what aiohttp does) would let an encoded slash reach a rule
//!   written for a different route than the one the router picks.
//! - `/%61pi` is not `/api`: axum does not route it to `/api` either, so no rule meant for
//!   `/api` may apply to it.
//! - `/a/../b` is matched as written (neither hyper nor axum removes dot segments).
//! - Hex digits are compared as written: `%2f` and `%2F` are different strings.
//! - `?query` is never part of the path.
//!
//! Exact and prefix patterns are therefore validated to be raw paths: they start with `/`, are
//! ASCII, and contain no space, control character, `?` or `#` (a pattern with any of these
//! could never match, so it is refused with a [`MatcherError`] instead of being silently
//! inert). Write non-ASCII segments percent-encoded, as they arrive on the wire.
//!
//! Matching never allocates.

use std::fmt;

use http::Method;
use regex::Regex;

/// Why a path pattern or a rule was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MatcherError {
    /// An exact or prefix pattern does not start with `/`, so it could never match a path.
    #[error("path pattern {pattern:?} must start with '/'")]
    NotAbsolute {
        /// The refused pattern.
        pattern: String,
    },
    /// An exact or prefix pattern contains a character that never appears in a raw request
    /// path (non-ASCII, space, control character, `?` or `#`).
    #[error(
        "path pattern {pattern:?} contains {found:?}, which never appears in a raw request path \
         (percent-encode it, and leave out any query or fragment)"
    )]
    InvalidCharacter {
        /// The refused pattern.
        pattern: String,
        /// The first offending character.
        found: char,
    },
    /// A regex pattern does not compile.
    #[error("path regex {pattern:?} is invalid: {source}")]
    Regex {
        /// The refused pattern, as given.
        pattern: String,
        /// The compiler's error.
        #[source]
        source: regex::Error,
    },
    /// A rule was given an empty method list, so it could never match.
    #[error("rule for path pattern {pattern:?} has an empty method list")]
    NoMethods {
        /// The pattern of the rule.
        pattern: String,
    },
}

#[derive(Clone)]
enum Kind {
    Exact(Box<str>),
    Prefix(Box<str>),
    // The original pattern is kept for `Debug` and error messages; the compiled one is anchored.
    Regex { pattern: Box<str>, regex: Regex },
}

/// An exact path, a path prefix, or a regex over the whole path.
///
/// See the [module docs](self) for the form of the path that is matched (raw, percent-encoded).
#[derive(Clone)]
pub struct PathMatcher {
    kind: Kind,
}

impl PathMatcher {
    /// Matches this path and nothing else (case-sensitive, `/x/` is not `/x`).
    ///
    /// # Errors
    ///
    /// [`MatcherError::NotAbsolute`] or [`MatcherError::InvalidCharacter`] when `path` is not a
    /// raw request path.
    ///
    /// ```
    /// # use stopover::server::matcher::PathMatcher;
    /// let health = PathMatcher::exact("/health")?;
    /// assert!(health.is_match("/health"));
    /// assert!(!health.is_match("/health/"));
    /// assert!(PathMatcher::exact("health").is_err());
    /// # Ok::<(), stopover::server::matcher::MatcherError>(())
    /// ```
    pub fn exact(path: impl Into<String>) -> Result<Self, MatcherError> {
        let path = validate_literal(path.into())?;
        Ok(Self {
            kind: Kind::Exact(path.into_boxed_str()),
        })
    }

    /// Matches every path that starts with `prefix`, as a plain string comparison.
    ///
    /// `prefix("/api")` also matches `/apix`; end the prefix with `/` (`prefix("/api/")`) to
    /// match only below a segment, and add `exact("/api")` if the segment itself is wanted too.
    ///
    /// # Errors
    ///
    /// [`MatcherError::NotAbsolute`] or [`MatcherError::InvalidCharacter`] when `prefix` is not
    /// a raw request path.
    ///
    /// ```
    /// # use stopover::server::matcher::PathMatcher;
    /// let api = PathMatcher::prefix("/api/")?;
    /// assert!(api.is_match("/api/users"));
    /// assert!(!api.is_match("/api"));
    /// # Ok::<(), stopover::server::matcher::MatcherError>(())
    /// ```
    pub fn prefix(prefix: impl Into<String>) -> Result<Self, MatcherError> {
        let prefix = validate_literal(prefix.into())?;
        Ok(Self {
            kind: Kind::Prefix(prefix.into_boxed_str()),
        })
    }

    /// Matches every path the regex matches **as a whole**.
    ///
    /// The pattern is compiled as `\A(?:pattern)\z`, so `/api` matches neither `/api/x` nor
    /// `/apix`, and `^` / `$` in the pattern are harmless. Write `/api(/.*)?` for a segment and
    /// everything below it. The syntax is that of the [`regex`] crate.
    ///
    /// # Errors
    ///
    /// [`MatcherError::Regex`] when the pattern does not compile.
    ///
    /// ```
    /// # use stopover::server::matcher::PathMatcher;
    /// let users = PathMatcher::regex(r"/users/\d+")?;
    /// assert!(users.is_match("/users/7"));
    /// assert!(!users.is_match("/users/7/avatar"));
    /// assert!(PathMatcher::regex(r"/users/(\d+").is_err());
    /// # Ok::<(), stopover::server::matcher::MatcherError>(())
    /// ```
    pub fn regex(pattern: &str) -> Result<Self, MatcherError> {
        let regex =
            Regex::new(&format!(r"\A(?:{pattern})\z")).map_err(|source| MatcherError::Regex {
                pattern: pattern.to_owned(),
                source,
            })?;
        Ok(Self {
            kind: Kind::Regex {
                pattern: pattern.into(),
                regex,
            },
        })
    }

    /// Matches every path.
    pub fn any() -> Self {
        Self {
            kind: Kind::Prefix("/".into()),
        }
    }

    /// Whether `path` (the raw `req.uri().path()`) matches.
    pub fn is_match(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact(exact) => path == &**exact,
            Kind::Prefix(prefix) => path.starts_with(&**prefix),
            Kind::Regex { regex, .. } => regex.is_match(path),
        }
    }

    /// The pattern as it was given.
    pub fn as_str(&self) -> &str {
        match &self.kind {
            Kind::Exact(pattern) | Kind::Prefix(pattern) | Kind::Regex { pattern, .. } => pattern,
        }
    }
}

impl fmt::Debug for PathMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Exact(_) => "Exact",
            Kind::Prefix(_) => "Prefix",
            Kind::Regex { .. } => "Regex",
        };
        f.debug_tuple(kind).field(&self.as_str()).finish()
    }
}

fn validate_literal(pattern: String) -> Result<String, MatcherError> {
    if !pattern.starts_with('/') {
        return Err(MatcherError::NotAbsolute { pattern });
    }
    let bad = pattern
        .chars()
        .find(|&c| !c.is_ascii() || c.is_ascii_control() || matches!(c, ' ' | '?' | '#'));
    match bad {
        Some(found) => Err(MatcherError::InvalidCharacter { pattern, found }),
        None => Ok(pattern),
    }
}

/// A path matcher, optionally limited to some methods: a path-and-method pair.
///
/// Methods are compared exactly, as HTTP defines them (case-sensitive): use the
/// [`Method`] constants.
#[derive(Clone, Debug)]
pub struct PathRule {
    path: PathMatcher,
    // `None` means every method. Never an empty slice: that is refused when built.
    methods: Option<Box<[Method]>>,
}

impl PathRule {
    /// A rule for every method on the paths `path` matches.
    pub fn new(path: PathMatcher) -> Self {
        Self {
            path,
            methods: None,
        }
    }

    /// A rule for the given methods only, on the paths `path` matches.
    ///
    /// # Errors
    ///
    /// [`MatcherError::NoMethods`] when `methods` is empty (the rule could never match).
    ///
    /// ```
    /// # use http::Method;
    /// # use stopover::server::matcher::{PathMatcher, PathRule};
    /// let upload = PathRule::with_methods(PathMatcher::exact("/upload")?, [Method::POST, Method::PUT])?;
    /// assert!(upload.matches(&Method::PUT, "/upload"));
    /// assert!(!upload.matches(&Method::GET, "/upload"));
    /// # Ok::<(), stopover::server::matcher::MatcherError>(())
    /// ```
    pub fn with_methods(
        path: PathMatcher,
        methods: impl IntoIterator<Item = Method>,
    ) -> Result<Self, MatcherError> {
        let methods: Box<[Method]> = methods.into_iter().collect();
        if methods.is_empty() {
            return Err(MatcherError::NoMethods {
                pattern: path.as_str().to_owned(),
            });
        }
        Ok(Self {
            path,
            methods: Some(methods),
        })
    }

    /// Whether the rule matches this method and raw path.
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        let method_ok = match &self.methods {
            None => true,
            Some(methods) => methods.contains(method),
        };
        method_ok && self.path.is_match(path)
    }

    /// The path matcher of this rule.
    pub fn path(&self) -> &PathMatcher {
        &self.path
    }

    /// The methods of this rule; `None` means every method.
    pub fn methods(&self) -> Option<&[Method]> {
        self.methods.as_deref()
    }
}

impl From<PathMatcher> for PathRule {
    fn from(path: PathMatcher) -> Self {
        Self::new(path)
    }
}

/// A list of rules that matches a request when **any** of its rules does.
///
/// Unlike aiohttp-middlewares' method dictionaries, where only the first key that matches the
/// path is consulted, a later rule is never shadowed here: `/x` for `POST` and `/x` for `GET`
/// together match both methods. An empty list matches nothing.
#[derive(Clone, Debug, Default)]
pub struct PathRules {
    rules: Vec<PathRule>,
}

impl PathRules {
    /// An empty list, which matches nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule (a [`PathMatcher`] alone is a rule for every method).
    pub fn with(mut self, rule: impl Into<PathRule>) -> Self {
        self.push(rule);
        self
    }

    /// Adds a rule in place.
    pub fn push(&mut self, rule: impl Into<PathRule>) {
        self.rules.push(rule.into());
    }

    /// Whether any rule matches this method and raw path.
    #[inline]
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        // Most layers have no rule: answer that without a call.
        !self.rules.is_empty() && self.rules.iter().any(|rule| rule.matches(method, path))
    }

    /// Whether the list has no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &PathRule> {
        self.rules.iter()
    }
}

impl PathRules {
    /// Adds every rule of `rules` (a [`PathMatcher`], a [`PathRule`] or a [`PathRules`]) in
    /// place, after the rules already there. Every layer's `urls`, `paths`, `ignore` and
    /// `skip_path` setter adds its rules this way.
    pub fn append(&mut self, rules: impl Into<PathRules>) {
        self.rules.extend(rules.into().rules);
    }
}

impl From<PathRule> for PathRules {
    fn from(rule: PathRule) -> Self {
        Self { rules: vec![rule] }
    }
}

impl From<PathMatcher> for PathRules {
    fn from(path: PathMatcher) -> Self {
        Self::from(PathRule::new(path))
    }
}

impl<R: Into<PathRule>> FromIterator<R> for PathRules {
    fn from_iter<I: IntoIterator<Item = R>>(iter: I) -> Self {
        Self {
            rules: iter.into_iter().map(Into::into).collect(),
        }
    }
}

/// Rules mapped to values, looked up in order: the **first** rule that matches wins.
///
/// Put specific rules before general ones; a value behind an earlier, broader rule is never
/// reached.
#[derive(Clone, Debug)]
pub struct PathMap<T> {
    entries: Vec<(PathRule, T)>,
}

impl<T> Default for PathMap<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<T> PathMap<T> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a rule and its value; it is consulted after every rule added before it.
    pub fn with(mut self, rule: impl Into<PathRule>, value: T) -> Self {
        self.push(rule, value);
        self
    }

    /// Appends a rule and its value in place.
    pub fn push(&mut self, rule: impl Into<PathRule>, value: T) {
        self.entries.push((rule.into(), value));
    }

    /// The value of the first rule that matches this method and raw path.
    #[inline]
    pub fn get(&self, method: &Method, path: &str) -> Option<&T> {
        if self.entries.is_empty() {
            return None;
        }
        self.entries
            .iter()
            .find(|(rule, _)| rule.matches(method, path))
            .map(|(_, value)| value)
    }

    /// Whether the map has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entries, in lookup order.
    pub fn iter(&self) -> impl Iterator<Item = (&PathRule, &T)> {
        self.entries.iter().map(|(rule, value)| (rule, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_adds_a_matcher_a_rule_or_a_list_after_the_rules_already_there() {
        let mut rules = PathRules::new().with(PathMatcher::exact("/a").unwrap());
        rules.append(PathMatcher::exact("/b").unwrap());
        rules.append(
            PathRule::with_methods(PathMatcher::exact("/c").unwrap(), [Method::PUT]).unwrap(),
        );
        rules.append(PathRules::new().with(PathMatcher::prefix("/d/").unwrap()));
        let paths: Vec<&str> = rules.iter().map(|rule| rule.path().as_str()).collect();
        assert_eq!(paths, ["/a", "/b", "/c", "/d/"]);
        assert!(rules.matches(&Method::PUT, "/c"));
        assert!(!rules.matches(&Method::GET, "/c"));
    }

    fn regex(pattern: &str) -> PathMatcher {
        PathMatcher::regex(pattern).unwrap()
    }

    #[test]
    fn regex_is_not_a_prefix_match() {
        let api = regex("/api");
        assert!(api.is_match("/api"));
        assert!(!api.is_match("/api/x"));
        assert!(!api.is_match("/apix"));
    }

    #[test]
    fn regex_is_anchored_at_the_start() {
        assert!(!regex("api").is_match("/api"));
        assert!(!regex("/api").is_match("/v1/api"));
    }

    #[test]
    fn regex_with_explicit_anchors_still_matches() {
        assert!(regex("^/api$").is_match("/api"));
        assert!(!regex("^/api").is_match("/api/x"));
    }

    #[test]
    fn regex_alternation_is_anchored_as_a_whole() {
        // Without the group, `\A/a|/b\z` would match `/a-anything`.
        let either = regex("/a|/b");
        assert!(either.is_match("/a"));
        assert!(either.is_match("/b"));
        assert!(!either.is_match("/a/x"));
        assert!(!either.is_match("/x/b"));
    }

    #[test]
    fn regex_can_match_a_subtree_explicitly() {
        let tree = regex("/api(/.*)?");
        assert!(tree.is_match("/api"));
        assert!(tree.is_match("/api/x/y"));
        assert!(!tree.is_match("/apix"));
    }

    #[test]
    fn exact_is_exact() {
        let m = PathMatcher::exact("/slow").unwrap();
        assert!(m.is_match("/slow"));
        assert!(!m.is_match("/slow/"));
        assert!(!m.is_match("/SLOW"));
        assert!(!m.is_match("/slowly"));
    }

    #[test]
    fn prefix_is_a_string_prefix() {
        let m = PathMatcher::prefix("/api/").unwrap();
        assert!(m.is_match("/api/"));
        assert!(m.is_match("/api/x"));
        assert!(!m.is_match("/api"));
        assert!(!m.is_match("/v1/api/x"));
    }

    #[test]
    fn any_matches_every_path() {
        assert!(PathMatcher::any().is_match("/"));
        assert!(PathMatcher::any().is_match("/a/b"));
    }

    #[test]
    fn encoded_slash_is_not_a_separator() {
        let uri: http::Uri = "/a%2Fb".parse().unwrap();
        assert_eq!(uri.path(), "/a%2Fb");
        assert!(!PathMatcher::exact("/a/b").unwrap().is_match(uri.path()));
        assert!(!PathMatcher::prefix("/a/").unwrap().is_match(uri.path()));
        assert!(!regex("/a/b").is_match(uri.path()));
        assert!(PathMatcher::exact("/a%2Fb").unwrap().is_match(uri.path()));
    }

    #[test]
    fn encoded_letters_are_not_decoded() {
        let uri: http::Uri = "/%61pi".parse().unwrap();
        assert!(!PathMatcher::exact("/api").unwrap().is_match(uri.path()));
        assert!(!regex("/api").is_match(uri.path()));
    }

    #[test]
    fn percent_hex_case_is_compared_as_written() {
        let m = PathMatcher::exact("/a%2Fb").unwrap();
        assert!(!m.is_match("/a%2fb"));
    }

    #[test]
    fn dot_segments_are_not_removed() {
        let uri: http::Uri = "/public/../admin".parse().unwrap();
        assert!(!PathMatcher::exact("/admin").unwrap().is_match(uri.path()));
        assert!(
            PathMatcher::prefix("/public/")
                .unwrap()
                .is_match(uri.path())
        );
    }

    #[test]
    fn query_is_not_part_of_the_path() {
        let uri: http::Uri = "/api?x=1".parse().unwrap();
        assert!(PathMatcher::exact("/api").unwrap().is_match(uri.path()));
    }

    #[test]
    fn relative_pattern_is_refused() {
        let err = PathMatcher::exact("slow").unwrap_err();
        assert!(matches!(&err, MatcherError::NotAbsolute { pattern } if pattern == "slow"));
        assert!(err.to_string().contains("\"slow\""));
        assert!(matches!(
            PathMatcher::prefix(""),
            Err(MatcherError::NotAbsolute { .. })
        ));
    }

    #[test]
    fn pattern_with_query_is_refused() {
        let err = PathMatcher::exact("/a?b=1").unwrap_err();
        assert!(matches!(
            err,
            MatcherError::InvalidCharacter { found: '?', .. }
        ));
    }

    #[test]
    fn non_ascii_pattern_is_refused() {
        let err = PathMatcher::prefix("/café").unwrap_err();
        assert!(matches!(
            err,
            MatcherError::InvalidCharacter { found: 'é', .. }
        ));
        assert!(PathMatcher::prefix("/caf%C3%A9").is_ok());
    }

    #[test]
    fn invalid_regex_is_refused_with_its_pattern() {
        let err = PathMatcher::regex("/items/(\\d+").unwrap_err();
        assert!(matches!(&err, MatcherError::Regex { pattern, .. } if pattern == "/items/(\\d+"));
        assert!(err.to_string().contains("/items/(\\d+"));
    }

    #[test]
    fn empty_method_list_is_refused() {
        let err = PathRule::with_methods(PathMatcher::any(), []).unwrap_err();
        assert!(matches!(err, MatcherError::NoMethods { .. }));
    }

    #[test]
    fn rule_checks_path_and_method() {
        let rule = PathRule::with_methods(regex("/items/\\d+"), [Method::POST]).unwrap();
        assert!(rule.matches(&Method::POST, "/items/1"));
        assert!(!rule.matches(&Method::GET, "/items/1"));
        assert!(!rule.matches(&Method::POST, "/items/x"));
    }

    #[test]
    fn lowercase_method_is_a_different_method() {
        let rule = PathRule::with_methods(PathMatcher::any(), [Method::POST]).unwrap();
        let lower = Method::from_bytes(b"post").unwrap();
        assert!(!rule.matches(&lower, "/"));
    }

    #[test]
    fn later_rule_is_not_shadowed() {
        let rules = PathRules::new()
            .with(
                PathRule::with_methods(PathMatcher::exact("/x").unwrap(), [Method::POST]).unwrap(),
            )
            .with(
                PathRule::with_methods(PathMatcher::exact("/x").unwrap(), [Method::GET]).unwrap(),
            );
        assert!(rules.matches(&Method::GET, "/x"));
        assert!(rules.matches(&Method::POST, "/x"));
        assert!(!rules.matches(&Method::PUT, "/x"));
    }

    #[test]
    fn empty_rules_match_nothing() {
        assert!(!PathRules::new().matches(&Method::GET, "/"));
    }

    #[test]
    fn path_map_first_match_wins() {
        let map = PathMap::new()
            .with(PathMatcher::prefix("/a/").unwrap(), 1)
            .with(PathMatcher::exact("/a/b").unwrap(), 2);
        assert_eq!(map.get(&Method::GET, "/a/b"), Some(&1));
    }

    #[test]
    fn path_map_respects_methods() {
        let map = PathMap::new()
            .with(
                PathRule::with_methods(PathMatcher::exact("/a").unwrap(), [Method::POST]).unwrap(),
                1,
            )
            .with(PathMatcher::exact("/a").unwrap(), 2);
        assert_eq!(map.get(&Method::POST, "/a"), Some(&1));
        assert_eq!(map.get(&Method::GET, "/a"), Some(&2));
        assert_eq!(map.get(&Method::GET, "/b"), None);
    }
}

#[cfg(test)]
mod properties {
    //! The three kinds of matcher against what they promise, on any path.

    use proptest::prelude::*;

    use super::*;
    use crate::proptest_config::config;

    /// A raw request path: `/` then segments of path characters, some percent-encoded.
    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec("[a-zA-Z0-9._~!$&'()*+,;=:@-]{0,6}|%[0-9A-F]{2}", 0..5)
            .prop_map(|segments| format!("/{}", segments.join("/")))
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn exact_matches_only_its_own_path(pattern in path(), candidate in path()) {
            let matcher = PathMatcher::exact(pattern.clone()).unwrap();
            prop_assert!(matcher.is_match(&pattern));
            prop_assert_eq!(matcher.is_match(&candidate), candidate == pattern);
        }

        #[test]
        fn prefix_is_a_plain_string_prefix(pattern in path(), rest in "[a-z/]{0,8}", candidate in path()) {
            let matcher = PathMatcher::prefix(pattern.clone()).unwrap();
            let longer = format!("{pattern}{rest}");
            prop_assert!(matcher.is_match(&longer));
            prop_assert_eq!(matcher.is_match(&candidate), candidate.starts_with(&pattern));
        }

        #[test]
        fn a_regex_matches_the_whole_path_only(pattern in path(), candidate in path()) {
            let matcher = PathMatcher::regex(&regex::escape(&pattern)).unwrap();
            prop_assert_eq!(matcher.is_match(&candidate), candidate == pattern);
            let (below, above) = (format!("{pattern}/x"), format!("/x{pattern}"));
            prop_assert!(!matcher.is_match(&below));
            prop_assert!(!matcher.is_match(&above));
        }

        #[test]
        fn any_text_is_matched_or_not_never_a_panic(text in any::<String>()) {
            let _ = PathMatcher::any().is_match(&text);
            let _ = PathMatcher::prefix("/api/").unwrap().is_match(&text);
            let _ = PathMatcher::regex(r"/users/\d+").unwrap().is_match(&text);
        }
    }
}
