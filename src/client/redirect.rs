//! The redirect loop: stopover, not reqwest, follows redirects, running the whole chain once per
//! hop so that no hop escapes the middlewares or the connection policy.
//!
//! The rules, hop by hop:
//! - 303 turns every method but `HEAD` into `GET`; 301 and 302 turn `POST` into `GET`; a method
//!   turned into `GET` loses its body and the headers that describe it.
//! - 307 and 308 (and 301/302 for methods other than `POST`) keep the method and the body; a
//!   body that cannot be sent again is an
//!   [`ErrorKind::BodyNotReplayable`](super::ErrorKind::BodyNotReplayable) error, never an
//!   empty body.
//! - `Location` is resolved against the URL of the hop (raw UTF-8 in it is percent-encoded),
//!   and inherits the hop URL's fragment when it has none (RFC 9110, section 10.2.2); a missing
//!   or unusable `Location` (not UTF-8, not a URL, not http or https) ends the loop and the 3xx
//!   response is returned as it is.
//! - A hop to another origin (which includes https to http) drops every `Authorization`,
//!   `Cookie` and `Proxy-Authorization` header, and a `Host` header the caller set, for this
//!   hop and all later ones.
//! - Each hop starts from the request the caller built, so what a middleware changed on one hop
//!   is not carried to the next.

use std::sync::Arc;

use http::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_LANGUAGE, CONTENT_LENGTH, CONTENT_LOCATION,
    CONTENT_TYPE, COOKIE, Entry, HOST, LOCATION, PROXY_AUTHORIZATION, TRANSFER_ENCODING,
};
use http::{Extensions, HeaderMap, HeaderName, Method, StatusCode, Version};
use url::Url;

use super::body::Body;
use super::client::Client;
use super::client::{Chain, Next};
use super::error::{Error, Result};
use super::history::Redirect;
use super::origin::crosses_origin;
use super::request::Request;
use super::response::Response;
use super::telemetry;

const CREDENTIAL_HEADERS: [HeaderName; 3] = [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION];
const BODY_HEADERS: [HeaderName; 6] = [
    CONTENT_TYPE,
    CONTENT_LENGTH,
    CONTENT_ENCODING,
    CONTENT_LANGUAGE,
    CONTENT_LOCATION,
    TRANSFER_ENCODING,
];

/// Whether and how far the client follows redirects (reqwest's `redirect::Policy`), for
/// [`ClientBuilder::redirect`](super::ClientBuilder::redirect). Redirects are followed by
/// stopover's own loop whatever the policy (reqwest's stays off), so the middleware chain and
/// the SSRF guard see every hop. For reqwest's `Policy::custom`, write a middleware: it sees
/// each hop's request ([`Request::hop`], [`Request::original_url`]) and response.
///
/// ```
/// use stopover::client::{Client, RedirectPolicy};
///
/// let no_redirects = Client::builder().redirect(RedirectPolicy::none()).build()?;
/// let few = Client::builder().redirect(RedirectPolicy::limited(3)).build()?;
/// # let _ = (no_redirects, few);
/// # Ok::<(), stopover::client::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedirectPolicy {
    /// The most redirects followed; `None` follows none.
    max: Option<usize>,
}

impl RedirectPolicy {
    /// Follows up to `max` redirects; one more fails the call with
    /// [`ErrorKind::TooManyRedirects`](super::ErrorKind::TooManyRedirects) (as
    /// [`max_redirects`](super::ClientBuilder::max_redirects) does).
    pub fn limited(max: usize) -> Self {
        RedirectPolicy { max: Some(max) }
    }

    /// Follows no redirect: a 3xx response is returned as it is, as with
    /// [`RequestBuilder::follow_redirects`](super::RequestBuilder::follow_redirects)`(false)`
    /// on every request. A request can still ask for them with `follow_redirects(true)`.
    pub fn none() -> Self {
        RedirectPolicy { max: None }
    }

    /// The most redirects followed, `None` when none are.
    pub fn max_redirects(&self) -> Option<usize> {
        self.max
    }
}

