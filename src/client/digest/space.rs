//! Protection spaces and the per-nonce state behind preemptive answers.
//!
//! A space is what one accepted challenge covers: its origin (RFC 6454: scheme,
//! host and port) and realm, narrowed to the paths the challenge's `domain`
//! names on that origin (RFC 7616 section 3.3). `domain` entries on other
//! origins are ignored: the credentials are only ever offered to the origin
//! that asked for them. A path is inside a `domain` prefix at a segment
//! boundary (`/api` covers `/api` and `/api/v1`, not `/apiv2`), which is
//! stricter than the RFC's plain prefix and costs at most one extra 401.

use url::{Origin, Url};

use super::challenge::DigestChallenge;

/// Spaces kept at most; the least recently challenged is dropped first.
const MAX_SPACES: usize = 64;

/// `domain` paths kept at most for one space.
const MAX_PREFIXES: usize = 64;

/// Replaced nonces whose counts one space remembers.
const MAX_RETIRED: usize = 8;

/// A nonce that a newer one replaced, and how far its count went.
///
/// A server may hand an older nonce out again (to a request that was in
/// flight while another one moved the space on, or because it keeps several
/// valid at once); its count must then go on from where it stopped, or the
/// server sees a replayed nonce count and refuses the answer.
#[derive(Debug)]
struct Retired {
    nonce: String,
    nonce_count: u32,
    session_cnonce: Option<String>,
}

/// Remembers the count of `nonce`, dropping the oldest beyond the bound.
fn retire(
    retired: &mut Vec<Retired>,
    nonce: String,
    nonce_count: u32,
    session_cnonce: Option<String>,
) {
    retired.retain(|old| old.nonce != nonce);
    if retired.len() == MAX_RETIRED {
        retired.remove(0);
    }
    retired.push(Retired {
        nonce,
        nonce_count,
        session_cnonce,
    });
}

/// What an answer needs from the stored state: the challenge, the next nonce
/// count for its nonce, and the client nonce to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) challenge: DigestChallenge,
    pub(crate) nonce_count: u32,
    pub(crate) cnonce: String,
}

#[derive(Debug)]
struct Space {
    /// `None` when spaces are not split by origin (a proxy's).
    origin: Option<Origin>,
    /// `None` covers the whole origin.
    prefixes: Option<Vec<String>>,
    challenge: DigestChallenge,
    /// Requests sent with `challenge.nonce` so far.
    nonce_count: u32,
    /// For `-sess` algorithms one cnonce per nonce, so that H(A1) stays the
    /// same for the session whichever way the server reads RFC 7616 (hashed
    /// once per session, or per request with the request's cnonce).
    session_cnonce: Option<String>,
    /// Earlier nonces of this space, oldest first.
    retired: Vec<Retired>,
    /// The highest count sent under the current `opaque`, whichever nonce it
    /// went with.
    opaque_count: u32,
    /// An answer in this space was accepted: the credentials are right, so a
    /// later refusal of a fresh answer can be a server's nonce-count check
    /// that concurrent requests tripped.
    confirmed: bool,
}

impl Space {
    fn covers(&self, origin: &Option<Origin>, path: &str) -> bool {
        &self.origin == origin
            && self
                .prefixes
                .as_ref()
                .is_none_or(|prefixes| prefixes.iter().any(|p| path_has_prefix(path, p)))
    }

    fn lease(&mut self, fresh_cnonce: String) -> Option<Lease> {
        self.nonce_count = self.nonce_count.checked_add(1)?;
        self.opaque_count = self.opaque_count.max(self.nonce_count);
        let cnonce = if self.challenge.algorithm.session {
            self.session_cnonce.get_or_insert(fresh_cnonce).clone()
        } else {
            fresh_cnonce
        };
        Some(Lease {
            challenge: self.challenge.clone(),
            nonce_count: self.nonce_count,
            cnonce,
        })
    }
}

fn path_has_prefix(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'))
}

