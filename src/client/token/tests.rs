//! The token cache and its sources, without a network.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use super::refresh::TokenResponse;
use super::*;
use crate::client::Client;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A client for the sources, which ignore it: these tests send nothing.
fn client() -> Client {
    static CLIENT: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(Client::new).clone()
}

fn counting_source(calls: Arc<AtomicUsize>, lifetime: Option<Duration>) -> impl TokenSource {
    source_fn(move |_| {
        let calls = calls.clone();
        async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            // Let concurrent callers pile up behind the fetch.
            tokio::task::yield_now().await;
            let token = Token::new(format!("token-{n}"));
            Ok(match lifetime {
                Some(lifetime) => token.expires_in(lifetime),
                None => token,
            })
        }
    })
}

#[tokio::test]
async fn first_use_fetches_once_for_all_concurrent_callers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = Arc::new(TokenCache::new(counting_source(calls.clone(), None)));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.token(&client()).await.map(|t| t.value().to_owned()) })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "token-1");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_rejected_token_is_refreshed_once_for_all_concurrent_callers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = Arc::new(
        TokenCache::new(counting_source(calls.clone(), None)).with_token(Token::new("old")),
    );
    let rejected = cache.token(&client()).await.unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (cache, rejected) = (cache.clone(), rejected.clone());
            tokio::spawn(async move {
                cache
                    .refresh_rejected(&rejected, &client())
                    .await
                    .map(|t| t.value().to_owned())
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "token-1");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_token_already_replaced_is_not_refreshed_again() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = TokenCache::new(counting_source(calls.clone(), None)).with_token(Token::new("old"));
    let old = cache.token(&client()).await.unwrap();
    let new = cache.refresh_rejected(&old, &client()).await.unwrap();
    let again = cache.refresh_rejected(&old, &client()).await.unwrap();
    assert!(Arc::ptr_eq(&new, &again));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The new value, rejected in turn, is refreshed once more: once per value.
    cache.refresh_rejected(&new, &client()).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failed_fetch_is_shared_by_its_waiters_and_not_repeated() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let cache = Arc::new(TokenCache::new(source_fn(move |_| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Err(TokenError::Endpoint {
                status: StatusCode::UNAUTHORIZED,
            })
        }
    })));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.token(&client()).await })
        })
        .collect();
    for task in tasks {
        assert!(matches!(
            task.await.unwrap(),
            Err(TokenError::Endpoint {
                status: StatusCode::UNAUTHORIZED
            })
        ));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A later caller tries again: a failure is not cached forever.
    assert!(cache.token(&client()).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_token_that_cannot_be_sent_is_not_cached() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let cache = TokenCache::new(source_fn(move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok(Token::new(if n == 0 { "bad\r\nvalue" } else { "good" })) }
    }));
    assert!(matches!(
        cache.token(&client()).await,
        Err(TokenError::InvalidToken)
    ));
    assert!(cache.current().is_none());
    assert_eq!(cache.token(&client()).await.unwrap().value(), "good");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_token_within_the_skew_is_refreshed_before_use() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = TokenCache::new(counting_source(
        calls.clone(),
        Some(Duration::from_secs(300)),
    ))
    .skew(Duration::from_secs(30));
    assert_eq!(cache.token(&client()).await.unwrap().value(), "token-1");
    tokio::time::advance(Duration::from_secs(269)).await;
    assert_eq!(cache.token(&client()).await.unwrap().value(), "token-1");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(cache.token(&client()).await.unwrap().value(), "token-2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_short_lived_token_is_kept_for_half_its_lifetime() {
    let calls = Arc::new(AtomicUsize::new(0));
    // Lifetime 20 s is shorter than the 30 s skew: refreshing at once would refresh on
    // every request.
    let cache = TokenCache::new(counting_source(
        calls.clone(),
        Some(Duration::from_secs(20)),
    ));
    cache.token(&client()).await.unwrap();
    tokio::time::advance(Duration::from_secs(9)).await;
    cache.token(&client()).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    cache.token(&client()).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

type Hook = Box<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A source whose fetch asks its own cache for a token, as a refresh sent through the full
/// middleware chain would.
struct ReenteringSource(std::sync::OnceLock<Hook>);

impl TokenSource for ReenteringSource {
    async fn fetch(&self, _client: &Client) -> Result<Token, TokenError> {
        if let Some(hook) = self.0.get() {
            hook().await;
        }
        Ok(Token::new("fresh"))
    }
}

#[tokio::test]
async fn a_source_that_reenters_its_cache_does_not_deadlock() {
    let cache = Arc::new(TokenCache::new(
        ReenteringSource(std::sync::OnceLock::new()),
    ));
    let weak = Arc::downgrade(&cache);
    let hook: Hook = Box::new(move || {
        let weak = weak.clone();
        Box::pin(async move {
            if let Some(cache) = weak.upgrade() {
                let _ = cache.token(&client()).await;
            }
        })
    });
    let _ = cache.source().0.set(hook);
    let token = tokio::time::timeout(Duration::from_secs(5), cache.token(&client()))
        .await
        .expect("no deadlock")
        .unwrap();
    assert_eq!(token.value(), "fresh");
}

#[tokio::test(start_paused = true)]
async fn token_response_with_lifetime_and_rotated_refresh_token() {
    let parsed = TokenResponse::parse(
        br#"{"access_token":"a1","token_type":"Bearer","expires_in":3600,"refresh_token":"r2"}"#,
    )
    .unwrap();
    assert_eq!(parsed.token.value(), "a1");
    assert_eq!(
        parsed.token.expiry(),
        Some(Instant::now() + Duration::from_secs(3600))
    );
    assert_eq!(parsed.refresh_token.as_deref(), Some("r2"));
}

#[tokio::test(start_paused = true)]
async fn token_response_lifetime_may_be_a_string_or_absent() {
    let parsed = TokenResponse::parse(br#"{"access_token":"a1","expires_in":"60"}"#).unwrap();
    assert_eq!(
        parsed.token.expiry(),
        Some(Instant::now() + Duration::from_secs(60))
    );
    let parsed = TokenResponse::parse(br#"{"access_token":"a1"}"#).unwrap();
    assert_eq!(parsed.token.expiry(), None);
    assert!(parsed.refresh_token.is_none());
}

#[tokio::test(start_paused = true)]
async fn token_response_with_an_absurd_lifetime_is_a_token_without_expiry() {
    let parsed =
        TokenResponse::parse(br#"{"access_token":"a1","expires_in":18446744073709551615}"#)
            .unwrap();
    assert_eq!(parsed.token.value(), "a1");
    assert_eq!(parsed.token.expiry(), None);
}

#[test]
fn token_response_that_is_not_a_bearer_token_is_refused() {
    for body in [
        &br#"{"token_type":"bearer"}"#[..],
        br#"{"access_token":"a1","token_type":"DPoP"}"#,
        br#"{"access_token":"a\r\nb"}"#,
        b"<html>oops</html>",
    ] {
        assert!(
            TokenResponse::parse(body).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn token_response_token_type_is_compared_without_regard_to_case() {
    for token_type in ["bearer", "Bearer", "BEARER", "bEaReR"] {
        let body = format!(r#"{{"access_token":"a1","token_type":"{token_type}"}}"#);
        let parsed = TokenResponse::parse(body.as_bytes());
        assert!(parsed.is_ok(), "{token_type}: {parsed:?}");
    }
}

#[test]
fn token_response_without_a_token_type_is_taken_as_bearer() {
    let parsed = TokenResponse::parse(br#"{"access_token":"a1","expires_in":60}"#).unwrap();
    assert_eq!(parsed.token.value(), "a1");
}

#[test]
fn token_response_of_another_token_type_says_which() {
    let err = TokenResponse::parse(br#"{"access_token":"a1","token_type":"DPoP"}"#).unwrap_err();
    assert!(
        matches!(&err, TokenError::InvalidResponse(why) if why.contains("DPoP")),
        "{err:?}"
    );
}

#[test]
fn token_response_that_is_not_json_is_an_invalid_response() {
    let err = TokenResponse::parse(b"<html>oops</html>").unwrap_err();
    assert!(matches!(err, TokenError::InvalidResponse(_)), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn token_response_with_an_unreadable_lifetime_is_a_token_without_expiry() {
    for lifetime in [r#""soon""#, "-5", "1.5", "null", "true"] {
        let body = format!(r#"{{"access_token":"a1","expires_in":{lifetime}}}"#);
        let parsed = TokenResponse::parse(body.as_bytes()).unwrap();
        assert_eq!(parsed.token.expiry(), None, "{lifetime}");
    }
}

#[test]
fn token_response_with_an_empty_refresh_token_keeps_the_current_one() {
    let parsed = TokenResponse::parse(br#"{"access_token":"a1","refresh_token":""}"#).unwrap();
    assert!(parsed.refresh_token.is_none());
}

#[test]
fn token_response_ignores_fields_it_does_not_use() {
    let body = br#"{"access_token":"a1","scope":"read","id_token":"x.y.z","extra":{"n":1}}"#;
    assert_eq!(TokenResponse::parse(body).unwrap().token.value(), "a1");
}

#[test]
fn token_debug_hides_the_value() {
    let token = Token::new("s3cr3t");
    assert!(!format!("{token:?}").contains("s3cr3t"));
    let header = token.bearer_header().unwrap();
    assert!(header.is_sensitive());
    assert_eq!(header, "Bearer s3cr3t");
}

#[test]
fn a_token_with_a_newline_is_refused() {
    assert!(matches!(
        Token::new("a\r\nX-Evil: 1").bearer_header(),
        Err(TokenError::InvalidToken)
    ));
}

#[tokio::test(start_paused = true)]
async fn background_refresh_renews_ahead_of_expiry() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = Arc::new(
        TokenCache::new(counting_source(
            calls.clone(),
            Some(Duration::from_secs(300)),
        ))
        .skew(Duration::from_secs(30)),
    );
    let refresher = BackgroundRefresh::spawn(&cache, client());
    // The first caller waits for the first token rather than fetching a second one.
    assert_eq!(cache.token(&client()).await.unwrap().value(), "token-1");
    tokio::time::sleep(Duration::from_secs(271)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.current().unwrap().value(), "token-2");
    drop(refresher);
}

#[tokio::test(start_paused = true)]
async fn background_refresh_stops_when_dropped() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = Arc::new(TokenCache::new(counting_source(
        calls.clone(),
        Some(Duration::from_secs(60)),
    )));
    let refresher = BackgroundRefresh::spawn(&cache, client());
    cache.token(&client()).await.unwrap();
    drop(refresher);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn background_refresh_stops_when_the_cache_is_dropped() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = Arc::new(TokenCache::new(counting_source(
        calls.clone(),
        Some(Duration::from_secs(60)),
    )));
    let refresher = BackgroundRefresh::spawn(&cache, client());
    cache.token(&client()).await.unwrap();
    drop(cache);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(refresher.is_finished());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn background_refresh_of_tokens_already_due_does_not_spin() {
    let calls = Arc::new(AtomicUsize::new(0));
    // `expires_in: 0`: every token is due for renewal the moment it arrives.
    let cache = Arc::new(TokenCache::new(counting_source(
        calls.clone(),
        Some(Duration::ZERO),
    )));
    let _refresher = BackgroundRefresh::spawn(&cache, client());
    for _ in 0..1000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 11);
}

#[tokio::test(start_paused = true)]
async fn background_refresh_retries_a_failed_fetch() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let cache = Arc::new(TokenCache::new(source_fn(move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < 2 {
                Err(TokenError::InvalidResponse("not yet".into()))
            } else {
                Ok(Token::new("finally"))
            }
        }
    })));
    let _refresher = BackgroundRefresh::spawn(&cache, client());
    // Failures are retried after 1 s, then 2 s.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(cache.current().unwrap().value(), "finally");
}

#[test]
fn token_response_linearity_probe() {
    for input in crate::linearity::inputs(&["token-escapes", "token-keys", "token-nested"]) {
        crate::linearity::measured(|| TokenResponse::parse(input.as_bytes()).is_ok());
    }
}

mod properties {
    //! The token endpoint's answer: whatever JSON it sends, a token or a typed error, and the
    //! lifetime the same whether it comes as a number or as a string.

    use proptest::prelude::*;

    use super::super::refresh::TokenResponse;
    use crate::proptest_config::config;

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn any_body_is_a_token_or_an_error(body in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = TokenResponse::parse(&body);
        }

        #[test]
        fn a_lifetime_as_a_number_or_a_string_is_the_same(
            token in "[A-Za-z0-9._~+/-]{1,64}",
            seconds in 0u64..10_000_000,
        ) {
            let number = format!(r#"{{"access_token":"{token}","expires_in":{seconds}}}"#);
            let text = format!(r#"{{"access_token":"{token}","expires_in":"{seconds}"}}"#);
            let number = TokenResponse::parse(number.as_bytes()).unwrap();
            let text = TokenResponse::parse(text.as_bytes()).unwrap();
            prop_assert_eq!(number.token.value(), token.as_str());
            let (a, b) = (number.token.expiry(), text.token.expiry());
            prop_assert!(a.is_some() && b.is_some());
            let gap = a.unwrap().max(b.unwrap()) - a.unwrap().min(b.unwrap());
            prop_assert!(gap < std::time::Duration::from_secs(1));
        }

        #[test]
        fn a_token_type_other_than_bearer_is_refused(kind in "[A-Za-z]{1,12}") {
            prop_assume!(!kind.eq_ignore_ascii_case("bearer"));
            let body = format!(r#"{{"access_token":"t","token_type":"{kind}"}}"#);
            prop_assert!(TokenResponse::parse(body.as_bytes()).is_err());
        }
    }
}
