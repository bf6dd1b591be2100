//! The token middleware, its HTTP refresh-token source, the background refresher, and proxy
//! credentials, against loopback servers.
//!
//! Every case that could deadlock runs under a test timeout, so a deadlock is a failure, not a
//! hang.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use http::{HeaderMap, HeaderValue, StatusCode};
use stopover::client::token::{
    BackgroundRefresh, RefreshTokenSource, Token, TokenAuth, TokenCache, TokenConfigError,
    TokenError, source_fn,
};
use stopover::client::{Chain, Client, Origin, Proxy};

use crate::fault_server::{Answer, FaultServer, Reply, Seen, status};

/// Fails the test instead of hanging when `future` deadlocks.
async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .expect("finished without deadlock")
}

fn token_json(access: &str, expires_in: Option<u64>, refresh: Option<&str>) -> Reply {
    let mut body = serde_json::json!({ "access_token": access, "token_type": "Bearer" });
    if let Some(seconds) = expires_in {
        body["expires_in"] = seconds.into();
    }
    if let Some(refresh) = refresh {
        body["refresh_token"] = refresh.into();
    }
    Answer::new(200)
        .header("content-type", "application/json")
        .body(body.to_string())
        .reply()
}

/// The API answers 200 to `Bearer {accepted}` and 401 to anything else.
fn api(seen: &Seen, accepted: &str) -> Reply {
    if seen.header("authorization") == Some(&format!("Bearer {accepted}")) {
        status(200, "data")
    } else {
        status(401, "bad token")
    }
}

fn bearers(server: &FaultServer, path: &str) -> Vec<Option<String>> {
    server
        .seen()
        .iter()
        .filter(|seen| seen.path() == path)
        .map(|seen| seen.header("authorization").map(str::to_owned))
        .collect()
}

/// A client for `api`: its base URL, and so the token's scope, is the server's origin.
fn client_with<S: stopover::client::token::TokenSource>(
    api: &FaultServer,
    auth: TokenAuth<S>,
) -> Client {
    Client::builder()
        .base_url(&api.url("/"))
        .middleware(auth)
        .build()
        .unwrap()
}

/// A client without a base URL: the token's scope is what `auth` names.
fn client_without_base_url<S: stopover::client::token::TokenSource>(auth: TokenAuth<S>) -> Client {
    Client::builder().middleware(auth).build().unwrap()
}

fn token_error(err: &stopover::client::Error) -> &TokenError {
    std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<TokenError>())
        .unwrap_or_else(|| panic!("not a token error: {err:?}"))
}

#[tokio::test]
async fn concurrent_401s_cause_exactly_one_refresh() {
    let server = Arc::new(
        FaultServer::start(|seen, _| match seen.path() {
            "/token" => token_json("new", None, None),
            _ => api(seen, "new"),
        })
        .await,
    );
    let source = RefreshTokenSource::new(&server.url("/token"), "refresh-1").unwrap();
    let cache = TokenCache::new(source).with_token(Token::new("old"));
    let client = client_with(&server, TokenAuth::from_cache(Arc::new(cache)));

    let requests: Vec<_> = (0..100)
        .map(|_| {
            let (client, url) = (client.clone(), server.url("/api"));
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    for request in requests {
        assert_eq!(bounded(request).await.unwrap().unwrap(), StatusCode::OK);
    }
    assert_eq!(server.hits_to("/token"), 1);
    let api_bearers = bearers(&server, "/api");
    assert_eq!(api_bearers.len(), 200);
    let old = Some("Bearer old".to_owned());
    assert_eq!(api_bearers.iter().filter(|b| **b == old).count(), 100);
}

#[tokio::test]
async fn a_401_after_the_refresh_is_returned_as_that_401() {
    let server = FaultServer::start(|seen, _| match seen.path() {
        "/token" => token_json("new", None, None),
        _ => status(401, "still not allowed"),
    })
    .await;
    let source = RefreshTokenSource::new(&server.url("/token"), "refresh-1").unwrap();
    let auth = TokenAuth::from_cache(Arc::new(
        TokenCache::new(source).with_token(Token::new("old")),
    ));
    let response = bounded(client_with(&server, auth).get(server.url("/api")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.url().path(), "/api");
    assert_eq!(response.text().await.unwrap(), "still not allowed");
    assert_eq!(server.hits_to("/token"), 1);
    assert_eq!(
        bearers(&server, "/api"),
        [Some("Bearer old".to_owned()), Some("Bearer new".to_owned())]
    );
}

#[tokio::test]
async fn a_request_whose_stream_cannot_be_replayed_gets_its_401_back() {
    let server = FaultServer::start(|seen, _| match seen.path() {
        "/token" => token_json("new", None, None),
        _ => status(401, "expired"),
    })
    .await;
    let source = RefreshTokenSource::new(&server.url("/token"), "refresh-1").unwrap();
    let auth = TokenAuth::from_cache(Arc::new(
        TokenCache::new(source).with_token(Token::new("old")),
    ));
    let chunks =
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("upload"))]);
    let response = bounded(
        client_with(&server, auth)
            .post(server.url("/upload"))
            .body(stopover::client::Body::wrap_stream(chunks))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.hits_to("/upload"), 1);
    assert_eq!(server.seen()[0].body, b"upload");
}