/// The paths `domain` names on `url`'s origin, or `None` for the whole origin.
fn domain_prefixes(domain: Option<&str>, url: &Url) -> Option<Vec<String>> {
    let origin = url.origin();
    let prefixes: Vec<String> = domain?
        .split_ascii_whitespace()
        .map(|entry| entry.trim_matches('"'))
        .filter(|entry| !entry.is_empty())
        .filter_map(|entry| url.join(entry).ok())
        .filter(|resolved| resolved.origin() == origin)
        .map(|resolved| resolved.path().to_owned())
        // A longer list narrows the space to its first entries: at worst an
        // extra 401, never an answer outside what the server named.
        .take(MAX_PREFIXES)
        .collect();
    // An empty or unusable `domain` means the whole origin (RFC 7616 3.3).
    (!prefixes.is_empty()).then_some(prefixes)
}

/// Every protection space one `DigestAuth` has been challenged for.
#[derive(Debug)]
pub(crate) struct Spaces {
    per_origin: bool,
    /// Most recently challenged first.
    entries: Vec<Space>,
}

impl Spaces {
    /// `per_origin: false` keeps one space for everything (a proxy's).
    pub(crate) fn new(per_origin: bool) -> Self {
        Spaces {
            per_origin,
            entries: Vec::new(),
        }
    }

    fn origin_of(&self, url: &Url) -> Option<Origin> {
        self.per_origin.then(|| url.origin())
    }

    /// Records `challenge`, received for `url`, and leases it for answering
    /// `url` now. The nonce count goes on if the server sent the nonce it had
    /// sent before for this origin and realm, and starts over otherwise.
    ///
    /// `None` only when that nonce has been used 2^32 - 1 times already.
    pub(crate) fn store(
        &mut self,
        url: &Url,
        challenge: DigestChallenge,
        fresh_cnonce: String,
    ) -> Option<Lease> {
        let origin = self.origin_of(url);
        let mut prefixes = if self.per_origin {
            domain_prefixes(challenge.domain.as_deref(), url)
        } else {
            None
        };
        let previous = self
            .entries
            .iter()
            .position(|space| space.origin == origin && space.challenge.realm == challenge.realm)
            .map(|index| self.entries.remove(index));
        let mut confirmed = false;
        let mut opaque_count = 0;
        let (nonce_count, session_cnonce, retired) = match previous {
            Some(space) => {
                confirmed = space.confirmed;
                // A server that keeps one count per `opaque` across its
                // nonces (Apache's AuthDigestNcCheck) refuses a new nonce's
                // count that does not pass the highest it saw, and says so
                // with a new nonce, the same `opaque` and no `stale`. A stale
                // nonce starts over at 1 as RFC 7616 has it.
                let same_opaque =
                    space.challenge.opaque.is_some() && space.challenge.opaque == challenge.opaque;
                if same_opaque {
                    opaque_count = space.opaque_count;
                }
                let continued = if same_opaque && !challenge.stale {
                    space.opaque_count
                } else {
                    0
                };
                // One realm is one space: a server that names different
                // `domain`s for one realm on different paths (Apache does, per
                // <Location>) widens it rather than moving it.
                prefixes = match (space.prefixes, prefixes) {
                    (Some(mut known), Some(named)) => {
                        for prefix in named {
                            if !known.contains(&prefix) && known.len() < MAX_PREFIXES {
                                known.push(prefix);
                            }
                        }
                        Some(known)
                    }
                    _ => None,
                };
                if space.challenge.nonce == challenge.nonce {
                    (space.nonce_count, space.session_cnonce, space.retired)
                } else {
                    let mut retired = space.retired;
                    let resumed = retired
                        .iter()
                        .position(|old| old.nonce == challenge.nonce)
                        .map(|index| retired.remove(index));
                    retire(
                        &mut retired,
                        space.challenge.nonce,
                        space.nonce_count,
                        space.session_cnonce,
                    );
                    match resumed {
                        Some(old) => (old.nonce_count, old.session_cnonce, retired),
                        None => (continued, None, retired),
                    }
                }
            }
            None => (0, None, Vec::new()),
        };
        self.entries.insert(
            0,
            Space {
                origin,
                prefixes,
                challenge,
                nonce_count,
                session_cnonce,
                retired,
                opaque_count,
                confirmed,
            },
        );
        self.entries.truncate(MAX_SPACES);
        self.entries[0].lease(fresh_cnonce)
    }

