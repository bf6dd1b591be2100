//! Reading `WWW-Authenticate` / `Proxy-Authenticate` (RFC 7235 section 4.1),
//! `Authentication-Info` (RFC 7615), and the Digest challenge in them
//! (RFC 7616 section 3.3).
//!
//! One header value may hold several challenges (`Basic realm="x", Digest
//! realm="y", nonce="n"`), and a challenge's parameters are separated by the
//! same commas as the challenges themselves. A comma-separated element that
//! is a token followed by `=` is a parameter of the current challenge; any
//! other token starts the next challenge. Commas inside quoted strings are
//! data. The parser is one left-to-right pass, linear in the input.

use super::DigestFailure;
use super::algorithm::Algorithm;

/// One challenge of any scheme, parameter names lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawChallenge {
    pub(crate) scheme: String,
    pub(crate) token68: Option<String>,
    pub(crate) params: Vec<(String, String)>,
}

impl RawChallenge {
    /// The first value of parameter `name` (lower-case).
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        find_param(&self.params, name)
    }

    pub(crate) fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("digest")
    }
}

pub(crate) fn find_param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// The first parameter name that occurs more than once (names are
/// lower-cased by the parser), in time linear in the list.
pub(crate) fn first_duplicate(params: &[(String, String)]) -> Option<&str> {
    let mut seen = std::collections::HashSet::with_capacity(params.len());
    params
        .iter()
        .map(|(name, _)| name.as_str())
        .find(|name| !seen.insert(*name))
}

/// True when a parameter name occurs more than once.
pub(crate) fn has_duplicates(params: &[(String, String)]) -> bool {
    first_duplicate(params).is_some()
}

/// The header value is not valid challenge syntax from this byte on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) at: usize,
}

/// Appends every complete challenge of one header value to `out`.
///
/// On a syntax error the challenge being read is dropped and the rest of the
/// value ignored; the challenges before it are kept.
pub(crate) fn parse_challenges(
    value: &str,
    out: &mut Vec<RawChallenge>,
) -> Result<(), SyntaxError> {
    let mut cursor = Cursor::new(value);
    loop {
        cursor.skip_separators();
        if cursor.at_end() {
            return Ok(());
        }
        let scheme = cursor.token();
        if scheme.is_empty() {
            return Err(cursor.error());
        }
        let mut challenge = RawChallenge {
            scheme: scheme.to_owned(),
            token68: None,
            params: Vec::new(),
        };
        if cursor.skip_whitespace() {
            challenge.token68 = cursor.token68();
        }
        if challenge.token68.is_none() {
            cursor.params(&mut challenge.params, true)?;
        }
        out.push(challenge);
    }
}

/// Parses a header that is a bare parameter list (`Authentication-Info`).
pub(crate) fn parse_params(value: &str) -> Result<Vec<(String, String)>, SyntaxError> {
    let mut cursor = Cursor::new(value);
    let mut params = Vec::new();
    cursor.params(&mut params, false)?;
    cursor.skip_separators();
    if cursor.at_end() {
        Ok(params)
    } else {
        Err(cursor.error())
    }
}

/// `"value"` with `\` and `"` escaped, the inverse of the parser's unquoting.
pub(crate) fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for ch in value.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

struct Cursor<'a> {
    input: &'a str,
    pos: usize,
}

fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn is_token68_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~+/".contains(&byte)
}

impl<'a> Cursor<'a> {
    fn new(input: &'a str) -> Self {
        Cursor { input, pos: 0 }
    }

    fn error(&self) -> SyntaxError {
        SyntaxError { at: self.pos }
    }

    fn peek(&self) -> Option<u8> {
        self.input.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    /// Skips spaces and tabs; true if there were any.
    fn skip_whitespace(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Skips whitespace and empty list elements (`, ,`).
    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, accept: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&accept) {
            self.pos += 1;
        }
        // Every caller stops at an ASCII byte or the end, so both ends are
        // char boundaries.
        &self.input[start..self.pos]
    }

