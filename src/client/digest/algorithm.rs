//! The hash algorithms of a Digest challenge, their names and their ranking.
//!
//! RFC 7616 registers `MD5`, `SHA-256` and `SHA-512-256`, each with a `-sess`
//! variant. Servers in the field also send names the registry does not hold:
//! `SHA-512`, `SHA256`/`SHA512` without the dash, and `SHA`. Every client that
//! interoperates with those servers (python-requests, aiohttp, urllib) reads
//! `SHA` as SHA-1, so the servers that send it compute SHA-1 too: `SHA`,
//! `SHA-1` and `SHA1` mean SHA-1 here.

use sha2::Digest;

/// A hash function usable in Digest authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HashFunction {
    Md5,
    Sha1,
    Sha256,
    Sha512,
    Sha512_256,
}

impl HashFunction {
    /// Strength rank used to choose among several challenges: higher wins.
    ///
    /// The three SHA-2 members all exceed what the password itself can offer,
    /// so the ones RFC 7616 defines come first (an independent server is more
    /// likely to compute them as specified), SHA-512-256 ahead of SHA-256
    /// because its truncated output resists length extension. The
    /// unregistered SHA-512 follows, then SHA-1, then MD5.
    fn rank(self) -> u8 {
        match self {
            HashFunction::Sha512_256 => 5,
            HashFunction::Sha256 => 4,
            HashFunction::Sha512 => 3,
            HashFunction::Sha1 => 2,
            HashFunction::Md5 => 1,
        }
    }

    /// `H(parts[0] ":" parts[1] ":" ...)` as lowercase hex.
    pub(crate) fn hex_of_joined(self, parts: &[&[u8]]) -> String {
        match self {
            HashFunction::Md5 => joined_hex::<md5::Md5>(parts),
            HashFunction::Sha1 => joined_hex::<sha1::Sha1>(parts),
            HashFunction::Sha256 => joined_hex::<sha2::Sha256>(parts),
            HashFunction::Sha512 => joined_hex::<sha2::Sha512>(parts),
            HashFunction::Sha512_256 => joined_hex::<sha2::Sha512_256>(parts),
        }
    }

    /// `H(data)` as lowercase hex.
    pub(crate) fn hex(self, data: &[u8]) -> String {
        self.hex_of_joined(&[data])
    }
}

fn joined_hex<D: Digest>(parts: &[&[u8]]) -> String {
    let mut hasher = D::new();
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            hasher.update(b":");
        }
        hasher.update(part);
    }
    to_hex(&hasher.finalize())
}

/// Lowercase hex, as every Digest value is written.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// The `algorithm` of a challenge: a hash function, whether it is a `-sess`
/// variant, and the name exactly as the server wrote it (echoed verbatim,
/// because some servers compare it case-sensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Algorithm {
    pub(crate) hash: HashFunction,
    pub(crate) session: bool,
    /// `None` when the challenge had no `algorithm` parameter (MD5 is then
    /// implied and the answer does not name one either).
    pub(crate) spelling: Option<String>,
}

impl Algorithm {
    /// The algorithm implied by a challenge without an `algorithm` parameter.
    pub(crate) fn implied() -> Self {
        Algorithm {
            hash: HashFunction::Md5,
            session: false,
            spelling: None,
        }
    }

    /// Reads a name as servers write it, case-insensitively; `None` if unknown.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        let upper = name.to_ascii_uppercase();
        let (base, session) = match upper.strip_suffix("-SESS") {
            Some(base) => (base, true),
            None => (upper.as_str(), false),
        };
        let hash = match base {
            "MD5" => HashFunction::Md5,
            "SHA" | "SHA-1" | "SHA1" => HashFunction::Sha1,
            "SHA-256" | "SHA256" => HashFunction::Sha256,
            "SHA-512-256" | "SHA512-256" => HashFunction::Sha512_256,
            "SHA-512" | "SHA512" => HashFunction::Sha512,
            _ => return None,
        };
        Some(Algorithm {
            hash,
            session,
            spelling: Some(name.to_owned()),
        })
    }

    /// Ranking key: stronger hash first, and for one hash the plain variant
    /// just ahead of its `-sess` sibling (simpler, and some servers get the
    /// session variant wrong).
    pub(crate) fn strength(&self) -> u8 {
        self.hash.rank() * 2 + u8::from(!self.session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hash_outputs() {
        assert_eq!(
            HashFunction::Md5.hex(b"abc"),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            HashFunction::Sha1.hex(b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            HashFunction::Sha256.hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            HashFunction::Sha512_256.hex(b"abc"),
            "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
        );
        assert_eq!(
            HashFunction::Sha512.hex(b"abc"),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn joined_parts_are_separated_by_colons() {
        assert_eq!(
            HashFunction::Md5.hex_of_joined(&[b"a", b"b", b""]),
            HashFunction::Md5.hex(b"a:b:")
        );
    }

    #[test]
    fn names_are_case_insensitive_and_keep_their_spelling() {
        for (name, hash, session) in [
            ("MD5", HashFunction::Md5, false),
            ("md5-sess", HashFunction::Md5, true),
            ("MD5-sess", HashFunction::Md5, true),
            ("SHA-256", HashFunction::Sha256, false),
            ("sha256", HashFunction::Sha256, false),
            ("SHA-256-sess", HashFunction::Sha256, true),
            ("SHA256-SESS", HashFunction::Sha256, true),
            ("SHA-512-256", HashFunction::Sha512_256, false),
            ("SHA-512-256-sess", HashFunction::Sha512_256, true),
            ("SHA-512", HashFunction::Sha512, false),
            ("SHA512-sess", HashFunction::Sha512, true),
            ("SHA", HashFunction::Sha1, false),
            ("SHA-sess", HashFunction::Sha1, true),
            ("sha-1", HashFunction::Sha1, false),
        ] {
            let algorithm = Algorithm::from_name(name).expect(name);
            assert_eq!(algorithm.hash, hash, "{name}");
            assert_eq!(algorithm.session, session, "{name}");
            assert_eq!(algorithm.spelling.as_deref(), Some(name));
        }
    }

    #[test]
    fn unknown_names_are_refused() {
        for name in ["", "MD4", "SHA-384", "-sess", "MD5-sess-sess", "token"] {
            assert_eq!(Algorithm::from_name(name), None, "{name}");
        }
    }

    #[test]
    fn ranking_prefers_registered_sha2_then_sha512_then_sha1_then_md5() {
        let order = [
            "SHA-512-256",
            "SHA-512-256-sess",
            "SHA-256",
            "SHA-256-sess",
            "SHA-512",
            "SHA-512-sess",
            "SHA",
            "SHA-sess",
            "MD5",
            "MD5-sess",
        ];
        for pair in order.windows(2) {
            let stronger = Algorithm::from_name(pair[0]).expect(pair[0]);
            let weaker = Algorithm::from_name(pair[1]).expect(pair[1]);
            assert!(stronger.strength() > weaker.strength(), "{pair:?}");
        }
        assert_eq!(
            Algorithm::implied().strength(),
            Algorithm::from_name("MD5")
                .map(|a| a.strength())
                .unwrap_or(0)
        );
    }
}
