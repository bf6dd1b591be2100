//! `RequestBuilder::multipart` against a loopback server: the form arrives whole under its
//! boundary, a small form is sent again on a 307, and a form past the replay cap fails the
//! 307 instead of going out empty.

#![cfg(feature = "multipart")]

mod support;

use http::StatusCode;
use stopover::client::Client;
use stopover::client::multipart::{Form, MULTIPART_REPLAY_CAP, Part};
use support::TestServer;

#[tokio::test]
async fn a_multipart_form_is_sent_under_its_boundary() {
    let server = TestServer::start().await;
    let form = Form::new()
        .text("title", "report")
        .part("file", Part::bytes(b"a,b".to_vec()).file_name("r.csv"));
    let boundary = form.boundary().to_owned();
    let response = Client::new()
        .post(server.url("/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = &server.seen()[0];
    let content_type = seen.headers["content-type"].to_str().unwrap();
    assert_eq!(
        content_type,
        format!("multipart/form-data; boundary={boundary}")
    );
    let body = String::from_utf8_lossy(&seen.body);
    assert!(body.contains(&format!("--{boundary}")), "{body}");
    assert!(body.contains("name=\"title\"\r\n\r\nreport"), "{body}");
    assert!(body.contains("filename=\"r.csv\""), "{body}");
    assert!(body.ends_with(&format!("--{boundary}--\r\n")), "{body}");
}

#[tokio::test]
async fn a_small_multipart_form_is_sent_again_on_a_307() {
    let server = TestServer::start().await;
    let to = server.url("/landing");
    Client::new()
        .post(server.url(&format!("/redirect?status=307&to={to}")))
        .multipart(Form::new().text("field", "value"))
        .send()
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(!seen[0].body.is_empty());
    assert_eq!(seen[0].body, seen[1].body);
}

#[tokio::test]
async fn a_multipart_form_past_the_replay_cap_fails_a_307_instead_of_going_out_empty() {
    let server = TestServer::start().await;
    let to = server.url("/landing");
    let large = Part::bytes(vec![b'x'; MULTIPART_REPLAY_CAP + 1]);
    let err = Client::new()
        .post(server.url(&format!("/redirect?status=307&to={to}")))
        .multipart(Form::new().part("file", large))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_body_not_replayable(), "{err:?}");
    assert_eq!(server.paths(), ["/redirect"]);
}