    fn token(&mut self) -> &'a str {
        self.take_while(is_tchar)
    }

    /// A token68 (`1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`)
    /// that makes up the whole element; otherwise nothing is consumed.
    fn token68(&mut self) -> Option<String> {
        let start = self.pos;
        let body = self.take_while(is_token68_char);
        if !body.is_empty() {
            self.take_while(|byte| byte == b'=');
            let end = self.pos;
            self.skip_whitespace();
            if matches!(self.peek(), None | Some(b',')) {
                return Some(self.input[start..end].to_owned());
            }
        }
        self.pos = start;
        None
    }

    /// Reads `name = value` elements into `params` until the input ends or,
    /// when `stop_at_scheme`, an element is a lone token (the next scheme).
    fn params(
        &mut self,
        params: &mut Vec<(String, String)>,
        stop_at_scheme: bool,
    ) -> Result<(), SyntaxError> {
        loop {
            self.skip_separators();
            if self.at_end() {
                return Ok(());
            }
            let element_start = self.pos;
            let name = self.token();
            if name.is_empty() {
                return Err(self.error());
            }
            self.skip_whitespace();
            if self.peek() != Some(b'=') {
                if stop_at_scheme {
                    self.pos = element_start;
                    return Ok(());
                }
                return Err(self.error());
            }
            self.pos += 1;
            self.skip_whitespace();
            let value = if self.peek() == Some(b'"') {
                self.quoted_string()?
            } else {
                // RFC 7235 wants a token here; servers also send bare
                // base64 nonces and the like, so take any run up to the
                // next separator.
                let value = self.take_while(|byte| {
                    !matches!(byte, b' ' | b'\t' | b',' | b'"') && !byte.is_ascii_control()
                });
                if value.is_empty() {
                    return Err(self.error());
                }
                value.to_owned()
            };
            params.push((name.to_ascii_lowercase(), value));
        }
    }

    /// A quoted-string starting at the opening quote, unescaped.
    fn quoted_string(&mut self) -> Result<String, SyntaxError> {
        let rest = &self.input[self.pos + 1..];
        let mut value = String::new();
        let mut escaped = false;
        for (offset, ch) in rest.char_indices() {
            if escaped {
                value.push(ch);
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                self.pos += 1 + offset + 1;
                return Ok(value);
            } else {
                value.push(ch);
            }
        }
        self.pos = self.input.len();
        Err(self.error())
    }
}

/// What the challenge offers for `qop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QopOffer {
    /// No `qop` parameter: the RFC 2069 form.
    Absent,
    /// The recognised members of the `qop` list (at least one is true).
    Offered { auth: bool, auth_int: bool },
}

/// A Digest challenge that can be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DigestChallenge {
    pub(crate) realm: String,
    pub(crate) nonce: String,
    pub(crate) opaque: Option<String>,
    pub(crate) algorithm: Algorithm,
    pub(crate) qop: QopOffer,
    pub(crate) domain: Option<String>,
    pub(crate) stale: bool,
    pub(crate) userhash: bool,
}

impl DigestChallenge {
    /// Validates a raw `Digest` challenge.
    pub(crate) fn from_raw(raw: &RawChallenge) -> Result<Self, DigestFailure> {
        // RFC 7616 section 3.3: a parameter must not occur more than once.
        // Taking the first or the last would let whoever can add to the
        // header choose, say, the realm or the algorithm.
        if let Some(name) = first_duplicate(&raw.params) {
            return Err(DigestFailure::DuplicateParameter(name.to_owned()));
        }
        let realm = raw.param("realm").ok_or(DigestFailure::MissingRealm)?;
        let nonce = raw.param("nonce").ok_or(DigestFailure::MissingNonce)?;
        if nonce.is_empty() {
            return Err(DigestFailure::EmptyNonce);
        }
        let algorithm = match raw.param("algorithm") {
            None => Algorithm::implied(),
            Some(name) => Algorithm::from_name(name)
                .ok_or_else(|| DigestFailure::UnsupportedAlgorithm(name.to_owned()))?,
        };
        let qop = match raw.param("qop") {
            None => QopOffer::Absent,
            Some(list) => {
                let mut auth = false;
                let mut auth_int = false;
                for member in list.split(',').map(str::trim) {
                    auth |= member.eq_ignore_ascii_case("auth");
                    auth_int |= member.eq_ignore_ascii_case("auth-int");
                }
                if !auth && !auth_int {
                    return Err(DigestFailure::UnsupportedQop(list.to_owned()));
                }
                QopOffer::Offered { auth, auth_int }
            }
        };
        if algorithm.session && qop == QopOffer::Absent {
            // The session hash mixes in a cnonce, which an answer without qop
            // must not carry: no server could check the result.
            return Err(DigestFailure::SessionWithoutQop(
                algorithm.spelling.clone().unwrap_or_default(),
            ));
        }
        let flag = |name| {
            raw.param(name)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        };
        Ok(DigestChallenge {
            realm: realm.to_owned(),
            nonce: nonce.to_owned(),
            opaque: raw.param("opaque").map(str::to_owned),
            algorithm,
            qop,
            domain: raw.param("domain").map(str::to_owned),
            stale: flag("stale"),
            userhash: flag("userhash"),
        })
    }
}

