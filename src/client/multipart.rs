//! `multipart/form-data` request bodies (the `multipart` feature): reqwest's [`Form`] and
//! [`Part`], sent with [`RequestBuilder::multipart`](super::RequestBuilder::multipart).
//!
//! ```no_run
//! use stopover::client::Client;
//! use stopover::client::multipart::{Form, Part};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let form = Form::new()
//!     .text("title", "quarterly report")
//!     .part("file", Part::bytes(b"a,b\n1,2\n".to_vec()).file_name("report.csv").mime_str("text/csv")?);
//! let response = Client::new().post("http://127.0.0.1:8080/upload").multipart(form).send().await?;
//! # let _ = response;
//! # Ok(())
//! # }
//! ```
//!
//! A form is a streaming body, under the replay rules of [`Body`]: the first
//! [`MULTIPART_REPLAY_CAP`] bytes are kept, so a retry or a 307/308 redirect sends a small form
//! again; a larger one (a file upload) is sent once, and a second send fails with
//! [`ErrorKind::BodyNotReplayable`](super::ErrorKind::BodyNotReplayable) rather than going out
//! empty. The body is sent chunked, without a `Content-Length` (reqwest computes a form's length
//! only inside its own request builder).

use http::HeaderValue;
use http::header::CONTENT_TYPE;

pub use reqwest::multipart::{Form, Part};

use super::body::Body;
use super::error::Error;
use super::request_builder::RequestBuilder;

/// How many bytes of a multipart body are kept so that a retry or a 307/308 redirect can send
/// it again: 64 KiB, enough for forms of text fields and small files.
pub const MULTIPART_REPLAY_CAP: usize = 64 * 1024;

impl RequestBuilder {
    /// Sets a `multipart/form-data` body (reqwest's `RequestBuilder::multipart`), replacing the
    /// body and the `Content-Type` (which names the form's boundary). Replayed by retries and
    /// 307/308 redirects within [`MULTIPART_REPLAY_CAP`]; see [`multipart`](super::multipart).
    ///
    /// ```
    /// use stopover::client::multipart::Form;
    ///
    /// # let client = stopover::client::Client::new();
    /// let request = client
    ///     .post("http://example.test/profile")
    ///     .multipart(Form::new().text("name", "Ada").text("lang", "en"));
    /// # let _ = request;
    /// ```
    pub fn multipart(self, form: Form) -> Self {
        let content_type =
            HeaderValue::try_from(format!("multipart/form-data; boundary={}", form.boundary()));
        let body = Body::wrap_stream_replayable(form.into_stream(), MULTIPART_REPLAY_CAP);
        self.update(|request| {
            let content_type = content_type.map_err(|_| {
                Error::builder("the multipart boundary is not a valid header value")
            })?;
            request.headers.insert(CONTENT_TYPE, content_type);
            request.body = body;
            Ok(())
        })
    }
}