#[tokio::test]
async fn a_request_whose_stream_outgrew_its_replay_cap_gets_its_401_back() {
    let server = FaultServer::start(|seen, _| match seen.path() {
        "/token" => token_json("new", None, None),
        _ => status(401, "expired"),
    })
    .await;
    let source = RefreshTokenSource::new(&server.url("/token"), "refresh-1").unwrap();
    let auth = TokenAuth::from_cache(Arc::new(
        TokenCache::new(source).with_token(Token::new("old")),
    ));
    let chunks =
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("upload"))]);
    let response = bounded(
        client_with(&server, auth)
            .post(server.url("/upload"))
            .body(stopover::client::Body::wrap_stream_replayable(chunks, 4))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.hits_to("/upload"), 1);
}

#[tokio::test]
async fn a_refresh_endpoint_answering_401_is_a_typed_error_without_deadlock() {
    let server = FaultServer::start(|_, _| status(401, "no")).await;
    let source = RefreshTokenSource::new(&server.url("/token"), "revoked").unwrap();
    let auth = TokenAuth::from_cache(Arc::new(
        TokenCache::new(source).with_token(Token::new("old")),
    ));
    let err = bounded(client_with(&server, auth).get(server.url("/api")).send())
        .await
        .unwrap_err();
    assert!(err.is_middleware(), "{err:?}");
    assert!(matches!(
        token_error(&err),
        TokenError::Endpoint {
            status: StatusCode::UNAUTHORIZED
        }
    ));
    assert_eq!(server.hits_to("/token"), 1);
    assert_eq!(server.hits_to("/api"), 1);
    // The refresh request went out without the rejected token: it did not pass through the
    // middleware.
    assert_eq!(bearers(&server, "/token"), [None]);
}

#[tokio::test]
async fn a_refresh_endpoint_that_drops_the_connection_is_a_typed_error() {
    let server = FaultServer::start(|seen, _| match seen.path() {
        "/token" => Reply::Close,
        _ => status(401, "expired"),
    })
    .await;
    let source = RefreshTokenSource::new(&server.url("/token"), "refresh-1").unwrap();
    let auth = TokenAuth::from_cache(Arc::new(
        TokenCache::new(source).with_token(Token::new("old")),
    ));
    let err = bounded(client_with(&server, auth).get(server.url("/api")).send())
        .await
        .unwrap_err();
    assert!(
        matches!(token_error(&err), TokenError::Transport(_)),
        "{err:?}"
    );
    assert_eq!(server.hits_to("/token"), 1);
}

