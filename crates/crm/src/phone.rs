//! Caller number normalisation to E.164.
//!
//! The same person dials in as `+49 30 1234567`, `030 1234567`, `0049301234567` or
//! `tel:+49-30-1234567`; the store only ever keeps and looks up the E.164 form, so every
//! variant finds the same customer.

use crate::error::{Error, Result};
use phonenumber::country;
use std::str::FromStr;

/// What a caller-id string turned out to be, before any database lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerNumber {
    /// A valid number, in E.164 (`+4930123456`).
    E164(String),
    /// The caller withheld the number (CLIR / `anonymous` / empty).
    Withheld,
    /// Something that is not a phone number (a SIP user name, garbage). Never looked up.
    Unusable(String),
}

/// Longest input we even try to parse: nothing longer is a phone number, and the parser
/// should not see attacker-sized strings.
const MAX_INPUT: usize = 64;

/// Normalises numbers for one default region (the region of the call center's trunks).
#[derive(Debug, Clone)]
pub struct Normalizer {
    region: country::Id,
    /// `49` for DE: turns a national-format search fragment into an E.164 prefix.
    country_code: u16,
    /// `0` for DE.
    national_prefix: Option<String>,
}

impl Normalizer {
    /// `region` is an ISO 3166 alpha-2 code such as `DE` or `US`.
    pub fn new(region: &str) -> Result<Self> {
        let upper = region.trim().to_ascii_uppercase();
        let region =
            country::Id::from_str(&upper).map_err(|_| Error::BadRegion(region.to_string()))?;
        let meta = phonenumber::metadata::DATABASE.by_id(upper.as_str());
        Ok(Normalizer {
            region,
            country_code: meta.map_or(0, |m| m.country_code()),
            national_prefix: meta.and_then(|m| m.national_prefix().map(str::to_string)),
        })
    }

    /// The E.164 prefix an incomplete number typed into a search box stands for:
    /// `+49 30 55` and `0049 30 55` as written, `030 55` through the region's national
    /// prefix. Only digits count; `None` if there are none.
    pub fn e164_prefix(&self, fragment: &str) -> Option<String> {
        let t = fragment.trim();
        let digits: String = t
            .chars()
            .filter(char::is_ascii_digit)
            .take(MAX_INPUT)
            .collect();
        if digits.is_empty() {
            return None;
        }
        if t.starts_with('+') {
            return Some(format!("+{digits}"));
        }
        if let Some(rest) = digits.strip_prefix("00") {
            return Some(format!("+{rest}"));
        }
        match self
            .national_prefix
            .as_deref()
            .filter(|p| !p.is_empty() && self.country_code != 0)
        {
            Some(np) if digits.starts_with(np) => {
                Some(format!("+{}{}", self.country_code, &digits[np.len()..]))
            }
            _ => Some(format!("+{digits}")),
        }
    }

    /// Classifies a caller id taken from From / P-Asserted-Identity (user part or tel URI).
    pub fn classify(&self, raw: &str) -> CallerNumber {
        let trimmed = raw.trim();
        let lowered = trimmed.to_ascii_lowercase();
        let bare = lowered
            .strip_prefix("tel:")
            .or_else(|| lowered.strip_prefix("sip:"))
            .unwrap_or(&lowered);
        let bare = bare.split(['@', ';']).next().unwrap_or("");
        if bare.is_empty()
            || matches!(
                bare,
                "anonymous" | "withheld" | "restricted" | "private" | "unavailable" | "unknown"
            )
        {
            return CallerNumber::Withheld;
        }
        match self.normalize(bare) {
            Ok(e164) => CallerNumber::E164(e164),
            Err(_) => CallerNumber::Unusable(trimmed.chars().take(MAX_INPUT).collect()),
        }
    }

    /// Normalises a number to E.164 or says why not. Accepts the usual punctuation.
    pub fn normalize(&self, raw: &str) -> Result<String> {
        let bad = || Error::BadNumber(raw.chars().take(MAX_INPUT).collect());
        let s = raw.trim();
        if s.is_empty()
            || s.len() > MAX_INPUT
            || !s
                .chars()
                .all(|c| c.is_ascii_digit() || " +-().\u{a0}/".contains(c))
            || s.chars().filter(|c| c.is_ascii_digit()).count() < 3
        {
            return Err(bad());
        }
        // `00` is the international prefix in most of the world; the parser only knows `+`.
        let s: String = match s.strip_prefix("00") {
            Some(rest) => format!("+{rest}"),
            None => s.to_string(),
        };
        let region = self.region;
        // The parser is third-party code fed with caller-controlled bytes: a panic in it
        // must cost one lookup, not the call task.
        let parsed = std::panic::catch_unwind(move || {
            phonenumber::parse(Some(region), &s)
                .ok()
                .filter(|n| n.is_valid())
                .map(|n| n.format().mode(phonenumber::Mode::E164).to_string())
        })
        .ok()
        .flatten();
        parsed.ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_variants_normalise_to_one_number() {
        let n = Normalizer::new("de").unwrap();
        for v in [
            "+49 30 1234567",
            "030 1234567",
            "0049301234567",
            "(030) 123-4567",
            "030/1234567",
        ] {
            assert_eq!(n.normalize(v).unwrap(), "+49301234567", "{v:?}");
        }
        assert_eq!(
            n.classify("tel:+1-212-555-0100;phone-context=x"),
            CallerNumber::E164("+12125550100".into())
        );
        assert!(Normalizer::new("XX").is_err());
        assert_eq!(n.e164_prefix("030 55").as_deref(), Some("+493055"));
        assert_eq!(n.e164_prefix("+44 20").as_deref(), Some("+4420"));
        assert_eq!(n.e164_prefix("0044 20").as_deref(), Some("+4420"));
        assert_eq!(n.e164_prefix("abc"), None);
    }

    /// Arbitrary bytes from the wire must classify, never panic. Deterministic xorshift input.
    #[test]
    fn arbitrary_input_never_panics() {
        let n = Normalizer::new("DE").unwrap();
        let alphabet: Vec<char> = "0123456789+-() ./;@:telsipanoymu\u{a0}\u{0}é💥#*"
            .chars()
            .collect();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            let s: String = (0..len)
                .map(|k| alphabet[((x >> (k % 50)) as usize + k * 7) % alphabet.len()])
                .collect();
            match n.classify(&s) {
                CallerNumber::E164(e) => {
                    assert!(e.starts_with('+') && e[1..].chars().all(|c| c.is_ascii_digit()))
                }
                CallerNumber::Withheld | CallerNumber::Unusable(_) => {}
            }
        }
    }
}
