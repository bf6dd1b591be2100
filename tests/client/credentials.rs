//! Credentials: URL user info, basic auth, and what a cross-origin hop drops.

use stopover::client::{Client, Next, Request, from_fn};

use crate::support::TestServer;

#[tokio::test]
async fn cross_origin_hop_drops_every_credential_header() {
    let first = TestServer::start().await;
    let second = TestServer::start().await;
    let client = Client::new();
    let url = first.url(&format!(
        "/redirect?status=307&to={}",
        second.url("/landing")
    ));
    client
        .get(url)
        .header("authorization", "Bearer one")
        .header("authorization", "Bearer two")
        .header("cookie", "session=1")
        .header("proxy-authorization", "Basic cHJveHk6c2VjcmV0")
        .header("x-kept", "yes")
        .send()
        .await
        .unwrap();
    let sent = &first.seen()[0].headers;
    assert_eq!(sent.get_all("authorization").iter().count(), 2);
    let landed = &second.seen()[0].headers;
    assert!(!landed.contains_key("authorization"));
    assert!(!landed.contains_key("cookie"));
    assert!(!landed.contains_key("proxy-authorization"));
    assert_eq!(landed["x-kept"], "yes");
}

#[tokio::test]
async fn same_origin_hop_keeps_credentials() {
    let server = TestServer::start().await;
    Client::new()
        .get(server.url("/hops/1"))
        .header("authorization", "Bearer kept")
        .send()
        .await
        .unwrap();
    assert_eq!(server.seen()[1].headers["authorization"], "Bearer kept");
}

/// The origin comparison looks at the host even when scheme and port are the same: one
/// server behind two names is two origins.
#[tokio::test]
async fn a_hop_to_another_host_on_the_same_port_drops_credentials() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .resolve("other.test", server.addr)
        .build()
        .unwrap();
    let elsewhere = format!("http://other.test:{}/landing", server.addr.port());
    client
        .get(server.url(&format!("/redirect?status=307&to={elsewhere}")))
        .header("authorization", "Bearer one")
        .send()
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(seen[0].headers["authorization"], "Bearer one");
    assert_eq!(
        seen[1].headers["host"],
        format!("other.test:{}", server.addr.port())
    );
    assert!(!seen[1].headers.contains_key("authorization"));
}

/// Everything a log line could show of an error: its `Debug`, and the `Display` of every error
/// in its `source()` chain.
fn everything_shown(err: &stopover::client::Error) -> String {
    let mut shown = format!("{err:?}");
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(cause) = source {
        shown.push_str(&format!(" / {cause}"));
        source = cause.source();
    }
    shown
}

#[tokio::test]
async fn transport_error_never_shows_url_credentials_in_its_source_chain() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::builder()
        .middleware(from_fn(|mut req: Request, next: Next| async move {
            // Credentials in the URL reach reqwest, which puts the URL into its own error.
            req.url_mut().set_username("user").unwrap();
            req.url_mut().set_password(Some("hunter2")).unwrap();
            next.run(req).await
        }))
        .build()
        .unwrap();
    let err = client
        .get(format!("http://{addr}/gone"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let shown = everything_shown(&err);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("/gone"), "the URL is still named: {shown}");
}

#[tokio::test]
async fn unsupported_scheme_error_hides_url_credentials() {
    let err = Client::new()
        .get("ftp://user:hunter2@files.example.test/x")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_builder());
    assert!(!everything_shown(&err).contains("hunter2"), "{err}");
    assert!(err.to_string().contains("files.example.test"), "{err}");
}

#[tokio::test]
async fn url_credentials_are_sent_as_basic_auth_and_taken_out_of_the_url() {
    let server = TestServer::start().await;
    let url = format!("http://us%65r:p%40ss@{}/private", server.addr);
    let response = Client::new().get(url).send().await.unwrap();
    // base64("user:p@ss")
    assert_eq!(
        server.seen()[0].headers["authorization"],
        "Basic dXNlcjpwQHNz"
    );
    assert_eq!(response.url().username(), "");
    assert_eq!(response.url().password(), None);
}

