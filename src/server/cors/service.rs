//! [`Cors`], the service the CORS layer makes, and its [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::{self, HeaderMap};
use http::{Method, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::allow_origin::{OriginDecision, PendingOrigin};
use super::builder::CorsLayer;
use super::policy::{Action, Config};

impl<S> Layer<S> for CorsLayer {
    type Service = Cors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Cors {
            inner,
            policies: self.policies.clone(),
        }
    }
}

/// The service made by [`CorsLayer`].
#[derive(Debug, Clone)]
pub struct Cors<S> {
    inner: S,
    policies: Arc<[Arc<Config>]>,
}

fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Cors<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let preflight = is_preflight(request.method(), request.headers());
        let covering = match &*self.policies {
            // One policy for every path (the common case): nothing to match.
            [only] if only.urls.is_none() => Some(only),
            _ => {
                let requested = preflight
                    .then(|| request.headers().get(header::ACCESS_CONTROL_REQUEST_METHOD))
                    .flatten()
                    .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
                let method = requested.as_ref().unwrap_or(request.method());
                let path = request.uri().path();
                self.policies
                    .iter()
                    .find(|config| config.covers(method, path))
            }
        };
        let Some(config) = covering else {
            return ResponseFuture {
                kind: Kind::Passthrough {
                    future: self.inner.call(request),
                },
            };
        };
        let config = config.clone();
        if !request.headers().contains_key(header::ORIGIN) {
            return ResponseFuture {
                kind: Kind::Actual {
                    future: self.inner.call(request),
                    action: Action::NoOrigin,
                    pending: None,
                    config,
                },
            };
        }
        // The predicates see the request's parts; taking them apart and back moves, never
        // copies, the headers.
        let (parts, body) = request.into_parts();
        let decision = match parts.headers.get(header::ORIGIN) {
            Some(origin) => config.origin.decide(origin, &parts),
            None => OriginDecision::Denied,
        };
        if preflight {
            let kind = match decision {
                OriginDecision::Pending(pending) => Kind::PreflightPending {
                    waiting: Box::new(PreflightWaiting {
                        pending,
                        request: parts.headers,
                        config,
                    }),
                },
                OriginDecision::Allowed(origin) => Kind::Preflight {
                    response: Some(config.preflight(&parts.headers, Some(origin))),
                },
                OriginDecision::Denied => Kind::Preflight {
                    response: Some(config.preflight(&parts.headers, None)),
                },
            };
            return ResponseFuture { kind };
        }
        let (action, pending) = match decision {
            OriginDecision::Allowed(origin) => (Action::Allowed(origin), None),
            OriginDecision::Denied => (Action::Denied, None),
            OriginDecision::Pending(pending) => (
                Action::Denied,
                Some(Box::new(Waiting {
                    pending: Some(pending),
                    response: None,
                })),
            ),
        };
        ResponseFuture {
            kind: Kind::Actual {
                future: self.inner.call(Request::from_parts(parts, body)),
                action,
                pending,
                config,
            },
        }
    }
}

/// An actual request whose origin the async predicates are still deciding, with the inner
/// response once it came. Boxed, so that the common future (no async predicate) stays small:
/// every layer outside moves it, and `Router::layer` allocates it.
struct Waiting<B> {
    pending: Option<PendingOrigin>,
    response: Option<Response<B>>,
}

/// A preflight whose origin the async predicates are still deciding (boxed, as [`Waiting`]).
struct PreflightWaiting {
    pending: PendingOrigin,
    request: HeaderMap,
    config: Arc<Config>,
}

pin_project! {
    /// The response future of [`Cors`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Passthrough {
            #[pin]
            future: F,
        },
        Actual {
            #[pin]
            future: F,
            // Final unless `pending` is still to answer.
            action: Action,
            pending: Option<Box<Waiting<B>>>,
            config: Arc<Config>,
        },
        Preflight {
            response: Option<Response<B>>,
        },
        PreflightPending {
            waiting: Box<PreflightWaiting>,
        },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough { future } => future.poll(cx),
            KindProj::Actual {
                future,
                action,
                pending,
                config,
            } => {
                let mut response = match pending {
                    None => ready!(future.poll(cx))?,
                    Some(waiting) => {
                        // The handler runs while the origin is decided; neither waits for the
                        // other.
                        if let Some(decision) = &mut waiting.pending {
                            if let Poll::Ready(allowed) = decision.poll(cx) {
                                *action = allowed.map_or(Action::Denied, Action::Allowed);
                                waiting.pending = None;
                            }
                        }
                        if waiting.response.is_none() {
                            waiting.response = Some(ready!(future.poll(cx))?);
                        }
                        if waiting.pending.is_some() {
                            return Poll::Pending;
                        }
                        let Some(response) = waiting.response.take() else {
                            panic!("CORS response future polled after completion");
                        };
                        response
                    }
                };
                let action = std::mem::replace(action, Action::Denied);
                config.apply(action, response.headers_mut());
                Poll::Ready(Ok(response))
            }
            KindProj::Preflight { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("CORS preflight future polled after completion"),
            },
            KindProj::PreflightPending { waiting } => {
                let allow_origin = ready!(waiting.pending.poll(cx));
                Poll::Ready(Ok(waiting.config.preflight(&waiting.request, allow_origin)))
            }
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
