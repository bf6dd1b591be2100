//! The redirect history: one record per redirect the client followed, kept on the final
//! [`Response`](super::Response::history) and on a
//! [`TooManyRedirects`](super::ErrorKind::TooManyRedirects) error.

use http::{HeaderMap, Method, StatusCode};
use url::Url;

/// One redirect the client followed on the way to the final response.
#[derive(Debug, Clone)]
pub struct Redirect {
    method: Method,
    url: Url,
    status: StatusCode,
    headers: HeaderMap,
    location: Url,
}

impl Redirect {
    pub(crate) fn new(
        method: Method,
        url: Url,
        status: StatusCode,
        headers: HeaderMap,
        location: Url,
    ) -> Self {
        Redirect {
            method,
            url,
            status,
            headers,
            location,
        }
    }

    /// The method of the request that was redirected.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URL of the request that was redirected.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The redirect status (301, 302, 303, 307 or 308).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers of the redirect response.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Where the redirect pointed, resolved against the request URL.
    pub fn location(&self) -> &Url {
        &self.location
    }
}
