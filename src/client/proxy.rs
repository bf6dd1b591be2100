//! Proxies: send requests through an HTTP proxy with the proxy's own credentials.
//!
//! Proxy credentials belong to the proxy's configuration: a client whose default headers hold a
//! `Proxy-Authorization` is refused when it is built (reqwest would send that header instead of
//! the proxy's configured credentials, on every request, to whatever server it reaches), and the
//! client's `Authorization` is never turned into proxy credentials. A middleware may still set
//! `Proxy-Authorization` on a request on purpose, to answer a proxy's `407` challenge (Digest).
//! Through a `CONNECT` tunnel (an `https` URL), the proxy sees only the `CONNECT` request with
//! its own credentials; for a plain `http` URL it relays the whole request, so it sees every
//! header.
//!
//! ```
//! use stopover::client::{Client, Proxy};
//!
//! let client = Client::builder()
//!     .proxy(Proxy::all("http://proxy.internal:3128")?.basic_auth("svc", "s3cret"))
//!     .build()?;
//! # let _ = client;
//! # Ok::<(), stopover::client::Error>(())
//! ```

use std::fmt;

use http::HeaderValue;

use super::error::{Error, ErrorKind, Result};

/// An HTTP proxy and its credentials; add it with
/// [`ClientBuilder::proxy`](super::ClientBuilder::proxy).
///
/// Once a proxy is configured, the proxy settings of the environment (`HTTP_PROXY`, ...) are
/// ignored.
///
/// What the proxy sees depends on the scheme of the request, not on this configuration: an
/// `https` request goes through a `CONNECT` tunnel and the proxy sees only the `CONNECT` with
/// its own credentials, while a plain `http` request is relayed whole, so the proxy reads its
/// `Authorization`, cookies and body like the server does. Send credentials over `https`.
#[derive(Clone)]
pub struct Proxy {
    pub(crate) inner: reqwest::Proxy,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // reqwest's Debug would print the URL with its credentials.
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

impl Proxy {
    /// Sends `http` and `https` requests through the proxy at `url`.
    pub fn all(url: &str) -> Result<Proxy> {
        Proxy::wrap(url, reqwest::Proxy::all(url))
    }

    /// Sends `http` requests only through the proxy at `url`; the proxy relays them whole,
    /// credentials included.
    pub fn http(url: &str) -> Result<Proxy> {
        Proxy::wrap(url, reqwest::Proxy::http(url))
    }

    /// Sends `https` requests only through the proxy at `url` (in a `CONNECT` tunnel).
    pub fn https(url: &str) -> Result<Proxy> {
        Proxy::wrap(url, reqwest::Proxy::https(url))
    }

    fn wrap(url: &str, proxy: reqwest::Result<reqwest::Proxy>) -> Result<Proxy> {
        proxy.map(|inner| Proxy { inner }).map_err(|err| {
            let shown = without_userinfo(url);
            Error::with_kind_and_source(ErrorKind::Builder, err)
                .with_message(format!("the proxy URL {shown:?} is not valid"))
        })
    }

    /// Authenticates to the proxy with HTTP Basic credentials (`Proxy-Authorization: Basic`).
    pub fn basic_auth(self, username: &str, password: &str) -> Proxy {
        Proxy {
            inner: self.inner.basic_auth(username, password),
        }
    }

    /// Authenticates to the proxy with this `Proxy-Authorization` value (say, a bearer token).
    /// The value is marked sensitive.
    pub fn custom_auth(self, mut value: HeaderValue) -> Proxy {
        value.set_sensitive(true);
        Proxy {
            inner: self.inner.custom_http_auth(value),
        }
    }
}

/// A proxy URL as it may appear in an error message: a URL that failed to parse may still hold
/// the proxy's user name and password (`http://user:pass@host:port`), which end up in logs.
fn without_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_len].rfind('@') {
        Some(at) => format!("{}{}", &url[..authority_start], &rest[at + 1..]).into(),
        None => url.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_proxy_url_is_named_without_its_credentials() {
        let err = Proxy::all("http://svc:s3cret@proxy internal:3128").unwrap_err();
        assert!(err.is_builder());
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("proxy internal:3128"), "{shown}");
    }

    #[test]
    fn userinfo_is_cut_from_the_authority_only() {
        assert_eq!(without_userinfo("http://a:b@h:1/x@y"), "http://h:1/x@y");
        assert_eq!(without_userinfo("a:b@h:1"), "h:1");
        assert_eq!(without_userinfo("http://h:1/?u=a@b"), "http://h:1/?u=a@b");
        assert_eq!(without_userinfo("::not a url::"), "::not a url::");
    }
}