/// Picks the strongest answerable Digest challenge among all `values` of the
/// challenge header (every header line counts).
///
/// Ties go to the challenge that offers a `qop` (the RFC 2069 form has no
/// client nonce), then to the server's order. When none can be answered the
/// reason is the first Digest challenge's, or why there was none.
pub(crate) fn select<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<DigestChallenge, DigestFailure> {
    let mut challenges = Vec::new();
    let mut malformed = false;
    for value in values {
        match std::str::from_utf8(value) {
            Ok(text) => malformed |= parse_challenges(text, &mut challenges).is_err(),
            Err(_) => malformed = true,
        }
    }
    let mut best: Option<DigestChallenge> = None;
    let mut first_failure = None;
    for raw in challenges.iter().filter(|raw| raw.is_digest()) {
        match DigestChallenge::from_raw(raw) {
            Ok(candidate) => {
                let key = |c: &DigestChallenge| (c.algorithm.strength(), c.qop != QopOffer::Absent);
                if best.as_ref().is_none_or(|b| key(&candidate) > key(b)) {
                    best = Some(candidate);
                }
            }
            Err(failure) => {
                first_failure.get_or_insert(failure);
            }
        }
    }
    match (best, first_failure) {
        (Some(best), _) => Ok(best),
        (None, Some(failure)) => Err(failure),
        (None, None) if malformed => Err(DigestFailure::MalformedChallenge),
        (None, None) => Err(DigestFailure::NoDigestChallenge),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Vec<RawChallenge> {
        let mut out = Vec::new();
        parse_challenges(value, &mut out).expect(value);
        out
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn digest(value: &str) -> DigestChallenge {
        select([value.as_bytes()]).expect(value)
    }

    #[test]
    fn quoted_and_unquoted_parameters() {
        let parsed = parse(r#"Digest realm="example.com", nonce=12345, qop="auth""#);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].scheme, "Digest");
        assert_eq!(
            parsed[0].params,
            params(&[
                ("realm", "example.com"),
                ("nonce", "12345"),
                ("qop", "auth")
            ])
        );
    }

    #[test]
    fn parameter_names_are_case_insensitive() {
        let parsed = parse(r#"Digest Realm="r", NONCE="n", QoP=auth"#);
        assert_eq!(parsed[0].param("realm"), Some("r"));
        assert_eq!(parsed[0].param("nonce"), Some("n"));
        assert_eq!(parsed[0].param("qop"), Some("auth"));
    }

    #[test]
    fn scheme_names_are_case_insensitive() {
        for scheme in ["Digest", "digest", "DIGEST", "dIgEsT"] {
            let challenge = digest(&format!(r#"{scheme} realm="r", nonce="n""#));
            assert_eq!(challenge.nonce, "n");
        }
    }

    #[test]
    fn commas_inside_quoted_strings_are_data() {
        let parsed = parse(r#"Digest realm="ex,ample", nonce=1, domain="/a, /b""#);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].param("realm"), Some("ex,ample"));
        assert_eq!(parsed[0].param("domain"), Some("/a, /b"));
    }

    #[test]
    fn whitespace_around_equals_and_missing_spaces_after_commas() {
        let parsed = parse(r#"Digest realm  =  "test"  ,nonce="123",qop=auth"#);
        assert_eq!(
            parsed[0].params,
            params(&[("realm", "test"), ("nonce", "123"), ("qop", "auth")])
        );
    }

    #[test]
    fn backslash_escapes_are_removed() {
        let parsed = parse(r#"Digest realm="a\"b\\c\d", nonce="n""#);
        assert_eq!(parsed[0].param("realm"), Some(r#"a"b\cd"#));
    }

    #[test]
    fn single_quotes_are_ordinary_characters() {
        let parsed = parse("Digest realm='test', nonce=1");
        assert_eq!(parsed[0].param("realm"), Some("'test'"));
    }

    #[test]
    fn basic_and_digest_in_one_header_value() {
        let parsed = parse(r#"Basic realm="x", Digest realm="y", nonce="abc""#);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].scheme, "Basic");
        assert_eq!(parsed[0].params, params(&[("realm", "x")]));
        assert_eq!(parsed[1].scheme, "Digest");
        assert_eq!(
            parsed[1].params,
            params(&[("realm", "y"), ("nonce", "abc")])
        );
    }

    #[test]
    fn a_later_challenge_does_not_overwrite_the_digest_parameters() {
        let challenge = digest(r#"Digest realm="protected", nonce="n1", Basic realm="other""#);
        assert_eq!(challenge.realm, "protected");
        assert_eq!(challenge.nonce, "n1");
    }

    #[test]
    fn token68_and_bare_schemes() {
        let parsed =
            parse(r#"Negotiate, Bearer abc/DEF+g==, NTLM, Digest realm="r", nonce="n", Newauth"#);
        let schemes: Vec<_> = parsed.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(
            schemes,
            ["Negotiate", "Bearer", "NTLM", "Digest", "Newauth"]
        );
        assert_eq!(parsed[0].token68, None);
        assert!(parsed[0].params.is_empty());
        assert_eq!(parsed[1].token68.as_deref(), Some("abc/DEF+g=="));
        // A lone `name=` is a token68 too, not an empty parameter.
        assert_eq!(parse("Digest realm=")[0].token68.as_deref(), Some("realm="));
        assert_eq!(parsed[3].params, params(&[("realm", "r"), ("nonce", "n")]));
    }

    #[test]
    fn empty_value_and_empty_elements() {
        assert!(parse("").is_empty());
        assert!(parse(" , ,").is_empty());
        let parsed = parse(r#", Digest realm="", nonce="n",, "#);
        assert_eq!(parsed[0].param("realm"), Some(""));
    }

    #[test]
    fn unterminated_quoted_string_drops_that_challenge_only() {
        let mut out = Vec::new();
        let result = parse_challenges(r#"Basic realm="x", Digest realm="y, nonce=n"#, &mut out);
        assert!(result.is_err());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].scheme, "Basic");
    }

    #[test]
    fn syntax_errors_are_reported_not_panicked() {
        for value in [
            "=x",
            "Digest =invalid, format",
            "Digest a=, b=c",
            "\"",
            "Digest a=\"\\",
        ] {
            let mut out = Vec::new();
            assert!(parse_challenges(value, &mut out).is_err(), "{value}");
        }
    }

    #[test]
    fn non_ascii_inside_quoted_strings_is_kept() {
        let parsed = parse("Digest realm=\"caf\u{e9} \\\u{e9}\", nonce=n");
        assert_eq!(parsed[0].param("realm"), Some("caf\u{e9} \u{e9}"));
    }

    #[test]
    fn long_word_runs_parse_in_one_pass() {
        let value = format!("{}\\0=a", "0".repeat(54_773));
        let mut out = Vec::new();
        // A scheme token, then a stray backslash: an error, found quickly.
        assert!(parse_challenges(&value, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn quote_escapes_both_ways() {
        for (raw, quoted) in [
            (r#"value"with"quotes"#, r#""value\"with\"quotes""#),
            (r#""""#, r#""\"\"""#),
            ("back\\slash", r#""back\\slash""#),
            ("trailing\\", r#""trailing\\""#),
            (r#"already\"escaped"#, r#""already\\\"escaped""#),
            ("", r#""""#),
        ] {
            assert_eq!(quote(raw), quoted);
            let header = format!("Digest realm={quoted}, nonce=n");
            assert_eq!(parse(&header)[0].param("realm"), Some(raw));
        }
    }

    #[test]
    fn authentication_info_parameter_list() {
        let parsed =
            parse_params(r#"nextnonce="abc", qop=auth, rspauth="d", cnonce="x""#).expect("valid");
        assert_eq!(find_param(&parsed, "nextnonce"), Some("abc"));
        assert!(parse_params("Digest nextnonce=x").is_err());
    }

    #[test]
    fn every_header_value_is_read() {
        let challenge = select([
            br#"Basic realm="x""#.as_slice(),
            br#"Digest realm="y", nonce="n""#.as_slice(),
        ])
        .expect("the second line has a Digest challenge");
        assert_eq!(challenge.realm, "y");
    }

    #[test]
    fn strongest_supported_algorithm_wins() {
        let challenge = select([
            br#"Digest realm="r", nonce="a", qop="auth", algorithm=MD5"#.as_slice(),
            br#"Digest realm="r", nonce="b", qop="auth", algorithm=SHA-256, Digest realm="r", nonce="c", qop="auth", algorithm=UNKNOWN"#.as_slice(),
            br#"Digest realm="r", nonce="d", qop="auth", algorithm=SHA-512-256"#.as_slice(),
            br#"Digest realm="r", nonce="e", qop="auth", algorithm=SHA-512"#.as_slice(),
        ])
        .expect("answerable");
        assert_eq!(challenge.nonce, "d");
        assert_eq!(challenge.algorithm.spelling.as_deref(), Some("SHA-512-256"));
    }

    #[test]
    fn equal_strength_goes_to_qop_then_server_order() {
        let challenge = digest(
            r#"Digest realm="r", nonce="a", Digest realm="r", nonce="b", qop=auth, Digest realm="r", nonce="c", qop=auth"#,
        );
        assert_eq!(challenge.nonce, "b");
    }

    #[test]
    fn unanswerable_challenges_are_skipped_when_another_works() {
        let challenge = digest(
            r#"Digest realm="r", nonce="a", algorithm=SHA-384, Digest realm="r", nonce="b""#,
        );
        assert_eq!(challenge.nonce, "b");
    }

    #[test]
    fn reasons_for_unanswerable_challenges() {
        for (value, failure) in [
            ("", DigestFailure::NoDigestChallenge),
            (r#"Basic realm="x""#, DigestFailure::NoDigestChallenge),
            ("Digest", DigestFailure::MissingRealm),
            (r#"Digest nonce="n""#, DigestFailure::MissingRealm),
            (r#"Digest realm="r""#, DigestFailure::MissingNonce),
            (r#"Digest realm="r", nonce="""#, DigestFailure::EmptyNonce),
            (
                r#"Digest realm="r", nonce="n", algorithm=SHA-384"#,
                DigestFailure::UnsupportedAlgorithm("SHA-384".into()),
            ),
            (
                r#"Digest realm="r", nonce="n", qop="auth-conf""#,
                DigestFailure::UnsupportedQop("auth-conf".into()),
            ),
            (
                r#"Digest realm="r", nonce="n", algorithm=MD5-sess"#,
                DigestFailure::SessionWithoutQop("MD5-sess".into()),
            ),
            (
                r#"Digest realm="r, nonce=n"#,
                DigestFailure::MalformedChallenge,
            ),
        ] {
            assert_eq!(select([value.as_bytes()]), Err(failure), "{value}");
        }
        assert_eq!(
            select([b"Digest realm=\"\xff\", nonce=n".as_slice()]),
            Err(DigestFailure::MalformedChallenge)
        );
    }

    #[test]
    fn a_repeated_parameter_refuses_the_challenge() {
        for (value, name) in [
            (r#"Digest realm="a", nonce="n", realm="b""#, "realm"),
            (r#"Digest realm="r", Nonce="n", NONCE="m""#, "nonce"),
            (
                r#"Digest realm="r", nonce="n", algorithm=MD5, algorithm=SHA-256"#,
                "algorithm",
            ),
            (r#"Digest realm="r", nonce="n", qop=auth, qop=auth"#, "qop"),
        ] {
            assert_eq!(
                select([value.as_bytes()]),
                Err(DigestFailure::DuplicateParameter(name.to_owned())),
                "{value}"
            );
        }
        // The same names in two challenges are two challenges.
        let challenge =
            digest(r#"Digest realm="r", nonce="n", Digest realm="r", nonce="m", qop=auth"#);
        assert_eq!(challenge.nonce, "m");
        // A well-formed challenge next to a refused one is still answered.
        let challenge = select([
            br#"Digest realm="r", nonce="a", nonce="b", algorithm=SHA-256"#.as_slice(),
            br#"Digest realm="r", nonce="c""#.as_slice(),
        ])
        .expect("the second challenge is answerable");
        assert_eq!(challenge.nonce, "c");
    }

    #[test]
    fn token68_is_told_apart_from_a_parameter() {
        let parsed = parse(r#"Basic abc==, Digest realm="r", nonce=n=="#);
        assert_eq!(parsed[0].token68.as_deref(), Some("abc=="));
        assert_eq!(parsed[1].param("nonce"), Some("n=="));
        assert_eq!(parsed[1].param("realm"), Some("r"));
        let parsed = parse(r#"Basic abc= , Digest realm="r""#);
        assert_eq!(parsed[0].token68.as_deref(), Some("abc="));
        assert_eq!(parsed[1].scheme, "Digest");
    }

    #[test]
    fn unknown_parameters_and_charset_are_ignored() {
        let challenge = digest(
            r#"Digest realm="r", nonce="n", charset=UTF-8, x-vendor="a, b", qop=" auth-conf , AUTH ""#,
        );
        assert_eq!(
            challenge.qop,
            QopOffer::Offered {
                auth: true,
                auth_int: false
            }
        );
    }

    /// A small deterministic generator, so that a failure can be replayed.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_headers_never_panic() {
        // Bytes weighted towards the ones the grammar cares about.
        const ALPHABET: &[&[u8]] = &[
            b"Digest",
            b"Basic",
            b" ",
            b"\t",
            b",",
            b"=",
            b"\"",
            b"\\",
            b"realm",
            b"nonce",
            b"qop",
            b"auth",
            b"algorithm",
            b"SHA-256-sess",
            b"a",
            b"/",
            b"\xc3\xa9",
            b"\xff",
            b"\0",
            b"domain",
            b"stale",
            b"TRUE",
        ];
        let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut value = Vec::new();
            for _ in 0..random.next() % 40 {
                let piece = ALPHABET[(random.next() % ALPHABET.len() as u64) as usize];
                value.extend_from_slice(piece);
            }
            let _ = select([value.as_slice()]);
            if let Ok(text) = std::str::from_utf8(&value) {
                let _ = parse_params(text);
            }
        }
    }

    #[test]
    fn long_hostile_headers_are_read() {
        let quotes = format!("Digest realm=\"{}", "\\\"".repeat(200_000));
        assert_eq!(
            select([quotes.as_bytes()]),
            Err(DigestFailure::MalformedChallenge)
        );
        let many = format!(
            "Digest realm=\"r\", nonce=\"n\"{}",
            (0..100_000)
                .map(|i| format!(", p{i}=v"))
                .collect::<String>()
        );
        assert_eq!(digest(&many).nonce, "n");
        let repeated = format!("Digest realm=\"r\", nonce=\"n\"{}", ", p=v".repeat(100_000));
        assert_eq!(
            select([repeated.as_bytes()]),
            Err(DigestFailure::DuplicateParameter("p".to_owned()))
        );
        let schemes = "Basic, ".repeat(100_000);
        assert_eq!(
            select([schemes.as_bytes()]),
            Err(DigestFailure::NoDigestChallenge)
        );
    }

    #[test]
    fn challenge_fields() {
        let challenge = digest(
            r#"Digest realm="r", nonce="n", opaque="o", qop="auth-int, auth, auth-conf", algorithm=sha-256-SESS, domain="/a /b", stale=TRUE, userhash=true"#,
        );
        assert_eq!(challenge.realm, "r");
        assert_eq!(challenge.opaque.as_deref(), Some("o"));
        assert_eq!(
            challenge.qop,
            QopOffer::Offered {
                auth: true,
                auth_int: true
            }
        );
        assert_eq!(
            challenge.algorithm.spelling.as_deref(),
            Some("sha-256-SESS")
        );
        assert!(challenge.algorithm.session);
        assert_eq!(challenge.domain.as_deref(), Some("/a /b"));
        assert!(challenge.stale);
        assert!(challenge.userhash);

        let plain = digest(r#"Digest realm="r", nonce="n", stale=false"#);
        assert_eq!(plain.qop, QopOffer::Absent);
        assert_eq!(plain.algorithm, Algorithm::implied());
        assert!(!plain.stale);
        assert!(!plain.userhash);
        assert_eq!(plain.opaque, None);
    }
}
