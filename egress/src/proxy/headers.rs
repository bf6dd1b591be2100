//! What changes between the client's request and the upstream's: hop-by-hop and smokescreen
//! headers, the request target, and the copy kept to resend a bodyless request.

use super::*;

/// Headers that belong to one hop (RFC 9110, section 7.6.1) and the proxy's own.
pub(super) const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers (and those named in `Connection`) and `extra`.
pub(super) fn strip(headers: &mut HeaderMap, extra: &[&str]) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP.iter().chain(extra) {
        headers.remove(*name);
    }
}

/// The request as the upstream sees it: origin-form target, `Host` from the URL (as Go's
/// server sets it for absolute-form requests), hop-by-hop and smokescreen headers removed.
pub(super) fn outgoing_request(
    request: Request<Incoming>,
    authority: &str,
) -> Result<Request<Incoming>, String> {
    let (mut parts, body) = request.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    parts.uri = target
        .parse::<Uri>()
        .map_err(|e| format!("invalid request target: {e}"))?;
    strip(&mut parts.headers, &[ROLE_HEADER, TRACE_HEADER]);
    let host = HeaderValue::from_str(authority).map_err(|e| format!("invalid host: {e}"))?;
    parts.headers.insert(header::HOST, host);
    parts.version = http::Version::HTTP_11;
    Ok(Request::from_parts(parts, body))
}

/// A copy of a request without a body whose method may be repeated (RFC 9110, section 9.2.2),
/// to send again when a reused connection turns out closed.
pub(super) fn replayable(request: &Request<ClientBody>) -> Option<Request<ClientBody>> {
    use http_body::Body;
    let idempotent = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    if !idempotent || !request.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(Either::Right(Empty::new()));
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_named_headers_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("close, x-secret"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        headers.insert("x-smokescreen-error", HeaderValue::from_static("spoof"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        strip(&mut headers, &[ERROR_HEADER]);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("accept"));
    }
}