    /// Records whether the credentials were accepted in the space of `url`
    /// and `realm`.
    pub(crate) fn confirm(&mut self, url: &Url, realm: &str, accepted: bool) {
        let origin = self.origin_of(url);
        if let Some(space) = self
            .entries
            .iter_mut()
            .find(|space| space.origin == origin && space.challenge.realm == realm)
        {
            space.confirmed = accepted;
        }
    }

    /// Whether an answer in the space of `url` and `realm` was accepted.
    pub(crate) fn is_confirmed(&self, url: &Url, realm: &str) -> bool {
        let origin = self.origin_of(url);
        self.entries.iter().any(|space| {
            space.origin == origin && space.challenge.realm == realm && space.confirmed
        })
    }

    /// Whether a known space covers `url`.
    pub(crate) fn covers(&self, url: &Url) -> bool {
        let origin = self.origin_of(url);
        self.entries
            .iter()
            .any(|space| space.covers(&origin, url.path()))
    }

    /// Leases the most recent space covering `url`, for a preemptive answer.
    pub(crate) fn lease(&mut self, url: &Url, fresh_cnonce: String) -> Option<Lease> {
        let origin = self.origin_of(url);
        let index = self
            .entries
            .iter()
            .position(|space| space.covers(&origin, url.path()))?;
        let lease = self.entries[index].lease(fresh_cnonce);
        if lease.is_none() {
            // Nonce used up: forget it, so the next request gets a fresh one.
            self.entries.remove(index);
        }
        lease
    }