#[tokio::test]
async fn a_refresh_endpoint_answering_something_else_than_a_token_is_a_typed_error() {
    let server = FaultServer::start(|seen, _| match seen.path() {
        "/token" => status(200, "<html>login</html>"),
        _ => status(200, "data"),
    })
    .await;
    let source = RefreshTokenSource::new(&server.url("/token"), "refresh-1").unwrap();
    let err = bounded(
        client_with(&server, TokenAuth::new(source))
            .get(server.url("/api"))
            .send(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(token_error(&err), TokenError::InvalidResponse(_)),
        "{err:?}"
    );
    assert_eq!(server.hits_to("/api"), 0);
}

#[tokio::test(start_paused = true)]
async fn an_expiring_token_is_refreshed_before_sending_through_the_same_client() {
    let server = FaultServer::start(|seen, _| match seen.path() {
        "/token" => token_json("new", Some(3600), None),
        _ => api(seen, "new"),
    })
    .await;
    let source = RefreshTokenSource::new(&server.url("/token"), "refresh-1").unwrap();
    let cache = TokenCache::new(source)
        .skew(Duration::from_secs(30))
        .with_token(Token::new("old").expires_in(Duration::from_secs(100)));
    // Installed on the whole client: the cookbook's expiry recipe deadlocks here, because its
    // refresh request re-enters the middleware and waits on the lock its caller holds.
    let client = client_with(&server, TokenAuth::from_cache(Arc::new(cache)));
    tokio::time::advance(Duration::from_secs(75)).await;
    let response = bounded(client.get(server.url("/api")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(bearers(&server, "/api"), [Some("Bearer new".to_owned())]);
    assert_eq!(server.hits_to("/token"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_ahead_of_expiry_still_sends_the_unexpired_token() {
    let server = FaultServer::start(|seen, _| match seen.path() {
        "/token" => status(503, "down for maintenance"),
        _ => api(seen, "old"),
    })
    .await;
    let source = RefreshTokenSource::new(&server.url("/token"), "refresh-1").unwrap();
    let cache = TokenCache::new(source)
        .skew(Duration::from_secs(30))
        .with_token(Token::new("old").expires_in(Duration::from_secs(100)));
    let client = client_with(&server, TokenAuth::from_cache(Arc::new(cache)));
    tokio::time::advance(Duration::from_secs(75)).await;
    let response = bounded(client.get(server.url("/api")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.hits_to("/token"), 1);
    // Once it has expired, the failure is the caller's.
    tokio::time::advance(Duration::from_secs(30)).await;
    let err = bounded(client.get(server.url("/api")).send())
        .await
        .unwrap_err();
    assert!(matches!(
        token_error(&err),
        TokenError::Endpoint {
            status: StatusCode::SERVICE_UNAVAILABLE
        }
    ));
    assert_eq!(server.hits_to("/api"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_token_outside_the_skew_is_used_without_refresh() {
    let server = FaultServer::start(|seen, _| match seen.path() {
        "/token" => token_json("new", Some(3600), None),
        _ => status(200, "data"),
    })
    .await;
    let source = RefreshTokenSource::new(&server.url("/token"), "refresh-1").unwrap();
    let cache = TokenCache::new(source)
        .skew(Duration::from_secs(30))
        .with_token(Token::new("old").expires_in(Duration::from_secs(100)));
    let client = client_with(&server, TokenAuth::from_cache(Arc::new(cache)));
    tokio::time::advance(Duration::from_secs(65)).await;
    bounded(client.get(server.url("/api")).send())
        .await
        .unwrap();
    assert_eq!(bearers(&server, "/api"), [Some("Bearer old".to_owned())]);
    assert_eq!(server.hits_to("/token"), 0);
}

#[tokio::test]
async fn a_source_that_refreshes_through_the_full_chain_does_not_deadlock() {
    let server = FaultServer::start(|seen, _| match seen.path() {
        "/token" => token_json("new", None, None),
        _ => api(seen, "new"),
    })
    .await;
    let token_url = server.url("/token");
    // The cookbook's mistake: the refresh is sent through the client with its middlewares.
    let source = source_fn(move |client: Client| {
        let token_url = token_url.clone();
        async move {
            let answer: serde_json::Value = client
                .post(token_url)
                .send()
                .await
                .map_err(TokenError::source_error)?
                .json()
                .await
                .map_err(TokenError::source_error)?;
            Ok(Token::new(
                answer["access_token"].as_str().unwrap_or_default(),
            ))
        }
    });
    let client = client_with(&server, TokenAuth::new(source));
    let response = bounded(client.get(server.url("/api")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(bearers(&server, "/token"), [None]);
}

#[tokio::test]
async fn the_token_is_not_sent_to_another_origin_after_a_redirect() {
    let elsewhere = FaultServer::start(|_, _| status(200, "landed")).await;
    let target = elsewhere.url("/land");
    let origin =
        FaultServer::start(move |_, _| Answer::new(302).header("location", &target).reply()).await;
    let auth = TokenAuth::new(source_fn(|_| async { Ok(Token::new("secret")) }));
    let response = client_with(&origin, auth)
        .get(origin.url("/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        bearers(&origin, "/start"),
        [Some("Bearer secret".to_owned())]
    );
    assert_eq!(bearers(&elsewhere, "/land"), [None]);
}

/// A redirects to B, which sends the request back to a URL of its choosing on A.
async fn a_to_b_to_a() -> (FaultServer, FaultServer) {
    let elsewhere_url = Arc::new(Mutex::new(String::new()));
    let bounce = Arc::clone(&elsewhere_url);
    let origin = FaultServer::start(move |seen, _| match seen.path() {
        "/start" => {
            let to = bounce.lock().unwrap().clone();
            Answer::new(302).header("location", &to).reply()
        }
        _ => status(200, "back"),
    })
    .await;
    let back = origin.url("/chosen-by-elsewhere");
    let elsewhere =
        FaultServer::start(move |_, _| Answer::new(302).header("location", &back).reply()).await;
    *elsewhere_url.lock().unwrap() = elsewhere.url("/bounce");
    (origin, elsewhere)
}

#[tokio::test]
async fn the_token_is_not_sent_back_to_the_origin_after_a_hop_elsewhere() {
    let (origin, elsewhere) = a_to_b_to_a().await;
    let auth = TokenAuth::new(source_fn(|_| async { Ok(Token::new("secret")) }));
    let response = bounded(client_with(&origin, auth).get(origin.url("/start")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        bearers(&origin, "/start"),
        [Some("Bearer secret".to_owned())]
    );
    assert_eq!(bearers(&elsewhere, "/bounce"), [None]);
    assert_eq!(bearers(&origin, "/chosen-by-elsewhere"), [None]);
}

#[tokio::test]
async fn a_listed_origin_gets_no_token_on_a_hop_back_from_elsewhere() {
    let (origin, elsewhere) = a_to_b_to_a().await;
    let auth = TokenAuth::new(source_fn(|_| async { Ok(Token::new("secret")) })).origins([
        Origin::parse(&origin.url("/")).unwrap(),
        Origin::parse(&elsewhere.url("/")).unwrap(),
    ]);
    bounded(
        client_without_base_url(auth)
            .get(origin.url("/start"))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(bearers(&elsewhere, "/bounce"), [None]);
    assert_eq!(bearers(&origin, "/chosen-by-elsewhere"), [None]);
}

#[tokio::test]
async fn a_redirect_within_the_origin_keeps_the_token() {
    let server = FaultServer::start(|seen, _| match seen.path() {
        "/start" => Answer::new(302).header("location", "/next").reply(),
        _ => status(200, "here"),
    })
    .await;
    let auth = TokenAuth::new(source_fn(|_| async { Ok(Token::new("secret")) }));
    client_with(&server, auth)
        .get(server.url("/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        bearers(&server, "/next"),
        [Some("Bearer secret".to_owned())]
    );
}

#[tokio::test]
async fn the_token_is_sent_only_to_the_listed_origins() {
    let api_server = FaultServer::start(|_, _| status(200, "api")).await;
    let other = FaultServer::start(|_, _| status(200, "other")).await;
    let auth = TokenAuth::new(source_fn(|_| async { Ok(Token::new("secret")) }))
        .origins([Origin::parse(&api_server.url("/")).unwrap()]);
    let client = client_without_base_url(auth);
    client.get(api_server.url("/x")).send().await.unwrap();
    client.get(other.url("/x")).send().await.unwrap();
    assert_eq!(
        bearers(&api_server, "/x"),
        [Some("Bearer secret".to_owned())]
    );
    assert_eq!(bearers(&other, "/x"), [None]);
}

fn secret_token() -> TokenAuth<impl stopover::client::token::TokenSource> {
    TokenAuth::new(source_fn(|_| async { Ok(Token::new("secret")) }))
}

/// The error's chain of sources holds a [`TokenConfigError::NoScope`].
fn has_no_scope_source(err: &stopover::client::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if matches!(
            cause.downcast_ref::<TokenConfigError>(),
            Some(TokenConfigError::NoScope)
        ) {
            return true;
        }
        source = cause.source();
    }
    false
}

#[tokio::test]
async fn without_origins_the_token_goes_to_the_base_url_origin_only() {
    let api_server = FaultServer::start(|_, _| status(200, "api")).await;
    let webhook = FaultServer::start(|_, _| status(200, "hook")).await;
    let client = client_with(&api_server, secret_token());
    client.get("x").send().await.unwrap();
    // A direct request to another origin on the same client: a webhook to a user's URL.
    client.post(webhook.url("/x")).send().await.unwrap();
    assert_eq!(
        bearers(&api_server, "/x"),
        [Some("Bearer secret".to_owned())]
    );
    assert_eq!(bearers(&webhook, "/x"), [None]);
}

#[test]
fn a_client_with_neither_base_url_nor_origins_is_not_built() {
    let err = Client::builder()
        .middleware(secret_token())
        .build()
        .unwrap_err();
    assert!(err.is_builder(), "{err:?}");
    assert!(has_no_scope_source(&err), "{err:?}");
    assert!(err.to_string().contains("TokenAuth::origins"), "{err}");
}

#[tokio::test]
async fn named_origins_replace_the_base_url_as_the_scope() {
    let api_server = FaultServer::start(|_, _| status(200, "api")).await;
    let other = FaultServer::start(|_, _| status(200, "other")).await;
    let auth = secret_token().origins([Origin::parse(&other.url("/")).unwrap()]);
    let client = client_with(&api_server, auth);
    client.get("x").send().await.unwrap();
    client.get(other.url("/x")).send().await.unwrap();
    assert_eq!(bearers(&api_server, "/x"), [None]);
    assert_eq!(bearers(&other, "/x"), [Some("Bearer secret".to_owned())]);
}

#[tokio::test]
async fn the_refresh_request_to_the_token_endpoint_never_carries_the_token() {
    let endpoint = FaultServer::start(|_, _| token_json("new", None, None)).await;
    let api_server = FaultServer::start(|seen, _| api(seen, "new")).await;
    let source = RefreshTokenSource::new(&endpoint.url("/token"), "r1").unwrap();
    let auth = TokenAuth::from_cache(Arc::new(
        TokenCache::new(source).with_token(Token::new("old")),
    ));
    let response = bounded(client_with(&api_server, auth).get("api").send())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(bearers(&endpoint, "/token"), [None]);
    assert_eq!(
        bearers(&api_server, "/api"),
        [Some("Bearer old".to_owned()), Some("Bearer new".to_owned())]
    );
}

#[tokio::test]
async fn a_request_level_token_auth_sends_to_the_base_url_origin_only() {
    let api_server = FaultServer::start(|_, _| status(200, "api")).await;
    let other = FaultServer::start(|_, _| status(200, "other")).await;
    let client = Client::builder()
        .base_url(&api_server.url("/"))
        .build()
        .unwrap();
    let with_token = Chain::new().with(secret_token());
    client
        .get("x")
        .middlewares(with_token.clone())
        .send()
        .await
        .unwrap();
    client
        .get(other.url("/x"))
        .middlewares(with_token)
        .send()
        .await
        .unwrap();
    client.get("x").send().await.unwrap();
    assert_eq!(
        bearers(&api_server, "/x"),
        [Some("Bearer secret".to_owned()), None]
    );
    assert_eq!(bearers(&other, "/x"), [None]);
}

#[tokio::test]
async fn a_request_level_token_auth_without_a_scope_fails_before_sending() {
    let server = FaultServer::start(|_, _| status(200, "data")).await;
    let err = Client::new()
        .get(server.url("/x"))
        .middlewares(Chain::new().with(secret_token()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_middleware(), "{err:?}");
    assert!(has_no_scope_source(&err), "{err:?}");
    assert_eq!(server.hits_to("/x"), 0);
}

#[test]
fn an_origin_that_is_not_a_url_is_refused() {
    let err = Origin::parse("api.example").unwrap_err();
    assert!(err.to_string().contains("api.example"), "{err}");
}

#[tokio::test]
async fn a_token_endpoint_answer_over_64_kib_is_refused_unread() {
    // Announces 1 MiB and sends a few bytes: only a read that trusts the length would wait.
    let endpoint = FaultServer::start(|_, _| {
        Answer::new(200)
            .header("content-type", "application/json")
            .body("{")
            .announce_length(1024 * 1024)
            .reply()
    })
    .await;
    let source = RefreshTokenSource::new(&endpoint.url("/token"), "refresh-1").unwrap();
    let client = Client::new();
    let err = bounded(stopover::client::token::TokenSource::fetch(
        &source, &client,
    ))
    .await
    .unwrap_err();
    let TokenError::Transport(cause) = &err else {
        panic!("not a transport error: {err:?}");
    };
    let cause = cause
        .downcast_ref::<stopover::client::Error>()
        .unwrap_or_else(|| panic!("not a client error: {cause:?}"));
    assert_eq!(cause.kind(), stopover::client::ErrorKind::BodyTooLarge);
}

#[tokio::test]
async fn the_refresh_request_is_an_oauth_form_post() {
    let server = FaultServer::start(|seen, _| match seen.path() {
        "/token" => token_json("a1", None, None),
        _ => status(200, "data"),
    })
    .await;
    let source = RefreshTokenSource::new(&server.url("/token"), "r/1+")
        .unwrap()
        .client_id("cli")
        .scope("read write");
    client_with(&server, TokenAuth::new(source))
        .get(server.url("/api"))
        .send()
        .await
        .unwrap();
    let refresh = &server.seen()[0];
    assert_eq!(refresh.method, "POST");
    assert_eq!(
        refresh.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        String::from_utf8_lossy(&refresh.body),
        "grant_type=refresh_token&refresh_token=r%2F1%2B&client_id=cli&scope=read+write"
    );
}

#[tokio::test]
async fn rotated_refresh_tokens_are_kept_and_persisted() {
    let server = FaultServer::start(|seen, _| match seen.path() {
        "/token" if String::from_utf8_lossy(&seen.body).contains("refresh_token=r1") => {
            token_json("a1", None, Some("r2"))
        }
        "/token" => token_json("a2", None, Some("r3")),
        _ => api(seen, "a2"),
    })
    .await;
    let persisted = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&persisted);
    let source = RefreshTokenSource::new(&server.url("/token"), "r1")
        .unwrap()
        .on_rotate(move |rotated| store.lock().unwrap().push(rotated.to_owned()));
    let auth = TokenAuth::new(source);
    let cache = Arc::clone(auth.cache());
    // The first token (a1) is refused: the refresh must send the rotated r2, not r1 again.
    let response = client_with(&server, auth)
        .get(server.url("/api"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bodies: Vec<_> = server
        .seen()
        .iter()
        .filter(|seen| seen.path() == "/token")
        .map(|seen| String::from_utf8_lossy(&seen.body).into_owned())
        .collect();
    assert!(bodies[0].contains("refresh_token=r1") && bodies[1].contains("refresh_token=r2"));
    assert_eq!(*persisted.lock().unwrap(), ["r2", "r3"]);
    assert_eq!(cache.source().refresh_token(), "r3");
}

#[tokio::test(start_paused = true)]
async fn the_first_request_waits_for_the_background_refreshers_first_token() {
    let server = FaultServer::start(|seen, _| match seen.path() {
        // A slow token endpoint: the refresher's first fetch is still running when the
        // request arrives.
        "/token" => match token_json("a1", Some(3600), None) {
            Reply::Respond(answer) => answer.delay(Duration::from_secs(5)).reply(),
            other => other,
        },
        _ => api(seen, "a1"),
    })
    .await;
    let source = RefreshTokenSource::new(&server.url("/token"), "r1").unwrap();
    let auth = TokenAuth::new(source);
    let client = client_with(&server, auth.clone());
    let _refresher = BackgroundRefresh::spawn(auth.cache(), client.clone());
    while server.hits_to("/token") == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let response = bounded(client.get(server.url("/api")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(bearers(&server, "/api"), [Some("Bearer a1".to_owned())]);
    assert_eq!(server.hits_to("/token"), 1);
}

#[tokio::test(start_paused = true)]
async fn the_background_refresher_renews_ahead_of_expiry_and_stops_when_dropped() {
    let server = FaultServer::start(|seen, _| match seen.path() {
        "/token" => token_json("fresh", Some(120), None),
        _ => status(200, "data"),
    })
    .await;
    let source = RefreshTokenSource::new(&server.url("/token"), "r1").unwrap();
    let cache = Arc::new(TokenCache::new(source).skew(Duration::from_secs(30)));
    let refresher = BackgroundRefresh::spawn(&cache, Client::new());
    while server.hits_to("/token") < 2 {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let refreshes: Vec<_> = server.seen().iter().map(|seen| seen.at).collect();
    let renewed_after = refreshes[1] - refreshes[0];
    // Due 30 s before the 120 s expiry: at 90 s, never after the token expired.
    assert!(
        renewed_after >= Duration::from_secs(90) && renewed_after < Duration::from_secs(120),
        "{renewed_after:?}"
    );
    drop(refresher);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(server.hits_to("/token"), 2);
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

fn api_authorization() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_static("Bearer api-secret"),
    );
    headers
}

#[tokio::test]
async fn requests_through_a_proxy_carry_its_configured_credentials() {
    let proxy = FaultServer::start(|_, _| status(200, "via proxy")).await;
    let client = Client::builder()
        .default_headers(api_authorization())
        .proxy(Proxy::http(&proxy.url("")).unwrap().basic_auth("svc", "pw"))
        .build()
        .unwrap();
    // The target is never contacted: the proxy answers.
    let response = client
        .get("http://127.0.0.1:9/resource")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "via proxy");
    let seen = &proxy.seen()[0];
    assert_eq!(seen.target, "http://127.0.0.1:9/resource");
    assert_eq!(
        seen.header("proxy-authorization"),
        Some(basic("svc", "pw").as_str())
    );
}

#[test]
fn a_proxy_authorization_default_header_is_refused_at_build() {
    let mut headers = api_authorization();
    headers.insert(
        "proxy-authorization",
        HeaderValue::from_static("Basic bGVha2Vk"),
    );
    let err = Client::builder()
        .default_headers(headers)
        .proxy(
            Proxy::http("http://127.0.0.1:3128")
                .unwrap()
                .basic_auth("svc", "pw"),
        )
        .build()
        .unwrap_err();
    assert!(err.is_builder());
    assert!(err.to_string().contains("Proxy-Authorization"), "{err}");
}

#[tokio::test]
async fn a_connect_tunnel_carries_the_proxy_credentials_and_not_the_api_token() {
    // The proxy refuses the tunnel; what matters is what it was asked.
    let proxy = FaultServer::start(|_, _| Reply::Close).await;
    let client = Client::builder()
        .default_headers(api_authorization())
        .proxy(Proxy::all(&proxy.url("")).unwrap().basic_auth("svc", "pw"))
        .build()
        .unwrap();
    let outcome = bounded(client.get("https://127.0.0.1:9/resource").send()).await;
    assert!(outcome.is_err());
    let seen = &proxy.seen()[0];
    assert_eq!(seen.method, "CONNECT");
    assert_eq!(
        seen.header("proxy-authorization"),
        Some(basic("svc", "pw").as_str())
    );
    assert_eq!(seen.header("authorization"), None);
}

#[tokio::test]
async fn a_custom_proxy_authorization_is_sent_as_configured() {
    let proxy = FaultServer::start(|_, _| status(200, "via proxy")).await;
    let client = Client::builder()
        .proxy(
            Proxy::http(&proxy.url(""))
                .unwrap()
                .custom_auth(HeaderValue::from_static("Bearer proxy-token")),
        )
        .build()
        .unwrap();
    client
        .get("http://127.0.0.1:9/resource")
        .send()
        .await
        .unwrap();
    assert_eq!(
        proxy.seen()[0].header("proxy-authorization"),
        Some("Bearer proxy-token")
    );
}

#[test]
fn a_proxy_with_an_ssrf_policy_is_refused_at_build() {
    let policy = stopover::client::ssrf::Policy::builder().build().unwrap();
    let err = Client::builder()
        .ssrf_policy(policy)
        .proxy(Proxy::all("http://127.0.0.1:3128").unwrap())
        .build()
        .unwrap_err();
    assert!(err.is_builder());
    assert!(err.to_string().contains("SSRF"), "{err}");
    assert_eq!(err.conflicting_settings(), Some(["proxy", "ssrf_policy"]));
}

#[test]
fn an_invalid_proxy_url_is_a_builder_error_naming_it() {
    let err = Proxy::all("::not a url::").unwrap_err();
    assert!(err.is_builder());
    assert!(err.to_string().contains("::not a url::"), "{err}");
}
