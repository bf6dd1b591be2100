//! The `Authorization` answer to a Digest challenge (RFC 7616 section 3.4).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::DigestError;
use super::challenge::{DigestChallenge, QopOffer, quote};

/// RFC 8187 `attr-char`s are sent as they are; everything else is encoded.
const EXT_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// The quality of protection an answer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Qop {
    Auth,
    AuthInt,
}

impl Qop {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

/// Chooses the qop for a request whose body is `body` (`None` when it is a
/// stream that cannot be read ahead of sending).
///
/// `auth-int` protects the body too, so it is taken whenever it is offered
/// and the body is in memory; a streaming body falls back to `auth`, or is an
/// error when the server offers `auth-int` alone.
pub(crate) fn choose_qop(offer: QopOffer, body: Option<&[u8]>) -> Result<Option<Qop>, DigestError> {
    match offer {
        QopOffer::Absent => Ok(None),
        QopOffer::Offered { auth_int: true, .. } if body.is_some() => Ok(Some(Qop::AuthInt)),
        QopOffer::Offered { auth: true, .. } => Ok(Some(Qop::Auth)),
        QopOffer::Offered { .. } => Err(DigestError::AuthIntNeedsBufferedBody),
    }
}

/// The user's name and password.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: String,
}

/// What one answer depends on besides the credentials and the challenge.
#[derive(Clone, Copy)]
pub(crate) struct Request<'a> {
    /// The method as sent.
    pub(crate) method: &'a str,
    /// The request target as sent (see `request_target`).
    pub(crate) uri: &'a str,
    pub(crate) qop: Option<Qop>,
    /// The body as sent; hashed only for `auth-int`.
    pub(crate) body: &'a [u8],
    pub(crate) nonce_count: u32,
    pub(crate) cnonce: &'a str,
}

/// The `response` digest and the full header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) response: String,
    pub(crate) header: String,
}

/// True when `username` can be sent as a quoted-string that every server reads
/// the same way: printable ASCII only.
fn is_plain(username: &str) -> bool {
    username.bytes().all(|byte| (b' '..=b'~').contains(&byte))
}

/// `H(A1)`, `H(A2)` and the request digest of RFC 7616 section 3.4.1, for an
/// A2 of `method ":" uri` (":" H(body) for `auth-int`).
///
/// The server's `rspauth` (section 3.5) is the same computation with an
/// empty method and, for `auth-int`, the response body.
fn request_digest(
    credentials: &Credentials,
    challenge: &DigestChallenge,
    request: &Request<'_>,
    nonce_count: &str,
) -> String {
    let hash = challenge.algorithm.hash;
    let nonce = challenge.nonce.as_bytes();
    let cnonce = request.cnonce.as_bytes();

    let mut ha1 = hash.hex_of_joined(&[
        credentials.username.as_bytes(),
        challenge.realm.as_bytes(),
        credentials.password.as_bytes(),
    ]);
    if challenge.algorithm.session {
        ha1 = hash.hex_of_joined(&[ha1.as_bytes(), nonce, cnonce]);
    }
    let ha2 = match request.qop {
        Some(Qop::AuthInt) => hash.hex_of_joined(&[
            request.method.as_bytes(),
            request.uri.as_bytes(),
            hash.hex(request.body).as_bytes(),
        ]),
        Some(Qop::Auth) | None => {
            hash.hex_of_joined(&[request.method.as_bytes(), request.uri.as_bytes()])
        }
    };
    match request.qop {
        Some(qop) => hash.hex_of_joined(&[
            ha1.as_bytes(),
            nonce,
            nonce_count.as_bytes(),
            cnonce,
            qop.as_str().as_bytes(),
            ha2.as_bytes(),
        ]),
        None => hash.hex_of_joined(&[ha1.as_bytes(), nonce, ha2.as_bytes()]),
    }
}

/// The `rspauth` a server that knows the password sends in
/// `Authentication-Info` for the answer `request` (RFC 7616 section 3.5).
/// `response_body` is hashed only for `auth-int`.
pub(crate) fn expected_rspauth(
    credentials: &Credentials,
    challenge: &DigestChallenge,
    request: &Request<'_>,
    response_body: &[u8],
) -> String {
    let response = Request {
        method: "",
        body: response_body,
        ..*request
    };
    let nonce_count = format!("{:08x}", request.nonce_count);
    request_digest(credentials, challenge, &response, &nonce_count)
}

