//! The `axum` feature: `HttpError` as a handler error, the extractors, and the README's server
//! stack served the way axum serves an app, over real loopback connections.
#![cfg(feature = "axum")]

use std::time::Duration;

use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use serde_json::{Value, json};
use stopover::server::error::HttpError;
use stopover::server::forwarded::ForwardedInfo;
use stopover::server::shield::ClientGone;
use stopover::server::{CorsLayer, ErrorLayer, ForwardedLayer, ShieldLayer, TimeoutLayer};
use tower::ServiceBuilder;

use crate::fault_server::capture_logs;
use crate::support::{serve, serve_with_connect_info};

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn scheme(info: ForwardedInfo) -> String {
    info.scheme().to_string()
}

/// The README's server stack, unchanged.
fn readme_stack(router: Router) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(ForwardedLayer::builder().build().unwrap())
            .layer(
                CorsLayer::builder()
                    .allow_origin("https://app.example")
                    .build()
                    .unwrap(),
            )
            .layer(ErrorLayer::new())
            .layer(
                TimeoutLayer::builder(Duration::from_secs(10))
                    .build()
                    .unwrap(),
            )
            .layer(ShieldLayer::builder().build().unwrap()),
    )
}

#[tokio::test]
async fn readme_stack_under_connect_info_believes_the_loopback_proxy() {
    let app = readme_stack(Router::new().route("/scheme", get(scheme)));
    let addr = serve_with_connect_info(app).await;
    let response = http()
        .get(format!("http://{addr}/scheme"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "https");
}

#[tokio::test]
async fn http_error_is_a_handler_error_type() {
    async fn item() -> Result<Json<Value>, HttpError> {
        Err(HttpError::new(StatusCode::CONFLICT, "item is locked").with_field("retry_in", 30))
    }
    let addr = serve(Router::new().route("/item", get(item))).await;
    let response = http()
        .get(format!("http://{addr}/item"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body, json!({"detail": "item is locked", "retry_in": 30}));
}

#[tokio::test]
async fn forwarded_info_without_the_layer_is_a_500_naming_it() {
    let addr = serve(Router::new().route("/scheme", get(scheme))).await;
    let response = http()
        .get(format!("http://{addr}/scheme"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.text().await.unwrap().contains("ForwardedLayer"));
}

#[tokio::test]
async fn client_gone_is_an_extractor_on_shielded_routes() {
    async fn order(gone: ClientGone) -> String {
        format!("gone={}", gone.is_gone())
    }
    let app = Router::new()
        .route("/orders", post(order))
        .layer(ShieldLayer::builder().build().unwrap());
    let addr = serve(app).await;
    let response = http()
        .post(format!("http://{addr}/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "gone=false");
}

#[tokio::test]
async fn optional_client_gone_is_none_on_routes_that_are_not_shielded() {
    async fn read(gone: Option<ClientGone>) -> String {
        format!("shielded={}", gone.is_some())
    }
    let app = Router::new()
        .route("/orders", get(read))
        .layer(ShieldLayer::builder().build().unwrap());
    let addr = serve(app).await;
    let response = http()
        .get(format!("http://{addr}/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "shielded=false");
}

#[tokio::test(flavor = "current_thread")]
async fn serving_without_connect_info_warns_once_how_to_serve_the_app() {
    let (logs, _guard) = capture_logs();
    let app = Router::new()
        .route("/scheme", get(scheme))
        .layer(ForwardedLayer::builder().build().unwrap());
    let addr = serve(app).await;
    for _ in 0..3 {
        let response = http()
            .get(format!("http://{addr}/scheme"))
            .header("x-forwarded-proto", "https")
            .send()
            .await
            .unwrap();
        assert_eq!(response.text().await.unwrap(), "http");
    }
    let warnings = logs.lines_with("found no peer address");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("into_make_service_with_connect_info"));
}
