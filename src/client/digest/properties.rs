//! Properties of the challenge and `Authentication-Info` parsers: no input makes them panic or
//! point past the input, and every well-formed header they are given comes back as it was
//! written (parameter names lower-cased, quoted values unquoted). And of the answer: the
//! `Authorization` computed for any challenge agrees with a straightforward computation of
//! RFC 7616 section 3.4.1, written here from the RFC's text.

use proptest::prelude::*;

use super::answer::{Credentials, Request, answer, choose_qop};
use super::challenge::{
    DigestChallenge, RawChallenge, find_param, parse_challenges, parse_params, quote,
};
use crate::proptest_config::config;

/// A token (RFC 9110, section 5.6.2).
fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

/// A value as a server would write it: a bare token, or any printable ASCII quoted.
fn value() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        token().prop_map(|token| (token.clone(), token)),
        "[ -~]{0,24}".prop_map(|text| (quote(&text), text)),
    ]
}

/// (the header text of one challenge, the challenge the parser must read from it)
fn challenge() -> impl Strategy<Value = (String, RawChallenge)> {
    (token(), prop::collection::vec((token(), value()), 1..6)).prop_map(|(scheme, params)| {
        let text = params
            .iter()
            .map(|(name, (written, _))| format!("{name}={written}"))
            .collect::<Vec<_>>()
            .join(", ");
        let expected = RawChallenge {
            scheme: scheme.clone(),
            token68: None,
            params: params
                .into_iter()
                .map(|(name, (_, value))| (name.to_ascii_lowercase(), value))
                .collect(),
        };
        (format!("{scheme} {text}"), expected)
    })
}

