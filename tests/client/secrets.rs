//! Credentials never reach `Debug` output or log lines, however they were set, and a redirect
//! target's `user:password` is not carried into the next hop.

use std::sync::{Arc, Mutex};

use http::{HeaderValue, StatusCode};
use stopover::client::logging::Logging;
use stopover::client::{Client, Next, Request, from_fn};

use crate::fault_server::{Answer, FaultServer, capture_logs, status};

#[tokio::test]
async fn request_debug_hides_credentials_however_they_were_set() {
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let printed = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&printed);
    let client = Client::builder()
        // A middleware sets a credential the plain way, without marking it sensitive.
        .middleware(from_fn(|mut req: Request, next: Next| async move {
            req.headers_mut().insert(
                "proxy-authorization",
                HeaderValue::from_static("Basic middleware-secret"),
            );
            next.run(req).await
        }))
        .middleware(from_fn(move |req: Request, next: Next| {
            *sink.lock().unwrap() = format!("{req:?}");
            next.run(req)
        }))
        .build()
        .unwrap();
    client
        .get(
            server
                .url("/")
                .replace("http://", "http://user:url-secret@"),
        )
        .header("authorization", "Bearer header-secret")
        .header("cookie", "sid=cookie-secret")
        .header("x-visible", "marker-value")
        .send()
        .await
        .unwrap();
    let printed = printed.lock().unwrap().clone();
    for secret in [
        "header-secret",
        "cookie-secret",
        "middleware-secret",
        "url-secret",
    ] {
        assert!(!printed.contains(secret), "{secret} leaked: {printed}");
    }
    assert!(printed.contains("marker-value"), "{printed}");
}

#[tokio::test]
async fn header_credentials_are_marked_sensitive_on_the_request() {
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let sensitive = Arc::new(Mutex::new(None));
    let sink = Arc::clone(&sensitive);
    let client = Client::builder()
        .middleware(from_fn(move |req: Request, next: Next| {
            *sink.lock().unwrap() = req.headers().get("authorization").map(|v| v.is_sensitive());
            next.run(req)
        }))
        .build()
        .unwrap();
    client
        .get(server.url("/"))
        .header("authorization", "Bearer header-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(*sensitive.lock().unwrap(), Some(true));
}

#[tokio::test]
async fn response_debug_hides_set_cookie() {
    let server = FaultServer::start(|_, _| {
        Answer::new(200)
            .header("set-cookie", "sid=response-secret; HttpOnly")
            .header("x-visible", "marker-value")
            .reply()
    })
    .await;
    let response = Client::new().get(server.url("/")).send().await.unwrap();
    let printed = format!("{response:?}");
    assert!(!printed.contains("response-secret"), "{printed}");
    assert!(printed.contains("marker-value"), "{printed}");
}

/// Answers `/start` with a redirect to `/next` on itself, with `user:hunter2@` in the URL.
async fn redirect_with_userinfo() -> FaultServer {
    let target = Arc::new(Mutex::new(String::new()));
    let location = Arc::clone(&target);
    let server = FaultServer::start(move |seen, _| match seen.path() {
        "/start" => {
            let to = location.lock().unwrap().clone();
            Answer::new(302).header("location", &to).reply()
        }
        _ => status(200, "landed"),
    })
    .await;
    *target.lock().unwrap() = server
        .url("/next")
        .replace("http://", "http://user:hunter2@");
    server
}

#[tokio::test]
async fn logged_response_headers_hide_a_location_userinfo() {
    let (logs, _guard) = capture_logs();
    let server = redirect_with_userinfo().await;
    Client::builder()
        .middleware(Logging::new().headers(true))
        .build()
        .unwrap()
        .get(server.url("/start"))
        .send()
        .await
        .unwrap();
    let text = logs.text();
    assert!(text.contains("/next"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn a_redirect_target_loses_its_userinfo() {
    let server = redirect_with_userinfo().await;
    let response = Client::new()
        .get(server.url("/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.url().password(), None);
    assert_eq!(response.url().username(), "");
    assert_eq!(response.history()[0].location().password(), None);
    let next = server
        .seen()
        .into_iter()
        .find(|seen| seen.path() == "/next");
    assert_eq!(next.expect("followed").header("authorization"), None);
}
