//! Prometheus metrics (`--expose-prometheus-metrics`): smokescreen's counters, under its
//! Prometheus names (the statsd name with dots turned into underscores, no prefix) and labels.
//!
//! Counted: `acl_allow`, `acl_report`, `acl_deny` (labels `role`, `project`, `def_rule`),
//! `acl_role_not_determined`, `resolver_attempts_total`, `resolver_errors_total`,
//! `resolver_allow_default`, `resolver_allow_user_configured`, `resolver_deny_*` (smokescreen's
//! classes: `not_global_unicast`, `private_range`, `user_configured`, `cgnat_range`,
//! `ipv6_embedding`, `self_connection`), `cn_atpt_total` (label `success`),
//! `requests_rate_limited`, `requests_concurrency_limited` and `tunnels_concurrency_limited`;
//! and one counter smokescreen lacks, `resolver_deny_rule` labelled with stopover's rule id.
//! smokescreen's timing histograms and connection-tracking metrics are not exported.
//!
//! The text format is written by hand: a dozen counters do not need the `prometheus` crate's
//! registry, protobuf support and process collector.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Mutex;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::log::{self, Level};
use crate::settings::PrometheusSettings;

/// Counters by name, then by rendered label set.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<&'static str, BTreeMap<String, u64>>>,
}

impl Metrics {
    /// Adds one to a counter with these labels.
    pub fn incr(&self, name: &'static str, labels: &[(&str, &str)]) {
        let mut rendered = String::new();
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                rendered.push(',');
            }
            let _ = write!(rendered, "{key}=\"{}\"", escape(&sanitize_tag(value)));
        }
        let mut counters = match self.counters.lock() {
            Ok(counters) => counters,
            Err(poisoned) => poisoned.into_inner(),
        };
        *counters
            .entry(name)
            .or_default()
            .entry(rendered)
            .or_insert(0) += 1;
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let counters = match self.counters.lock() {
            Ok(counters) => counters,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut out = String::new();
        for (name, series) in counters.iter() {
            let _ = writeln!(out, "# TYPE {name} counter");
            for (labels, value) in series {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
        }
        out
    }
}

/// smokescreen's `SanitizeTagValue`: `|@#:"{}\` and control characters become `_`.
fn sanitize_tag(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if matches!(
                c,
                '|' | '@' | '#' | ':' | '"' | '}' | '{' | '\\' | '[' | ']'
            ) || c.is_control()
            {
                '_'
            } else {
                c
            }
        })
        .collect()
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Serves the metrics until the process ends.
pub async fn serve(
    settings: PrometheusSettings,
    metrics: std::sync::Arc<Metrics>,
) -> Result<(), String> {
    let listener = TcpListener::bind(settings.addr)
        .await
        .map_err(|e| format!("prometheus listener on {}: {e}", settings.addr))?;
    let endpoint = std::sync::Arc::new(settings.endpoint);
    let mut fields = log::Fields::new();
    if let Ok(addr) = listener.local_addr() {
        fields.insert("metrics_addr".into(), addr.to_string().into());
    }
    log::emit(Level::Info, "serving prometheus metrics", fields);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (metrics, endpoint) = (metrics.clone(), endpoint.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: http::Request<_>| {
                    let found = request.method() == Method::GET
                        && request.uri().path() == endpoint.as_str();
                    let response = if found {
                        Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(metrics.render())))
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"404 page not found\n")))
                    };
                    async move { Ok::<_, Infallible>(response.unwrap_or_default()) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_the_text_format() {
        let metrics = Metrics::default();
        metrics.incr("acl_deny", &[("role", "a:b"), ("project", "p")]);
        metrics.incr("acl_deny", &[("role", "a:b"), ("project", "p")]);
        metrics.incr("resolver_attempts_total", &[]);
        assert_eq!(
            metrics.render(),
            "# TYPE acl_deny counter\nacl_deny{role=\"a_b\",project=\"p\"} 2\n\
             # TYPE resolver_attempts_total counter\nresolver_attempts_total 1\n"
        );
    }
}
