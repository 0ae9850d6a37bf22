//! Percent-escapes (RFC 3986 §2.1): the one strict decoder of the project, for URI
//! header values (`Refer-To: <…?Replaces=…>`) and the HTTP APIs' query strings.

/// Decodes `%XX` escapes. `None` for an escape without two hex digits (`%4`, `%ZZ`, `%+1`,
/// which the `percent-encoding` crate passes through unchanged) or for bytes that are not
/// UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let escapes_ok = s.split('%').skip(1).all(|rest| {
        rest.as_bytes()
            .get(..2)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_ok {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(String::from)
}

/// Decodes one component of a URL query (`application/x-www-form-urlencoded`): `+` is a
/// space, `%2B` a plus.
pub fn decode_query(s: &str) -> Option<String> {
    decode(&s.replace('+', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_to_utf8() {
        assert_eq!(decode("a%3Bb").as_deref(), Some("a;b"));
        assert_eq!(decode("caf%C3%A9").as_deref(), Some("café"));
        assert_eq!(decode("%3b%3B").as_deref(), Some(";;"));
        assert_eq!(decode("plain").as_deref(), Some("plain"));
        assert_eq!(decode("").as_deref(), Some(""));
        assert_eq!(decode("a+b").as_deref(), Some("a+b"));
    }

    #[test]
    fn bad_escapes_are_refused() {
        for bad in [
            "%", "%4", "a%", "%ZZ", "%+1", "%-1", "% 1", "%%41", "%4G", "%é1",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        // Escapes that make bytes that are not UTF-8.
        assert_eq!(decode("%C3"), None);
        assert_eq!(decode("%FF%FE"), None);
    }

    #[test]
    fn query_components_treat_plus_as_space() {
        assert_eq!(decode_query("a+b").as_deref(), Some("a b"));
        assert_eq!(decode_query("a%2Bb").as_deref(), Some("a+b"));
        assert_eq!(
            decode_query("Europe%2FBerlin").as_deref(),
            Some("Europe/Berlin")
        );
        assert_eq!(decode_query("%+1"), None);
    }
}
