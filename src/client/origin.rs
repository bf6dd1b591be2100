//! Origins: the scheme, host and port that credentials are scoped to, and the rule that decides
//! when a redirect leaves one.
//!
//! ```
//! use stopover::client::Origin;
//!
//! let api = Origin::parse("https://api.example/v1/")?;
//! assert_eq!(api.to_string(), "https://api.example");
//! assert!(api.contains(&url::Url::parse("https://api.example:443/users")?));
//! assert!(!api.contains(&url::Url::parse("http://api.example/users")?));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use url::{Host, Position, Url};

use super::request::Request;

/// The origin of an `http` or `https` URL (RFC 6454): its scheme, host and port, the default
/// port filled in. What [`TokenAuth`](super::token::TokenAuth) and
/// [`DigestAuth`](super::digest::DigestAuth) are scoped to.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    https: bool,
    host: Host<String>,
    port: u16,
}

impl Origin {
    /// The origin of the URL `text` (a path, query or fragment is ignored).
    ///
    /// Fails with [`InvalidOrigin`], naming the text, when it is not an absolute `http` or
    /// `https` URL with a host.
    pub fn parse(text: &str) -> Result<Origin, InvalidOrigin> {
        Url::parse(text)
            .ok()
            .as_ref()
            .and_then(Origin::of)
            .ok_or_else(|| InvalidOrigin {
                text: text.to_owned(),
            })
    }

    /// The origin of `url`; `None` unless it is an `http` or `https` URL with a host.
    pub fn of(url: &Url) -> Option<Origin> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        Some(Origin {
            https,
            host: url.host()?.to_owned(),
            port: url.port_or_known_default()?,
        })
    }

    /// Whether `url` belongs to this origin. Compared field by field: [`Url::origin`]
    /// allocates, and this runs on every request a scoped credential sees.
    pub fn contains(&self, url: &Url) -> bool {
        let scheme = if self.https { "https" } else { "http" };
        let same_host = match (&self.host, url.host()) {
            (Host::Domain(a), Some(Host::Domain(b))) => a == b,
            (Host::Ipv4(a), Some(Host::Ipv4(b))) => *a == b,
            (Host::Ipv6(a), Some(Host::Ipv6(b))) => *a == b,
            _ => false,
        };
        same_host && url.scheme() == scheme && url.port_or_known_default() == Some(self.port)
    }
}

impl fmt::Display for Origin {
    /// The ASCII serialisation: `https://api.example`, with the port only when it is not the
    /// scheme's default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (scheme, default_port) = if self.https {
            ("https", 443)
        } else {
            ("http", 80)
        };
        write!(f, "{scheme}://{}", self.host)?;
        if self.port != default_port {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Origin({self})")
    }
}

impl FromStr for Origin {
    type Err = InvalidOrigin;

    fn from_str(text: &str) -> Result<Origin, InvalidOrigin> {
        Origin::parse(text)
    }
}

/// A text that is not an `http` or `https` URL with a host, so it names no origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a valid origin (expected an http or https URL such as https://api.example)"
)]
pub struct InvalidOrigin {
    text: String,
}

