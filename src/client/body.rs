//! Request bodies that know whether they can be sent again.
//!
//! A buffered body ([`Bytes`]) can be sent any number of times: retries and 307/308 redirects
//! replay it. A streaming body is read once; it can be replayed only when it was created with a
//! replay cap ([`Body::wrap_stream_replayable`]) and everything it produced fitted under that cap.
//! Anything else fails with [`ErrorKind::BodyNotReplayable`](super::ErrorKind::BodyNotReplayable):
//! a second send never goes out with a silently empty body.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::error::{BoxError, Error, Result};

type BoxStream = Pin<Box<dyn Stream<Item = std::result::Result<Bytes, BoxError>> + Send>>;

/// The body of a client request.
///
/// ```
/// use stopover::client::Body;
///
/// let body = Body::from("hello");
/// assert_eq!(body.as_bytes(), Some(&b"hello"[..]));
/// assert!(body.is_replayable());
/// ```
pub struct Body {
    kind: Kind,
}

enum Kind {
    Bytes(Bytes),
    Stream(Arc<SharedStream>),
}

/// A stream shared by every copy of a request made for retries and redirect hops: the first
/// send takes the stream and records what it yields (up to the cap); later sends replay the
/// recording once it is complete.
struct SharedStream {
    replay_cap: usize,
    state: Mutex<StreamState>,
}

struct StreamState {
    stream: Option<BoxStream>,
    recording: Recording,
}

enum Recording {
    /// The stream has not finished yet (or has not started); chunks so far and their length.
    InProgress { chunks: Vec<Bytes>, len: usize },
    /// The stream ended and every chunk is kept.
    Complete(Vec<Bytes>),
    /// The stream produced more than the cap, or the cap is zero: nothing is kept.
    Discarded,
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Body {
            kind: Kind::Bytes(Bytes::new()),
        }
    }

    /// A streaming body that is sent once and never replayed.
    ///
    /// A retry or a 307/308 redirect of a request with this body fails with
    /// [`ErrorKind::BodyNotReplayable`](super::ErrorKind::BodyNotReplayable).
    pub fn wrap_stream<S, E>(stream: S) -> Self
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        Body::wrap_stream_replayable(stream, 0)
    }

    /// A streaming body that keeps up to `replay_cap` bytes of what it sent, so that a retry or
    /// a 307/308 redirect can send it again.
    ///
    /// A stream longer than the cap is still sent in full the first time; only a second send
    /// fails, with [`ErrorKind::BodyNotReplayable`](super::ErrorKind::BodyNotReplayable).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use stopover::client::Body;
    ///
    /// let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from("part"))]);
    /// let body = Body::wrap_stream_replayable(chunks, 64 * 1024);
    /// assert!(body.is_replayable());
    /// ```
    pub fn wrap_stream_replayable<S, E>(stream: S, replay_cap: usize) -> Self
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let stream: BoxStream = Box::pin(stream.map(|chunk| chunk.map_err(Into::into)));
        let recording = if replay_cap == 0 {
            Recording::Discarded
        } else {
            Recording::InProgress {
                chunks: Vec::new(),
                len: 0,
            }
        };
        Body {
            kind: Kind::Stream(Arc::new(SharedStream {
                replay_cap,
                state: Mutex::new(StreamState {
                    stream: Some(stream),
                    recording,
                }),
            })),
        }
    }

    /// The bytes of a buffered body; `None` for a streaming body.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Bytes(bytes) => Some(bytes),
            Kind::Stream(_) => None,
        }
    }

    /// True when the body has no bytes at all (a buffered, empty body).
    pub fn is_empty(&self) -> bool {
        matches!(&self.kind, Kind::Bytes(bytes) if bytes.is_empty())
    }

    /// True for a streaming body.
    pub fn is_stream(&self) -> bool {
        matches!(self.kind, Kind::Stream(_))
    }

    /// Whether this body can still be sent (again): always for a buffered body; for a stream,
    /// while it has not been sent, or once it was sent whole within its replay cap.
    pub fn is_replayable(&self) -> bool {
        match &self.kind {
            Kind::Bytes(_) => true,
            Kind::Stream(shared) => shared.can_send_again(),
        }
    }

    /// True for a stream created with a replay cap above zero.
    pub(crate) fn is_replayable_stream(&self) -> bool {
        matches!(&self.kind, Kind::Stream(shared) if shared.replay_cap > 0)
    }

    /// True for a stream that can never be sent again: it was sent and produced more than its
    /// cap, or it has no cap. False for a buffered body, and for a stream still being sent
    /// (which may yet end within its cap).
    pub(crate) fn is_past_replay(&self) -> bool {
        match &self.kind {
            Kind::Bytes(_) => false,
            Kind::Stream(shared) => {
                let state = shared.lock();
                state.stream.is_none() && matches!(state.recording, Recording::Discarded)
            }
        }
    }

    /// The length in bytes when it is known before sending.
    pub fn len(&self) -> Option<usize> {
        match &self.kind {
            Kind::Bytes(bytes) => Some(bytes.len()),
            Kind::Stream(_) => None,
        }
    }

    /// A second handle on the same body, for another attempt or hop. Never fails: whether the
    /// body can actually be sent again is decided when it is sent.
    pub(crate) fn share(&self) -> Body {
        let kind = match &self.kind {
            Kind::Bytes(bytes) => Kind::Bytes(bytes.clone()),
            Kind::Stream(shared) => Kind::Stream(Arc::clone(shared)),
        };
        Body { kind }
    }

    /// Turns the body into what reqwest sends: the bytes, the stream itself on its first send
    /// (recording it up to the cap), or the recording on a later send.
    pub(crate) fn into_transport(self) -> Result<Option<reqwest::Body>> {
        match self.kind {
            Kind::Bytes(bytes) if bytes.is_empty() => Ok(None),
            Kind::Bytes(bytes) => Ok(Some(reqwest::Body::from(bytes))),
            Kind::Stream(shared) => shared.take_for_send().map(Some),
        }
    }
}

