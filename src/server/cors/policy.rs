//! What the CORS layer decides: which requests a policy covers, the answer to a preflight, the
//! headers an actual response gets.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};

use super::allow_origin::OriginPolicy;
use super::builder::join;
use super::service::Action;
use super::vary::Vary;
use crate::server::matcher::PathRules;

pub(super) const REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
pub(super) const ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");
/// The response header that names why a preflight was refused, with
/// [`CorsLayerBuilder::explain_refusals`](super::CorsLayerBuilder::explain_refusals).
pub const REFUSAL_REASON: HeaderName = HeaderName::from_static("cors-refusal-reason");

pub(super) const TRUE: HeaderValue = HeaderValue::from_static("true");
pub(super) const STAR: HeaderValue = HeaderValue::from_static("*");

/// The response headers the layer owns on the paths it covers.
pub(super) const OWNED: [HeaderName; 7] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
    ALLOW_PRIVATE_NETWORK,
];

/// Response headers a browser always lets scripts read, and `Set-Cookie`, which it never
/// does: neither is worth listing in `Access-Control-Expose-Headers`.
pub(super) const NOT_EXPOSED: [HeaderName; 8] = [
    header::CACHE_CONTROL,
    header::CONTENT_LANGUAGE,
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::EXPIRES,
    header::LAST_MODIFIED,
    header::PRAGMA,
    header::SET_COOKIE,
];

#[derive(Debug, Clone)]
pub(super) enum MethodPolicy {
    List {
        methods: Vec<Method>,
        value: Option<HeaderValue>,
    },
    Any,
    Mirror,
}

#[derive(Debug, Clone)]
pub(super) enum HeaderPolicy {
    List {
        names: Vec<HeaderName>,
        value: Option<HeaderValue>,
    },
    Any,
    Mirror,
}

#[derive(Debug, Clone)]
pub(super) enum Expose {
    None,
    Value(HeaderValue),
    ResponseNames,
}

/// One policy, with the requests it covers.
#[derive(Debug)]
pub(super) struct Config {
    pub(super) origin: OriginPolicy,
    pub(super) urls: Option<PathRules>,
    pub(super) methods: MethodPolicy,
    pub(super) headers: HeaderPolicy,
    pub(super) expose: Expose,
    pub(super) max_age: Option<HeaderValue>,
    pub(super) credentials: bool,
    pub(super) private_network: bool,
    pub(super) preflight_status: StatusCode,
    pub(super) denied_status: StatusCode,
    pub(super) explain_refusals: bool,
    pub(super) actual_vary: Vary,
    pub(super) preflight_vary: Vary,
}

/// Why a preflight was refused, for the debug log and [`REFUSAL_REASON`].
#[derive(Debug, Clone)]
pub(super) enum Refusal {
    Origin(HeaderValue),
    Method(HeaderValue),
    /// A requested header that is not allowed, or not a header name at all.
    Header(Vec<u8>),
}

impl Refusal {
    pub(super) fn reason(&self) -> HeaderValue {
        let (what, value) = match self {
            Self::Origin(origin) => ("origin", origin.as_bytes()),
            Self::Method(method) => ("method", method.as_bytes()),
            Self::Header(name) => ("request header", name.as_slice()),
        };
        let mut reason = Vec::with_capacity(what.len() + value.len() + 20);
        reason.extend_from_slice(what.as_bytes());
        reason.extend_from_slice(b" \"");
        reason.extend_from_slice(value);
        reason.extend_from_slice(b"\" is not allowed");
        // The value came from a request header, so it is a valid header value already.
        HeaderValue::from_bytes(&reason).unwrap_or_else(|_| HeaderValue::from_static("refused"))
    }
}

impl Config {
    /// Whether this policy covers a request (for a preflight, `method` is the one it asks
    /// for).
    pub(super) fn covers(&self, method: &Method, path: &str) -> bool {
        self.urls
            .as_ref()
            .is_none_or(|urls| urls.matches(method, path))
    }

    /// The answer to a preflight whose origin was allowed (with this
    /// `Access-Control-Allow-Origin`) or refused (`None`).
    pub(super) fn preflight<B: Default>(
        &self,
        request: &HeaderMap,
        allow_origin: Option<HeaderValue>,
    ) -> Response<B> {
        let mut response = Response::new(B::default());
        let headers = response.headers_mut();
        headers.reserve(8);
        match self.grant(request, allow_origin, headers) {
            Ok(()) => *response.status_mut() = self.preflight_status,
            Err(refusal) => {
                tracing::debug!(
                    ?refusal,
                    origin = ?request.get(header::ORIGIN),
                    method = ?request.get(header::ACCESS_CONTROL_REQUEST_METHOD),
                    headers = ?request.get(header::ACCESS_CONTROL_REQUEST_HEADERS),
                    "CORS preflight refused"
                );
                headers.clear();
                if self.explain_refusals {
                    headers.insert(REFUSAL_REASON, refusal.reason());
                }
                *response.status_mut() = self.denied_status;
            }
        }
        self.preflight_vary.apply(response.headers_mut());
        response
    }