    /// Adopts the `nextnonce` a server sent in `Authentication-Info` after
    /// an answer to `url` that used `used_nonce`.
    pub(crate) fn next_nonce(&mut self, url: &Url, used_nonce: &str, next_nonce: &str) {
        let origin = self.origin_of(url);
        if next_nonce.is_empty() {
            return;
        }
        if let Some(space) = self
            .entries
            .iter_mut()
            .find(|space| space.origin == origin && space.challenge.nonce == used_nonce)
        {
            if space.challenge.nonce != next_nonce {
                let used = std::mem::replace(&mut space.challenge.nonce, next_nonce.to_owned());
                let count = std::mem::take(&mut space.nonce_count);
                retire(&mut space.retired, used, count, space.session_cnonce.take());
                if let Some(index) = space.retired.iter().position(|old| old.nonce == next_nonce) {
                    let old = space.retired.remove(index);
                    space.nonce_count = old.nonce_count;
                    space.session_cnonce = old.session_cnonce;
                }
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::digest::challenge::select;

    fn url(text: &str) -> Url {
        Url::parse(text).expect(text)
    }

    fn challenge(params: &str) -> DigestChallenge {
        let value = format!(r#"Digest realm="r", qop=auth, {params}"#);
        select([value.as_bytes()]).expect(params)
    }

    fn covered(spaces: &mut Spaces, target: &str) -> bool {
        spaces.lease(&url(target), "c".into()).is_some()
    }

    #[test]
    fn without_domain_the_whole_origin_is_covered() {
        let mut spaces = Spaces::new(true);
        spaces.store(
            &url("http://a.test/x"),
            challenge(r#"nonce="n""#),
            "c".into(),
        );
        assert!(covered(&mut spaces, "http://a.test/"));
        assert!(covered(&mut spaces, "http://a.test/other/path?q"));
        assert!(!covered(&mut spaces, "https://a.test/x"));
        assert!(!covered(&mut spaces, "http://b.test/x"));
        assert!(!covered(&mut spaces, "http://a.test:8080/x"));
        assert!(covered(&mut spaces, "http://a.test:80/x"));
    }

    #[test]
    fn domain_narrows_the_space_at_segment_boundaries() {
        let mut spaces = Spaces::new(true);
        spaces.store(
            &url("http://a.test/api"),
            challenge(r#"nonce="n", domain="/api /admin/ /secure/area""#),
            "c".into(),
        );
        for (path, expected) in [
            ("/api", true),
            ("/api/v1", true),
            ("/api?x=1", true),
            ("/admin/panel", true),
            ("/secure/area/resource", true),
            ("/apiv2", false),
            ("/admin", false),
            ("/secure", false),
            ("/other", false),
        ] {
            assert_eq!(
                covered(&mut spaces, &format!("http://a.test{path}")),
                expected,
                "{path}"
            );
        }
    }

    #[test]
    fn domains_named_for_one_realm_add_up() {
        let mut spaces = Spaces::new(true);
        spaces.store(
            &url("http://a.test/private/"),
            challenge(r#"nonce="n1", domain="/private/""#),
            "c".into(),
        );
        spaces.store(
            &url("http://a.test/other/"),
            challenge(r#"nonce="n2", domain="/other/""#),
            "c".into(),
        );
        assert!(covered(&mut spaces, "http://a.test/private/x"));
        assert!(covered(&mut spaces, "http://a.test/other/x"));
        assert!(!covered(&mut spaces, "http://a.test/elsewhere"));
        assert_eq!(spaces.len(), 1);
    }

    #[test]
    fn absolute_domain_entries_count_only_on_the_same_origin() {
        let mut spaces = Spaces::new(true);
        spaces.store(
            &url("http://a.test/"),
            challenge(r#"nonce="n", domain="http://a.test/protected http://b.test/""#),
            "c".into(),
        );
        assert!(covered(&mut spaces, "http://a.test/protected/resource"));
        assert!(!covered(&mut spaces, "http://a.test/unprotected"));
        assert!(!covered(&mut spaces, "http://b.test/"));
    }

    #[test]
    fn domain_naming_only_other_origins_means_the_challenging_origin() {
        let mut spaces = Spaces::new(true);
        spaces.store(
            &url("http://a.test/x"),
            challenge(r#"nonce="n", domain="http://b.test/""#),
            "c".into(),
        );
        assert!(covered(&mut spaces, "http://a.test/anything"));
        assert!(!covered(&mut spaces, "http://b.test/"));
    }

    #[test]
    fn empty_or_quote_only_domain_does_not_crash() {
        for domain in [
            r#"domain="""#,
            r#"domain="\"""#,
            r#"domain="  ""#,
            r#"domain="\" \"""#,
        ] {
            let mut spaces = Spaces::new(true);
            spaces.store(
                &url("http://a.test/x"),
                challenge(&format!(r#"nonce="n", {domain}"#)),
                "c".into(),
            );
            assert!(covered(&mut spaces, "http://a.test/y"), "{domain}");
        }
    }

    #[test]
    fn encoded_domain_paths_match_encoded_request_paths() {
        let mut spaces = Spaces::new(true);
        spaces.store(
            &url("http://a.test/"),
            challenge(r#"nonce="n", domain="/a%20b /c d""#),
            "c".into(),
        );
        assert!(covered(&mut spaces, "http://a.test/a%20b/c?x=%2F"));
        assert!(covered(&mut spaces, "http://a.test/a b/c"));
        assert!(covered(&mut spaces, "http://a.test/c/x"));
    }

    #[test]
    fn nonce_count_increases_per_nonce_and_restarts_with_a_new_one() {
        let mut spaces = Spaces::new(true);
        let target = url("http://a.test/");
        let first = spaces.store(&target, challenge(r#"nonce="n1""#), "c".into());
        assert_eq!(first.map(|l| l.nonce_count), Some(1));
        for expected in 2..=4 {
            assert_eq!(
                spaces.lease(&target, "c".into()).map(|l| l.nonce_count),
                Some(expected)
            );
        }
        // The same nonce again (a challenge repeated) keeps counting.
        let repeated = spaces.store(&target, challenge(r#"nonce="n1""#), "c".into());
        assert_eq!(repeated.map(|l| l.nonce_count), Some(5));
        let fresh = spaces.store(&target, challenge(r#"nonce="n2""#), "c".into());
        assert_eq!(
            fresh.map(|l| (l.nonce_count, l.challenge.nonce)),
            Some((1, "n2".to_owned()))
        );
        assert_eq!(spaces.len(), 1);
    }

    #[test]
    fn a_new_nonce_with_the_same_opaque_continues_the_count_unless_stale() {
        let mut spaces = Spaces::new(true);
        let target = url("http://a.test/");
        spaces.store(&target, challenge(r#"nonce="n1", opaque="o""#), "c".into());
        spaces.lease(&target, "c".into());
        let same_opaque = spaces.store(&target, challenge(r#"nonce="n2", opaque="o""#), "c".into());
        assert_eq!(same_opaque.map(|l| l.nonce_count), Some(3));
        let stale = spaces.store(
            &target,
            challenge(r#"nonce="n3", opaque="o", stale=true"#),
            "c".into(),
        );
        assert_eq!(stale.map(|l| l.nonce_count), Some(1));
        let again = spaces.store(&target, challenge(r#"nonce="n4", opaque="o""#), "c".into());
        assert_eq!(again.map(|l| l.nonce_count), Some(4));
        let other = spaces.store(&target, challenge(r#"nonce="n5", opaque="p""#), "c".into());
        assert_eq!(other.map(|l| l.nonce_count), Some(1));
    }

    #[test]
    fn a_nonce_handed_out_again_continues_its_count() {
        let mut spaces = Spaces::new(true);
        let target = url("http://a.test/");
        spaces.store(&target, challenge(r#"nonce="n1""#), "c".into());
        spaces.lease(&target, "c".into());
        // A concurrent request was challenged with n2 meanwhile...
        spaces.store(&target, challenge(r#"nonce="n2""#), "c".into());
        // ...and another one with n1 again: nc 1 and 2 were used with n1.
        let again = spaces.store(&target, challenge(r#"nonce="n1""#), "c".into());
        assert_eq!(again.map(|l| l.nonce_count), Some(3));
        let back = spaces.store(&target, challenge(r#"nonce="n2""#), "c".into());
        assert_eq!(back.map(|l| l.nonce_count), Some(2));
    }

    #[test]
    fn remembered_nonces_are_bounded() {
        let mut spaces = Spaces::new(true);
        let target = url("http://a.test/");
        for i in 0..100 {
            spaces.store(&target, challenge(&format!(r#"nonce="n{i}""#)), "c".into());
        }
        assert_eq!(spaces.entries[0].retired.len(), MAX_RETIRED);
        // The oldest were forgotten: the count starts over.
        let oldest = spaces.store(&target, challenge(r#"nonce="n0""#), "c".into());
        assert_eq!(oldest.map(|l| l.nonce_count), Some(1));
        let recent = spaces.store(&target, challenge(r#"nonce="n98""#), "c".into());
        assert_eq!(recent.map(|l| l.nonce_count), Some(2));
    }

    #[test]
    fn a_long_domain_list_is_bounded() {
        let mut spaces = Spaces::new(true);
        let domain: String = (0..10_000).map(|i| format!("/p{i} ")).collect();
        spaces.store(
            &url("http://a.test/p0"),
            challenge(&format!(r#"nonce="n", domain="{domain}""#)),
            "c".into(),
        );
        assert_eq!(
            spaces.entries[0].prefixes.as_ref().map(Vec::len),
            Some(MAX_PREFIXES)
        );
        assert!(covered(&mut spaces, "http://a.test/p0/x"));
        assert!(!covered(&mut spaces, "http://a.test/p9999"));
    }

    #[test]
    fn exhausted_nonce_is_forgotten() {
        let mut spaces = Spaces::new(true);
        let target = url("http://a.test/");
        spaces.store(&target, challenge(r#"nonce="n""#), "c".into());
        spaces.entries[0].nonce_count = u32::MAX - 1;
        assert_eq!(
            spaces.lease(&target, "c".into()).map(|l| l.nonce_count),
            Some(u32::MAX)
        );
        assert_eq!(spaces.lease(&target, "c".into()), None);
        assert_eq!(spaces.len(), 0);
    }

    #[test]
    fn realms_and_origins_are_kept_apart() {
        let mut spaces = Spaces::new(true);
        spaces.store(
            &url("http://a.test/"),
            challenge(r#"nonce="a""#),
            "c".into(),
        );
        spaces.store(
            &url("http://b.test/"),
            challenge(r#"nonce="b""#),
            "c".into(),
        );
        let other_realm = select([br#"Digest realm="other", nonce="a2", domain="/o""#.as_slice()])
            .expect("valid");
        spaces.store(&url("http://a.test/o"), other_realm, "c".into());
        assert_eq!(spaces.len(), 3);
        let lease = |spaces: &mut Spaces, target: &str| {
            spaces
                .lease(&url(target), "c".into())
                .map(|l| l.challenge.nonce)
        };
        assert_eq!(lease(&mut spaces, "http://a.test/x").as_deref(), Some("a"));
        assert_eq!(
            lease(&mut spaces, "http://a.test/o/x").as_deref(),
            Some("a2")
        );
        assert_eq!(lease(&mut spaces, "http://b.test/x").as_deref(), Some("b"));
    }

    #[test]
    fn the_number_of_spaces_is_bounded() {
        let mut spaces = Spaces::new(true);
        for port in 0..(MAX_SPACES as u16 + 10) {
            spaces.store(
                &url(&format!("http://a.test:{}/", 1000 + port)),
                challenge(r#"nonce="n""#),
                "c".into(),
            );
        }
        assert_eq!(spaces.len(), MAX_SPACES);
        assert!(covered(
            &mut spaces,
            &format!("http://a.test:{}/", 1000 + MAX_SPACES + 9)
        ));
        assert!(!covered(&mut spaces, "http://a.test:1000/"));
    }

    #[test]
    fn session_algorithms_keep_one_cnonce_per_nonce() {
        let mut spaces = Spaces::new(true);
        let target = url("http://a.test/");
        let session = challenge(r#"nonce="n", algorithm=MD5-sess"#);
        let first = spaces.store(&target, session, "first".into());
        let second = spaces.lease(&target, "second".into());
        assert_eq!(first.map(|l| l.cnonce).as_deref(), Some("first"));
        assert_eq!(second.map(|l| l.cnonce).as_deref(), Some("first"));
        let plain = spaces.store(&target, challenge(r#"nonce="m""#), "third".into());
        assert_eq!(plain.map(|l| l.cnonce).as_deref(), Some("third"));
        assert_eq!(
            spaces
                .lease(&target, "fourth".into())
                .map(|l| l.cnonce)
                .as_deref(),
            Some("fourth")
        );
    }

    #[test]
    fn next_nonce_replaces_the_used_nonce() {
        let mut spaces = Spaces::new(true);
        let target = url("http://a.test/");
        spaces.store(&target, challenge(r#"nonce="n1""#), "c".into());
        spaces.next_nonce(&target, "n1", "n2");
        let lease = spaces.lease(&target, "c".into());
        assert_eq!(
            lease.map(|l| (l.challenge.nonce, l.nonce_count)),
            Some(("n2".to_owned(), 1))
        );
        spaces.next_nonce(&url("http://b.test/"), "n2", "n3");
        let lease = spaces.lease(&target, "c".into());
        assert_eq!(lease.map(|l| l.challenge.nonce).as_deref(), Some("n2"));
    }

    #[test]
    fn a_single_space_serves_every_target_when_not_split_by_origin() {
        let mut spaces = Spaces::new(false);
        spaces.store(
            &url("http://a.test/x"),
            challenge(r#"nonce="p", domain="/x""#),
            "c".into(),
        );
        assert!(covered(&mut spaces, "http://b.test/y"));
    }
}