impl SharedStream {
    fn lock(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn can_send_again(&self) -> bool {
        let state = self.lock();
        state.stream.is_some() || matches!(state.recording, Recording::Complete(_))
    }

    fn take_for_send(self: Arc<Self>) -> Result<reqwest::Body> {
        let mut state = self.lock();
        if let Some(stream) = state.stream.take() {
            drop(state);
            let recorder = Recorder {
                stream: Some(stream),
                shared: Arc::clone(&self),
                started: false,
            };
            return Ok(reqwest::Body::wrap_stream(recorder));
        }
        match &state.recording {
            Recording::Complete(chunks) => {
                let chunks = chunks.clone();
                Ok(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks.into_iter().map(Ok::<_, BoxError>),
                )))
            }
            Recording::InProgress { .. } => Err(Error::body_not_replayable(
                "the streaming body was not sent to its end, so it cannot be sent again",
            )),
            Recording::Discarded if self.replay_cap == 0 => Err(Error::body_not_replayable(
                "the streaming body has no replay cap, so it can be sent only once",
            )),
            Recording::Discarded => Err(Error::body_not_replayable(
                "the streaming body was longer than its replay cap",
            )),
        }
    }

    fn record(&self, chunk: &Bytes) {
        let mut state = self.lock();
        if let Recording::InProgress { chunks, len } = &mut state.recording {
            *len += chunk.len();
            if *len > self.replay_cap {
                state.recording = Recording::Discarded;
            } else {
                chunks.push(chunk.clone());
            }
        }
    }

    fn finish(&self) {
        let mut state = self.lock();
        if let Recording::InProgress { chunks, .. } = &mut state.recording {
            let chunks = std::mem::take(chunks);
            state.recording = Recording::Complete(chunks);
        }
    }
}

/// The first send of a streaming body: passes chunks through and records them.
///
/// Dropped before the stream yielded anything (the connection could not be made, so the
/// transport never read the body), it hands the stream back: nothing was sent, so the body can
/// still be sent, by a retry after a connect error for instance.
struct Recorder {
    stream: Option<BoxStream>,
    shared: Arc<SharedStream>,
    /// Set once the stream yielded an item or ended: from then on it cannot be handed back.
    started: bool,
}

