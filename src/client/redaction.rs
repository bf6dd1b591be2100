//! Redaction: what is hidden when a request, a response or a URL is shown in a log line, a span,
//! an error message or a `Debug` output.
//!
//! One redactor for the whole client: the built-in spans
//! ([`ClientBuilder::span_redaction`](super::ClientBuilder::span_redaction)), the `Debug` output of
//! [`Request`](super::Request) and [`Response`](super::Response), error messages, and any
//! middleware that logs ([`Logging`](super::logging::Logging) among them) take the same
//! [`Redaction`].
//!
//! ```
//! use http::{HeaderMap, HeaderName, HeaderValue};
//! use stopover::client::{QueryRedaction, Redaction};
//! use url::Url;
//!
//! let redaction = Redaction::default()
//!     .header(HeaderName::from_static("x-api-key"))
//!     .query(QueryRedaction::Keys(vec!["sig".into()]));
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("x-api-key", HeaderValue::from_static("k-123"));
//! headers.insert("accept", HeaderValue::from_static("text/plain"));
//! assert_eq!(
//!     redaction.headers(&headers).to_string(),
//!     r#"{"x-api-key": "[redacted]", "accept": "text/plain"}"#,
//! );
//! let url = Url::parse("https://user:pw@api.example/v1?page=2&sig=abc#top").unwrap();
//! assert_eq!(redaction.url(&url), "https://api.example/v1?page=2&sig=REDACTED");
//! ```

use std::fmt;

use http::header::{
    AUTHORIZATION, CONTENT_LOCATION, COOKIE, LOCATION, PROXY_AUTHORIZATION, SET_COOKIE,
};
use http::{HeaderMap, HeaderName};
use url::Url;

/// The text that replaces a hidden header value.
pub const REDACTED_HEADER: &str = "[redacted]";
/// The text that replaces a hidden query value (plain letters: it survives URL encoding).
pub const REDACTED_QUERY: &str = "REDACTED";

/// Which query values are hidden when a URL is logged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueryRedaction {
    /// The query is logged as it is (the default).
    #[default]
    Keep,
    /// Every value is hidden; the keys are kept.
    All,
    /// The values of these keys are hidden (compared without regard to ASCII case, after
    /// percent-decoding).
    Keys(Vec<String>),
}

/// What is hidden when requests and responses are logged.
///
/// The default hides `Authorization`, `Cookie`, `Set-Cookie` and `Proxy-Authorization`, every
/// header value marked sensitive, and a URL's user name and password, in the URL logged and in
/// a `Location` or `Content-Location` header; it keeps the query.
#[derive(Debug, Clone)]
pub struct Redaction {
    headers: Vec<HeaderName>,
    query: QueryRedaction,
}

impl Default for Redaction {
    fn default() -> Self {
        Redaction {
            headers: vec![AUTHORIZATION, COOKIE, SET_COOKIE, PROXY_AUTHORIZATION],
            query: QueryRedaction::Keep,
        }
    }
}

impl Redaction {
    /// Hides one more header (in addition to the defaults).
    pub fn header(mut self, name: HeaderName) -> Self {
        if !self.headers.contains(&name) {
            self.headers.push(name);
        }
        self
    }

    /// Sets which query values are hidden. Default [`QueryRedaction::Keep`].
    pub fn query(mut self, query: QueryRedaction) -> Self {
        self.query = query;
        self
    }

    /// Whether a header's value is hidden.
    pub fn hides(&self, name: &HeaderName) -> bool {
        self.headers.contains(name)
    }

    /// The headers, ready to format (`Display` and `Debug`), with hidden values replaced.
    pub fn headers<'a>(&'a self, headers: &'a HeaderMap) -> RedactedHeaders<'a> {
        RedactedHeaders {
            redaction: self,
            headers,
        }
    }

    /// The URL as it may be logged: no user name, password or fragment, and query values
    /// hidden as configured.
    pub fn url(&self, url: &Url) -> String {
        let mut shown = without_credentials(url);
        shown.set_fragment(None);
        let hide: &dyn Fn(&str) -> bool = match &self.query {
            QueryRedaction::Keep => return shown.into(),
            QueryRedaction::All => &|_| true,
            QueryRedaction::Keys(keys) => {
                &|key: &str| keys.iter().any(|hidden| hidden.eq_ignore_ascii_case(key))
            }
        };
        if url.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(key, value)| {
                    let value = if hide(&key) {
                        REDACTED_QUERY.to_owned()
                    } else {
                        value.into_owned()
                    };
                    (key.into_owned(), value)
                })
                .collect();
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        shown.into()
    }
}

/// `reference` (an absolute or scheme-relative URL, or a path) without the `user:password@`
/// of its authority. Done on the text: a `Location` is shown as the server sent it, relative or
/// not, only without the credentials.
fn without_userinfo(reference: &str) -> std::borrow::Cow<'_, str> {
    let authority_start = match reference.find("//") {
        // Only a `//` before any path, query or fragment starts an authority.
        Some(at) if !reference[..at].contains(['/', '?', '#']) => at + 2,
        _ => return reference.into(),
    };
    let rest = &reference[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_len].rfind('@') {
        Some(at) => format!("{}{}", &reference[..authority_start], &rest[at + 1..]).into(),
        None => reference.into(),
    }
}