/// Computes the answer to `challenge` for `request`.
pub(crate) fn answer(
    credentials: &Credentials,
    challenge: &DigestChallenge,
    request: &Request<'_>,
) -> Answer {
    let hash = challenge.algorithm.hash;
    let username = credentials.username.as_bytes();
    let realm = challenge.realm.as_bytes();
    let nonce_count = format!("{:08x}", request.nonce_count);
    let response = request_digest(credentials, challenge, request, &nonce_count);

    let mut fields: Vec<String> = Vec::with_capacity(11);
    if challenge.userhash {
        fields.push(format!(
            "username=\"{}\"",
            hash.hex_of_joined(&[username, realm])
        ));
    } else if is_plain(&credentials.username) {
        fields.push(format!("username={}", quote(&credentials.username)));
    } else {
        fields.push(format!(
            "username*=UTF-8''{}",
            utf8_percent_encode(&credentials.username, EXT_VALUE)
        ));
    }
    fields.push(format!("realm={}", quote(&challenge.realm)));
    fields.push(format!("nonce={}", quote(&challenge.nonce)));
    fields.push(format!("uri={}", quote(request.uri)));
    if let Some(spelling) = &challenge.algorithm.spelling {
        // Only known names reach here, and those are all tokens.
        fields.push(format!("algorithm={spelling}"));
    }
    fields.push(format!("response=\"{response}\""));
    if let Some(opaque) = &challenge.opaque {
        fields.push(format!("opaque={}", quote(opaque)));
    }
    if let Some(qop) = request.qop {
        fields.push(format!("qop={}", qop.as_str()));
        fields.push(format!("nc={nonce_count}"));
        fields.push(format!("cnonce={}", quote(request.cnonce)));
    }
    if challenge.userhash {
        fields.push("userhash=true".to_owned());
    }
    Answer {
        response,
        header: format!("Digest {}", fields.join(", ")),
    }
}

