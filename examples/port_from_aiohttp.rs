//! A small aiohttp-middlewares app, ported to axum and stopover, part by part.
//!
//! The aiohttp original (in outline):
//!
//! ```text
//! async def api_error(request):             # an async error view for /api/...
//!     incident = await incidents.record(request)
//!     return json_response({"error": ..., "path": ..., "incident": incident}, status=...)
//!
//! app = web.Application(middlewares=[
//!     cors_middleware(origins=..., urls=[...]),   # one policy per tenant
//!     error_middleware(default_handler=page_error, config={r"^/api/": api_error}),
//!     shield_middleware(urls=["/upload"]),        # every method on /upload
//! ])
//! ```
//!
//! The port, outermost first: `CorsLayer::by_path` (a policy per tenant path, and a
//! predicate over the request's `Host` for the tenants' own API hosts), `ErrorLayer` with
//! an async per-path handler, `ShieldLayer` selecting by path alone (`all_methods`), and a
//! handler returning `Result<Json<T>, HttpError>`. The example starts the app on
//! 127.0.0.1, sends itself one request per part with stopover's client, prints what each
//! part did, and exits.
//!
//! Run it with `cargo run --example port_from_aiohttp --features axum`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Path;
use axum::http::{Method, StatusCode};
use axum::routing::{any, get};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use http::request::Parts;
use http::{Response, header};
use serde::Serialize;
use stopover::client::Client;
use stopover::server::cors::CorsLayer;
use stopover::server::error::{ErrorContext, ErrorLayer, HttpError};
use stopover::server::matcher::{PathMatcher, PathRules};
use stopover::server::shield::{ClientGone, ShieldHandle, ShieldLayer};
use tower::ServiceBuilder;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Stands in for an incident tracker the error view reports to, asynchronously.
#[derive(Default)]
struct Incidents {
    next: AtomicUsize,
}

impl Incidents {
    async fn record(&self, method: &Method, path: &str) -> usize {
        // A real tracker is a network call away.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        println!("  [server] error view: incident #{id} recorded for {method} {path}");
        id
    }
}

/// What the shielded handler finished, by method, for the transcript.
type Finished = Arc<Mutex<Vec<String>>>;

#[derive(Serialize)]
struct Order {
    id: u32,
    item: &'static str,
}

/// `async def get_order(request)` that raises `HTTPNotFound` for an unknown id.
async fn order(Path(id): Path<u32>) -> Result<Json<Order>, HttpError> {
    if id == 1 {
        return Ok(Json(Order { id, item: "tea" }));
    }
    Err(HttpError::new(StatusCode::NOT_FOUND, "no such order").with_field("order", id))
}

/// An upload that must not stop half-way, whatever the method.
async fn upload(
    method: Method,
    Extension(finished): Extension<Finished>,
    gone: Option<ClientGone>,
) -> &'static str {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let left = gone.as_ref().is_some_and(ClientGone::is_gone);
    finished
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(format!(
            "{method} /upload finished{}",
            if left { " after its client left" } else { "" }
        ));
    "stored"
}

