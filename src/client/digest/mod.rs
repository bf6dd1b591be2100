//! HTTP Digest authentication (RFC 7616) as a client middleware: answers a
//! server's `401` Digest challenge, or a proxy's `407`, and then answers
//! preemptively inside the protection space it learnt.
//!
//! Unlike a hand-set `Authorization` header, or a Digest helper that trusts the
//! first challenge it sees, [`DigestAuth`] reads every challenge header and
//! picks the strongest algorithm it supports (MD5, SHA-256 and SHA-512-256 with
//! their `-sess` variants, plus the SHA-512 and SHA(-1) that servers in the
//! field send), answers with the request target exactly as it goes on the
//! wire, hashes the body for `auth-int`, and never offers the credentials to an
//! origin the request was redirected to. A challenge it cannot answer is not
//! an error: the `401` comes back with a [`DigestFailure`] in its extensions,
//! and later requests are unaffected.
//!
//! # Which origins get an answer
//!
//! A Digest answer is an offline-guessable hash of the password, so it goes
//! only to the origins the credentials are for: the ones given to
//! [`origins`](DigestAuth::origins), or, when none are given, the origin of
//! the first request it answers (scheme, host and port; later challenges from
//! any other origin come back with [`DigestFailure::UnlistedOrigin`]). A
//! client that talks to two Digest servers lists both, or has one
//! `DigestAuth` per origin in per-request middleware lists. Inside an origin,
//! a challenge's `domain` still limits where answers go ahead of a challenge.
//!
//! ```no_run
//! use stopover::client::Client;
//! use stopover::client::digest::{DigestAuth, DigestFailure};
//!
//! # async fn run() -> Result<(), stopover::client::Error> {
//! let client = Client::builder()
//!     .middleware(DigestAuth::new("Mufasa", "Circle of Life"))
//!     .build()?;
//!
//! let response = client.get("http://camera.local/axis-cgi/param.cgi?action=list").send().await?;
//! if let Some(failure) = response.extensions().get::<DigestFailure>() {
//!     eprintln!("not authenticated: {failure}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Other configurations:
//!
//! ```
//! use stopover::client::digest::DigestAuth;
//!
//! // Answer only after a 401, never ahead of it:
//! let cautious = DigestAuth::new("Mufasa", "Circle of Life").preemptive(false);
//! // Credentials for a forward proxy (407 + Proxy-Authenticate):
//! let proxy = DigestAuth::proxy("proxy-user", "proxy-password");
//! # let _ = (cautious, proxy);
//! ```
//!
//! # How a request goes
//!
//! 1. A request that already carries `Authorization` (`Proxy-Authorization`
//!    for a proxy) is left alone: the caller authenticates it. So is a
//!    request to an origin the credentials are not for (see above); its
//!    Digest `401` comes back with [`DigestFailure::UnlistedOrigin`].
//! 2. On a redirect hop to an origin other than the one the caller asked for,
//!    or back to it after a hop elsewhere (the other origin chose where the
//!    request goes), nothing is answered: a `401` comes back with
//!    [`DigestFailure::CrossOrigin`].
//! 3. Inside a known protection space the request is answered preemptively
//!    with the stored nonce and the next nonce count.
//! 4. A `401` with an answerable Digest challenge is answered once, on a copy
//!    of the request ([`Request::try_clone`](super::Request::try_clone): a body that cannot be sent again
//!    is an [`ErrorKind::BodyNotReplayable`](super::ErrorKind::BodyNotReplayable) error). If that
//!    answer is refused with `stale=true` it is redone once with the new
//!    nonce. Any other refusal is returned with
//!    [`DigestFailure::CredentialsRejected`], unless these credentials were
//!    accepted in this protection space before: then the refusal is taken for
//!    a nonce count that concurrent requests overtook (see below) and
//!    answered again with the new challenge, up to four times. A wrong
//!    password thus fails after two requests (one for the challenge, one
//!    answer); a request in a confirmed space makes at most seven, and a
//!    space whose credentials then fail that often is no longer confirmed.
//! 5. With [`verify_server`](DigestAuth::verify_server) on, the response to
//!    an answered request must carry the server's `rspauth`, or the request
//!    fails.
//! 6. A success carrying `Authentication-Info: nextnonce=...` moves the space
//!    to the next nonce.
//!
//! A challenge that cannot be answered changes no stored state, so later
//! requests are unaffected. The state lock is never held across an `.await`.
//!
//! # Choices where the RFCs leave room
//!
//! - Several challenges: the strongest hash wins (SHA-512-256, SHA-256,
//!   SHA-512, SHA-1, MD5, each plain variant just ahead of its `-sess`
//!   sibling); ties go to a challenge with `qop`, then to the server's order.
//! - `algorithm=SHA` is SHA-1, as every interoperating client reads it.
//! - `qop`: `auth-int` when offered and the body is in memory, else `auth`;
//!   a server offering only `auth-int` for a streaming body gets
//!   [`DigestError::AuthIntNeedsBufferedBody`].
//! - A user name that is not printable ASCII is sent as RFC 8187
//!   `username*=UTF-8''...`; with `userhash=true` the name is hashed instead.
//! - `-sess` algorithms keep one client nonce per server nonce, so the session
//!   key is the same whether a server hashes it once or per request.
//! - Concurrent requests share a nonce and take nonce counts in the order they
//!   are prepared, but reach the server over several connections in any
//!   order. A server that insists on strictly increasing counts on the wire
//!   (Apache's `AuthDigestNcCheck On`) refuses one that was overtaken, and
//!   re-challenges with a new nonce and the same `opaque`, keeping one count
//!   per `opaque` across its nonces. So the count of a new nonce with the same
//!   `opaque` and no `stale=true` goes on from the highest count sent under
//!   that `opaque` instead of starting at 1 (a server counting per nonce
//!   accepts any count above the last), and the refused request is answered
//!   again as described above. A `stale=true` nonce starts at 1.
//! - `rspauth` in `Authentication-Info` (the server proving it knows the
//!   password too, RFC 7616 section 3.5) is checked only when asked for with
//!   [`DigestAuth::verify_server`]: many servers never send it, and RFC 7616
//!   leaves the check to the client.

mod algorithm;
mod answer;
mod auth;
mod challenge;
mod error;
#[cfg(test)]
mod properties;
mod space;

pub use auth::DigestAuth;
pub use error::{DigestError, DigestFailure, RandomSourceError};
