//! The transport step: the end of every chain, where one request goes on the wire.
//!
//! With an SSRF policy it is enforced here for every hop, every retry and every request a
//! middleware sends: the URL before anything leaves, the resolved addresses in the guarded
//! resolver reqwest was built with, and the peer of the connection (the tripwire).
//!
//! The step is a future written by hand ([`Wire`]) rather than an `async fn`: the chain's last
//! link holds it inline instead of boxing it, and it keeps only what the answer needs (the URL,
//! the span, reqwest's own future), so a request in flight costs one allocation and a few
//! hundred bytes less, and less to move, than the `async fn` it replaces (BENCHMARKS.md).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower::Service;
use url::Url;

use super::client::{BodyLimit, Client};
use super::error::{Error, Result};
use super::request::Request;
use super::response::Response;
use super::{ssrf, telemetry};

impl Client {
    /// The end of every chain: one attempt on the wire, inside its own span.
    ///
    /// What can be decided before sending (the URL against the SSRF policy, the body) is decided
    /// here, at once; the returned future then only drives reqwest's and judges its answer.
    pub(crate) fn transport(self, request: Request) -> Wire {
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
        let metric = (tokio::time::Instant::now(), method.clone(), url.clone());
        let mut fragment = None;
        let send = {
            let _entered = span.enter();
            let policy = self.inner.ssrf.as_ref();
            let checked = match policy {
                _ if self.inner.https_only && url.scheme() != "https" => Err(Error::builder(
                    "the URL is not https and the client is https_only",
                )
                .with_url(url.clone())),
                Some(policy) => policy
                    .enforce(policy.check_url(&url))
                    .map_err(|refusal| refused(refusal, &url, hop)),
                None => Ok(()),
            };
            checked
                .and_then(|()| {
                    body.into_transport()
                        .map_err(|err| err.with_url(url.clone()))
                })
                .map(|body| {
                    let port = url.port_or_known_default();
                    // reqwest sends no fragment and forgets it; the response's URL keeps it (a
                    // redirect's `Location` inherits it, RFC 9110, section 10.2.2).
                    fragment = url.fragment().map(Box::from);
                    let mut request = reqwest::Request::new(method, url);
                    *request.headers_mut() = headers;
                    *request.body_mut() = body;
                    if attempt_timeout.is_some() {
                        // `timeout_mut` creates the request's extension map: only when there is
                        // one to set.
                        *request.timeout_mut() = attempt_timeout;
                    }
                    *request.version_mut() = version;
                    let execute = (&mut &self.inner.http).call(request);
                    match (policy, port) {
                        // The guarded resolver judges port-restricted rules with the port it
                        // runs for.
                        (Some(_), Some(port)) => Sending::Guarded {
                            inner: ssrf::with_destination_port(port, execute),
                        },
                        _ => Sending::Plain { inner: execute },
                    }
                })
        };
        let state = match send {
            Ok(sending) => sending,
            Err(err) => Sending::Failed { error: Some(err) },
        };
        Wire {
            state,
            span,
            answer: Some(Answer {
                policy: self.inner.ssrf.clone(),
                fragment,
                hop,
                body_limit,
                #[cfg(feature = "metrics")]
                metric,
            }),
        }
    }
}

/// reqwest's own future for one request: named through its `tower::Service` implementation,
/// where `Client::execute` returns an unnameable `impl Future`.
type ReqwestPending = <reqwest::Client as Service<reqwest::Request>>::Future;

/// An SSRF refusal as the client's error, with the URL and the hop it happened at.
fn refused(refusal: ssrf::Refusal, url: &Url, hop: u32) -> Error {
    Error::refused(refusal.with_url(url.clone()).with_hop(hop))
}

pin_project! {
    /// The future of one request on the wire: reqwest's, inside the request's wire span, and
    /// then the answer judged (the SSRF tripwire) and wrapped as a [`Response`].
    #[must_use = "futures do nothing unless polled"]
    pub(crate) struct Wire {
        #[pin]
        state: Sending,
        span: tracing::Span,
        // Taken when the answer comes.
        answer: Option<Answer>,
    }
}

pin_project! {
    #[project = SendingProj]
    enum Sending {
        // Refused or unbuildable before anything was sent.
        Failed { error: Option<Error> },
        Plain { #[pin] inner: ReqwestPending },
        Guarded { #[pin] inner: TaskLocalFuture<u16, ReqwestPending> },
    }
}

/// What the answer needs besides reqwest's response, which carries the URL: kept small, as
/// every middleware's future holds the transport's.
struct Answer {
    policy: Option<ssrf::Policy>,
    fragment: Option<Box<str>>,
    hop: u32,
    body_limit: u64,
    #[cfg(feature = "metrics")]
    metric: (tokio::time::Instant, http::Method, Url),
}

impl Future for Wire {
    type Output = Result<Response>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let result = match this.state.project() {
            SendingProj::Failed { error } => Err(error.take()),
            SendingProj::Plain { inner } => Ok(ready!(inner.poll(cx))),
            SendingProj::Guarded { inner } => Ok(ready!(inner.poll(cx))),
        };
        let Some(answer) = this.answer.take() else {
            panic!("the transport future was polled after it completed");
        };
        let outcome = match result {
            Err(Some(err)) => Err(err),
            Err(None) => panic!("the transport future was polled after it completed"),
            Ok(result) => answer.judge(result),
        };
        telemetry::record(this.span, &outcome, true);
        #[cfg(feature = "metrics")]
        telemetry::record_duration(
            &answer.metric.1,
            &answer.metric.2,
            &outcome,
            answer.metric.0.elapsed().as_secs_f64(),
        );
        Poll::Ready(outcome)
    }
}

impl Answer {
    /// Judges the peer reqwest's answer came from and wraps it; the span is current.
    fn judge(&self, result: reqwest::Result<reqwest::Response>) -> Result<Response> {
        match result {
            Ok(response) => {
                if let Some(policy) = &self.policy {
                    // The tripwire: dropped unread, the response cannot reach the caller, and
                    // its connection is closed rather than pooled.
                    ssrf::judge_response_peer(policy, response.remote_addr())
                        .map_err(|refusal| refused(refusal, response.url(), self.hop))?;
                }
                let mut url = response.url().clone();
                if self.fragment.is_some() {
                    url.set_fragment(self.fragment.as_deref());
                }
                Ok(Response::from_reqwest(response, url).with_body_limit(self.body_limit))
            }
            Err(err) => {
                // reqwest's errors carry the URL of the request they belong to.
                let url = err.url().cloned().map(|mut url| {
                    if self.fragment.is_some() {
                        url.set_fragment(self.fragment.as_deref());
                    }
                    url
                });
                let err = match ssrf::find_refusal(&err) {
                    Some(refusal) => {
                        let refusal = match &url {
                            Some(url) => refusal.clone().with_url(url.clone()),
                            None => refusal.clone(),
                        };
                        Error::refused(refusal.with_hop(self.hop))
                    }
                    None => Error::from_reqwest(err),
                };
                Err(match url {
                    Some(url) => err.with_url(url),
                    None => err,
                })
            }
        }
    }
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
