//! [`IntoUrl`]: what a request URL can be given as.

use url::Url;

use super::error::{Error, Result};
use super::redaction::WithoutCredentials;

/// `url` if its scheme is one the client speaks.
pub(crate) fn check_scheme(url: Url) -> Result<Url> {
    match url.scheme() {
        "http" | "https" => Ok(url),
        scheme => Err(Error::builder(format!(
            "the URL {} has the scheme {scheme:?}; only http and https are supported",
            WithoutCredentials(&url)
        ))),
    }
}

/// What a request URL can be given as: a string (absolute, or relative to the base URL) or a
/// parsed [`Url`].
pub trait IntoUrl: sealed::Sealed {}

mod sealed {
    use super::{Error, Result, Url, check_scheme};

    pub trait Sealed {
        fn into_url(self, base: Option<&Url>) -> Result<Url>;
    }

    impl Sealed for Url {
        fn into_url(self, _base: Option<&Url>) -> Result<Url> {
            check_scheme(self)
        }
    }

    impl Sealed for &Url {
        fn into_url(self, _base: Option<&Url>) -> Result<Url> {
            check_scheme(self.clone())
        }
    }

    impl Sealed for &str {
        fn into_url(self, base: Option<&Url>) -> Result<Url> {
            let parsed = match (Url::parse(self), base) {
                (Ok(url), _) => url,
                (Err(url::ParseError::RelativeUrlWithoutBase), Some(base)) => {
                    base.join(self).map_err(|err| {
                        Error::builder(format!("the URL {self:?} is not valid: {err}"))
                    })?
                }
                (Err(url::ParseError::RelativeUrlWithoutBase), None) => {
                    return Err(Error::builder(format!(
                        "the URL {self:?} is relative and the client has no base URL"
                    )));
                }
                (Err(err), _) => {
                    return Err(Error::builder(format!(
                        "the URL {self:?} is not valid: {err}"
                    )));
                }
            };
            check_scheme(parsed)
        }
    }

    impl Sealed for String {
        fn into_url(self, base: Option<&Url>) -> Result<Url> {
            self.as_str().into_url(base)
        }
    }

    impl Sealed for &String {
        fn into_url(self, base: Option<&Url>) -> Result<Url> {
            self.as_str().into_url(base)
        }
    }
}

impl IntoUrl for Url {}
impl IntoUrl for &Url {}
impl IntoUrl for &str {}
impl IntoUrl for String {}
impl IntoUrl for &String {}
