//! The redirect loop: one chain run per hop, method and body rules, limits, fragments.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, StatusCode};
use stopover::client::{Body, Client, ErrorKind, Next, Request, Response, from_fn};

use crate::stream_body;
use crate::support::TestServer;

#[tokio::test]
async fn three_hop_redirect_runs_the_chain_once_per_hop() {
    let server = TestServer::start().await;
    let hops: Arc<Mutex<Vec<(u32, String, String)>>> = Arc::default();
    let seen = Arc::clone(&hops);
    let client = Client::builder()
        .middleware(from_fn(move |req: Request, next: Next| {
            seen.lock().unwrap().push((
                req.hop(),
                req.url().path().to_owned(),
                req.original_url().path().to_owned(),
            ));
            next.run(req)
        }))
        .build()
        .unwrap();
    let response = client.get(server.url("/hops/2")).send().await.unwrap();
    assert_eq!(
        response.text_status().await,
        (StatusCode::OK, "done".into())
    );
    let hops = hops.lock().unwrap().clone();
    let expected = [
        (0, "/hops/2", "/hops/2"),
        (1, "/hops/1", "/hops/2"),
        (2, "/hops/0", "/hops/2"),
    ]
    .map(|(hop, path, original)| (hop, path.to_owned(), original.to_owned()));
    assert_eq!(hops, expected);
}

#[tokio::test]
async fn final_response_reports_url_and_history() {
    let server = TestServer::start().await;
    let client = Client::new();
    let response = client.get(server.url("/hops/2")).send().await.unwrap();
    assert_eq!(response.url().path(), "/hops/0");
    let history: Vec<(StatusCode, String)> = response
        .history()
        .iter()
        .map(|redirect| (redirect.status(), redirect.url().path().to_owned()))
        .collect();
    assert_eq!(
        history,
        [
            (StatusCode::FOUND, "/hops/2".to_owned()),
            (StatusCode::FOUND, "/hops/1".to_owned())
        ]
    );
}

#[tokio::test]
async fn redirect_method_and_body_rules() {
    let server = TestServer::start().await;
    let client = Client::new();
    let cases = [
        (301, Method::POST, Method::GET, ""),
        (301, Method::PUT, Method::PUT, "data"),
        (302, Method::POST, Method::GET, ""),
        (302, Method::DELETE, Method::DELETE, "data"),
        (303, Method::POST, Method::GET, ""),
        (303, Method::PUT, Method::GET, ""),
        (303, Method::HEAD, Method::HEAD, ""),
        (307, Method::POST, Method::POST, "data"),
        (307, Method::PATCH, Method::PATCH, "data"),
        (308, Method::POST, Method::POST, "data"),
    ];
    for (status, method, expected_method, expected_body) in cases {
        let target = server.url(&format!("/target-{status}-{method}"));
        let url = server.url(&format!(
            "/redirect?{}",
            serde_urlencoded::to_string([("status", status.to_string()), ("to", target)]).unwrap()
        ));
        let mut builder = client.request(method.clone(), url);
        if method != Method::HEAD {
            builder = builder.header("content-type", "text/plain").body("data");
        }
        let response = builder.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{status} {method}");
        let hop = server.seen().pop().unwrap();
        assert_eq!(hop.uri.path(), format!("/target-{status}-{method}"));
        assert_eq!(hop.method, expected_method, "{status} {method}");
        assert_eq!(hop.body, expected_body, "{status} {method}");
        let kept_content_type = hop.headers.contains_key("content-type");
        assert_eq!(
            kept_content_type,
            !expected_body.is_empty(),
            "{status} {method}: content-type follows the body"
        );
    }
}

#[tokio::test]
async fn redirect_307_with_one_shot_stream_is_a_typed_error() {
    let server = TestServer::start().await;
    let client = Client::new();
    let url = server.url(&format!(
        "/redirect?status=307&to={}",
        server.url("/target")
    ));
    let err = client
        .post(url)
        .body(Body::wrap_stream(stream_body(&["a", "b"])))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BodyNotReplayable);
    assert_eq!(err.url().unwrap().path(), "/target");
    assert_eq!(server.count("/target"), 0, "never sent with an empty body");
}