/// Headers formatted with hidden values replaced; see [`Redaction::headers`].
pub struct RedactedHeaders<'a> {
    redaction: &'a Redaction,
    headers: &'a HeaderMap,
}

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in self.headers {
            if value.is_sensitive() || self.redaction.hides(name) {
                map.entry(&name.as_str(), &REDACTED_HEADER);
            } else if let Ok(text) = value.to_str() {
                if *name == LOCATION || *name == CONTENT_LOCATION {
                    map.entry(&name.as_str(), &without_userinfo(text));
                } else {
                    map.entry(&name.as_str(), &text);
                }
            } else {
                // Not text: `HeaderValue`'s own Debug escapes the bytes.
                map.entry(&name.as_str(), value);
            }
        }
        map.finish()
    }
}

impl fmt::Display for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A URL shown without its user name and password, formatted without a copy when it has none:
/// error messages end up in logs.
pub(crate) struct WithoutCredentials<'a>(pub(crate) &'a Url);

impl fmt::Display for WithoutCredentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        if url.username().is_empty() && url.password().is_none() {
            return f.write_str(url.as_str());
        }
        f.write_str(without_credentials(url).as_str())
    }
}

/// A copy of `url` without its user name and password.
fn without_credentials(url: &Url) -> Url {
    let mut shown = url.clone();
    // Both only fail for URLs that cannot have credentials, which then have none to hide.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn a_location_is_shown_without_its_userinfo() {
        for (sent, shown) in [
            (
                "https://user:pw@example.test/a?b#c",
                "https://example.test/a?b#c",
            ),
            ("//user:pw@example.test:8080/", "//example.test:8080/"),
            ("https://a@b:pw@example.test", "https://example.test"),
            (
                "https://example.test/@user:pw",
                "https://example.test/@user:pw",
            ),
            ("/path?x=//user:pw@host", "/path?x=//user:pw@host"),
        ] {
            assert_eq!(without_userinfo(sent), shown);
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            LOCATION,
            HeaderValue::from_static("http://user:hunter2@example.test/next"),
        );
        let dump = Redaction::default().headers(&headers).to_string();
        assert!(!dump.contains("hunter2"), "{dump}");
        assert!(dump.contains("http://example.test/next"), "{dump}");
    }

    #[test]
    fn credential_headers_are_redacted_by_default() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        headers.insert(COOKIE, HeaderValue::from_static("sid=abc"));
        headers.insert(SET_COOKIE, HeaderValue::from_static("sid=abc; HttpOnly"));
        headers.insert(PROXY_AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        headers.insert("x-request-id", HeaderValue::from_static("r-1"));
        let shown = Redaction::default().headers(&headers).to_string();
        assert!(!shown.contains("abc"), "{shown}");
        assert_eq!(shown.matches(REDACTED_HEADER).count(), 4, "{shown}");
        assert!(shown.contains(r#""x-request-id": "r-1""#), "{shown}");
    }

    #[test]
    fn user_named_headers_are_redacted() {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("k-123"));
        let redaction = Redaction::default().header(HeaderName::from_static("x-api-key"));
        assert!(!redaction.headers(&headers).to_string().contains("k-123"));
        assert!(
            Redaction::default()
                .headers(&headers)
                .to_string()
                .contains("k-123")
        );
    }

    #[test]
    fn sensitive_header_values_are_redacted_whatever_their_name() {
        let mut value = HeaderValue::from_static("hunter2");
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("x-custom-secret", value);
        assert!(
            !Redaction::default()
                .headers(&headers)
                .to_string()
                .contains("hunter2")
        );
    }

    #[test]
    fn every_value_of_a_repeated_header_is_redacted() {
        let mut headers = HeaderMap::new();
        headers.append(SET_COOKIE, HeaderValue::from_static("a=1"));
        headers.append(SET_COOKIE, HeaderValue::from_static("b=2"));
        let shown = Redaction::default().headers(&headers).to_string();
        assert!(!shown.contains("a=1") && !shown.contains("b=2"), "{shown}");
    }

    #[test]
    fn url_credentials_and_fragment_are_always_removed() {
        let shown = Redaction::default().url(&url("https://alice:pw@api.example/x?q=1#frag"));
        assert_eq!(shown, "https://api.example/x?q=1");
    }

    #[test]
    fn query_is_kept_by_default() {
        let shown = Redaction::default().url(&url("https://api.example/x?token=abc&page=2"));
        assert_eq!(shown, "https://api.example/x?token=abc&page=2");
    }

    #[test]
    fn all_query_values_can_be_redacted() {
        let redaction = Redaction::default().query(QueryRedaction::All);
        assert_eq!(
            redaction.url(&url("https://api.example/x?token=abc&page=2")),
            "https://api.example/x?token=REDACTED&page=REDACTED"
        );
    }

    #[test]
    fn named_query_keys_are_redacted_after_decoding_and_case_folding() {
        let redaction = Redaction::default().query(QueryRedaction::Keys(vec!["api_key".into()]));
        assert_eq!(
            redaction.url(&url(
                "https://api.example/x?API%5FKEY=abc&page=2&api_key=def"
            )),
            "https://api.example/x?API_KEY=REDACTED&page=2&api_key=REDACTED"
        );
    }

    #[test]
    fn a_url_without_query_is_unchanged_by_query_redaction() {
        let redaction = Redaction::default().query(QueryRedaction::All);
        assert_eq!(
            redaction.url(&url("https://api.example/x")),
            "https://api.example/x"
        );
    }
}