    /// Writes the headers that grant a preflight, or says why it is refused.
    pub(super) fn grant(
        &self,
        request: &HeaderMap,
        allow_origin: Option<HeaderValue>,
        granted: &mut HeaderMap,
    ) -> Result<(), Refusal> {
        // A preflight carries both headers (see `is_preflight`).
        let empty = HeaderValue::from_static("");
        let allow_origin = allow_origin.ok_or_else(|| {
            Refusal::Origin(request.get(header::ORIGIN).unwrap_or(&empty).clone())
        })?;
        let requested_method = request
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .unwrap_or(&empty);
        let refused_method = || Refusal::Method(requested_method.clone());
        let method =
            Method::from_bytes(requested_method.as_bytes()).map_err(|_| refused_method())?;
        let safelisted = method == Method::GET || method == Method::HEAD || method == Method::POST;
        let allow_methods = match &self.methods {
            MethodPolicy::List { methods, value } => {
                if !safelisted && !methods.contains(&method) {
                    return Err(refused_method());
                }
                value.clone()
            }
            MethodPolicy::Any => Some(STAR),
            MethodPolicy::Mirror => Some(requested_method.clone()),
        };

        let mut allow_headers = None;
        let requested_headers = request.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS);
        if requested_headers.iter().next().is_some() {
            let mut authorization = false;
            for item in requested_headers
                .iter()
                .flat_map(|line| line.as_bytes().split(|&b| b == b','))
                .map(<[u8]>::trim_ascii)
                .filter(|item| !item.is_empty())
            {
                let refused = || Refusal::Header(item.to_vec());
                let name = HeaderName::from_bytes(item).map_err(|_| refused())?;
                authorization |= name == header::AUTHORIZATION;
                if let HeaderPolicy::List { names, .. } = &self.headers {
                    if !names.contains(&name) {
                        return Err(refused());
                    }
                }
            }
            allow_headers = match &self.headers {
                HeaderPolicy::List { value, .. } => value.clone(),
                HeaderPolicy::Any if authorization => {
                    Some(HeaderValue::from_static("*, authorization"))
                }
                HeaderPolicy::Any => Some(STAR),
                HeaderPolicy::Mirror => mirror(requested_headers),
            };
        }

        granted.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        if self.credentials {
            granted.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
        if let Some(value) = allow_methods {
            granted.insert(header::ACCESS_CONTROL_ALLOW_METHODS, value);
        }
        if let Some(value) = allow_headers {
            granted.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
        if let Some(value) = &self.max_age {
            granted.insert(header::ACCESS_CONTROL_MAX_AGE, value.clone());
        }
        if self.private_network
            && request
                .get(REQUEST_PRIVATE_NETWORK)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
        {
            granted.insert(ALLOW_PRIVATE_NETWORK, TRUE);
        }
        Ok(())
    }

    pub(super) fn apply(&self, action: Action, headers: &mut HeaderMap) {
        // Most responses carry no CORS header of their own: one pass over the names is cheaper
        // than removing each owned header by hash.
        if headers
            .keys()
            .any(|name| name.as_str().starts_with("access-control-"))
        {
            for name in OWNED {
                headers.remove(name);
            }
        }
        match action {
            Action::Allowed(allow_origin) => {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
                if self.credentials {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
                }
                match &self.expose {
                    Expose::None => {}
                    Expose::Value(value) => {
                        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, value.clone());
                    }
                    Expose::ResponseNames => {
                        let names = join(
                            headers
                                .keys()
                                .filter(|name| !NOT_EXPOSED.contains(name))
                                .filter(|name| !name.as_str().starts_with("access-control-"))
                                .filter(|name| *name != header::VARY)
                                .map(HeaderName::as_str),
                        );
                        if let Some(names) = names {
                            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, names);
                        }
                    }
                }
            }
            Action::Denied => {}
            Action::NoOrigin => {
                if self.origin.is_static() {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, STAR);
                }
            }
        }
        self.actual_vary.apply(headers);
    }
}

/// Echoes `Access-Control-Request-Headers`; several lines are joined into one.
pub(super) fn mirror(lines: header::GetAll<'_, HeaderValue>) -> Option<HeaderValue> {
    let mut iter = lines.iter();
    let first = iter.next()?;
    let rest: Vec<&HeaderValue> = iter.collect();
    if rest.is_empty() {
        return Some(first.clone());
    }
    let mut joined = first.as_bytes().to_vec();
    for line in rest {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(line.as_bytes());
    }
    HeaderValue::from_bytes(&joined).ok()
}
