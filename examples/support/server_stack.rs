//! The server stack the examples share: an axum app with every stopover server layer in the
//! recommended order (forwarded, CORS, error, timeout, shield), and routes that show each one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Path};
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use axum::{Extension, Router};
use stopover::server::cors::CorsLayer;
use stopover::server::error::{ErrorLayer, HttpError};
use stopover::server::forwarded::{ForwardedInfo, ForwardedLayer};
use stopover::server::matcher::PathMatcher;
use stopover::server::shield::{ClientGone, ShieldHandle, ShieldLayer};
use stopover::server::timeout::TimeoutLayer;
use tower::ServiceBuilder;

/// The origin the CORS layer lets in.
pub const APP_ORIGIN: &str = "https://app.example";

/// A running server: its address, the shield's handle and how many orders were stored.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub shield: ShieldHandle,
    pub orders_stored: Arc<AtomicUsize>,
}

/// Starts the stack on 127.0.0.1 (a free port) in a background task.
#[allow(dead_code)]
pub async fn start() -> Result<RunningServer, Box<dyn std::error::Error>> {
    start_with(Router::new()).await
}

/// Starts the stack with `extra` routes behind the same layers.
pub async fn start_with(extra: Router) -> Result<RunningServer, Box<dyn std::error::Error>> {
    let orders_stored = Arc::new(AtomicUsize::new(0));
    let shield = ShieldLayer::builder()
        .paths(stopover::server::matcher::PathRules::new().with(PathMatcher::exact("/orders")?))
        .build()?;
    let shield_handle = shield.handle();

    let routes = Router::new()
        .route("/hello", get(|| async { "hello from the stopover stack" }))
        .route("/items/{id}", get(item))
        .route("/panic", get(panics))
        .route("/slow", get(slow))
        .route("/scheme", get(scheme))
        .route("/orders", post(store_order))
        .layer(Extension(Arc::clone(&orders_stored)))
        .merge(extra);

    // One `Router::layer` call with a `ServiceBuilder`: listed outermost first, and the route is
    // wrapped once instead of once per layer.
    let app = routes.layer(
        ServiceBuilder::new()
            .layer(
                ForwardedLayer::builder()
                    .x_forwarded()
                    .peer_addr_with(|extensions| {
                        extensions
                            .get::<ConnectInfo<SocketAddr>>()
                            .map(|info| info.0.ip())
                    })
                    .build()?,
            )
            .layer(
                CorsLayer::builder()
                    .allow_origin(APP_ORIGIN)
                    .allow_methods([Method::GET, Method::POST])
                    .allow_headers(["content-type"])
                    .expose_headers(["x-request-id"])
                    .max_age(Duration::from_secs(600))
                    .build()?,
            )
            .layer(ErrorLayer::new())
            .layer(TimeoutLayer::builder(Duration::from_millis(500)).build()?)
            .layer(shield),
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(err) = axum::serve(listener, service).await {
            eprintln!("server stopped: {err}");
        }
    });
    Ok(RunningServer {
        addr,
        shield: shield_handle,
        orders_stored,
    })
}

async fn item(Path(id): Path<u32>) -> Result<String, axum::response::Response> {
    if id == 1 {
        return Ok("item 1".to_owned());
    }
    Err(HttpError::new(StatusCode::NOT_FOUND, "no such item").with_field("id", id))?
}

async fn panics() -> &'static str {
    panic!("a bug with a secret inside: the database password is hunter2")
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "too late"
}

async fn scheme(Extension(info): Extension<ForwardedInfo>) -> String {
    format!("scheme seen by the handler: {}", info.scheme())
}

async fn store_order(
    Extension(stored): Extension<Arc<AtomicUsize>>,
    Extension(gone): Extension<ClientGone>,
) -> &'static str {
    // Work that must not stop half-way, even when the client hangs up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stored.fetch_add(1, Ordering::SeqCst);
    if gone.is_gone() {
        println!("  [server] order stored although its client left");
    }
    "stored"
}