impl Default for RedirectPolicy {
    /// Up to 10 redirects, the client's default (and reqwest's).
    fn default() -> Self {
        RedirectPolicy::limited(10)
    }
}

/// The request as the caller built it, before the client's defaults are merged in: every hop
/// is made from it afresh.
#[derive(Debug)]
pub(crate) struct Draft {
    pub(crate) method: Method,
    pub(crate) url: Url,
    /// The request's own headers; they replace the client's defaults of the same names.
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
    pub(crate) extensions: Extensions,
    pub(crate) version: Version,
}

/// Marks every credential header in `headers` sensitive: hidden from `Debug` and never indexed
/// by HTTP/2 header compression, whichever way it was set (the client's defaults, `header`,
/// `headers`). Done once where headers are set, not on every hop.
pub(crate) fn mark_credentials(headers: &mut HeaderMap) {
    if headers.is_empty() {
        return;
    }
    for name in CREDENTIAL_HEADERS {
        if let Entry::Occupied(mut values) = headers.entry(name) {
            values
                .iter_mut()
                .for_each(|value| value.set_sensitive(true));
        }
    }
}

/// The redirect loop's state: the caller's request and what the redirects so far changed.
struct Hops {
    method: Method,
    original_url: Url,
    /// The original URL shared with the requests of the later hops, made at the first redirect.
    shared_original_url: Option<Arc<Url>>,
    /// Where the next hop goes; `None` while it is the original URL.
    url: Option<Url>,
    headers: HeaderMap,
    body: Body,
    extensions: Extensions,
    version: Version,
    hop: u32,
    /// Set once a hop left the original origin: credentials are never sent again.
    credentials_dropped: bool,
    /// Set once a redirect turned the method into `GET`: the body and its headers are gone.
    body_dropped: bool,
    wire_count: Option<telemetry::WireCount>,
}

impl Hops {
    fn new(mut draft: Draft, wire_count: Option<telemetry::WireCount>) -> Self {
        mark_credentials(&mut draft.headers);
        Hops {
            method: draft.method,
            original_url: draft.url,
            shared_original_url: None,
            url: None,
            headers: draft.headers,
            body: draft.body,
            extensions: draft.extensions,
            version: draft.version,
            hop: 0,
            credentials_dropped: false,
            body_dropped: false,
            wire_count,
        }
    }

    fn url(&self) -> &Url {
        self.url.as_ref().unwrap_or(&self.original_url)
    }

    /// The request for the next hop: the client's defaults, the caller's headers over them,
    /// minus what the redirects so far took away.
    fn request(&mut self, client: &Client) -> Request {
        // Credentials among both are marked sensitive already (`mark_credentials`).
        let mut headers = client.default_headers().clone();
        if !self.headers.is_empty() {
            // The request's own headers replace the defaults of the same names, every value kept.
            for name in self.headers.keys() {
                headers.remove(name);
            }
            for (name, value) in &self.headers {
                headers.append(name.clone(), value.clone());
            }
        }
        if self.credentials_dropped {
            for name in CREDENTIAL_HEADERS {
                headers.remove(name);
            }
            // A `Host` the caller set names the origin it was set for; without it, the
            // connection fills in the host of the URL the hop goes to.
            headers.remove(HOST);
        }
        if self.body_dropped {
            for name in BODY_HEADERS {
                headers.remove(name);
            }
        }
        // The first hop's request is its own original URL (see `Request::original_url`).
        let original_url = match &self.url {
            None => None,
            Some(_) => Some(Arc::clone(
                self.shared_original_url
                    .get_or_insert_with(|| Arc::new(self.original_url.clone())),
            )),
        };
        Request {
            method: self.method.clone(),
            url: self.url().clone(),
            headers,
            body: self.body.share(),
            attempt_timeout: client.attempt_timeout(),
            extensions: self.extensions.clone(),
            version: self.version,
            hop: self.hop,
            original_url,
            left_origin: self.credentials_dropped,
            wire_count: self.wire_count.clone(),
            attempt: None,
        }
    }
}

