//! The cookie store against two loopback servers under two host names, `a.test` and
//! `b.test`: cookies go back only to the host that set them, redirect hops included, and a
//! `Cookie` header set on the request is still dropped when a redirect leaves its origin.

#![cfg(feature = "cookies")]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use stopover::client::{Client, ClientBuilder};
use stopover::reqwest::cookie::{CookieStore, Jar};
use stopover::reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Every name is 127.0.0.1; the URL's port picks the server.
struct Loopback;

impl Resolve for Loopback {
    fn resolve(&self, _: Name) -> Resolving {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Box::pin(async move { Ok(Box::new(std::iter::once(addr)) as Addrs) })
    }
}

/// `/set?name=value`: sets that cookie. `/redirect?to=url&set=name=value`: 302 to `url`,
/// setting the cookie if asked. `/echo`: records the `Cookie` header it got.
struct Host {
    base: String,
    cookies: Arc<Mutex<Vec<Option<String>>>>,
}

type Params = std::collections::HashMap<String, String>;

impl Host {
    async fn start(name: &str) -> Host {
        async fn set(Query(params): Query<Params>) -> impl IntoResponse {
            let (name, value) = params.into_iter().next().unwrap();
            [(header::SET_COOKIE, format!("{name}={value}; Path=/"))]
        }
        async fn redirect(Query(params): Query<Params>) -> axum::response::Response {
            let mut headers = HeaderMap::new();
            headers.insert(header::LOCATION, params["to"].parse().unwrap());
            if let Some(cookie) = params.get("set") {
                let value = format!("{cookie}; Path=/");
                headers.insert(header::SET_COOKIE, value.parse().unwrap());
            }
            (StatusCode::FOUND, headers).into_response()
        }
        async fn echo(
            State(cookies): State<Arc<Mutex<Vec<Option<String>>>>>,
            headers: HeaderMap,
        ) -> &'static str {
            let cookie = headers
                .get(header::COOKIE)
                .map(|value| value.to_str().unwrap().to_owned());
            cookies.lock().unwrap().push(cookie);
            "ok"
        }
        let cookies = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/set", axum::routing::get(set))
            .route("/redirect", axum::routing::get(redirect))
            .route("/echo", axum::routing::get(echo))
            .with_state(Arc::clone(&cookies));
        let port = support::serve(app).await.port();
        Host {
            base: format!("http://{name}:{port}"),
            cookies,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The `Cookie` header of each request `/echo` got.
    fn cookies(&self) -> Vec<Option<String>> {
        self.cookies.lock().unwrap().clone()
    }
}

fn builder() -> ClientBuilder {
    Client::builder().dns_resolver(Arc::new(Loopback))
}

async fn get(client: &Client, url: String) {
    let response = client.get(url).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

#[tokio::test]
async fn the_store_sends_a_cookie_back_to_the_host_that_set_it() {
    let a = Host::start("a.test").await;
    let client = builder().cookie_store(true).build().unwrap();

    get(&client, a.url("/set?session=a")).await;
    get(&client, a.url("/echo")).await;

    assert_eq!(a.cookies(), vec![Some("session=a".to_owned())]);
}

#[tokio::test]
async fn a_stored_cookie_is_not_sent_to_another_host() {
    let (a, b) = (Host::start("a.test").await, Host::start("b.test").await);
    let client = builder().cookie_store(true).build().unwrap();

    get(&client, a.url("/set?session=a")).await;
    get(&client, b.url("/echo")).await;

    assert_eq!(b.cookies(), vec![None]);
}

#[tokio::test]
async fn without_a_store_no_cookie_is_kept() {
    let a = Host::start("a.test").await;
    let client = builder().build().unwrap();

    get(&client, a.url("/set?session=a")).await;
    get(&client, a.url("/echo")).await;

    assert_eq!(a.cookies(), vec![None]);
}

#[tokio::test]
async fn a_cookie_set_by_a_redirect_hop_is_sent_on_the_next_hop_to_its_host() {
    let a = Host::start("a.test").await;
    let client = builder().cookie_store(true).build().unwrap();
    let to = a.url("/echo");

    get(&client, a.url(&format!("/redirect?set=hop%3D1&to={to}"))).await;

    assert_eq!(a.cookies(), vec![Some("hop=1".to_owned())]);
}

#[tokio::test]
async fn a_cross_origin_hop_drops_the_cookie_header_of_the_request_but_sends_the_stores() {
    let (a, b) = (Host::start("a.test").await, Host::start("b.test").await);
    let client = builder().cookie_store(true).build().unwrap();
    get(&client, b.url("/set?session=b")).await;
    let to = b.url("/echo");

    let response = client
        .get(a.url(&format!("/redirect?set=from%3Da&to={to}")))
        .header(header::COOKIE, "secret=for-a")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    // Neither the caller's header for a.test nor a.test's own cookie reaches b.test.
    assert_eq!(b.cookies(), vec![Some("session=b".to_owned())]);
}

#[tokio::test]
async fn a_cross_origin_hop_drops_the_cookie_header_without_a_store_too() {
    let (a, b) = (Host::start("a.test").await, Host::start("b.test").await);
    let client = builder().build().unwrap();
    let to = b.url("/echo");

    client
        .get(a.url(&format!("/redirect?to={to}")))
        .header(header::COOKIE, "secret=for-a")
        .send()
        .await
        .unwrap();

    assert_eq!(b.cookies(), vec![None]);
}

#[tokio::test]
async fn a_shared_jar_holds_the_cookies_the_client_received() {
    let a = Host::start("a.test").await;
    let jar = Arc::new(Jar::default());
    let client = builder().cookie_provider(Arc::clone(&jar)).build().unwrap();

    get(&client, a.url("/set?session=a")).await;

    let url = a.url("/").parse().unwrap();
    assert_eq!(jar.cookies(&url).unwrap(), "session=a");
}
