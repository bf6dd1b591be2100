//! Traced requests: the spans of one request that is redirected and retried, printed as a tree.
//!
//! stopover opens one span for the logical request and one child span for every request on
//! the wire, named and shaped by OpenTelemetry's HTTP client conventions, so a tracing backend
//! groups, filters and charts them with its standard HTTP views. This example prints them with
//! a small `tracing` layer; in a service, the `tracing-opentelemetry` layer exports them.
//!
//! Run with `cargo run --example tracing`.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use stopover::client::Client;
use stopover::client::retry::{Retry, RetryPolicy};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Each span's id, depth and line (name and fields), in the order the spans opened, and where
/// each id's line is.
type Lines = (Vec<(u64, usize, String)>, HashMap<u64, usize>);

/// Keeps each span's name, depth and fields, in the order the spans opened.
#[derive(Clone, Default)]
struct Tree(Arc<Mutex<Lines>>);

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={value}", field.name());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Tree {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let depth = ctx.span(id).map_or(0, |span| span.scope().count() - 1);
        let mut line = attrs.metadata().name().to_owned();
        attrs.record(&mut Fields(&mut line));
        let mut tree = self.0.lock().unwrap();
        let index = tree.0.len();
        tree.0.push((id.into_u64(), depth, line));
        tree.1.insert(id.into_u64(), index);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut tree = self.0.lock().unwrap();
        if let Some(&index) = tree.1.get(&id.into_u64()) {
            values.record(&mut Fields(&mut tree.0[index].2));
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `/old` moved to `/report`, which fails once before it answers.
    let failures = Arc::new(AtomicUsize::new(1));
    let app = Router::new()
        .route("/old", get(|| async { Redirect::permanent("/report") }))
        .route(
            "/report",
            get(move || {
                let failures = Arc::clone(&failures);
                async move {
                    if failures.fetch_sub(1, Ordering::SeqCst) > 0 {
                        StatusCode::SERVICE_UNAVAILABLE.into_response()
                    } else {
                        "quarterly report".into_response()
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let tree = Tree::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(tree.clone()));

    let retry = Retry::new(
        RetryPolicy::builder()
            .backoff(Duration::from_millis(10), Duration::from_millis(10))
            .build()?,
    );
    let client = Client::builder().middleware(retry).build()?;
    let response = client.get(format!("http://{addr}/old")).send().await?;
    println!("{} {}\n", response.status(), response.text().await?);

    let tree = tree.0.lock().unwrap();
    for (_, depth, line) in tree
        .0
        .iter()
        .filter(|(_, _, line)| line.contains("otel.kind"))
    {
        // The client spans are the only ones here, so their depth is the tree's.
        println!("{}{line}", "    ".repeat(*depth));
    }
    Ok(())
}
