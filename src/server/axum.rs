//! axum integration (the `axum` feature): [`HttpError`] as a handler's error type, and the
//! values the layers attach to a request as extractors.
//!
//! - `HttpError` implements [`IntoResponse`], so `Result<Json<T>, HttpError>` is a handler
//!   return type. The response is the one [`ErrorLayer`](crate::server::ErrorLayer) would
//!   send without further configuration (JSON, `{"detail": ...}` and the error's data); an
//!   `ErrorLayer` around the router still renders it in the layer's format.
//! - [`ForwardedInfo`] is an extractor: what [`ForwardedLayer`](crate::server::ForwardedLayer)
//!   concluded about the request.
//! - [`ClientGone`] is an extractor on shielded routes, and `Option<ClientGone>` on routes that
//!   may not be shielded.
//! - `ForwardedLayer`'s default peer address also reads axum's `ConnectInfo<SocketAddr>`,
//!   which `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())`
//!   inserts.
//!
//! An extractor whose layer is not installed answers `500 Internal Server Error` with a body
//! naming the missing layer: a wiring mistake, not a client error.
//!
//! ```
//! use axum::{Json, Router, routing::get};
//! use http::StatusCode;
//! use stopover::server::error::HttpError;
//! use stopover::server::forwarded::{ForwardedInfo, ForwardedLayer};
//!
//! async fn whoami(info: ForwardedInfo) -> Result<Json<String>, HttpError> {
//!     let client = info
//!         .client()
//!         .ok_or_else(|| HttpError::new(StatusCode::BAD_REQUEST, "no client address"))?;
//!     Ok(Json(format!("{}://{client}", info.scheme())))
//! }
//!
//! # fn main() -> Result<(), stopover::server::forwarded::ForwardedConfigError> {
//! let app: Router = Router::new()
//!     .route("/whoami", get(whoami))
//!     .layer(ForwardedLayer::builder().client(true).build()?);
//! // axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

use std::convert::Infallible;
use std::fmt;

use ::axum::extract::{FromRequestParts, OptionalFromRequestParts};
use ::axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::server::error::HttpError;
use crate::server::forwarded::ForwardedInfo;
use crate::server::shield::ClientGone;

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        self.into()
    }
}

/// The rejection of an extractor whose layer did not run for the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingLayer {
    extractor: &'static str,
    layer: &'static str,
}

impl MissingLayer {
    /// The extractor that found nothing (`"ForwardedInfo"`, `"ClientGone"`).
    pub fn extractor(&self) -> &'static str {
        self.extractor
    }

    /// The layer that inserts it.
    pub fn layer(&self) -> &'static str {
        self.layer
    }
}

impl fmt::Display for MissingLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} extractor found nothing: {} did not run for this request",
            self.extractor, self.layer
        )
    }
}

impl std::error::Error for MissingLayer {}

impl IntoResponse for MissingLayer {
    fn into_response(self) -> Response {
        tracing::error!(extractor = self.extractor, layer = self.layer, "{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ForwardedInfo {
    type Rejection = MissingLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or(MissingLayer {
            extractor: "ForwardedInfo",
            layer: "ForwardedLayer",
        })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for ForwardedInfo {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientGone {
    type Rejection = MissingLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or(MissingLayer {
            extractor: "ClientGone",
            layer: "ShieldLayer (the route is not shielded)",
        })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for ClientGone {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}
