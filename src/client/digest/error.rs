//! Why a challenge was not answered ([`DigestFailure`], returned with the response) and why a
//! request could not be authenticated ([`DigestError`], returned as an error).

/// Why a Digest challenge was not answered.
///
/// The middleware returns the `401` (or `407`) to the caller with this value in
/// the response's extensions:
///
/// ```
/// # use stopover::client::digest::DigestFailure;
/// # fn check(extensions: &http::Extensions) {
/// if let Some(failure) = extensions.get::<DigestFailure>() {
///     eprintln!("digest authentication failed: {failure}");
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestFailure {
    /// No challenge header offered the Digest scheme.
    #[error("the response has no Digest challenge")]
    NoDigestChallenge,
    /// The challenge header could not be parsed.
    #[error("the Digest challenge header is malformed")]
    MalformedChallenge,
    /// The challenge has no `realm`.
    #[error("the Digest challenge has no realm")]
    MissingRealm,
    /// The challenge has no `nonce`.
    #[error("the Digest challenge has no nonce")]
    MissingNonce,
    /// The challenge's `nonce` is empty.
    #[error("the Digest challenge has an empty nonce")]
    EmptyNonce,
    /// The challenge names an algorithm this middleware does not implement.
    #[error("unsupported Digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The challenge's `qop` offers neither `auth` nor `auth-int`.
    #[error("unsupported Digest qop {0:?}")]
    UnsupportedQop(String),
    /// A `-sess` algorithm without `qop`: the session key needs a client
    /// nonce, which an answer without `qop` cannot carry.
    #[error("Digest algorithm {0:?} needs a qop")]
    SessionWithoutQop(String),
    /// The server challenged again an answer made with a fresh nonce.
    #[error("the server rejected the Digest credentials")]
    CredentialsRejected,
    /// The challenge came from an origin the request was redirected to (or
    /// from the original origin after a redirect through another one); the
    /// credentials are only sent to the origin the request was made to, on
    /// hops that never left it.
    #[error("Digest challenge from a cross-origin redirect target not answered")]
    CrossOrigin,
    /// The challenge came from an origin the credentials are not for: not one
    /// of [`DigestAuth::origins`](super::DigestAuth::origins), or, without that list, not the origin of
    /// the first request the middleware answered.
    #[error("Digest challenge from an origin the credentials are not for not answered")]
    UnlistedOrigin,
    /// The server kept one nonce for 2^32 - 1 requests; the count cannot go on.
    #[error("the Digest nonce count is exhausted")]
    NonceCountExhausted,
    /// The challenge names this parameter more than once, which RFC 7616
    /// forbids; which of the values the server meant is unknowable.
    #[error("the Digest challenge repeats the parameter {0:?}")]
    DuplicateParameter(String),
}

/// An error that stops a request the middleware could otherwise answer.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The server only offers `qop=auth-int`, which hashes the body, and the
    /// request body is a stream that is not in memory.
    #[error("the server requires qop=auth-int, which needs a buffered request body")]
    AuthIntNeedsBufferedBody,
    /// The operating system's random source failed while making a client
    /// nonce.
    #[error("cannot generate a Digest client nonce")]
    Random(#[source] RandomSourceError),
    /// The configured client-nonce source returned something that is not a
    /// non-empty run of printable ASCII without `"` or `\`.
    #[error("the client nonce {0:?} is not printable ASCII")]
    InvalidCnonce(String),
    /// [`DigestAuth::verify_server`](super::DigestAuth::verify_server) is on and the response to an answered
    /// request has no `rspauth` in its `Authentication-Info`
    /// (`Proxy-Authentication-Info`) header.
    #[error("the response carries no rspauth proving the server knows the password")]
    MissingRspauth,
    /// [`DigestAuth::verify_server`](super::DigestAuth::verify_server) is on and the response's
    /// `Authentication-Info` cannot be read: not a parameter list, or a
    /// parameter given twice.
    #[error("the response's Authentication-Info header is malformed")]
    MalformedAuthenticationInfo,
    /// [`DigestAuth::verify_server`](super::DigestAuth::verify_server) is on and the response's `rspauth` (or
    /// the `qop`, `nc` or `cnonce` it echoes) does not match the answer that
    /// was sent: the response did not come from a server that knows the
    /// password.
    #[error(
        "the response's rspauth does not match: the server did not prove it knows the password"
    )]
    RspauthMismatch,
    /// The user name contains `:`, which makes `H(A1) = H(username ":" realm ":" password)`
    /// ambiguous: user `a:b` in realm `c` hashes as user `a` in realm `b:c` (RFC 7616, section
    /// 3.4.4). Refused when the client is built ([`Middleware::check`]) or, in a request's own
    /// middleware list, before the request is sent.
    ///
    /// [`Middleware::check`]: crate::client::Middleware::check
    #[error(
        "the Digest user name contains ':', which makes the hash of the credentials ambiguous \
         (RFC 7616, section 3.4.4)"
    )]
    ColonInUsername,
}

/// The operating system's random source failed; the cause of
/// [`DigestError::Random`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RandomSourceError(pub(super) getrandom::Error);