/// Sends the request the caller built through `chain`, following redirects when `follow` is
/// set. `wire_count` is shared by the requests on the wire, for the spans' resend count.
pub(crate) async fn follow_hops(
    client: Client,
    draft: Draft,
    wire_count: Option<telemetry::WireCount>,
    chain: Chain,
    follow: bool,
) -> Result<Response> {
    let mut hops = Hops::new(draft, wire_count);
    let mut history = Vec::new();
    loop {
        let mut response = Next::new(client.clone(), chain.clone())
            .run(hops.request(&client))
            .await
            .map_err(|err| err.with_url_if_missing(hops.url()))?;
        if !follow {
            return Ok(response);
        }
        let Some(location) = redirect_target(&response) else {
            response.set_history(history);
            return Ok(response);
        };
        if history.len() >= client.max_redirects() {
            response.discard().await;
            return Err(Error::too_many_redirects(history, location));
        }

        let status = response.status();
        let redirected_method = hops.method.clone();
        if turns_into_get(status, &hops.method) {
            hops.method = Method::GET;
            hops.body = Body::empty();
            hops.body_dropped = true;
        } else if !hops.body.is_replayable() {
            response.discard().await;
            return Err(Error::body_not_replayable(
                "a redirect asked for the streaming body to be sent again",
            )
            .with_url(location));
        }
        if crosses_origin(hops.url(), &location) {
            hops.credentials_dropped = true;
        }

        history.push(Redirect::new(
            redirected_method,
            response.url().clone(),
            status,
            response.headers().clone(),
            location.clone(),
        ));
        response.discard().await;
        hops.url = Some(location);
        hops.hop += 1;
    }
}

/// Where a redirect response points, when it is a redirect the loop follows.
fn redirect_target(response: &Response) -> Option<Url> {
    match response.status() {
        StatusCode::MOVED_PERMANENTLY
        | StatusCode::FOUND
        | StatusCode::SEE_OTHER
        | StatusCode::TEMPORARY_REDIRECT
        | StatusCode::PERMANENT_REDIRECT => {}
        _ => return None,
    }
    // Servers do send raw UTF-8 in `Location`; `Url::join` percent-encodes it, as browsers do.
    let location = std::str::from_utf8(response.headers().get(LOCATION)?.as_bytes()).ok()?;
    let mut target = response.url().join(location).ok()?;
    // RFC 9110, 10.2.2: a `Location` without a fragment inherits the redirected URL's.
    if target.fragment().is_none() {
        target.set_fragment(response.url().fragment());
    }
    if !matches!(target.scheme(), "http" | "https") {
        return None;
    }
    // Credentials in a `Location` are never sent (reqwest would turn them into Basic auth), but
    // the next hop's URL shows up in logs, errors and pool keys: drop them. Both only fail for
    // URLs that cannot carry credentials.
    let _ = target.set_username("");
    let _ = target.set_password(None);
    Some(target)
}

fn turns_into_get(status: StatusCode, method: &Method) -> bool {
    match status {
        StatusCode::SEE_OTHER => *method != Method::HEAD,
        StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND => *method == Method::POST,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_rewrite_table() {
        use Method as M;
        use StatusCode as S;
        let cases = [
            (S::MOVED_PERMANENTLY, M::POST, true),
            (S::MOVED_PERMANENTLY, M::PUT, false),
            (S::FOUND, M::POST, true),
            (S::FOUND, M::GET, false),
            (S::SEE_OTHER, M::PUT, true),
            (S::SEE_OTHER, M::DELETE, true),
            (S::SEE_OTHER, M::HEAD, false),
            (S::TEMPORARY_REDIRECT, M::POST, false),
            (S::PERMANENT_REDIRECT, M::POST, false),
        ];
        for (status, method, expected) in cases {
            assert_eq!(
                turns_into_get(status, &method),
                expected,
                "{status} {method}"
            );
        }
    }
}
