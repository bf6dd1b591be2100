//! W3C trace context on the wire (`opentelemetry` feature): the client span, exported by an
//! in-memory OpenTelemetry exporter, is the parent a loopback server is told about.
#![cfg(feature = "opentelemetry")]

mod support;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::HeaderMap;
use axum::response::Redirect;
use axum::routing::get;
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use stopover::client::Client;
use tracing_subscriber::layer::SubscriberExt;

type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// `/here` answers and records its `traceparent`; `/away` redirects to `other` and records too.
async fn server(other: Option<String>, seen: Seen) -> String {
    let record = |seen: Seen, path: &'static str| {
        move |headers: HeaderMap| {
            let value = headers
                .get("traceparent")
                .map(|v| v.to_str().unwrap().to_owned());
            seen.lock().unwrap().push((path.to_owned(), value));
            async {}
        }
    };
    let here = record(Arc::clone(&seen), "/here");
    let away = record(Arc::clone(&seen), "/away");
    let app = Router::new()
        .route(
            "/here",
            get(move |h: HeaderMap| async move {
                here(h).await;
                "ok"
            }),
        )
        .route(
            "/away",
            get(move |h: HeaderMap| async move {
                away(h).await;
                Redirect::to(&format!("{}/here", other.unwrap_or_default()))
            }),
        );
    let addr = support::serve(app).await;
    format!("http://{addr}")
}

fn otel() -> (
    InMemorySpanExporter,
    SdkTracerProvider,
    tracing::subscriber::DefaultGuard,
) {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("trace-context-test"));
    let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    (exporter, provider, guard)
}

#[tokio::test]
async fn the_server_receives_the_traceparent_of_the_client_wire_span() {
    let seen = Seen::default();
    let base = server(None, Arc::clone(&seen)).await;
    let (exporter, provider, guard) = otel();
    Client::new()
        .get(format!("{base}/here"))
        .send()
        .await
        .unwrap();
    drop(guard);
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let client: Vec<_> = spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Client)
        .collect();
    assert_eq!(client.len(), 2, "{spans:#?}");
    // The wire span ends first; it is the child of the logical span.
    let (wire, logical) = (client[0], client[1]);
    assert_eq!(wire.name, "GET");
    assert_eq!(wire.parent_span_id, logical.span_context.span_id());
    let expected = format!(
        "00-{}-{}-01",
        wire.span_context.trace_id(),
        wire.span_context.span_id()
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [("/here".to_owned(), Some(expected))]
    );
}

#[tokio::test]
async fn an_excluded_origin_never_receives_the_trace_context() {
    let seen = Seen::default();
    let excluded = server(None, Arc::clone(&seen)).await;
    let first = server(Some(excluded.clone()), Arc::clone(&seen)).await;
    let (_exporter, _provider, _guard) = otel();
    let client = Client::builder()
        .trace_context_exclude(&excluded)
        .build()
        .unwrap();
    client.get(format!("{first}/away")).send().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].0, "/away");
    assert!(seen[0].1.is_some(), "the first origin gets it: {seen:?}");
    assert_eq!(seen[1], ("/here".to_owned(), None));
}

#[test]
fn an_exclusion_that_is_not_a_url_is_a_build_error() {
    let err = Client::builder()
        .trace_context_exclude("partner.example")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("partner.example"), "{err}");
}
