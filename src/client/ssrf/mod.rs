//! SSRF guard: makes every connection the client opens go to an address the
//! [`Policy`] allows.
//!
//! The obvious guard is a middleware that looks at the URL before the
//! request leaves. It is bypassed by a name that resolves inside, by a
//! redirect, by a DNS answer that changes between the check and the
//! connect, and by any request that skips the middleware. This guard
//! belongs to the transport instead: the URL check ([`Policy::check_url`])
//! runs on every hop and every retry, names are resolved once by a
//! [`GuardedResolver`] that hands reqwest only vetted addresses (so the
//! address checked is the address connected to), proxies from the
//! environment are ignored, and the peer of every response's connection is
//! checked again as a tripwire ([`PeerCheck`]).
//!
//! Names are resolved with a time limit ([`PolicyBuilder::dns_timeout`], 10 seconds by
//! default) and at most [`PolicyBuilder::max_dns_answers`] addresses of an answer (16 by
//! default) are judged and handed on, each with the port cleared so the connection goes to the
//! URL's port, the port the policy judged.
//!
//! Pooled connections are reused only for the scheme, host and port they were opened for
//! (hyper-util's pool key; it does not coalesce HTTP/2 connections across host names). Every
//! request with that key gets the same URL verdict, and the connection goes to an address that
//! was judged when it was opened, so reuse never reaches an address the policy refuses. A
//! name that later resolves elsewhere is judged again on the next new connection. Never share
//! a reqwest client, and so its pool, between policies: stopover builds one per [`Client`].
//!
//! [`Client`]: crate::client::Client
//!
//! The address tables are the IANA IPv4 and IPv6 special-purpose address
//! registries as of 2025 (including `3fff::/20`, `5f00::/16`,
//! `2001:1::3/128` from 2024 and `100:0:0:1::/64` from 2025), the IPv4
//! multicast block and the reserved parts of the IPv6 address space, kept as
//! sorted interval tables. IPv4 addresses embedded in IPv6 (mapped,
//! compatible, SIIT, NAT64, 6to4, Teredo) are judged by the IPv4 table.
//! Each refusal names a stable [`Rule`] id.
//!
//! Turn the guard on with
//! [`ClientBuilder::ssrf_policy`](crate::client::ClientBuilder::ssrf_policy); a refused request
//! fails with [`ErrorKind::Refused`](crate::client::ErrorKind::Refused) and
//! [`Error::refusal`](crate::client::Error::refusal) says why:
//!
//! ```no_run
//! use stopover::client::{Client, ssrf::Policy};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder()
//!     .ssrf_policy(Policy::builder().allow_addr("127.0.0.1:8080").build()?)
//!     .build()?;
//!
//! // Delivered: the one internal address and port the policy allows.
//! client.post("http://127.0.0.1:8080/hook").body("{}").send().await?;
//! // Refused before any connection is made.
//! let err = client.get("http://169.254.169.254/latest/meta-data/").send().await.unwrap_err();
//! assert_eq!(err.refusal().map(|r| r.rule().as_str()), Some("ipv4-link-local"));
//! # Ok(())
//! # }
//! ```
//!
//! The policy on its own judges URLs and addresses without any I/O:
//!
//! ```
//! use stopover::client::ssrf::{Policy, Rule};
//! use url::Url;
//!
//! let policy = Policy::builder()
//!     .allow_addr("127.0.0.1:8080") // a local receiver, one port
//!     .build()?;
//!
//! let check = |url: &str| policy.check_url(&Url::parse(url).unwrap()).map_err(|r| r.rule());
//! assert_eq!(check("http://127.0.0.1:8080/hook"), Ok(()));
//! assert_eq!(check("http://127.0.0.1:8081/hook"), Err(Rule::Ipv4Loopback));
//! assert_eq!(check("http://0251.0376.0251.0376/"), Err(Rule::Ipv4LinkLocal)); // 169.254.169.254
//! assert_eq!(check("http://[64:ff9b::a00:1]/"), Err(Rule::Ipv4Private)); // NAT64 of 10.0.0.1
//! assert_eq!(check("http://api.localhost/"), Err(Rule::HostLocalhost));
//! assert_eq!(check("gopher://example.com/"), Err(Rule::Scheme));
//! # Ok::<(), stopover::client::ssrf::PolicyError>(())
//! ```

mod builder;
mod connect;
mod policy;
mod refusal;
mod resolver;
mod rule;
mod tables;

#[cfg(test)]
mod table_test;

pub use builder::{IntoAddrRule, PolicyBuilder};
pub(crate) use connect::{PeerCheckLayer, judge_response_peer};
pub use policy::{MixedAnswers, PeerCheck, Policy, PolicyError};
pub use refusal::{Embedding, Refusal, Stage, find_refusal};
pub use resolver::GuardedResolver;
pub(crate) use resolver::with_destination_port;
pub use rule::Rule;
