//! `ForwardedLayer` inside an axum router, over real loopback connections.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};
use stopover::server::forwarded::{
    ForwardedConfigError, ForwardedInfo, ForwardedLayer, ForwardedLayerBuilder, PeerAddr,
};

use crate::support::serve_with_connect_info;

async fn report(Extension(info): Extension<ForwardedInfo>, request: Request) -> Json<Value> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Json(json!({
        "scheme": info.scheme().as_str(),
        "https": info.is_https(),
        "host": info.host().map(|h| h.as_str().to_owned()),
        "client": info.client().map(|c| c.to_string()),
        "peer": info.peer().map(|c| c.to_string()),
        "trusted": info.from_trusted_proxy(),
        "uri": request.uri().to_string(),
        "x_forwarded_proto": header("x-forwarded-proto"),
        "forwarded": header("forwarded"),
    }))
}

fn connect_info(builder: ForwardedLayerBuilder) -> ForwardedLayerBuilder {
    builder.peer_addr_with(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
}

/// Serves `report` behind the layer, with axum's `ConnectInfo` as the peer address.
async fn serve(layer: ForwardedLayer) -> SocketAddr {
    let app = Router::new().route("/", get(report)).layer(layer);
    serve_with_connect_info(app).await
}

async fn get_report(addr: SocketAddr, headers: &[(&str, &str)]) -> Value {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut request = client.get(format!("http://{addr}/"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

fn trusting_loopback() -> ForwardedLayerBuilder {
    connect_info(ForwardedLayer::builder())
}

fn trusting_only_ten_slash_eight() -> ForwardedLayerBuilder {
    connect_info(ForwardedLayer::builder().trusted_proxies(["10.0.0.0/8"]))
}

#[tokio::test]
async fn x_forwarded_proto_from_trusted_peer_sets_uri_scheme_and_extension() {
    let addr = serve(trusting_loopback().build().unwrap()).await;
    let report = get_report(addr, &[("x-forwarded-proto", "https")]).await;
    assert_eq!(report["scheme"], "https");
    assert_eq!(report["https"], true);
    assert_eq!(report["trusted"], true);
    assert_eq!(report["uri"], format!("https://{addr}/"));
}

#[tokio::test]
async fn request_without_forwarded_headers_keeps_http() {
    let addr = serve(trusting_loopback().build().unwrap()).await;
    let report = get_report(addr, &[]).await;
    assert_eq!(report["scheme"], "http");
    assert_eq!(report["uri"], "/");
    assert_eq!(report["host"], addr.to_string());
}

#[tokio::test]
async fn x_forwarded_proto_from_untrusted_peer_is_ignored() {
    let addr = serve(trusting_only_ten_slash_eight().build().unwrap()).await;
    let report = get_report(addr, &[("x-forwarded-proto", "https")]).await;
    assert_eq!(report["scheme"], "http");
    assert_eq!(report["trusted"], false);
    assert_eq!(report["uri"], "/");
}

#[tokio::test]
async fn headers_from_untrusted_peer_are_stripped_by_default() {
    let addr = serve(trusting_only_ten_slash_eight().build().unwrap()).await;
    let report = get_report(
        addr,
        &[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(report["x_forwarded_proto"], Value::Null);
}

#[tokio::test]
async fn headers_from_untrusted_peer_are_kept_when_stripping_is_off() {
    let layer = trusting_only_ten_slash_eight()
        .strip_untrusted(false)
        .build()
        .unwrap();
    let addr = serve(layer).await;
    let report = get_report(addr, &[("x-forwarded-proto", "https")]).await;
    assert_eq!(report["x_forwarded_proto"], "https");
    assert_eq!(report["scheme"], "http");
}

#[tokio::test]
async fn peer_address_not_found_counts_as_untrusted() {
    // The default peer-address function reads `PeerAddr` (and, with the `axum` feature,
    // `ConnectInfo`); this server inserts neither.
    let app = Router::new()
        .route("/", get(report))
        .layer(ForwardedLayer::builder().build().unwrap());
    let addr = crate::support::serve(app).await;
    let report = get_report(addr, &[("x-forwarded-proto", "https")]).await;
    assert_eq!(report["scheme"], "http");
    assert_eq!(report["trusted"], false);
    assert_eq!(report["peer"], Value::Null);
}

#[tokio::test]
async fn default_peer_address_comes_from_peer_addr_extension() {
    let app = Router::new()
        .route("/", get(report))
        .layer(ForwardedLayer::builder().build().unwrap())
        .layer(axum::middleware::map_request(
            |ConnectInfo(peer): ConnectInfo<SocketAddr>, mut request: Request| async move {
                request.extensions_mut().insert(PeerAddr(peer));
                request
            },
        ));
    let addr = serve_with_connect_info(app).await;
    let report = get_report(addr, &[("x-forwarded-proto", "https")]).await;
    assert_eq!(report["scheme"], "https");
    assert_eq!(report["peer"], "127.0.0.1");
}

#[tokio::test]
async fn rfc7239_forwarded_proto_from_trusted_peer_is_believed() {
    let addr = serve(trusting_loopback().rfc7239().build().unwrap()).await;
    let report = get_report(addr, &[("forwarded", "for=203.0.113.9;proto=https")]).await;
    assert_eq!(report["scheme"], "https");
}

#[tokio::test]
async fn rfc7239_from_untrusted_peer_is_ignored_and_stripped() {
    let layer = trusting_only_ten_slash_eight().rfc7239().build().unwrap();
    let addr = serve(layer).await;
    let report = get_report(addr, &[("forwarded", "proto=https")]).await;
    assert_eq!(report["scheme"], "http");
    assert_eq!(report["forwarded"], Value::Null);
}

#[tokio::test]
async fn x_forwarded_family_ignores_forwarded_header() {
    let addr = serve(trusting_loopback().build().unwrap()).await;
    let report = get_report(addr, &[("forwarded", "proto=https")]).await;
    assert_eq!(report["scheme"], "http");
}

#[tokio::test]
async fn rfc7239_family_ignores_x_forwarded_headers() {
    let addr = serve(trusting_loopback().rfc7239().build().unwrap()).await;
    let report = get_report(addr, &[("x-forwarded-proto", "https")]).await;
    assert_eq!(report["scheme"], "http");
}

#[tokio::test]
async fn x_forwarded_for_is_read_right_to_left_through_trusted_hops() {
    let layer = connect_info(ForwardedLayer::builder())
        .trusted_proxies(["127.0.0.0/8", "10.0.0.0/8"])
        .client(true)
        .build()
        .unwrap();
    let addr = serve(layer).await;
    let report = get_report(
        addr,
        &[("x-forwarded-for", "198.51.100.7, 203.0.113.9, 10.0.0.2")],
    )
    .await;
    // 10.0.0.2 is a trusted proxy, so its report of 203.0.113.9 is believed; 203.0.113.9 is
    // not a proxy we trust, so whatever it claims (198.51.100.7) is not.
    assert_eq!(report["client"], "203.0.113.9");
}

#[tokio::test]
async fn untrusted_rightmost_hop_stops_the_walk() {
    let layer = connect_info(ForwardedLayer::builder())
        .client(true)
        .build()
        .unwrap();
    let addr = serve(layer).await;
    let report = get_report(
        addr,
        &[
            ("x-forwarded-for", "203.0.113.9, 10.0.0.2"),
            ("x-forwarded-proto", "https, http"),
        ],
    )
    .await;
    // Only loopback is trusted: 10.0.0.2 is the client, and the proto our proxy saw is http.
    assert_eq!(report["client"], "10.0.0.2");
    assert_eq!(report["scheme"], "http");
}

#[tokio::test]
async fn scheme_comes_from_the_hop_chosen_by_the_walk() {
    let layer = connect_info(ForwardedLayer::builder())
        .trusted_proxies(["127.0.0.0/8", "10.0.0.0/8"])
        .build()
        .unwrap();
    let addr = serve(layer).await;
    let report = get_report(
        addr,
        &[
            ("x-forwarded-for", "203.0.113.9, 10.0.0.2"),
            ("x-forwarded-proto", "https, http"),
        ],
    )
    .await;
    assert_eq!(report["scheme"], "https");
}

#[tokio::test]
async fn all_hops_trusted_yields_the_leftmost_client() {
    let layer = connect_info(ForwardedLayer::builder())
        .trusted_proxies(["127.0.0.0/8", "10.0.0.0/8"])
        .client(true)
        .build()
        .unwrap();
    let addr = serve(layer).await;
    let report = get_report(addr, &[("x-forwarded-for", "10.9.9.9, 10.0.0.2")]).await;
    assert_eq!(report["client"], "10.9.9.9");
}

#[tokio::test]
async fn rfc7239_elements_are_read_right_to_left_through_trusted_hops() {
    let layer = connect_info(ForwardedLayer::builder())
        .rfc7239()
        .trusted_proxies(["127.0.0.0/8", "10.0.0.0/8"])
        .client(true)
        .host(true)
        .build()
        .unwrap();
    let addr = serve(layer).await;
    let report = get_report(
        addr,
        &[(
            "forwarded",
            "for=198.51.100.7;proto=http;host=evil.test, \
             for=\"[2001:db8::17]:4711\";proto=https;host=app.example, for=10.0.0.2",
        )],
    )
    .await;
    assert_eq!(report["client"], "2001:db8::17");
    assert_eq!(report["scheme"], "https");
    assert_eq!(report["host"], "app.example");
}

#[tokio::test]
async fn forwarded_header_lines_are_combined_in_order() {
    let layer = connect_info(ForwardedLayer::builder())
        .trusted_proxies(["127.0.0.0/8", "10.0.0.0/8"])
        .client(true)
        .build()
        .unwrap();
    let addr = serve(layer).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = client
        .get(format!("http://{addr}/"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-for", "10.0.0.2")
        .send()
        .await
        .unwrap();
    let report: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(report["client"], "203.0.113.9");
}

#[tokio::test]
async fn client_forwarding_off_reports_the_peer() {
    let addr = serve(trusting_loopback().build().unwrap()).await;
    let report = get_report(addr, &[("x-forwarded-for", "203.0.113.9")]).await;
    assert_eq!(report["client"], "127.0.0.1");
}

#[tokio::test]
async fn forwarded_values_are_case_insensitive() {
    let addr = serve(trusting_loopback().rfc7239().build().unwrap()).await;
    let report = get_report(addr, &[("forwarded", "For=203.0.113.9;PROTO=HTTPS")]).await;
    assert_eq!(report["scheme"], "https");

    let addr = serve(trusting_loopback().build().unwrap()).await;
    let report = get_report(addr, &[("x-forwarded-proto", "HTTPS")]).await;
    assert_eq!(report["scheme"], "https");
}

#[tokio::test]
async fn unknown_proto_value_is_ignored() {
    let addr = serve(trusting_loopback().build().unwrap()).await;
    let report = get_report(addr, &[("x-forwarded-proto", "gopher")]).await;
    assert_eq!(report["scheme"], "http");
}

#[tokio::test]
async fn forwarded_host_sets_uri_authority_when_enabled() {
    let addr = serve(trusting_loopback().host(true).build().unwrap()).await;
    let report = get_report(
        addr,
        &[
            ("x-forwarded-host", "app.example"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(report["host"], "app.example");
    assert_eq!(report["uri"], "https://app.example/");
}

#[tokio::test]
async fn forwarded_host_is_ignored_when_disabled() {
    let addr = serve(trusting_loopback().build().unwrap()).await;
    let report = get_report(addr, &[("x-forwarded-host", "app.example")]).await;
    assert_eq!(report["host"], addr.to_string());
    assert_eq!(report["uri"], "/");
}

#[tokio::test]
async fn match_headers_value_means_https() {
    let layer = trusting_loopback()
        .match_headers([("X-Forwarded-Ssl", "on")])
        .build()
        .unwrap();
    let addr = serve(layer).await;
    let report = get_report(addr, &[("x-forwarded-ssl", "ON")]).await;
    assert_eq!(report["scheme"], "https");
    let report = get_report(addr, &[("x-forwarded-ssl", "off")]).await;
    assert_eq!(report["scheme"], "http");
}

#[tokio::test]
async fn match_headers_reads_the_rightmost_value() {
    let layer = trusting_loopback()
        .match_headers([("X-Forwarded-Proto", "https")])
        .build()
        .unwrap();
    let addr = serve(layer).await;
    let report = get_report(addr, &[("x-forwarded-proto", "https, http")]).await;
    assert_eq!(report["scheme"], "http");
}

#[tokio::test]
async fn match_headers_from_untrusted_peer_is_ignored() {
    let layer = trusting_only_ten_slash_eight()
        .match_headers([("X-Forwarded-Ssl", "on")])
        .build()
        .unwrap();
    let addr = serve(layer).await;
    let report = get_report(addr, &[("x-forwarded-ssl", "on")]).await;
    assert_eq!(report["scheme"], "http");
}

#[test]
fn invalid_trusted_proxy_is_a_config_error_naming_it() {
    let err = ForwardedLayer::builder()
        .trusted_proxies(["10.0.0.0/33"])
        .build()
        .unwrap_err();
    assert!(matches!(&err, ForwardedConfigError::InvalidTrustedProxy(p) if p == "10.0.0.0/33"));
    assert!(err.to_string().contains("10.0.0.0/33"));
}

#[test]
fn empty_match_headers_is_a_config_error() {
    let err = ForwardedLayer::builder()
        .match_headers(Vec::<(String, String)>::new())
        .build()
        .unwrap_err();
    assert!(matches!(err, ForwardedConfigError::EmptyMatchHeaders));
}

#[test]
fn invalid_match_header_name_is_a_config_error() {
    let err = ForwardedLayer::builder()
        .match_headers([("bad name", "on")])
        .build()
        .unwrap_err();
    assert!(matches!(err, ForwardedConfigError::InvalidMatchHeaderName(n) if n == "bad name"));
}

#[test]
fn match_headers_with_host_forwarding_is_a_config_error() {
    let err = ForwardedLayer::builder()
        .match_headers([("X-Forwarded-Ssl", "on")])
        .host(true)
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        ForwardedConfigError::MatchHeadersCarryOnlyScheme
    ));
}

fn rfc7239_trusting_loopback() -> ForwardedLayerBuilder {
    connect_info(ForwardedLayer::builder())
        .rfc7239()
        .client(true)
        .host(true)
}

#[tokio::test]
async fn rfc7239_comma_inside_quoted_string_does_not_split_elements() {
    let addr = serve(rfc7239_trusting_loopback().build().unwrap()).await;
    let report = get_report(
        addr,
        &[("forwarded", "for=203.0.113.9;by=\"_a,b\";proto=https")],
    )
    .await;
    assert_eq!(report["scheme"], "https");
    assert_eq!(report["client"], "203.0.113.9");
}

#[tokio::test]
async fn rfc7239_semicolon_inside_quoted_string_is_not_a_pair() {
    let addr = serve(rfc7239_trusting_loopback().build().unwrap()).await;
    let report = get_report(
        addr,
        &[("forwarded", "for=203.0.113.9;by=\"_x;proto=https;y=z\"")],
    )
    .await;
    assert_eq!(report["scheme"], "http");
    assert_eq!(report["client"], "203.0.113.9");
}

#[tokio::test]
async fn rfc7239_quoted_ipv6_with_port_then_unknown_element() {
    let layer = rfc7239_trusting_loopback()
        .trusted_proxies(["127.0.0.0/8", "2001:db8::/32"])
        .build()
        .unwrap();
    let addr = serve(layer).await;
    let report = get_report(
        addr,
        &[(
            "forwarded",
            "for=unknown;proto=https, for=\"[2001:db8::1]:4711\";proto=https",
        )],
    )
    .await;
    // The walk passes the trusted 2001:db8::1 and stops at the `unknown` element.
    assert_eq!(report["scheme"], "https");
    assert_eq!(report["client"], Value::Null);
}

#[tokio::test]
async fn rfc7239_backslash_escapes_in_quoted_strings_are_unescaped() {
    let addr = serve(rfc7239_trusting_loopback().build().unwrap()).await;
    let report = get_report(
        addr,
        &[(
            "forwarded",
            "for=\"203.0.113.9\";by=\"_\\\"q\\\\\";host=\"app.ex\\ample:8443\"",
        )],
    )
    .await;
    assert_eq!(report["client"], "203.0.113.9");
    assert_eq!(report["host"], "app.example:8443");
}

#[tokio::test]
async fn rfc7239_unreadable_nearest_element_believes_nothing() {
    let addr = serve(rfc7239_trusting_loopback().build().unwrap()).await;
    for malformed in [
        "for=203.0.113.9;proto=https, garbage",
        "for=203.0.113.9;proto=https junk",
        "for=\"203.0.113.9;proto=https",
        "for=203.0.113.9;proto=https;proto=http",
        "for=2001:db8::1;proto=https",
        "for=203.0.113.9;=https",
        "for=203.0.113.9;proto=",
    ] {
        let report = get_report(addr, &[("forwarded", malformed)]).await;
        assert_eq!(report["scheme"], "http", "{malformed}");
        assert_eq!(report["client"], "127.0.0.1", "{malformed}");
        assert_eq!(report["trusted"], true, "{malformed}");
    }
}

#[tokio::test]
async fn rfc7239_malformed_line_before_the_proxy_line_keeps_the_proxy_hop() {
    let addr = serve(rfc7239_trusting_loopback().build().unwrap()).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = client
        .get(format!("http://{addr}/"))
        .header("forwarded", "for=\"_unterminated")
        .header("forwarded", "for=203.0.113.9;proto=https")
        .send()
        .await
        .unwrap();
    let report: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(report["scheme"], "https");
    assert_eq!(report["client"], "203.0.113.9");
}

/// What a client may write before a trusted proxy appends its own element.
const CLIENT_MALFORMATIONS: [&str; 4] = [
    "for=\"198.51.100.1",
    "for=198.51.100.1;for=198.51.100.2",
    "garbage",
    "for=\"caf\u{e9}\"",
];

/// Sends `value` as the header `name` through raw HTTP/1.1, so a byte outside ASCII reaches
/// the server as it was written.
async fn get_report_raw(addr: SocketAddr, name: &str, value: &[u8]) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request =
        format!("GET / HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{name}: ").into_bytes();
    request.extend_from_slice(value);
    request.extend_from_slice(b"\r\n\r\n");
    stream.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn rfc7239_client_malformation_cannot_erase_the_trusted_proxy_element() {
    let addr = serve(rfc7239_trusting_loopback().build().unwrap()).await;
    for malformed in CLIENT_MALFORMATIONS {
        // The proxy on 127.0.0.1 appended its element to the client's line.
        let line = format!("{malformed}, for=203.0.113.9;proto=https");
        let report = get_report_raw(addr, "forwarded", line.as_bytes()).await;
        assert_eq!(report["client"], "203.0.113.9", "{malformed}");
        assert_eq!(report["scheme"], "https", "{malformed}");
    }
}

#[tokio::test]
async fn x_forwarded_client_malformation_cannot_erase_the_trusted_proxy_item() {
    let layer = connect_info(ForwardedLayer::builder())
        .trusted_proxies(["127.0.0.0/8", "10.0.0.0/8"])
        .client(true)
        .build()
        .unwrap();
    let addr = serve(layer).await;
    for malformed in CLIENT_MALFORMATIONS {
        let line = format!("{malformed}, 203.0.113.9, 10.0.0.2");
        let report = get_report_raw(addr, "x-forwarded-for", line.as_bytes()).await;
        assert_eq!(report["client"], "203.0.113.9", "{malformed}");
    }
}

#[tokio::test]
async fn unreadable_item_next_to_trusted_hops_leaves_the_last_believed_address() {
    let layer = connect_info(ForwardedLayer::builder())
        .trusted_proxies(["127.0.0.0/8", "10.0.0.0/8"])
        .client(true)
        .build()
        .unwrap();
    let addr = serve(layer).await;
    let report = get_report(
        addr,
        &[("x-forwarded-for", "203.0.113.9, not-an-ip, 10.0.0.2:8080")],
    )
    .await;
    // 10.0.0.2 (port and all) is a trusted hop; the walk stops at the garbage, so the client
    // is the last address it could believe.
    assert_eq!(report["client"], "10.0.0.2");
    assert_eq!(report["peer"], "127.0.0.1");
}

#[tokio::test]
async fn rfc7239_empty_list_elements_and_spaces_around_semicolons_are_accepted() {
    let addr = serve(rfc7239_trusting_loopback().build().unwrap()).await;
    let report = get_report(
        addr,
        &[("forwarded", " , for=203.0.113.9 ; proto=https ;, ,")],
    )
    .await;
    assert_eq!(report["scheme"], "https");
    assert_eq!(report["client"], "203.0.113.9");
}

#[tokio::test]
async fn unknown_in_the_believed_x_forwarded_for_hop_gives_no_client() {
    let layer = connect_info(ForwardedLayer::builder())
        .trusted_proxies(["127.0.0.0/8", "10.0.0.0/8"])
        .client(true)
        .build()
        .unwrap();
    let addr = serve(layer).await;
    let report = get_report(
        addr,
        &[("x-forwarded-for", "203.0.113.9, unknown, 10.0.0.2:8080")],
    )
    .await;
    // The proxy at 10.0.0.2 says it does not know its client: the peer, a proxy, must not be
    // reported as the client.
    assert_eq!(report["client"], Value::Null);
    assert_eq!(report["peer"], "127.0.0.1");
}

#[tokio::test]
async fn trusted_peer_without_forwarded_headers_is_the_client() {
    let layer = connect_info(ForwardedLayer::builder())
        .client(true)
        .build()
        .unwrap();
    let addr = serve(layer).await;
    let report = get_report(addr, &[]).await;
    assert_eq!(report["client"], "127.0.0.1");
}

/// The peer as a dual-stack (`[::]`) listener reports an IPv4 client: IPv4-mapped IPv6.
fn mapped_peer(builder: ForwardedLayerBuilder) -> ForwardedLayerBuilder {
    builder.peer_addr_with(|ext| {
        ext.get::<ConnectInfo<SocketAddr>>()
            .map(|c| match c.0.ip() {
                std::net::IpAddr::V4(v4) => std::net::IpAddr::V6(v4.to_ipv6_mapped()),
                ip => ip,
            })
    })
}

#[tokio::test]
async fn ipv4_mapped_peer_is_compared_as_ipv4() {
    let addr = serve(mapped_peer(ForwardedLayer::builder()).build().unwrap()).await;
    let report = get_report(addr, &[("x-forwarded-proto", "https")]).await;
    assert_eq!(report["scheme"], "https");
    assert_eq!(report["peer"], "127.0.0.1");
}

#[tokio::test]
async fn ipv4_mapped_trusted_network_matches_ipv4_peers() {
    let layer = mapped_peer(ForwardedLayer::builder())
        .trusted_proxies(["::ffff:127.0.0.0/104"])
        .build()
        .unwrap();
    let addr = serve(layer).await;
    let report = get_report(addr, &[("x-forwarded-proto", "https")]).await;
    assert_eq!(report["trusted"], true);
    assert_eq!(report["scheme"], "https");
}

#[tokio::test]
async fn rfc7239_header_lines_are_combined_in_order() {
    let layer = rfc7239_trusting_loopback()
        .trusted_proxies(["127.0.0.0/8", "10.0.0.0/8"])
        .build()
        .unwrap();
    let addr = serve(layer).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = client
        .get(format!("http://{addr}/"))
        .header("forwarded", "for=203.0.113.9;proto=https")
        .header("forwarded", "for=10.0.0.2")
        .send()
        .await
        .unwrap();
    let report: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(report["client"], "203.0.113.9");
    assert_eq!(report["scheme"], "https");
}