/// `api_error`: an async error view for everything under `/api/`, rendering JSON.
async fn api_error(
    incidents: Arc<Incidents>,
    request: Parts,
    ctx: ErrorContext,
) -> Response<Bytes> {
    let incident = incidents.record(&request.method, request.uri.path()).await;
    let body = serde_json::json!({
        "error": ctx.detail(),
        "path": request.uri.path(),
        "incident": incident,
        "data": ctx.data(),
    });
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = ctx.status();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// `page_error`: the default view, a short text page.
async fn page_error(request: Parts, ctx: ErrorContext) -> Response<Bytes> {
    let page = format!("{} ({})\n", ctx.detail(), request.uri.path());
    let mut response = Response::new(Bytes::from(page));
    *response.status_mut() = ctx.status();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The tenant an API host names: `a.api.test` is tenant `a`.
fn tenant_of_host(parts: &Parts) -> Option<&str> {
    let host = parts.headers.get(header::HOST)?.to_str().ok()?;
    host.strip_suffix(".api.test")
}

struct App {
    addr: SocketAddr,
    shield: ShieldHandle,
    finished: Finished,
}

async fn start() -> Result<App, Error> {
    let incidents = Arc::new(Incidents::default());
    let finished: Finished = Arc::default();

    // `cors_middleware` once per tenant path, and the tenants' own hosts by predicate.
    let tenant = |prefix: &str| -> Result<PathRules, Error> {
        Ok(PathRules::new().with(PathMatcher::prefix(prefix)?))
    };
    let cors = CorsLayer::by_path()
        .policy(
            CorsLayer::builder()
                .urls(tenant("/tenants/a/")?)
                .allow_origin("https://a.example"),
        )
        .policy(
            CorsLayer::builder()
                .urls(tenant("/tenants/b/")?)
                .allow_origin("https://b.example"),
        )
        .policy(
            // Everything else: `https://<t>.example` may call the host `<t>.api.test`.
            CorsLayer::builder().allow_origin_predicate_with_parts(|origin, parts| {
                tenant_of_host(parts).is_some_and(|t| {
                    origin.strip_prefix("https://") == Some(&format!("{t}.example"))
                })
            }),
        )
        .build()?;

    // `error_middleware(default_handler=page_error, config={"/api/": api_error})`.
    let errors = ErrorLayer::builder()
        .handler(PathMatcher::prefix("/api/")?, move |request, ctx| {
            api_error(incidents.clone(), request, ctx)
        })
        .default_handler(page_error)
        .build()?;

    // `shield_middleware(urls=["/upload"])`: every method on `/upload`.
    let shield = ShieldLayer::builder()
        .all_methods()
        .paths(PathRules::new().with(PathMatcher::exact("/upload")?))
        .build()?;
    let shield_handle = shield.handle();

    let app = Router::new()
        .route("/api/orders/{id}", get(order))
        .route("/tenants/{tenant}/report", get(|| async { "report" }))
        .route("/upload", any(upload))
        .layer(Extension(finished.clone()))
        .layer(
            ServiceBuilder::new()
                .layer(cors)
                .layer(errors)
                .layer(shield),
        );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("server stopped: {err}");
        }
    });
    Ok(App {
        addr,
        shield: shield_handle,
        finished,
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let app = start().await?;
    let base = format!("http://{}", app.addr);
    println!("aiohttp port listening on {base}\n");
    let client = Client::builder().base_url(&base).build()?;

    println!("== a handler returning Result<Json<T>, HttpError>");
    let response = client.get("/api/orders/1").send().await?;
    println!(
        "GET /api/orders/1 -> {} {}",
        response.status(),
        response.text().await?
    );

    println!("\n== async error views");
    let response = client.get("/api/orders/7").send().await?;
    println!(
        "error view for /api rendered: {} {}",
        response.status(),
        response.text().await?
    );
    let response = client.get("/nowhere").send().await?;
    println!(
        "default error view rendered: {} {}",
        response.status(),
        response.text().await?.trim_end()
    );

    println!("\n== shielding by URL alone (every method)");
    for method in [Method::POST, Method::GET] {
        // The client gives up long before the upload finishes.
        let gave_up = client
            .request(method.clone(), "/upload")
            .timeout(Duration::from_millis(50))
            .send()
            .await
            .is_err();
        println!("client sent {method} /upload and left: {gave_up}");
    }
    app.shield.shutdown().await;
    for line in app
        .finished
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        println!("shielded {line}");
    }

    println!("\n== per-tenant CORS");
    for (path, origin) in [
        ("/tenants/a/report", "https://a.example"),
        ("/tenants/a/report", "https://b.example"),
        ("/tenants/b/report", "https://b.example"),
    ] {
        let response = client.get(path).header("origin", origin).send().await?;
        let verdict = cors_verdict(response.headers());
        println!("CORS by path: {path} from {origin}: {verdict}");
    }
    for (host, origin) in [
        ("a.api.test", "https://a.example"),
        ("b.api.test", "https://a.example"),
    ] {
        let response = client
            .get("/api/orders/1")
            .header("host", host)
            .header("origin", origin)
            .send()
            .await?;
        let verdict = cors_verdict(response.headers());
        println!("CORS by Host: {host} from {origin}: {verdict}");
    }
    let response = client
        .request(Method::OPTIONS, "/tenants/b/report")
        .header("origin", "https://a.example")
        .header("access-control-request-method", "GET")
        .send()
        .await?;
    println!(
        "CORS preflight: tenant b refuses tenant a's origin with {}",
        response.status()
    );
    Ok(())
}

fn cors_verdict(headers: &http::HeaderMap) -> String {
    match headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        Some(origin) => format!("allowed (Access-Control-Allow-Origin: {origin:?})"),
        None => "refused (no Access-Control-Allow-Origin)".to_owned(),
    }
}