impl InvalidOrigin {
    /// The text that was refused.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Whether a hop from `from` to `to` leaves the origin the credentials were given for; a change
/// of scheme (https to http included), host or port does. Compared field by field:
/// [`Url::origin`] allocates.
pub(crate) fn crosses_origin(from: &Url, to: &Url) -> bool {
    from.scheme() != to.scheme()
        || from.host_str() != to.host_str()
        || from.port_or_known_default() != to.port_or_known_default()
}

/// The origin of `url` as a key for per-origin state (a circuit, a rate, a bulkhead):
/// `scheme://host:port` with the port always written, made with one allocation. A URL with no
/// host (which the client never sends) keys as its scheme alone.
pub(crate) fn origin_key(url: &Url) -> String {
    use std::fmt::Write as _;

    let scheme = url.scheme();
    let host = url.host_str().unwrap_or("");
    let mut key = String::with_capacity(scheme.len() + host.len() + 9);
    key.push_str(scheme);
    key.push_str("://");
    key.push_str(host);
    if let Some(port) = url.port_or_known_default() {
        let _ = write!(key, ":{port}");
    }
    key
}

/// The longest origin key built on the stack; a longer one (a host name of more than about
/// a hundred bytes) is built on the heap.
const STACK_KEY: usize = 128;

/// Calls `f` with the origin key of `url`, as [`origin_key`] writes it, built on the stack: a
/// per-origin middleware looks a known origin up without allocating.
pub(crate) fn with_origin_key<R>(url: &Url, f: impl FnOnce(&str) -> R) -> R {
    let scheme = url.scheme().as_bytes();
    let host = url.host_str().unwrap_or("").as_bytes();
    // "://" and ":65535" at most.
    if scheme.len() + host.len() + 9 > STACK_KEY {
        return f(&origin_key(url));
    }
    let mut buffer = [0u8; STACK_KEY];
    let mut len = 0;
    for part in [scheme, b"://", host] {
        buffer[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    if let Some(port) = url.port_or_known_default() {
        buffer[len] = b':';
        len += 1;
        let mut digits = [0u8; 5];
        let mut rest = port;
        let mut count = 0;
        loop {
            digits[count] = b'0' + (rest % 10) as u8;
            count += 1;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        for digit in digits[..count].iter().rev() {
            buffer[len] = *digit;
            len += 1;
        }
    }
    // Made of the URL's own text, which is ASCII, and ASCII digits.
    match std::str::from_utf8(&buffer[..len]) {
        Ok(key) => f(key),
        Err(_) => f(&origin_key(url)),
    }
}

/// What a per-key middleware (a circuit breaker, a rate limit, a bulkhead) keeps its state
/// per: the request's origin, looked up without allocating, or the key a function of the
/// request returns.
#[derive(Clone)]
pub(crate) enum KeyOf {
    /// The origin, written `scheme://host:port`.
    Origin,
    /// A key function given by the user.
    Custom(Arc<dyn Fn(&Request) -> String + Send + Sync>),
}

impl KeyOf {
    /// A key function given by the user.
    pub(crate) fn custom(key: impl Fn(&Request) -> String + Send + Sync + 'static) -> Self {
        KeyOf::Custom(Arc::new(key))
    }

    /// Calls `f` with the key of `request`.
    pub(crate) fn with<R>(&self, request: &Request, f: impl FnOnce(&str) -> R) -> R {
        match self {
            KeyOf::Origin => with_origin_key(request.url(), f),
            KeyOf::Custom(key) => f(&key(request)),
        }
    }

    /// The key of `request`, owned.
    pub(crate) fn of(&self, request: &Request) -> String {
        match self {
            KeyOf::Origin => origin_key(request.url()),
            KeyOf::Custom(key) => key(request),
        }
    }
}

/// Whether `url`'s text up to the path (`scheme://user@host:port`, as the URL wrote it) is
/// `before_path`: the same origin, found with one comparison and no key written. (Another
/// spelling of the same origin, with a user name or the default port written out, is found
/// through the map instead.)
fn is_written_before_path(url: &Url, before_path: &str) -> bool {
    // The authority ends where the path, query or fragment starts: a URL's text that starts
    // with `before_path` followed by one of those (or nothing) has the same text before its
    // path. Cheaper than slicing the URL at `Position::BeforePath`.
    let text = url.as_str().as_bytes();
    text.starts_with(before_path.as_bytes())
        && matches!(text.get(before_path.len()), None | Some(b'/' | b'?' | b'#'))
}

/// One key's entry in a [`Keyed`] map, and for a key by origin the text up to the path of
/// the first URL seen with it.
struct Slot<V> {
    entry: Arc<V>,
    before_path: Option<Arc<str>>,
}

/// Per-key state of a middleware (a circuit, a rate, a compartment), each behind an `Arc` so
/// that a request in flight holds its own without looking the key up again.
///
/// The entry of the last request keyed by origin is remembered: a client that talks to one
/// origin after another finds it with one comparison of the URL's text, without writing the
/// key or hashing it; any other key is looked up in the map by a key written on the stack.
/// Nothing is allocated but for a key seen for the first time.
pub(crate) struct Keyed<V> {
    map: HashMap<Arc<str>, Slot<V>>,
    last: Option<(Arc<str>, Arc<V>)>,
}

impl<V> Keyed<V> {
    pub(crate) fn new() -> Self {
        Keyed {
            map: HashMap::new(),
            last: None,
        }
    }

    /// How many keys are kept.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The entry of `key`, if there is one.
    pub(crate) fn get(&self, key: &str) -> Option<&Arc<V>> {
        self.map.get(key).map(|slot| &slot.entry)
    }

    /// The entry of `request`'s key, made by `make` from the key the first time. When the
    /// map already holds `max_keys` keys, the entries `forget` says may go are forgotten
    /// first (an entry only the map holds, `Arc::strong_count` 1, is not in use).
    pub(crate) fn entry(
        &mut self,
        key_of: &KeyOf,
        request: &Request,
        max_keys: usize,
        mut forget: impl FnMut(&Arc<V>) -> bool,
        make: impl FnOnce(&Arc<str>) -> V,
    ) -> Arc<V> {
        let by_origin = matches!(key_of, KeyOf::Origin);
        if let (true, Some((before_path, entry))) = (by_origin, &self.last) {
            if is_written_before_path(request.url(), before_path) {
                return Arc::clone(entry);
            }
        }
        let found = key_of.with(request, |key| match self.map.get(key) {
            Some(slot) => Ok((Arc::clone(&slot.entry), slot.before_path.clone())),
            None => Err(Arc::<str>::from(key)),
        });
        let (entry, before_path) = match found {
            Ok(found) => found,
            Err(key) => {
                if self.map.len() >= max_keys {
                    // The remembered entry would count as in use.
                    self.last = None;
                    self.map.retain(|_, slot| !forget(&slot.entry));
                }
                let entry = Arc::new(make(&key));
                let before_path: Option<Arc<str>> =
                    by_origin.then(|| request.url()[..Position::BeforePath].into());
                let slot = Slot {
                    entry: Arc::clone(&entry),
                    before_path: before_path.clone(),
                };
                self.map.insert(key, slot);
                (entry, before_path)
            }
        };
        if let Some(before_path) = before_path {
            self.last = Some((before_path, Arc::clone(&entry)));
        }
        entry
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_origin_key_always_names_the_port() {
        assert_eq!(
            origin_key(&url("https://api.example/a?b")),
            "https://api.example:443"
        );
        assert_eq!(
            origin_key(&url("http://user:pw@127.0.0.1:8080/")),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn the_origin_key_built_on_the_stack_is_the_same_as_on_the_heap() {
        let long = format!("https://{}.example:8443/", "a".repeat(200));
        for text in [
            "https://api.example/a?b",
            "http://user:pw@127.0.0.1:8080/",
            "http://[::1]:9/",
            "https://example.test:65535/",
            "http://example.test:1/",
            long.as_str(),
        ] {
            let url = url(text);
            assert_eq!(
                with_origin_key(&url, str::to_owned),
                origin_key(&url),
                "{text}"
            );
        }
    }

    #[test]
    fn the_text_before_the_path_matches_its_own_origin_and_no_other() {
        let first = url("https://api.example/a");
        let last = &first[..Position::BeforePath];
        assert!(is_written_before_path(
            &url("https://api.example/b?c"),
            last
        ));
        for other in [
            "http://api.example/",
            "https://api.example:8443/",
            "https://api.example.evil/",
            "https://user@api.example/",
            "https://api.example.org/",
            "https://api.exampl/",
            "https://pi.example/",
        ] {
            assert!(!is_written_before_path(&url(other), last), "{other}");
        }
    }

    fn get(text: &str) -> Request {
        Request::new(http::Method::GET, url(text))
    }

    #[test]
    fn a_keyed_map_gives_one_entry_per_origin_however_it_is_found() {
        let mut keyed = Keyed::new();
        let mut made = 0;
        let mut entry = |keyed: &mut Keyed<u32>, text: &str| {
            keyed.entry(
                &KeyOf::Origin,
                &get(text),
                8,
                |_| true,
                |_| {
                    made += 1;
                    made
                },
            )
        };
        let first = entry(&mut keyed, "http://a.test/x");
        // The same origin again (the remembered one), another, then the first through the map.
        assert!(Arc::ptr_eq(&first, &entry(&mut keyed, "http://a.test/y")));
        let other = entry(&mut keyed, "http://b.test/");
        assert!(!Arc::ptr_eq(&first, &other));
        assert!(Arc::ptr_eq(
            &first,
            &entry(&mut keyed, "http://a.test:80/z")
        ));
        assert_eq!(keyed.len(), 2);
    }

    #[test]
    fn a_full_keyed_map_forgets_only_the_entries_not_in_use() {
        let mut keyed = Keyed::new();
        let idle = |entry: &Arc<u32>| Arc::strong_count(entry) == 1;
        let in_use = keyed.entry(&KeyOf::Origin, &get("http://a.test/"), 2, idle, |_| 1);
        keyed.entry(&KeyOf::Origin, &get("http://b.test/"), 2, idle, |_| 2);
        keyed.entry(&KeyOf::Origin, &get("http://c.test/"), 2, idle, |_| 3);
        assert_eq!(keyed.len(), 2);
        assert!(
            keyed
                .get("http://a.test:80")
                .is_some_and(|a| Arc::ptr_eq(a, &in_use))
        );
        assert!(keyed.get("http://b.test:80").is_none());
        assert!(keyed.get("http://c.test:80").is_some());
    }

    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn https_to_http_on_the_same_host_crosses_origin() {
        let https = url("https://example.test/a");
        assert!(crosses_origin(&https, &url("http://example.test/a")));
        assert!(!crosses_origin(&https, &url("https://example.test:443/b")));
        assert!(crosses_origin(&https, &url("https://example.test:8443/a")));
    }

    #[test]
    fn another_host_on_the_same_scheme_and_port_crosses_origin() {
        // Each comparison alone decides: a rule joining them with `&&` would keep credentials
        // on a hop to another host behind the same port.
        let from = url("https://api.example/a");
        assert!(crosses_origin(&from, &url("https://evil.example/a")));
        assert!(crosses_origin(
            &url("http://127.0.0.1:8080/"),
            &url("http://127.0.0.2:8080/")
        ));
    }

    #[test]
    fn an_origin_contains_its_urls_and_no_other() {
        let origin = Origin::parse("http://127.0.0.1:8080/ignored?q#f").unwrap();
        assert!(origin.contains(&url("http://127.0.0.1:8080/x")));
        assert!(!origin.contains(&url("http://127.0.0.1:8081/x")));
        assert!(!origin.contains(&url("https://127.0.0.1:8080/x")));
        assert!(!origin.contains(&url("http://localhost:8080/x")));
        let v6 = Origin::parse("https://[::1]/").unwrap();
        assert!(v6.contains(&url("https://[::1]:443/")));
    }

    #[test]
    fn the_default_port_is_filled_in_and_not_shown() {
        let origin = Origin::parse("https://api.example:443/v1").unwrap();
        assert_eq!(origin, Origin::parse("https://api.example").unwrap());
        assert_eq!(origin.to_string(), "https://api.example");
        assert_eq!(
            Origin::parse("http://api.example:8080")
                .unwrap()
                .to_string(),
            "http://api.example:8080"
        );
    }

    #[test]
    fn texts_that_name_no_http_origin_are_refused_by_name() {
        for text in [
            "api.example",
            "/relative",
            "ftp://files.example/",
            "data:text/plain,x",
        ] {
            let err = Origin::parse(text).unwrap_err();
            assert_eq!(err.text(), text);
            assert!(err.to_string().contains(text), "{err}");
        }
    }

    mod properties {
        //! Origins against the URLs they are made of, and the redirect rule against them.

        use proptest::prelude::*;

        use super::*;
        use crate::proptest_config::config;

        /// An http(s) URL on one of a few hosts and ports, so that equal origins come up often.
        fn url() -> impl Strategy<Value = Url> {
            (
                prop_oneof![Just("http"), Just("https")],
                prop_oneof![
                    Just("api.example".to_owned()),
                    Just("API.example".to_owned()),
                    Just("evil.example".to_owned()),
                    Just("127.0.0.1".to_owned()),
                    Just("127.0.0.2".to_owned()),
                    Just("[::1]".to_owned()),
                ],
                prop_oneof![
                    Just(None),
                    Just(Some(80u16)),
                    Just(Some(443)),
                    Just(Some(8080))
                ],
                "[a-z/]{0,12}",
            )
                .prop_map(|(scheme, host, port, path)| {
                    let port = port.map(|port| format!(":{port}")).unwrap_or_default();
                    Url::parse(&format!("{scheme}://{host}{port}/{path}")).unwrap()
                })
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn an_origin_contains_the_url_it_was_made_of(url in url()) {
                let origin = Origin::of(&url).unwrap();
                prop_assert!(origin.contains(&url));
            }

            #[test]
            fn a_hop_crosses_origin_exactly_when_the_origins_differ(a in url(), b in url()) {
                prop_assert_eq!(
                    crosses_origin(&a, &b),
                    Origin::of(&a) != Origin::of(&b)
                );
                prop_assert_eq!(Origin::of(&a).unwrap().contains(&b), !crosses_origin(&a, &b));
            }

            #[test]
            fn an_origin_reads_back_from_its_text(url in url()) {
                let origin = Origin::of(&url).unwrap();
                prop_assert_eq!(Origin::parse(&origin.to_string()), Ok(origin));
            }

            #[test]
            fn any_text_is_an_origin_or_a_refusal_naming_it(text in any::<String>()) {
                if let Err(err) = Origin::parse(&text) {
                    prop_assert_eq!(err.text(), text.as_str());
                }
            }
        }
    }
}
