//! The tripwire: judges the peer address of a connection the client used.
//!
//! The guarded resolver and the URL check already make every connection go
//! to a vetted address; the tripwire catches a connect path that skips them
//! (a regression after an upgrade, say). By default
//! ([`PeerCheck::OnResponse`]) it judges the peer of the connection each
//! response arrived on ([`judge_response_peer`]), which costs nothing per
//! request. [`PeerCheck::OnConnect`] judges each new connection before a
//! request byte is written on it, from reqwest's `connector_layer`, which
//! cannot see the destination URI but does see the finished connection and
//! its peer address; that layer is what makes reqwest box its connector.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connection, HttpInfo};
use tower::{Layer, Service};

use super::policy::{PeerCheck, Policy};
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
    type Service = CheckedConnector<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CheckedConnector {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The connector wrapped by [`PeerCheckLayer`].
#[derive(Clone, Debug)]
pub(crate) struct CheckedConnector<S> {
    inner: S,
    policy: Policy,
}

impl<S, Target> Service<Target> for CheckedConnector<S>
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
            let peer = extras.get::<HttpInfo>().map(HttpInfo::remote_addr);
            judge_peer(&policy, peer, Stage::Connect)?;
            Ok(conn)
        })
    }
}

/// The tripwire of [`PeerCheck::OnResponse`]: judges the peer a response came from
/// (reqwest's `Response::remote_addr`, hyper-util's connection info). Does nothing under
/// [`PeerCheck::OnConnect`], whose layer judged the connection already.
pub(crate) fn judge_response_peer(
    policy: &Policy,
    peer: Option<std::net::SocketAddr>,
) -> Result<(), Refusal> {
    match policy.peer_check() {
        PeerCheck::OnResponse => judge_peer(policy, peer, Stage::Response),
        PeerCheck::OnConnect => Ok(()),
    }
}

/// Judges a connection's peer, an unknown one included; a refusal that is enforced is logged as
/// an error, since the checks before the connect should have made it impossible.
fn judge_peer(
    policy: &Policy,
    peer: Option<std::net::SocketAddr>,
    stage: Stage,
) -> Result<(), Refusal> {
    let Some(peer) = peer else {
        tracing::error!(
            ?stage,
            "SSRF tripwire: the peer address of a connection is unknown"
        );
        return Err(Refusal::new(super::Rule::PeerUnknown, stage));
    };
    let verdict = policy
        .judge_socket(peer, Some(peer.port()))
        .map_err(|denied| {
            if !policy.is_report_only() {
                tracing::error!(
                    %peer,
                    rule = denied.rule.as_str(),
                    ?stage,
                    "SSRF tripwire: connected to a denied address; a connect path skipped the guard"
                );
            }
            Refusal::new(denied.rule, stage).with_addr(peer.ip(), denied.embedded)
        });
    policy.enforce(verdict)
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
            .allow_addr(format!("127.0.0.1:{port}"))
            .build()
            .expect("policy");
        let service = PeerCheckLayer::new(policy).layer(connector());
        assert!(service.oneshot(uri).await.is_ok());
    }

    /// A stopover client on the given reqwest client, with `ssrf` as its policy.
    fn client_on(http: reqwest::Client, ssrf: Option<Policy>) -> crate::client::Client {
        crate::client::Client {
            nesting: 0,
            inner: std::sync::Arc::new(crate::client::client::ClientRef {
                http,
                base_url: None,
                default_headers: http::HeaderMap::new(),
                timeout: None,
                head_timeout: None,
                attempt_timeout: None,
                max_redirects: 0,
                follow_redirects: true,
                max_nesting: 1,
                chain: crate::client::Chain::new(),
                ssrf,
                body_limit: u64::MAX,
                https_only: false,
                span_redaction: crate::client::Redaction::default(),
                #[cfg(feature = "opentelemetry")]
                trace_exclude: Vec::new(),
            }),
        }
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
        client_on(http, None)
    }

    /// The guarded transport as `ClientBuilder::build` makes it, with one connect path that
    /// skips the guarded resolver: reqwest's `resolve` override, which applies before any
    /// resolver, sends `bypass.test` to the loopback `listener`.
    fn client_with_a_bypass(
        policy: Policy,
        listener: std::net::SocketAddr,
    ) -> crate::client::Client {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve("bypass.test", listener);
        let http = crate::client::transport::guard_transport(http, &policy, None)
            .build()
            .expect("reqwest client");
        client_on(http, Some(policy))
    }

    /// Answers every request with `200 secret`, counting the requests it read.
    async fn counting_server(
        listener: tokio::net::TcpListener,
    ) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let served = std::sync::Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_request| {
                        count.fetch_add(1, Ordering::SeqCst);
                        async {
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                "secret".to_owned(),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        served
    }

    /// Sends one GET to `bypass.test` through [`client_with_a_bypass`] under `policy`, and
    /// says how many requests the loopback server behind the bypass read.
    async fn get_through_a_bypass(
        policy: Policy,
    ) -> (crate::client::Result<crate::client::Response>, usize) {
        let (listener, _) = listener().await;
        let addr = listener.local_addr().expect("local addr");
        let served = counting_server(listener).await;
        let outcome = client_with_a_bypass(policy, addr)
            .get(format!("http://bypass.test:{}/", addr.port()))
            .send()
            .await;
        (outcome, served.load(std::sync::atomic::Ordering::SeqCst))
    }

    #[tokio::test]
    async fn by_default_a_response_from_a_denied_peer_is_refused() {
        let (outcome, served) = get_through_a_bypass(Policy::default()).await;

        let err = outcome.expect_err("the tripwire refuses the response");
        let refusal = err.refusal().expect("a refusal");
        assert_eq!(refusal.rule(), Rule::Ipv4Loopback);
        assert_eq!(refusal.stage(), Stage::Response);
        // What `PeerCheck::OnResponse` documents: the request was written.
        assert_eq!(served, 1);
    }

    #[tokio::test]
    async fn on_connect_a_denied_peer_gets_no_request() {
        let policy = Policy::builder()
            .peer_check(PeerCheck::OnConnect)
            .build()
            .expect("policy");

        let (outcome, served) = get_through_a_bypass(policy).await;

        let err = outcome.expect_err("the tripwire refuses the connection");
        let refusal = err.refusal().expect("a refusal");
        assert_eq!(refusal.rule(), Rule::Ipv4Loopback);
        assert_eq!(refusal.stage(), Stage::Connect);
        assert_eq!(served, 0);
    }

    #[tokio::test]
    async fn report_only_hands_on_a_response_from_a_denied_peer() {
        let policy = Policy::builder().report_only(true).build().expect("policy");

        let (outcome, _) = get_through_a_bypass(policy).await;

        let response = outcome.expect("report-only lets it through");
        assert_eq!(response.text().await.expect("the body"), "secret");
    }

    #[test]
    fn an_unknown_peer_is_refused() {
        let refusal = judge_response_peer(&Policy::default(), None).expect_err("refused");
        assert_eq!(refusal.rule(), Rule::PeerUnknown);
        assert_eq!(refusal.stage(), Stage::Response);
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