#[tokio::test]
async fn redirect_307_replays_stream_within_its_cap() {
    let server = TestServer::start().await;
    let client = Client::new();
    let url = server.url(&format!(
        "/redirect?status=307&to={}",
        server.url("/target")
    ));
    let response = client
        .post(url)
        .body(Body::wrap_stream_replayable(stream_body(&["a", "b"]), 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bodies: Vec<Bytes> = server.seen().into_iter().map(|seen| seen.body).collect();
    assert_eq!(bodies, ["ab", "ab"]);
}

#[tokio::test]
async fn relative_location_is_resolved_against_the_hop_url() {
    let server = TestServer::start().await;
    let response = Client::new()
        .get(server.url("/redirect?status=302&to=next/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.url().path(), "/next/page");
    assert_eq!(server.paths(), ["/redirect", "/next/page"]);
}

#[tokio::test]
async fn redirect_without_location_is_returned_as_it_is() {
    let server = TestServer::start().await;
    let response = Client::new()
        .get(server.url("/redirect?status=302"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert!(response.history().is_empty());
}

#[tokio::test]
async fn redirect_to_an_unusable_location_is_returned_as_it_is() {
    let server = TestServer::start().await;
    let url = server.url(&format!(
        "/redirect?{}",
        serde_urlencoded::to_string([("status", "301"), ("to", "ftp://files.example.test/x")])
            .unwrap()
    ));
    let response = Client::new().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn follow_redirects_false_returns_the_3xx() {
    let server = TestServer::start().await;
    let response = Client::new()
        .get(server.url("/hops/1"))
        .follow_redirects(false)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn header_a_middleware_sets_on_one_hop_is_not_sent_on_the_next() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .middleware(from_fn(|mut req: Request, next: Next| async move {
            if req.hop() == 0 {
                req.headers_mut()
                    .insert("x-first-hop-only", http::HeaderValue::from_static("1"));
            }
            next.run(req).await
        }))
        .build()
        .unwrap();
    client.get(server.url("/hops/1")).send().await.unwrap();
    let seen = server.seen();
    assert!(seen[0].headers.contains_key("x-first-hop-only"));
    assert!(!seen[1].headers.contains_key("x-first-hop-only"));
}

#[tokio::test]
async fn too_many_redirects_is_an_error_with_the_history() {
    let server = TestServer::start().await;
    let client = Client::builder().max_redirects(3).build().unwrap();
    let err = client.get(server.url("/loop")).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooManyRedirects);
    assert!(err.is_redirect());
    assert_eq!(err.redirect_history().unwrap().len(), 3);
    assert_eq!(server.seen().len(), 4);
}

#[tokio::test]
async fn default_redirect_limit_is_ten() {
    let server = TestServer::start().await;
    let ok = Client::new()
        .get(server.url("/hops/10"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.history().len(), 10);
    let err = Client::new()
        .get(server.url("/hops/11"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_redirect());
}

trait TextStatus {
    async fn text_status(self) -> (StatusCode, String);
}

impl TextStatus for Response {
    async fn text_status(self) -> (StatusCode, String) {
        let status = self.status();
        (status, self.text().await.unwrap())
    }
}

#[tokio::test]
async fn location_without_fragment_inherits_the_fragment_of_the_redirected_url() {
    let server = TestServer::start().await;
    let response = Client::new()
        .get(server.url("/hops/2#section"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.url().path(), "/hops/0");
    assert_eq!(response.url().fragment(), Some("section"));
    let locations: Vec<Option<&str>> = response
        .history()
        .iter()
        .map(|redirect| redirect.location().fragment())
        .collect();
    assert_eq!(locations, [Some("section"), Some("section")]);
}

#[tokio::test]
async fn location_with_its_own_fragment_keeps_it() {
    let server = TestServer::start().await;
    let response = Client::new()
        .get(server.url("/redirect?status=302&to=/next%23own#mine"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.url().path(), "/next");
    assert_eq!(response.url().fragment(), Some("own"));
}

#[tokio::test]
async fn location_with_raw_utf8_is_followed_percent_encoded() {
    let server = TestServer::start().await;
    // The server sends `Location: /café` with the two UTF-8 bytes of `é` as they are.
    let response = Client::new()
        .get(server.url("/redirect?status=302&to=/caf%C3%A9"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.paths(), ["/redirect", "/caf%C3%A9"]);
}

#[tokio::test]
async fn max_redirects_zero_makes_the_first_redirect_an_error() {
    let server = TestServer::start().await;
    let client = Client::builder().max_redirects(0).build().unwrap();
    let err = client.get(server.url("/hops/1")).send().await.unwrap_err();
    assert!(err.is_redirect());
    assert!(err.redirect_history().unwrap().is_empty());
    assert_eq!(server.paths(), ["/hops/1"]);
}

#[tokio::test]
async fn redirect_302_of_a_put_with_a_one_shot_stream_is_a_typed_error() {
    let server = TestServer::start().await;
    let url = server.url(&format!(
        "/redirect?status=302&to={}",
        server.url("/target")
    ));
    let err = Client::new()
        .put(url)
        .body(Body::wrap_stream(stream_body(&["a", "b"])))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_body_not_replayable(), "{err:?}");
    assert_eq!(server.count("/target"), 0, "never sent with an empty body");
}

#[tokio::test]
async fn redirect_bodies_are_drained_so_every_hop_reuses_the_connection() {
    let server = TestServer::start().await;
    let response = Client::new()
        .get(server.url("/hops-with-body/3"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "done");
    assert_eq!(server.seen().len(), 4);
    assert_eq!(server.connections(), 1);
}
