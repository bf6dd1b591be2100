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

/// What a request URL (or the client's base URL) can be given as: a string (absolute, or
/// relative to the base URL) or a parsed [`Url`], as with reqwest's `IntoUrl`.
pub trait IntoUrl: sealed::Sealed {}

mod sealed {
    use super::{Error, Result, Url, check_scheme};

    pub trait Sealed {
        fn into_url(self, base: Option<&Url>) -> Result<Url>;

        /// The URL as a base URL: it must be absolute, and http or https.
        fn into_base_url(self) -> Result<Url>;
    }

    impl Sealed for Url {
        fn into_url(self, _base: Option<&Url>) -> Result<Url> {
            check_scheme(self)
        }

        fn into_base_url(self) -> Result<Url> {
            check_scheme(self)
        }
    }

    impl Sealed for &Url {
        fn into_url(self, _base: Option<&Url>) -> Result<Url> {
            check_scheme(self.clone())
        }

        fn into_base_url(self) -> Result<Url> {
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

        fn into_base_url(self) -> Result<Url> {
            let url = Url::parse(self).map_err(|_| {
                Error::builder(format!("the base URL {self:?} is not an absolute URL"))
            })?;
            check_scheme(url)
        }
    }

    impl Sealed for String {
        fn into_url(self, base: Option<&Url>) -> Result<Url> {
            self.as_str().into_url(base)
        }

        fn into_base_url(self) -> Result<Url> {
            self.as_str().into_base_url()
        }
    }

    impl Sealed for &String {
        fn into_url(self, base: Option<&Url>) -> Result<Url> {
            self.as_str().into_url(base)
        }

        fn into_base_url(self) -> Result<Url> {
            self.as_str().into_base_url()
        }
    }
}

/// `url` made absolute: joined to `base` when it is relative.
pub(crate) fn resolve_url<U: IntoUrl>(url: U, base: Option<&Url>) -> Result<Url> {
    url.into_url(base)
}

impl IntoUrl for Url {}
impl IntoUrl for &Url {}
impl IntoUrl for &str {}
impl IntoUrl for String {}
impl IntoUrl for &String {}
