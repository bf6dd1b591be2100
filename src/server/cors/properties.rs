//! Properties of what the CORS layer reads from a request: the `Origin` against the configured
//! list (agreement with a reference model of origin serialisation), and the
//! `Access-Control-Request-Headers` list (any bytes are read or refused without a panic; a
//! well-formed list is read item by item, ignoring case and optional whitespace).

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use proptest::prelude::*;

use super::CorsLayer;
use super::allow_origin::OriginDecision;
use super::policy::{Config, Refusal};
use crate::proptest_config::config;

/// An origin as a configuration may spell it: scheme and host in any case, a port or none.
fn configured_origin() -> impl Strategy<Value = (String, String, Option<u16>)> {
    (
        prop_oneof![Just("http"), Just("https"), Just("HTTP"), Just("Https")],
        "[a-zA-Z]{1,5}(\\.[a-zA-Z]{1,5})?",
        prop::option::of(prop_oneof![Just(80u16), Just(443), Just(8080), 1u16..]),
    )
        .prop_map(|(scheme, host, port)| (scheme.to_owned(), host, port))
}

fn written((scheme, host, port): &(String, String, Option<u16>)) -> String {
    match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    }
}

/// The reference model: the serialisation a browser sends for that origin (lower-case scheme
/// and host, the scheme's default port left out).
fn serialised((scheme, host, port): &(String, String, Option<u16>)) -> String {
    let scheme = scheme.to_lowercase();
    let default = if scheme == "https" { 443 } else { 80 };
    match port {
        Some(port) if *port != default => format!("{scheme}://{}:{port}", host.to_lowercase()),
        _ => format!("{scheme}://{}", host.to_lowercase()),
    }
}

fn parts() -> Parts {
    http::Request::new(()).into_parts().0
}

fn allowed(config: &Config, origin: &HeaderValue) -> bool {
    match config.origin.decide(origin, &parts()) {
        OriginDecision::Allowed(echoed) => {
            assert_eq!(&echoed, origin, "a listed origin is echoed as sent");
            true
        }
        OriginDecision::Denied => false,
        OriginDecision::Pending(_) => panic!("no async predicate was configured"),
    }
}

/// The request header names a preflight asks for in the properties, and the allowed ones are
/// drawn from the same pool.
const NAMES: [&str; 6] = [
    "x-request-id",
    "content-type",
    "authorization",
    "x-a",
    "x-trace-parent",
    "accept-language",
];

/// An item as a browser or a hand-written client may write it: a name from the pool in any
/// case with optional whitespace around it, or an empty item.
fn item() -> impl Strategy<Value = (String, Option<usize>)> {
    let ows = "[ \t]{0,2}";
    prop_oneof![
        4 => (0..NAMES.len(), any::<u64>(), ows, ows).prop_map(|(index, case, before, after)| {
            let name: String = NAMES[index]
                .chars()
                .enumerate()
                .map(|(i, c)| if case >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c })
                .collect();
            (format!("{before}{name}{after}"), Some(index))
        }),
        1 => ows.prop_map(|space| (space, None)),
    ]
}

fn with_headers(allowed: &[usize]) -> Config {
    CorsLayer::builder()
        .allow_origin("https://app.example")
        .allow_headers(allowed.iter().map(|&index| NAMES[index]))
        .build_config()
        .unwrap()
}

fn preflight(lines: &[Vec<u8>]) -> HeaderMap {
    let mut request = HeaderMap::new();
    request.insert(
        header::ORIGIN,
        HeaderValue::from_static("https://app.example"),
    );
    request.insert(
        header::ACCESS_CONTROL_REQUEST_METHOD,
        HeaderValue::from_static("GET"),
    );
    for line in lines {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            request.append(header::ACCESS_CONTROL_REQUEST_HEADERS, value);
        }
    }
    request
}