/// The request target as sent on the wire: the path and query exactly as the
/// `url` crate serialises them, or for a forward proxy the absolute form
/// (without user information or fragment).
pub(crate) fn request_target(url: &url::Url, absolute_form: bool) -> String {
    use url::Position;
    let origin_form = &url[Position::BeforePath..Position::AfterQuery];
    let origin_form = if origin_form.is_empty() {
        "/"
    } else {
        origin_form
    };
    if absolute_form {
        format!(
            "{}://{}{}",
            url.scheme(),
            &url[Position::BeforeHost..Position::AfterPort],
            origin_form
        )
    } else {
        origin_form.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::digest::challenge::{RawChallenge, parse_challenges, parse_params};

    fn challenge(value: &str) -> DigestChallenge {
        let mut raw: Vec<RawChallenge> = Vec::new();
        parse_challenges(value, &mut raw).expect(value);
        DigestChallenge::from_raw(&raw[0]).expect(value)
    }

    fn credentials(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    fn get<'a>(uri: &'a str, qop: Option<Qop>, cnonce: &'a str) -> Request<'a> {
        Request {
            method: "GET",
            uri,
            qop,
            body: b"",
            nonce_count: 1,
            cnonce,
        }
    }

    /// The parameters of a produced header, parsed back.
    fn fields(header: &str) -> Vec<(String, String)> {
        let params = header.strip_prefix("Digest ").expect("Digest scheme");
        parse_params(params).expect("the produced header parses")
    }

    fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
        crate::client::digest::challenge::find_param(fields, name)
    }

    #[test]
    fn rfc_2617_section_3_5_md5_auth() {
        let challenge = challenge(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        );
        let answer = answer(
            &credentials("Mufasa", "Circle Of Life"),
            &challenge,
            &get("/dir/index.html", Some(Qop::Auth), "0a4f113b"),
        );
        assert_eq!(answer.response, "6629fae49393a05397450978507c4ef1");
        assert_eq!(
            answer.header,
            r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41", qop=auth, nc=00000001, cnonce="0a4f113b""#
        );
    }

    const RFC_7616_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const RFC_7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    const RFC_7616_OPAQUE: &str = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";

    fn rfc_7616_section_3_9_1(algorithm: &str) -> Answer {
        let challenge = challenge(&format!(
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, nonce="{RFC_7616_NONCE}", opaque="{RFC_7616_OPAQUE}""#
        ));
        answer(
            &credentials("Mufasa", "Circle of Life"),
            &challenge,
            &get("/dir/index.html", Some(Qop::Auth), RFC_7616_CNONCE),
        )
    }

    #[test]
    fn rfc_7616_section_3_9_1_md5() {
        let answer = rfc_7616_section_3_9_1("MD5");
        assert_eq!(answer.response, "8ca523f5e9506fed4657c9700eebdbec");
        let fields = fields(&answer.header);
        assert_eq!(field(&fields, "username"), Some("Mufasa"));
        assert_eq!(field(&fields, "algorithm"), Some("MD5"));
        assert_eq!(field(&fields, "opaque"), Some(RFC_7616_OPAQUE));
        assert_eq!(field(&fields, "cnonce"), Some(RFC_7616_CNONCE));
        assert_eq!(field(&fields, "nc"), Some("00000001"));
        assert_eq!(field(&fields, "qop"), Some("auth"));
    }

    #[test]
    fn rfc_7616_section_3_9_1_sha_256() {
        let answer = rfc_7616_section_3_9_1("SHA-256");
        assert_eq!(
            answer.response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert!(answer.header.contains(", algorithm=SHA-256, "));
    }

    /// RFC 7616 section 3.9.2, with the values corrected by erratum 4897.
    #[test]
    fn rfc_7616_section_3_9_2_sha_512_256_userhash() {
        let challenge = challenge(
            r#"Digest realm="api@example.org", qop="auth", algorithm=SHA-512-256, nonce="5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK", opaque="HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS", charset=UTF-8, userhash=true"#,
        );
        let answer = answer(
            &credentials("J\u{e4}s\u{f8}n Doe", "Secret, or not?"),
            &challenge,
            &get(
                "/doe.json",
                Some(Qop::Auth),
                "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v",
            ),
        );
        assert_eq!(
            answer.response,
            "3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5"
        );
        let fields = fields(&answer.header);
        assert_eq!(
            field(&fields, "username"),
            Some("793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b")
        );
        assert_eq!(field(&fields, "userhash"), Some("true"));
        assert_eq!(field(&fields, "username*"), None);
    }

    #[test]
    fn non_ascii_username_is_sent_as_rfc_8187_ext_value() {
        let challenge = challenge(r#"Digest realm="api@example.org", nonce="n", qop=auth"#);
        let answer = answer(
            &credentials("J\u{e4}s\u{f8}n Doe", "pw"),
            &challenge,
            &get("/", Some(Qop::Auth), "c"),
        );
        assert!(
            answer
                .header
                .starts_with("Digest username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, realm=")
        );
        let fields = fields(&answer.header);
        assert_eq!(field(&fields, "username"), None);
        // The hash still covers the name itself, as UTF-8.
        let expected = challenge.algorithm.hash.hex_of_joined(&[
            challenge
                .algorithm
                .hash
                .hex_of_joined(&["J\u{e4}s\u{f8}n Doe".as_bytes(), b"api@example.org", b"pw"])
                .as_bytes(),
            b"n",
            b"00000001",
            b"c",
            b"auth",
            challenge.algorithm.hash.hex(b"GET:/").as_bytes(),
        ]);
        assert_eq!(answer.response, expected);
    }

    #[test]
    fn control_characters_in_username_use_the_ext_value() {
        let challenge = challenge(r#"Digest realm="r", nonce="n""#);
        let answer = answer(
            &credentials("a\r\nb", "pw"),
            &challenge,
            &get("/", None, ""),
        );
        assert!(
            answer
                .header
                .starts_with("Digest username*=UTF-8''a%0D%0Ab, ")
        );
    }

    #[test]
    fn rfc_2069_form_has_no_qop_nc_or_cnonce() {
        let challenge = challenge(
            r#"Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093""#,
        );
        let answer = answer(
            &credentials("Mufasa", "Circle Of Life"),
            &challenge,
            &get("/dir/index.html", None, "ignored"),
        );
        // MD5(MD5(A1) ":" nonce ":" MD5(A2)), computed outside this crate.
        let expected = "670fd8c2df070c60b045671b8b24ff02";
        assert_eq!(answer.response, expected);
        assert_eq!(
            answer.header,
            format!(
                r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", response="{expected}""#
            )
        );
    }

    #[test]
    fn session_variant_mixes_nonce_and_cnonce_into_ha1() {
        let challenge = challenge(r#"Digest realm="r", nonce="n", qop=auth, algorithm=MD5-sess"#);
        let answer = answer(
            &credentials("u", "p"),
            &challenge,
            &get("/", Some(Qop::Auth), "c"),
        );
        let md5 = challenge.algorithm.hash;
        let ha1 = md5.hex(format!("{}:n:c", md5.hex(b"u:r:p")).as_bytes());
        let expected = md5.hex(format!("{ha1}:n:00000001:c:auth:{}", md5.hex(b"GET:/")).as_bytes());
        assert_eq!(answer.response, expected);
        assert!(answer.header.contains(", algorithm=MD5-sess, "));
    }

    #[test]
    fn auth_int_hashes_the_body() {
        let challenge =
            challenge(r#"Digest realm="r", nonce="n", qop="auth-int", algorithm=SHA-256"#);
        let request = Request {
            method: "POST",
            uri: "/submit",
            qop: Some(Qop::AuthInt),
            body: b"this is a body",
            nonce_count: 2,
            cnonce: "c",
        };
        let answer = answer(&credentials("u", "p"), &challenge, &request);
        let sha = challenge.algorithm.hash;
        let ha2 = sha.hex(format!("POST:/submit:{}", sha.hex(b"this is a body")).as_bytes());
        let expected =
            sha.hex(format!("{}:n:00000002:c:auth-int:{ha2}", sha.hex(b"u:r:p")).as_bytes());
        assert_eq!(answer.response, expected);
        let fields = fields(&answer.header);
        assert_eq!(field(&fields, "qop"), Some("auth-int"));
        assert_eq!(field(&fields, "nc"), Some("00000002"));
    }

    #[test]
    fn algorithm_is_echoed_as_spelled_and_omitted_when_absent() {
        for spelling in [
            "md5",
            "MD5-sess",
            "sha-256",
            "SHA256",
            "SHA",
            "sha-512-256-SESS",
        ] {
            let challenge = challenge(&format!(
                r#"Digest realm="r", nonce="n", qop=auth, algorithm="{spelling}""#
            ));
            let answer = answer(
                &credentials("u", "p"),
                &challenge,
                &get("/", Some(Qop::Auth), "c"),
            );
            assert!(
                answer.header.contains(&format!(", algorithm={spelling}, ")),
                "{}",
                answer.header
            );
        }
        let implied = challenge(r#"Digest realm="r", nonce="n", qop=auth"#);
        let answer = answer(
            &credentials("u", "p"),
            &implied,
            &get("/", Some(Qop::Auth), "c"),
        );
        assert!(!answer.header.contains("algorithm"));
    }

    #[test]
    fn quoted_fields_escape_quotes_and_backslashes() {
        let challenge =
            challenge(r#"Digest realm="realm\\", nonce="n\"0", opaque="op\\", qop=auth"#);
        let answer = answer(
            &credentials(r#"user"with"quotes"#, "p"),
            &challenge,
            &get(r"/axis?action=9:\", Some(Qop::Auth), "c"),
        );
        assert!(answer.header.contains(r#"username="user\"with\"quotes""#));
        assert!(answer.header.contains(r#"realm="realm\\""#));
        assert!(answer.header.contains(r#"opaque="op\\""#));
        assert!(answer.header.contains(r#"uri="/axis?action=9:\\""#));
        let fields = fields(&answer.header);
        assert_eq!(field(&fields, "username"), Some(r#"user"with"quotes"#));
        assert_eq!(field(&fields, "realm"), Some(r"realm\"));
        assert_eq!(field(&fields, "nonce"), Some(r#"n"0"#));
        assert_eq!(field(&fields, "opaque"), Some(r"op\"));
        assert_eq!(field(&fields, "uri"), Some(r"/axis?action=9:\"));
    }

    #[test]
    fn empty_opaque_is_echoed() {
        let challenge = challenge(r#"Digest realm="r", nonce="n", opaque="""#);
        let answer = answer(&credentials("u", "p"), &challenge, &get("/", None, ""));
        assert!(answer.header.ends_with(r#", opaque="""#));
    }

    #[test]
    fn qop_choice_depends_on_the_body() {
        let both = QopOffer::Offered {
            auth: true,
            auth_int: true,
        };
        let auth_int_only = QopOffer::Offered {
            auth: false,
            auth_int: true,
        };
        let auth_only = QopOffer::Offered {
            auth: true,
            auth_int: false,
        };
        assert_eq!(choose_qop(both, Some(b"x")), Ok(Some(Qop::AuthInt)));
        assert_eq!(choose_qop(both, None), Ok(Some(Qop::Auth)));
        assert_eq!(choose_qop(auth_int_only, Some(b"")), Ok(Some(Qop::AuthInt)));
        assert_eq!(
            choose_qop(auth_int_only, None),
            Err(DigestError::AuthIntNeedsBufferedBody)
        );
        assert_eq!(choose_qop(auth_only, Some(b"x")), Ok(Some(Qop::Auth)));
        assert_eq!(choose_qop(QopOffer::Absent, Some(b"x")), Ok(None));
    }

    #[test]
    fn request_target_is_the_serialised_path_and_query() {
        for (input, origin_form, absolute_form) in [
            (
                "http://h/dir/index.html",
                "/dir/index.html",
                "http://h/dir/index.html",
            ),
            ("http://h", "/", "http://h/"),
            (
                "http://u:p@h:8080/a%20b/c?x=%2F#frag",
                "/a%20b/c?x=%2F",
                "http://h:8080/a%20b/c?x=%2F",
            ),
            (
                "http://h/a b/\u{e9}?q=a b&r=\u{e9}",
                "/a%20b/%C3%A9?q=a%20b&r=%C3%A9",
                "http://h/a%20b/%C3%A9?q=a%20b&r=%C3%A9",
            ),
            ("http://h/p?", "/p?", "http://h/p?"),
            ("http://[::1]:1/x", "/x", "http://[::1]:1/x"),
        ] {
            let url = url::Url::parse(input).expect(input);
            assert_eq!(request_target(&url, false), origin_form, "{input}");
            assert_eq!(request_target(&url, true), absolute_form, "{input}");
        }
    }
}
