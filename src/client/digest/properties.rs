//! Properties of the challenge and `Authentication-Info` parsers: no input makes them panic or
//! point past the input, and every well-formed header they are given comes back as it was
//! written (parameter names lower-cased, quoted values unquoted).

use proptest::prelude::*;

use super::challenge::{RawChallenge, parse_challenges, parse_params, quote};
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

proptest! {
    #![proptest_config(config())]

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