#[test]
fn request_headers_linearity_probe() {
    let config = CorsLayer::builder()
        .allow_origin("https://app.example")
        .allow_headers(["x-a", "x-b", "x-request-id", "content-type"])
        .build_config()
        .unwrap();
    for input in crate::linearity::inputs(&["cors-items", "cors-commas", "cors-whitespace"]) {
        let request = preflight(&[input.into_bytes()]);
        let allow_origin = Some(HeaderValue::from_static("https://app.example"));
        let mut granted = HeaderMap::new();
        crate::linearity::measured(|| config.grant(&request, allow_origin, &mut granted).is_ok());
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn an_origin_is_allowed_exactly_when_its_serialisation_is_listed(
        listed in prop::collection::vec(configured_origin(), 1..4),
        // Origins a browser may send: the serialisation of one listed or another origin,
        // the same in another case (no browser sends it), `null`, or any text.
        asked in prop_oneof![
            (any::<prop::sample::Index>(), any::<bool>()).prop_map(|(i, upper)| (Some(i), None, upper)),
            configured_origin().prop_map(|origin| (None, Some(serialised(&origin)), false)),
            Just((None, Some("null".to_owned()), false)),
            "[ -~]{0,30}".prop_map(|text| (None, Some(text), false)),
        ],
    ) {
        let config = CorsLayer::builder()
            .allow_origins(listed.iter().map(written))
            .build_config()
            .unwrap();
        let (index, text, upper) = asked;
        let origin = match (index, text) {
            (Some(index), _) => {
                let origin = serialised(index.get(&listed));
                if upper { origin.to_uppercase() } else { origin }
            }
            (None, Some(text)) => text,
            (None, None) => unreachable!(),
        };
        let Ok(value) = HeaderValue::from_str(&origin) else {
            return Ok(());
        };
        let expected = listed.iter().any(|listed| serialised(listed) == origin);
        prop_assert_eq!(allowed(&config, &value), expected, "{}", origin);
    }

    #[test]
    fn any_request_headers_bytes_are_granted_or_refused_never_a_panic(
        lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..48), 1..3),
        mirror in any::<bool>(),
    ) {
        let config = if mirror {
            CorsLayer::builder()
                .allow_origin("https://app.example")
                .mirror_request_headers()
                .build_config()
                .unwrap()
        } else {
            with_headers(&[0, 1, 3])
        };
        let request = preflight(&lines);
        let mut granted = HeaderMap::new();
        let allow_origin = Some(HeaderValue::from_static("https://app.example"));
        if let Err(refusal) = config.grant(&request, allow_origin, &mut granted) {
            // The reason is sent as a header: it must be one.
            let _ = refusal.reason();
        }
    }

    /// Agreement with a reference model of the list: split at commas, whitespace around an
    /// item and empty items ignored, names compared without case; the preflight is granted
    /// when every item is allowed, and refused naming the first one that is not.
    #[test]
    fn requested_headers_are_read_item_by_item_ignoring_case_and_whitespace(
        allowed in prop::sample::subsequence((0..NAMES.len()).collect::<Vec<_>>(), 0..=NAMES.len()),
        lines in prop::collection::vec(prop::collection::vec(item(), 1..5), 1..3),
    ) {
        let config = with_headers(&allowed);
        let written: Vec<Vec<u8>> = lines
            .iter()
            .map(|items| {
                let items: Vec<&str> = items.iter().map(|(text, _)| text.as_str()).collect();
                items.join(",").into_bytes()
            })
            .collect();
        let request = preflight(&written);
        let mut granted = HeaderMap::new();
        let allow_origin = Some(HeaderValue::from_static("https://app.example"));
        let first_refused = lines
            .iter()
            .flatten()
            .find(|(_, name)| name.is_some_and(|index| !allowed.contains(&index)));
        match (config.grant(&request, allow_origin, &mut granted), first_refused) {
            (Ok(()), None) => {}
            (Err(Refusal::Header(name)), Some((text, _))) => {
                prop_assert_eq!(name, text.trim_matches([' ', '\t']).as_bytes().to_vec());
            }
            (outcome, expected) => {
                prop_assert!(false, "granted: {:?}, expected refusal of {:?}", outcome, expected);
            }
        }
    }

    /// With `mirror_request_headers`, what a preflight asked for is what it is granted, as
    /// written: one line as it is, several joined with `, `.
    #[test]
    fn mirrored_request_headers_read_back_as_written(
        lines in prop::collection::vec(prop::collection::vec(item(), 1..5), 1..3),
    ) {
        let config = CorsLayer::builder()
            .allow_origin("https://app.example")
            .mirror_request_headers()
            .build_config()
            .unwrap();
        let written: Vec<String> = lines
            .iter()
            .map(|items| items.iter().map(|(text, _)| text.as_str()).collect::<Vec<_>>().join(","))
            .collect();
        let bytes: Vec<Vec<u8>> = written.iter().map(|line| line.clone().into_bytes()).collect();
        let request = preflight(&bytes);
        let mut granted = HeaderMap::new();
        let allow_origin = Some(HeaderValue::from_static("https://app.example"));
        let outcome = config.grant(&request, allow_origin, &mut granted);
        prop_assert!(outcome.is_ok(), "{:?}", outcome);
        let expected = written.join(", ");
        let got = granted
            .get(header::ACCESS_CONTROL_ALLOW_HEADERS)
            .map(|value| value.as_bytes().to_vec());
        prop_assert_eq!(got, Some(expected.into_bytes()));
    }
}
