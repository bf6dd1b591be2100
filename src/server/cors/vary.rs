//! Merging the layer's names into a response's `Vary` header.

use http::HeaderValue;
use http::header::{Entry, HeaderMap, VARY};

/// The `Vary` values the CORS builder makes.
const KNOWN: [&str; 5] = [
    "origin",
    "origin, access-control-request-method, access-control-request-headers",
    "origin, access-control-request-method, access-control-request-headers, \
     access-control-request-private-network",
    "access-control-request-method, access-control-request-headers",
    "access-control-request-method, access-control-request-headers, \
     access-control-request-private-network",
];

/// The request headers a response depends on, prepared once.
#[derive(Debug, Clone)]
pub(super) struct Vary {
    names: Vec<&'static str>,
    value: Option<HeaderValue>,
}

impl Vary {
    pub(super) fn new(names: Vec<&'static str>) -> Self {
        let value = (!names.is_empty()).then(|| {
            let joined = names.join(", ");
            // A static value is cloned by copying a pointer, with no reference count to touch.
            match KNOWN.iter().find(|known| **known == joined) {
                Some(known) => HeaderValue::from_static(known),
                // The names are static lower-case tokens, so the joined value is always valid.
                None => {
                    HeaderValue::from_str(&joined).unwrap_or(HeaderValue::from_static("origin"))
                }
            }
        });
        Self { names, value }
    }

    /// Adds the names to `Vary`: inserted as prepared when the response has no `Vary`,
    /// otherwise appended to what is there, without repeating a name already listed (in
    /// any case) and leaving `Vary: *` alone.
    pub(super) fn apply(&self, headers: &mut HeaderMap) {
        let Some(value) = &self.value else {
            return;
        };
        // One lookup: most responses have no `Vary`, and get the prepared value.
        let mut entry = match headers.entry(VARY) {
            Entry::Vacant(vacant) => {
                vacant.insert(value.clone());
                return;
            }
            Entry::Occupied(entry) => entry,
        };
        let lines = entry.iter();
        debug_assert!(self.names.len() <= 8);
        let mut present = 0u8;
        let mut combined = String::new();
        let mut opaque = false;
        for line in lines {
            let Ok(line) = line.to_str() else {
                // An opaque existing value cannot be merged into text; it is kept as it is.
                opaque = true;
                continue;
            };
            for item in line.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                if item == "*" {
                    return;
                }
                if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(item)) {
                    present |= 1 << i;
                }
                if !combined.is_empty() {
                    combined.push_str(", ");
                }
                combined.push_str(item);
            }
        }
        let all = (1u16 << self.names.len()) - 1;
        if u16::from(present) == all {
            return;
        }
        if opaque {
            // Replacing the lines would drop the opaque one: add the missing names as a line.
            combined.clear();
        }
        for (i, name) in self.names.iter().enumerate() {
            if present & (1 << i) == 0 {
                if !combined.is_empty() {
                    combined.push_str(", ");
                }
                combined.push_str(name);
            }
        }
        if opaque {
            if let Ok(missing) = HeaderValue::from_str(&combined) {
                entry.append(missing);
            }
            return;
        }
        match HeaderValue::from_str(&combined) {
            Ok(merged) => {
                entry.insert(merged);
            }
            Err(_) => {
                entry.append(value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vary(headers: &HeaderMap) -> Vec<&str> {
        headers
            .get_all(VARY)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn every_value_the_builder_makes_is_static() {
        for names in [
            vec!["origin"],
            vec![
                "origin",
                "access-control-request-method",
                "access-control-request-headers",
            ],
            vec![
                "access-control-request-method",
                "access-control-request-headers",
                "access-control-request-private-network",
            ],
        ] {
            let joined = names.join(", ");
            let vary = Vary::new(names);
            assert_eq!(
                vary.value.as_ref().map(HeaderValue::as_bytes),
                Some(joined.as_bytes())
            );
            assert!(KNOWN.contains(&joined.as_str()), "{joined}");
        }
    }

    #[test]
    fn inserted_when_absent() {
        let mut headers = HeaderMap::new();
        Vary::new(vec!["origin"]).apply(&mut headers);
        assert_eq!(vary(&headers), ["origin"]);
    }

    #[test]
    fn appended_to_existing_without_duplicates() {
        let mut headers = HeaderMap::new();
        headers.append(VARY, HeaderValue::from_static("Accept-Encoding, Origin"));
        headers.append(VARY, HeaderValue::from_static("cookie"));
        Vary::new(vec!["origin", "access-control-request-method"]).apply(&mut headers);
        assert_eq!(
            vary(&headers),
            ["Accept-Encoding, Origin, cookie, access-control-request-method"]
        );
    }

    #[test]
    fn an_opaque_existing_line_is_kept() {
        let mut headers = HeaderMap::new();
        let opaque = HeaderValue::from_bytes(b"x-caf\xe9").unwrap();
        headers.append(VARY, opaque.clone());
        headers.append(VARY, HeaderValue::from_static("accept-encoding, origin"));
        Vary::new(vec!["origin", "access-control-request-method"]).apply(&mut headers);
        let lines: Vec<&HeaderValue> = headers.get_all(VARY).iter().collect();
        assert_eq!(
            lines,
            [
                &opaque,
                &HeaderValue::from_static("accept-encoding, origin"),
                &HeaderValue::from_static("access-control-request-method"),
            ]
        );
    }

    #[test]
    fn untouched_when_all_present_or_star() {
        let mut headers = HeaderMap::new();
        headers.insert(VARY, HeaderValue::from_static("ORIGIN"));
        Vary::new(vec!["origin"]).apply(&mut headers);
        assert_eq!(vary(&headers), ["ORIGIN"]);

        headers.insert(VARY, HeaderValue::from_static("*"));
        Vary::new(vec!["origin"]).apply(&mut headers);
        assert_eq!(vary(&headers), ["*"]);
    }
}
