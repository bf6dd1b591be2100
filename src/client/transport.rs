//! The transport step: the end of every chain, where one request goes on the wire.
//!
//! With an SSRF policy it is enforced here for every hop, every retry and every request a
//! middleware sends: the URL before anything leaves, the resolved addresses in the guarded
//! resolver reqwest was built with, and the peer of the connection (the tripwire).

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method};
use url::Url;

use super::client::{BodyLimit, Client};
use super::error::{Error, Result};
use super::request::Request;
use super::response::Response;
use super::{body, ssrf, telemetry};

impl Client {
    /// The end of every chain: one attempt on the wire, inside its own span.
    ///
    /// With an SSRF policy, this is where it is enforced for every hop, every retry and every
    /// request a middleware sends: the URL is checked here, the resolver the reqwest client was
    /// built with checks the addresses, and the tripwire the peer.
    ///
    /// It owns the client, so that the chain's last step boxes this future alone, and it keeps
    /// little across its one await: futures are moved as they are wrapped, and a large one
    /// costs a large copy at every layer (BENCHMARKS.md, "where the cost goes").
    pub(crate) async fn transport(self, request: Request) -> Result<Response> {
        let Request {
            method,
            url,
            headers,
            body,
            attempt_timeout,
            version,
            hop,
            extensions,
            wire_count,
            ..
        } = request;
        let body_limit = extensions
            .get::<BodyLimit>()
            .map_or(self.inner.body_limit, |limit| limit.0);
        let span = telemetry::wire_span(
            &self.inner.span_redaction,
            &method,
            &url,
            &headers,
            wire_count.as_ref(),
        );
        #[cfg(feature = "opentelemetry")]
        let headers = {
            let mut headers = headers;
            telemetry::inject(&span, &url, &mut headers, &self.inner.trace_exclude);
            headers
        };
        #[cfg(feature = "metrics")]
        let (started, metric_method, metric_url) =
            (tokio::time::Instant::now(), method.clone(), url.clone());
        let outgoing = Outgoing {
            method,
            headers,
            body,
            attempt_timeout,
            version,
        };
        let outcome = self.wire(&span, outgoing, url, hop, body_limit).await;
        telemetry::record(&span, &outcome, true);
        #[cfg(feature = "metrics")]
        telemetry::record_duration(
            &metric_method,
            &metric_url,
            &outcome,
            started.elapsed().as_secs_f64(),
        );
        outcome
    }

    /// Checks the URL, sends the request with reqwest and judges the peer it answered from;
    /// `span` is current throughout.
    async fn wire(
        &self,
        span: &tracing::Span,
        outgoing: Outgoing,
        url: Url,
        hop: u32,
        body_limit: u64,
    ) -> Result<Response> {
        use tracing::Instrument;
        let refused =
            |refusal: ssrf::Refusal| Error::refused(refusal.with_url(url.clone()).with_hop(hop));
        let policy = self.inner.ssrf.as_ref();
        if let Some(policy) = policy {
            span.in_scope(|| policy.enforce(policy.check_url(&url)))
                .map_err(refused)?;
        }
        let body = outgoing
            .body
            .into_transport()
            .map_err(|err| err.with_url(url.clone()))?;
        let mut request = reqwest::Request::new(outgoing.method, url.clone());
        *request.headers_mut() = outgoing.headers;
        *request.body_mut() = body;
        if outgoing.attempt_timeout.is_some() {
            // `timeout_mut` creates the request's extension map: only when there is one to set.
            *request.timeout_mut() = outgoing.attempt_timeout;
        }
        *request.version_mut() = outgoing.version;
        let execute = self.inner.http.execute(request);
        let result = match (policy, url.port_or_known_default()) {
            // The guarded resolver judges port-restricted rules with the port it runs for.
            (Some(_), Some(port)) => {
                ssrf::with_destination_port(port, execute)
                    .instrument(span.clone())
                    .await
            }
            _ => execute.instrument(span.clone()).await,
        };
        match result {
            Ok(response) => {
                if let Some(policy) = policy {
                    // The tripwire: dropped unread, the response cannot reach the caller, and
                    // its connection is closed rather than pooled.
                    span.in_scope(|| ssrf::judge_response_peer(policy, response.remote_addr()))
                        .map_err(refused)?;
                }
                Ok(Response::from_reqwest(response, url).with_body_limit(body_limit))
            }
            Err(err) => match ssrf::find_refusal(&err) {
                Some(refusal) => Err(refused(refusal.clone())),
                None => Err(Error::from_reqwest(err).with_url(url)),
            },
        }
    }
}

/// What [`Client::wire`] hands to reqwest besides the URL.
struct Outgoing {
    method: Method,
    headers: HeaderMap,
    body: body::Body,
    attempt_timeout: Option<Duration>,
    version: http::Version,
}

/// Puts the SSRF guard into reqwest's transport: no proxy (one would resolve and connect on
/// our behalf, out of the guard's sight), the guarded resolver around `resolver` (or the system
/// resolver), and under [`ssrf::PeerCheck::OnConnect`] the tripwire on the connector.
pub(crate) fn guard_transport(
    http: reqwest::ClientBuilder,
    policy: &ssrf::Policy,
    resolver: Option<Arc<dyn reqwest::dns::Resolve>>,
) -> reqwest::ClientBuilder {
    let resolver = match resolver {
        Some(inner) => ssrf::GuardedResolver::wrap(policy.clone(), inner),
        None => ssrf::GuardedResolver::new(policy.clone()),
    };
    let http = http.no_proxy().dns_resolver(Arc::new(resolver));
    match policy.peer_check() {
        ssrf::PeerCheck::OnConnect => {
            http.connector_layer(ssrf::PeerCheckLayer::new(policy.clone()))
        }
        // `PeerCheck` is non-exhaustive only to its users.
        ssrf::PeerCheck::OnResponse => http,
    }
}