#[tokio::test]
async fn url_credentials_are_dropped_on_a_cross_origin_hop() {
    let first = TestServer::start().await;
    let second = TestServer::start().await;
    let url = format!(
        "http://user:secret@{}/redirect?status=302&to={}",
        first.addr,
        second.url("/landing")
    );
    Client::new().get(url).send().await.unwrap();
    assert!(first.seen()[0].headers.contains_key("authorization"));
    assert!(!second.seen()[0].headers.contains_key("authorization"));
}

#[tokio::test]
async fn basic_auth_sets_the_rfc_7617_header() {
    let server = TestServer::start().await;
    let client = Client::new();
    client
        .get(server.url("/"))
        .basic_auth("Aladdin", Some("open sesame"))
        .send()
        .await
        .unwrap();
    client
        .get(server.url("/"))
        .basic_auth("Aladdin", None::<&str>)
        .send()
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(
        seen[0].headers["authorization"],
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
    assert_eq!(seen[1].headers["authorization"], "Basic QWxhZGRpbjo=");
}

#[tokio::test]
async fn cross_origin_hop_drops_credentials_from_the_default_headers() {
    let first = TestServer::start().await;
    let second = TestServer::start().await;
    let mut defaults = http::HeaderMap::new();
    defaults.insert("authorization", "Bearer default".parse().unwrap());
    defaults.insert("cookie", "session=default".parse().unwrap());
    defaults.insert("x-kept", "yes".parse().unwrap());
    let client = Client::builder().default_headers(defaults).build().unwrap();
    let url = first.url(&format!(
        "/redirect?status=302&to={}",
        second.url("/landing")
    ));
    client.get(url).send().await.unwrap();
    assert_eq!(first.seen()[0].headers["authorization"], "Bearer default");
    let landed = &second.seen()[0].headers;
    assert!(!landed.contains_key("authorization"));
    assert!(!landed.contains_key("cookie"));
    assert_eq!(landed["x-kept"], "yes");
}

#[tokio::test]
async fn credentials_are_not_restored_when_a_later_hop_returns_to_the_origin() {
    let home = TestServer::start().await;
    let away = TestServer::start().await;
    let back_home = away.url(&format!(
        "/redirect?{}",
        serde_urlencoded::to_string([("status", "302"), ("to", &home.url("/back"))]).unwrap()
    ));
    let url = home.url(&format!(
        "/redirect?{}",
        serde_urlencoded::to_string([("status", "302"), ("to", &back_home)]).unwrap()
    ));
    Client::new()
        .get(url)
        .header("authorization", "Bearer home")
        .send()
        .await
        .unwrap();
    let seen = home.seen();
    assert_eq!(home.paths(), ["/redirect", "/back"]);
    assert!(seen[0].headers.contains_key("authorization"));
    assert!(!seen[1].headers.contains_key("authorization"));
}

#[tokio::test]
async fn cross_origin_hop_drops_a_host_header_the_caller_set() {
    let first = TestServer::start().await;
    let second = TestServer::start().await;
    let url = first.url(&format!(
        "/redirect?status=302&to={}",
        second.url("/landing")
    ));
    Client::new()
        .get(url)
        .header("host", "vhost.test")
        .send()
        .await
        .unwrap();
    assert_eq!(first.seen()[0].headers["host"], "vhost.test");
    let landed = second.seen()[0].headers["host"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(landed, second.addr.to_string());
}

#[tokio::test]
async fn url_credentials_are_refused_by_an_ssrf_policy_that_forbids_user_info() {
    use stopover::client::ssrf::Policy;
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let strict = Policy::builder().allow_addr(&addr).build().unwrap();
    let client = Client::builder().ssrf_policy(strict).build().unwrap();
    let err = client
        .get(format!("http://user:hunter2@{addr}/private"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_refused(), "{err:?}");
    assert_eq!(err.refusal().unwrap().rule().as_str(), "userinfo");
    assert!(!everything_shown(&err).contains("hunter2"));
    assert!(server.seen().is_empty());

    let lenient = Policy::builder()
        .allow_addr(&addr)
        .allow_userinfo(true)
        .build()
        .unwrap();
    let client = Client::builder().ssrf_policy(lenient).build().unwrap();
    client
        .get(format!("http://user:hunter2@{addr}/private"))
        .send()
        .await
        .unwrap();
    // base64("user:hunter2")
    assert_eq!(
        server.seen()[0].headers["authorization"],
        "Basic dXNlcjpodW50ZXIy"
    );
}
