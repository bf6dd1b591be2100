//! The tripwire: judges the peer of every new connection before any request
//! byte is written on it.
//!
//! The guarded resolver and the URL check already make every connection go
//! to a vetted address; this layer catches a connect path that skips them
//! (a regression after an upgrade, say). It sits in reqwest's
//! `connector_layer`, which cannot see the destination URI but does see the
//! finished connection and its peer address.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connection, HttpInfo};
use tower::{Layer, Service};

use super::policy::Policy;
use super::refusal::{Refusal, Stage};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps a connector so each new connection's peer address is judged.
#[derive(Clone, Debug)]
pub(crate) struct PeerCheckLayer {
    policy: Policy,
}

impl PeerCheckLayer {
    pub(crate) fn new(policy: Policy) -> Self {
        PeerCheckLayer { policy }
    }
}

impl<S> Layer<S> for PeerCheckLayer {
    type Service = PeerCheck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PeerCheck {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The connector wrapped by [`PeerCheckLayer`].
#[derive(Clone, Debug)]
pub(crate) struct PeerCheck<S> {
    inner: S,
    policy: Policy,
}

impl<S, Target> Service<Target> for PeerCheck<S>
where
    S: Service<Target, Error = BoxError>,
    S::Response: Connection + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    // A connection is set up rarely enough that one allocation is noise.
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, target: Target) -> Self::Future {
        let connecting = self.inner.call(target);
        let policy = self.policy.clone();
        Box::pin(async move {
            let conn = connecting.await?;
            let mut extras = http::Extensions::new();
            conn.connected().get_extras(&mut extras);
            let Some(peer) = extras.get::<HttpInfo>().map(HttpInfo::remote_addr) else {
                return Err("SSRF guard: the peer address of a new connection is unknown".into());
            };
            let verdict = policy.judge_socket(peer, Some(peer.port())).map_err(|denied| {
                if !policy.is_report_only() {
                    tracing::error!(
                        %peer,
                        rule = denied.rule.as_str(),
                        "SSRF tripwire: connected to a denied address; a connect path skipped the guard"
                    );
                }
                Refusal::new(denied.rule, Stage::Connect).with_addr(peer.ip(), denied.embedded)
            });
            policy.enforce(verdict)?;
            Ok(conn)
        })
    }
}

#[cfg(test)]
mod tests {
    use hyper_util::client::legacy::connect::HttpConnector;
    use tower::ServiceExt;

    use super::*;
    use crate::client::ssrf::{Rule, find_refusal};

    /// hyper-util's connector with a boxed error, as reqwest hands it to layers.
    fn connector() -> impl Service<
        http::Uri,
        Response = impl Connection + Send + 'static,
        Error = BoxError,
        Future = impl Send + 'static,
    > + Clone {
        HttpConnector::new().map_err(|err| Box::new(err) as BoxError)
    }

    async fn listener() -> (tokio::net::TcpListener, http::Uri) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        let uri = format!("http://127.0.0.1:{port}/").parse().expect("uri");
        (listener, uri)
    }

    #[tokio::test]
    async fn connection_to_a_denied_peer_is_dropped() {
        let (_listener, uri) = listener().await;
        let service = PeerCheckLayer::new(Policy::default()).layer(connector());
        let err = match service.oneshot(uri).await {
            Ok(_) => panic!("the tripwire must refuse a loopback peer"),
            Err(err) => err,
        };
        let refusal = find_refusal(&*err).expect("a refusal");
        assert_eq!(refusal.rule(), Rule::Ipv4Loopback);
        assert_eq!(refusal.stage(), Stage::Connect);
        assert!(!refusal.to_string().contains("127.0.0.1"), "{refusal}");
    }

    #[tokio::test]
    async fn connection_to_an_allowed_peer_is_kept() {
        let (listener, uri) = listener().await;
        let port = listener.local_addr().expect("local addr").port();
        let policy = Policy::builder()
            .allow_addr(&format!("127.0.0.1:{port}"))
            .build()
            .expect("policy");
        let service = PeerCheckLayer::new(policy).layer(connector());
        assert!(service.oneshot(uri).await.is_ok());
    }

    /// A client whose transport lost the URL check and the guarded resolver (the connect-path
    /// regression the tripwire is for): only the peer check stands.
    fn client_with_only_the_tripwire(policy: Policy) -> crate::client::Client {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connector_layer(PeerCheckLayer::new(policy))
            .build()
            .expect("reqwest client");
        crate::client::Client {
            nesting: 0,
            inner: std::sync::Arc::new(crate::client::ClientRef {
                http,
                base_url: None,
                default_headers: http::HeaderMap::new(),
                timeout: None,
                attempt_timeout: None,
                max_redirects: 0,
                max_nesting: 1,
                chain: crate::client::Chain::new(),
                ssrf: None,
                body_limit: u64::MAX,
                span_redaction: crate::client::logging::Redaction::default(),
                #[cfg(feature = "opentelemetry")]
                trace_exclude: Vec::new(),
            }),
        }
    }

    #[tokio::test]
    async fn a_tripwire_refusal_surfaces_as_refused_from_the_client() {
        let (listener, uri) = listener().await;
        let received = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut bytes = Vec::new();
            // Ends when the client drops the connection the tripwire refused.
            let _ = stream.read_to_end(&mut bytes).await;
            bytes.len()
        });
        let client = client_with_only_the_tripwire(Policy::default());

        let err = client.get(uri.to_string()).send().await.unwrap_err();

        assert_eq!(err.kind(), crate::client::ErrorKind::Refused, "{err:?}");
        let refusal = err.refusal().expect("the refusal is kept");
        assert_eq!(refusal.rule(), Rule::Ipv4Loopback);
        assert_eq!(refusal.stage(), Stage::Connect);
        assert_eq!(
            err.url().map(url::Url::as_str),
            Some(uri.to_string().as_str())
        );
        assert!(!err.to_string().contains("connection failed"), "{err}");
        // The connection was made (a tripwire cannot unmake it), but no request byte was sent.
        assert_eq!(received.await.expect("accept task"), 0);
    }

    #[tokio::test]
    async fn report_only_keeps_a_denied_connection() {
        let (_listener, uri) = listener().await;
        let policy = Policy::builder().report_only(true).build().expect("policy");
        let service = PeerCheckLayer::new(policy).layer(connector());
        assert!(service.oneshot(uri).await.is_ok());
    }
}
