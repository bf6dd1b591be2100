//! The middleware's decisions: scope, preemptive answers, proxies and server proof.

use super::*;

fn url(text: &str) -> Url {
    Url::parse(text).expect(text)
}

fn headers(name: HeaderName, values: &[&str]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for value in values {
        map.append(name.clone(), HeaderValue::from_str(value).expect(value));
    }
    map
}

fn fixed(auth: DigestAuth) -> DigestAuth {
    auth.cnonce_source(|| "0a4f113b".to_owned())
}

fn params(answered: &Answered) -> Vec<(String, String)> {
    let text = answered.header.to_str().expect("ascii");
    challenge::parse_params(text.strip_prefix("Digest ").expect("scheme")).expect("parses")
}

fn param(answered: &Answered, name: &str) -> Option<String> {
    challenge::find_param(&params(answered), name).map(str::to_owned)
}

const RFC_2617: &str = r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;

#[test]
fn answers_the_rfc_2617_challenge_through_the_header_map() {
    let auth = fixed(DigestAuth::new("Mufasa", "Circle Of Life"));
    let map = headers(WWW_AUTHENTICATE, &[r#"Basic realm="x""#, RFC_2617]);
    let challenge = auth.read_challenge(&map).expect("answerable");
    let target = url("http://www.nowhere.org/dir/index.html");
    // No body available, so qop=auth as in the RFC example.
    let answered = auth
        .answer_challenge(challenge, &Method::GET, &target, None)
        .expect("answered");
    assert_eq!(
        param(&answered, "response").as_deref(),
        Some("6629fae49393a05397450978507c4ef1")
    );
    assert_eq!(
        answered.proof.challenge.nonce,
        "dcd98b7102dd2f0e8b11d0f600bfb0c093"
    );
}

#[test]
fn preemptive_answers_count_up_within_the_space() {
    let auth = fixed(DigestAuth::new("Mufasa", "Circle Of Life"));
    let target = url("http://www.nowhere.org/dir/index.html");
    assert!(
        auth.preemptive_answer(&Method::GET, &target, Some(b""))
            .expect("no error")
            .is_none()
    );
    let challenge = auth
        .read_challenge(&headers(WWW_AUTHENTICATE, &[RFC_2617]))
        .expect("answerable");
    let first = auth
        .answer_challenge(challenge, &Method::GET, &target, Some(b""))
        .expect("answered");
    assert_eq!(param(&first, "nc").as_deref(), Some("00000001"));
    assert_eq!(param(&first, "qop").as_deref(), Some("auth-int"));
    let second = auth
        .preemptive_answer(&Method::GET, &url("http://www.nowhere.org/other"), None)
        .expect("no error")
        .expect("in the space");
    assert_eq!(param(&second, "nc").as_deref(), Some("00000002"));
    assert_eq!(param(&second, "uri").as_deref(), Some("/other"));
    assert_eq!(param(&second, "qop").as_deref(), Some("auth"));
    assert!(
        auth.preemptive_answer(&Method::GET, &url("http://elsewhere.org/"), None)
            .expect("no error")
            .is_none()
    );
}

#[test]
fn preemptive_off_never_answers_ahead() {
    let auth = fixed(DigestAuth::new("u", "p")).preemptive(false);
    let target = url("http://h/");
    let challenge = auth
        .read_challenge(&headers(
            WWW_AUTHENTICATE,
            &[r#"Digest realm="r", nonce="n""#],
        ))
        .expect("answerable");
    auth.answer_challenge(challenge, &Method::GET, &target, None)
        .expect("answered");
    assert!(
        auth.preemptive_answer(&Method::GET, &target, None)
            .expect("no error")
            .is_none()
    );
}

#[test]
fn auth_int_only_with_a_stream_is_an_error_and_not_preemptive() {
    let auth = fixed(DigestAuth::new("u", "p"));
    let target = url("http://h/upload");
    let challenge = auth
        .read_challenge(&headers(
            WWW_AUTHENTICATE,
            &[r#"Digest realm="r", nonce="n", qop="auth-int""#],
        ))
        .expect("answerable");
    match auth.answer_challenge(challenge.clone(), &Method::POST, &target, None) {
        Err(Unanswered::Error(DigestError::AuthIntNeedsBufferedBody)) => {}
        other => panic!("expected AuthIntNeedsBufferedBody, got {other:?}"),
    }
    assert!(
        auth.preemptive_answer(&Method::POST, &target, None)
            .expect("no error")
            .is_none()
    );
    let buffered = auth
        .preemptive_answer(&Method::POST, &target, Some(b"data"))
        .expect("no error")
        .expect("answerable with a buffered body");
    assert_eq!(param(&buffered, "qop").as_deref(), Some("auth-int"));
}

#[test]
fn proxy_mode_reads_proxy_authenticate_and_sends_the_absolute_form() {
    let auth = fixed(DigestAuth::proxy("u", "p"));
    assert_eq!(
        auth.challenge_status(),
        StatusCode::PROXY_AUTHENTICATION_REQUIRED
    );
    assert_eq!(auth.answer_header(), PROXY_AUTHORIZATION);
    let origin_challenge = headers(WWW_AUTHENTICATE, &[r#"Digest realm="r", nonce="n""#]);
    assert_eq!(
        auth.read_challenge(&origin_challenge),
        Err(DigestFailure::NoDigestChallenge)
    );
    let challenge = auth
        .read_challenge(&headers(
            PROXY_AUTHENTICATE,
            &[r#"Digest realm="proxy", nonce="n", qop=auth"#],
        ))
        .expect("answerable");
    let target = url("http://u:p@example.test:8080/a%20b?x=1#frag");
    let answered = auth
        .answer_challenge(challenge, &Method::GET, &target, None)
        .expect("answered");
    assert_eq!(
        param(&answered, "uri").as_deref(),
        Some("http://example.test:8080/a%20b?x=1")
    );
    // One space for every target behind the proxy.
    assert!(
        auth.preemptive_answer(&Method::GET, &url("http://other.test/"), None)
            .expect("no error")
            .is_some()
    );
}

#[test]
fn default_cnonce_is_random_hex() {
    let auth = DigestAuth::new("u", "p");
    let first = auth.new_cnonce().expect("random source");
    let second = auth.new_cnonce().expect("random source");
    assert_eq!(first.len(), 32);
    assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(first, second);
}

#[test]
fn cnonce_source_output_is_validated() {
    for bad in ["", "a b", "a\"b", "a\\b", "caf\u{e9}", "a\nb"] {
        let bad_owned = bad.to_owned();
        let auth = DigestAuth::new("u", "p").cnonce_source(move || bad_owned.clone());
        assert_eq!(
            auth.new_cnonce(),
            Err(DigestError::InvalidCnonce(bad.to_owned())),
            "{bad:?}"
        );
    }
}

#[test]
fn next_nonce_from_authentication_info_is_adopted() {
    let auth = fixed(DigestAuth::new("u", "p"));
    let target = url("http://h/");
    let challenge = auth
        .read_challenge(&headers(
            WWW_AUTHENTICATE,
            &[r#"Digest realm="r", nonce="n1", qop=auth"#],
        ))
        .expect("answerable");
    let answered = auth
        .answer_challenge(challenge, &Method::GET, &target, None)
        .expect("answered");
    let info = headers(
        HeaderName::from_static("authentication-info"),
        &[r#"qop=auth, rspauth="x", cnonce="0a4f113b", nc=00000001, nextnonce="n2""#],
    );
    auth.adopt_next_nonce(&info, &target, &answered.proof.challenge.nonce);
    let next = auth
        .preemptive_answer(&Method::GET, &target, None)
        .expect("no error")
        .expect("in the space");
    assert_eq!(next.proof.challenge.nonce, "n2");
    assert_eq!(param(&next, "nc").as_deref(), Some("00000001"));
}

#[tokio::test]
async fn rspauth_echoes_are_read_leniently_but_must_match() {
    let auth = fixed(DigestAuth::new("u", "p")).verify_server(true);
    let target = url("http://h/x");
    let challenge = auth
        .read_challenge(&headers(
            WWW_AUTHENTICATE,
            &[r#"Digest realm="r", nonce="n", qop=auth"#],
        ))
        .expect("answerable");
    let answered = auth
        .answer_challenge(challenge, &Method::GET, &target, None)
        .expect("answered");
    let proof = &answered.proof;
    let request = answer::Request {
        method: "",
        uri: &proof.uri,
        qop: proof.qop,
        body: &[],
        nonce_count: proof.nonce_count,
        cnonce: &proof.cnonce,
    };
    let rspauth = answer::expected_rspauth(&auth.credentials, &proof.challenge, &request, b"");
    let check = |info: String| {
        let response = http::Response::builder()
            .header("authentication-info", info)
            .body(Vec::<u8>::new())
            .expect("response");
        let mut response = Response::from_http(response, target.clone());
        let auth = auth.clone();
        async move {
            auth.check_server(&mut response, proof)
                .await
                .map_err(|err| err.to_string())
        }
    };
    assert_eq!(check(format!(r#"rspauth="{rspauth}""#)).await, Ok(()));
    assert_eq!(
        check(format!(
            r#"rspauth="{}", qop=AUTH, nc=1, cnonce="0a4f113b""#,
            rspauth.to_uppercase()
        ))
        .await,
        Ok(())
    );
    for wrong in [
        format!(r#"rspauth="{rspauth}", nc=00000002"#),
        format!(r#"rspauth="{rspauth}", nc=+1"#),
        format!(r#"rspauth="{rspauth}", qop=auth-int"#),
        format!(r#"rspauth="{rspauth}", cnonce="other""#),
        r#"rspauth="0123""#.to_owned(),
        format!(r#"rspauth="{rspauth}", rspauth="{rspauth}""#),
        "qop=auth".to_owned(),
    ] {
        assert!(check(wrong.clone()).await.is_err(), "{wrong}");
    }
}

#[test]
fn debug_output_hides_the_password() {
    let auth = DigestAuth::new("user", "hunter2");
    let debug = format!("{auth:?}");
    assert!(debug.contains("user"));
    assert!(!debug.contains("hunter2"));
}

#[test]
fn a_user_name_with_a_colon_fails_the_client_build() {
    let err = crate::client::Client::builder()
        .middleware(DigestAuth::new("user:name", "secret"))
        .build()
        .unwrap_err();
    assert!(err.is_builder(), "{err:?}");
    let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<DigestError>());
    assert_eq!(source, Some(&DigestError::ColonInUsername));
}

#[tokio::test]
async fn a_user_name_with_a_colon_in_a_request_list_fails_before_sending() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let err = crate::client::Client::new()
        .get(url)
        .middlewares(crate::client::Chain::new().with(DigestAuth::new("a:b", "c")))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_middleware(), "{err:?}");
    let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<DigestError>());
    assert_eq!(source, Some(&DigestError::ColonInUsername));
    // Nothing reached the server: no connection is waiting to be accepted.
    let accepted =
        tokio::time::timeout(std::time::Duration::from_millis(50), listener.accept()).await;
    assert!(accepted.is_err(), "a connection was opened");
}