impl Stream for Recorder {
    type Item = std::result::Result<Bytes, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(stream) = self.stream.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = stream.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => self.shared.record(chunk),
            Poll::Ready(None) => self.shared.finish(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        if polled.is_ready() {
            self.started = true;
        }
        polled
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.started {
            return;
        }
        if let Some(stream) = self.stream.take() {
            let mut state = self.shared.lock();
            if state.stream.is_none() {
                state.stream = Some(stream);
            }
        }
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Bytes(bytes) => f.debug_tuple("Body").field(&bytes.len()).finish(),
            Kind::Stream(shared) => f
                .debug_struct("Body")
                .field("stream", &true)
                .field("replay_cap", &shared.replay_cap)
                .finish(),
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Body {
            kind: Kind::Bytes(bytes),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body::from(Bytes::from(bytes))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Body::from(Bytes::from(text))
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Body::from(Bytes::from_static(text.as_bytes()))
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Self {
        Body::from(Bytes::from_static(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn chunks(parts: &[&'static str]) -> impl Stream<Item = std::result::Result<Bytes, BoxError>> {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|part| Ok(Bytes::from_static(part.as_bytes())))
                .collect::<Vec<_>>(),
        )
    }

    async fn read_all(body: reqwest::Body) -> Bytes {
        body.collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn stream_within_cap_replays_what_it_sent() {
        let body = Body::wrap_stream_replayable(chunks(&["ab", "cd"]), 16);
        let second = body.share();
        let first = read_all(body.into_transport().unwrap().unwrap()).await;
        assert!(second.is_replayable());
        let replayed = read_all(second.into_transport().unwrap().unwrap()).await;
        assert_eq!(first, "abcd");
        assert_eq!(replayed, "abcd");
    }

    #[tokio::test]
    async fn stream_over_cap_is_sent_once_then_refused() {
        let body = Body::wrap_stream_replayable(chunks(&["abc", "def"]), 4);
        let second = body.share();
        let first = read_all(body.into_transport().unwrap().unwrap()).await;
        assert_eq!(first, "abcdef");
        assert!(!second.is_replayable());
        let err = second.into_transport().unwrap_err();
        assert!(err.is_body_not_replayable());
        assert!(err.to_string().contains("longer than its replay cap"));
    }

    #[tokio::test]
    async fn stream_without_cap_is_refused_on_second_send() {
        let body = Body::wrap_stream(chunks(&["x"]));
        let second = body.share();
        let _first = body.into_transport().unwrap();
        let err = second.into_transport().unwrap_err();
        assert!(err.is_body_not_replayable());
    }

    #[tokio::test]
    async fn stream_exactly_at_its_cap_is_replayed() {
        let body = Body::wrap_stream_replayable(chunks(&["ab", "cd"]), 4);
        let second = body.share();
        read_all(body.into_transport().unwrap().unwrap()).await;
        assert!(second.is_replayable());
        let replayed = read_all(second.into_transport().unwrap().unwrap()).await;
        assert_eq!(replayed, "abcd");
    }

    #[tokio::test]
    async fn stream_that_failed_is_not_replayed() {
        let failing = futures_util::stream::iter([
            Ok(Bytes::from_static(b"ab")),
            Err(BoxError::from("disk gone")),
        ]);
        let body = Body::wrap_stream_replayable(failing, 16);
        let second = body.share();
        let sent = body.into_transport().unwrap().unwrap().collect().await;
        assert!(sent.is_err());
        assert!(!second.is_replayable());
        let err = second.into_transport().unwrap_err();
        assert!(err.is_body_not_replayable());
    }

    #[tokio::test]
    async fn concurrent_share_of_a_stream_being_sent_is_refused() {
        let body = Body::wrap_stream_replayable(chunks(&["ab", "cd"]), 16);
        let second = body.share();
        let mut first = body.into_transport().unwrap().unwrap();
        let _one_frame = first.frame().await;
        // The first send is still under way: the copy must not go out half-recorded.
        let err = second.into_transport().unwrap_err();
        assert!(err.is_body_not_replayable());
        assert!(err.to_string().contains("not sent to its end"), "{err}");
    }

    #[tokio::test]
    async fn stream_never_read_by_the_transport_can_still_be_sent() {
        let body = Body::wrap_stream_replayable(chunks(&["ab", "cd"]), 16);
        let second = body.share();
        // A connect error: the transport drops the body without reading a byte.
        drop(body.into_transport().unwrap());
        assert!(second.is_replayable());
        let sent = read_all(second.into_transport().unwrap().unwrap()).await;
        assert_eq!(sent, "abcd");
    }

    #[tokio::test]
    async fn stream_cut_off_midway_is_not_replayed() {
        let body = Body::wrap_stream_replayable(chunks(&["ab", "cd"]), 16);
        let second = body.share();
        let mut first = body.into_transport().unwrap().unwrap();
        let _one_frame = first.frame().await;
        drop(first);
        assert!(!second.is_replayable());
        assert!(
            second
                .into_transport()
                .unwrap_err()
                .is_body_not_replayable()
        );
    }
}
