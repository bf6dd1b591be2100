//! DNS overrides ([`ClientBuilder::resolve`](super::ClientBuilder::resolve)) for a client with
//! an SSRF policy: names answered from a table before the resolver is asked, placed *inside*
//! the guarded resolver so that an overridden answer is judged like any other.
//!
//! reqwest's own overrides sit outside any resolver it is given, where the guard would never
//! see them; without a policy the client hands the overrides to reqwest, which then behaves
//! exactly as reqwest does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A resolver that answers the overridden names from its table and asks `inner` (or the system
/// resolver) for the others.
pub(crate) struct Overrides {
    table: HashMap<String, Vec<SocketAddr>>,
    inner: Option<Arc<dyn Resolve>>,
}

impl Overrides {
    pub(crate) fn new(
        table: impl IntoIterator<Item = (String, Vec<SocketAddr>)>,
        inner: Option<Arc<dyn Resolve>>,
    ) -> Self {
        Overrides {
            table: table.into_iter().collect(),
            inner,
        }
    }
}

impl Resolve for Overrides {
    fn resolve(&self, name: Name) -> Resolving {
        if let Some(addrs) = self.table.get(name.as_str()) {
            let addrs = addrs.clone();
            return Box::pin(std::future::ready(Ok(Box::new(addrs.into_iter()) as Addrs)));
        }
        match &self.inner {
            Some(inner) => inner.resolve(name),
            None => {
                let host = name.as_str().to_owned();
                Box::pin(async move {
                    let answers = tokio::net::lookup_host((host.as_str(), 0)).await?;
                    Ok(Box::new(answers.collect::<Vec<_>>().into_iter()) as Addrs)
                })
            }
        }
    }
}
