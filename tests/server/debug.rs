//! Every public type of the server half implements `Debug`, so a user's own types that hold
//! a layer, a builder, a service or a future can derive it.

use std::fmt::Debug;

use stopover::server::{cors, error, forwarded, matcher, shield, timeout};

fn is_debug<T: Debug>() {}

/// A stand-in for an inner service, a body and a future: all `Debug`.
#[derive(Debug)]
struct Inner;

#[test]
fn every_public_server_type_implements_debug() {
    is_debug::<cors::CorsLayer>();
    is_debug::<cors::CorsLayerBuilder>();
    is_debug::<cors::CorsPoliciesBuilder>();
    is_debug::<cors::CorsConfigError>();
    is_debug::<cors::Cors<Inner>>();
    is_debug::<cors::ResponseFuture<Inner, Inner>>();

    is_debug::<error::ErrorLayer>();
    is_debug::<error::ErrorLayerBuilder>();
    is_debug::<error::ErrorConfigError>();
    is_debug::<error::ErrorContext>();
    is_debug::<error::ErrorOrigin>();
    is_debug::<error::ErrorFormat>();
    is_debug::<error::HttpError>();
    is_debug::<error::ErrorBody<Inner>>();
    is_debug::<error::ErrorService<Inner>>();
    is_debug::<error::ResponseFuture<Inner, Inner>>();

    is_debug::<timeout::TimeoutLayer>();
    is_debug::<timeout::TimeoutLayerBuilder>();
    is_debug::<timeout::TimeoutConfigError>();
    is_debug::<timeout::Timeout<Inner>>();
    is_debug::<timeout::ResponseFuture<Inner>>();

    is_debug::<shield::ShieldLayer>();
    is_debug::<shield::ShieldLayerBuilder>();
    is_debug::<shield::ShieldConfigError>();
    is_debug::<shield::ShieldHandle>();
    is_debug::<shield::ClientGone>();
    is_debug::<shield::Shield<Inner>>();
    is_debug::<shield::ResponseFuture<Inner, Inner, Inner>>();

    is_debug::<forwarded::ForwardedLayer>();
    is_debug::<forwarded::ForwardedLayerBuilder>();
    is_debug::<forwarded::ForwardedConfigError>();
    is_debug::<forwarded::ForwardedInfo>();
    is_debug::<forwarded::PeerAddr>();
    is_debug::<forwarded::Forwarded<Inner>>();

    is_debug::<matcher::PathMatcher>();
    is_debug::<matcher::PathRule>();
    is_debug::<matcher::PathRules>();
    is_debug::<matcher::PathMap<Inner>>();
    is_debug::<matcher::MatcherError>();
}