/// `H(data)` of RFC 7616 section 3.4.1 for the algorithm's hash, in lower-case hex.
fn rfc_7616_h(algorithm: &str, data: &[u8]) -> String {
    use sha2::Digest as _;
    let digest: Vec<u8> = match algorithm.trim_end_matches("-sess") {
        "MD5" => md5::Md5::digest(data).to_vec(),
        "SHA-256" => sha2::Sha256::digest(data).to_vec(),
        "SHA-512-256" => sha2::Sha512_256::digest(data).to_vec(),
        other => unreachable!("{other}"),
    };
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The challenge as a server writes it: (algorithm as named, or none for the implied MD5),
/// the qop list offered, or none for the RFC 2069 form.
fn offer() -> impl Strategy<Value = (Option<&'static str>, Option<&'static str>)> {
    let qop = prop_oneof![Just("auth"), Just("auth-int"), Just("auth,auth-int")];
    prop_oneof![
        (
            prop::option::of(prop_oneof![
                Just("MD5"),
                Just("SHA-256"),
                Just("SHA-512-256")
            ]),
            prop::option::of(qop.clone()),
        ),
        // A session variant needs a qop.
        (
            prop_oneof![
                Just("MD5-sess"),
                Just("SHA-256-sess"),
                Just("SHA-512-256-sess")
            ],
            qop,
        )
            .prop_map(|(algorithm, qop)| (Some(algorithm), Some(qop))),
    ]
}

#[test]
fn challenge_linearity_probe() {
    let shapes = [
        "challenge-escapes",
        "challenge-unterminated",
        "challenge-params",
        "challenge-commas",
        "challenge-schemes",
    ];
    for input in crate::linearity::inputs(&shapes) {
        crate::linearity::measured(|| parse_challenges(&input, &mut Vec::new()).is_ok());
    }
}

#[test]
fn authentication_info_linearity_probe() {
    for input in crate::linearity::inputs(&["challenge-escapes", "challenge-params"]) {
        let params = input.strip_prefix("Digest ").unwrap_or(&input);
        crate::linearity::measured(|| parse_params(params).is_ok());
    }
}

proptest! {
    #![proptest_config(config())]

    /// For a random user, realm, password, nonce, qop and algorithm, the answer's fields are
    /// what was asked and its `response` is RFC 7616's
    /// `KD(H(A1), nonce ":" nc ":" cnonce ":" qop ":" H(A2))` (`KD(H(A1), nonce ":" H(A2))`
    /// without qop), with `A1` of the `-sess` variants `H(user:realm:password):nonce:cnonce`
    /// and `A2` of `auth-int` `method:uri:H(body)`.
    #[test]
    fn the_answer_agrees_with_rfc_7616_computed_by_hand(
        username in "[ -9;-~]{1,16}",
        realm in "[ -~]{0,20}",
        password in "[ -~]{0,20}",
        nonce in "[ -~]{1,24}",
        (algorithm, qop_offered) in offer(),
        userhash in any::<bool>(),
        method in prop_oneof![Just("GET"), Just("POST"), Just("PUT")],
        uri in "/[a-z0-9/?=&%.-]{0,24}",
        body in prop::collection::vec(any::<u8>(), 0..64),
        nonce_count in 1u32..100_000,
        cnonce in "[A-Za-z0-9+/]{1,24}",
    ) {
        let mut header = format!("Digest realm={}, nonce={}", quote(&realm), quote(&nonce));
        if let Some(algorithm) = algorithm {
            header.push_str(&format!(", algorithm={algorithm}"));
        }
        if let Some(qop) = qop_offered {
            header.push_str(&format!(", qop=\"{qop}\""));
        }
        if userhash {
            header.push_str(", userhash=true");
        }
        let mut raw = Vec::new();
        prop_assert_eq!(parse_challenges(&header, &mut raw), Ok(()));
        let challenge = DigestChallenge::from_raw(&raw[0]).unwrap();
        let qop = choose_qop(challenge.qop, Some(&body)).unwrap();
        let credentials = Credentials { username: username.clone(), password: password.clone() };
        let request = Request { method, uri: &uri, qop, body: &body, nonce_count, cnonce: &cnonce };
        let sent = answer(&credentials, &challenge, &request);

        // By hand, from the RFC.
        let name = algorithm.unwrap_or("MD5");
        let h = |data: &str| rfc_7616_h(name, data.as_bytes());
        let mut ha1 = h(&format!("{username}:{realm}:{password}"));
        if name.ends_with("-sess") {
            ha1 = h(&format!("{ha1}:{nonce}:{cnonce}"));
        }
        // auth-int is taken whenever it is offered and the body is in memory.
        let qop_used = qop_offered.map(|offered| if offered.contains("auth-int") { "auth-int" } else { "auth" });
        let ha2 = match qop_used {
            Some("auth-int") => h(&format!("{method}:{uri}:{}", rfc_7616_h(name, &body))),
            _ => h(&format!("{method}:{uri}")),
        };
        let nc = format!("{nonce_count:08x}");
        let response = match qop_used {
            Some(qop) => h(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")),
            None => h(&format!("{ha1}:{nonce}:{ha2}")),
        };
        prop_assert_eq!(&sent.response, &response);

        let fields = parse_params(sent.header.strip_prefix("Digest ").unwrap()).unwrap();
        let field = |name| find_param(&fields, name).map(str::to_owned);
        let expected_username = if userhash { h(&format!("{username}:{realm}")) } else { username.clone() };
        prop_assert_eq!(field("username"), Some(expected_username));
        prop_assert_eq!(field("realm"), Some(realm));
        prop_assert_eq!(field("nonce"), Some(nonce));
        prop_assert_eq!(field("uri"), Some(uri));
        prop_assert_eq!(field("response"), Some(response));
        prop_assert_eq!(field("algorithm"), algorithm.map(str::to_owned));
        prop_assert_eq!(field("qop"), qop_used.map(str::to_owned));
        prop_assert_eq!(field("nc"), qop_used.map(|_| nc));
        prop_assert_eq!(field("cnonce"), qop_used.map(|_| cnonce));
    }

    #[test]
    fn any_header_value_parses_or_fails_inside_it(value in any::<String>()) {
        let mut out = Vec::new();
        if let Err(err) = parse_challenges(&value, &mut out) {
            prop_assert!(err.at <= value.len());
        }
        if let Err(err) = parse_params(&value) {
            prop_assert!(err.at <= value.len());
        }
    }

    #[test]
    fn well_formed_challenges_read_back_as_written(
        challenges in prop::collection::vec(challenge(), 1..4),
    ) {
        let header = challenges
            .iter()
            .map(|(text, _)| text.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut out = Vec::new();
        prop_assert_eq!(parse_challenges(&header, &mut out), Ok(()));
        let expected: Vec<RawChallenge> =
            challenges.into_iter().map(|(_, challenge)| challenge).collect();
        prop_assert_eq!(out, expected);
    }

    #[test]
    fn a_parameter_list_reads_back_as_written(
        params in prop::collection::vec((token(), value()), 0..8),
    ) {
        let header = params
            .iter()
            .map(|(name, (written, _))| format!("{name}={written}"))
            .collect::<Vec<_>>()
            .join(", ");
        let expected: Vec<(String, String)> = params
            .into_iter()
            .map(|(name, (_, value))| (name.to_ascii_lowercase(), value))
            .collect();
        prop_assert_eq!(parse_params(&header), Ok(expected));
    }

    #[test]
    fn quoting_is_undone_by_the_parser(text in "[ -~]{0,64}") {
        let params = parse_params(&format!("v={}", quote(&text)));
        prop_assert_eq!(params, Ok(vec![("v".to_owned(), text)]));
    }
}
