//! Sensitive-information types for data-loss-prevention transport rules: payment card numbers,
//! IBANs, Japanese My Numbers (個人番号), US social security numbers and operator-defined
//! patterns. As in Microsoft Purview and Exchange DLP, a candidate counts only when it passes its
//! type's validation (card ranges and Luhn, ISO 7064 mod 97, the My Number check digit, the SSA
//! allocation rules), and every match carries a confidence raised by supporting keywords nearby.
//! A [`Match`] holds only the masked value: matches are written to logs and the message index.

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};
use serde::Serialize;

/// Only the first MiB of a text (cut back to a character boundary) is scanned, so a huge body
/// costs bounded time. A value cut by the limit is not reported, rather than reported partially.
pub const MAX_SCANNED: usize = 1 << 20;
/// Matches reported per type and text; enough to trip any rule threshold.
pub const MAX_MATCHES: usize = 1000;
/// Characters between a value and a supporting keyword, on either side.
pub const DEFAULT_PROXIMITY: usize = 300;
pub const HIGH_CONFIDENCE: u8 = 85;
pub const MEDIUM_CONFIDENCE: u8 = 75;
pub const LOW_CONFIDENCE: u8 = 65;

/// Bounds the compiled size of operator patterns, which come from configuration.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

const CARD_KEYWORDS: &[&str] = &[
    "card",
    "credit",
    "visa",
    "mastercard",
    "amex",
    "american express",
    "discover",
    "jcb",
    "diners",
    "cvv",
    "cvc",
    "expiry",
    "expiration",
    "exp date",
    "カード",
    "クレジット",
    "有効期限",
];
const IBAN_KEYWORDS: &[&str] = &["iban", "bank", "account", "sepa", "transfer", "konto", "口座"];
const MY_NUMBER_KEYWORDS: &[&str] = &["マイナンバー", "個人番号", "my number", "mynumber", "individual number"];
const SSN_KEYWORDS: &[&str] = &["ssn", "social security", "ss#", "ss #", "soc sec"];

static CARD_KEYWORD_REGEX: LazyLock<Regex> = LazyLock::new(|| builtin_keywords(CARD_KEYWORDS));
static IBAN_KEYWORD_REGEX: LazyLock<Regex> = LazyLock::new(|| builtin_keywords(IBAN_KEYWORDS));
static MY_NUMBER_KEYWORD_REGEX: LazyLock<Regex> = LazyLock::new(|| builtin_keywords(MY_NUMBER_KEYWORDS));
static SSN_KEYWORD_REGEX: LazyLock<Regex> = LazyLock::new(|| builtin_keywords(SSN_KEYWORDS));

#[derive(Debug, thiserror::Error)]
pub enum DlpError {
    #[error("sensitive information type {name:?}: {source}")]
    Pattern {
        name: String,
        #[source]
        source: regex::Error,
    },
}

/// A sensitive-information type a transport rule can look for.
#[derive(Debug, Clone)]
pub enum InfoType {
    CreditCard,
    Iban,
    JapanMyNumber,
    UsSsn,
    Custom(CustomType),
}

/// An operator-defined type: a pattern, with keywords that raise confidence when nearby.
#[derive(Debug, Clone)]
pub struct CustomType {
    pub name: String,
    regex: Regex,
    /// Lowercased, blanks dropped.
    keywords: Vec<String>,
    keyword_regex: Option<Regex>,
    /// Characters.
    proximity: usize,
}

impl CustomType {
    /// `proximity` defaults to [`DEFAULT_PROXIMITY`] characters.
    pub fn new(name: &str, pattern: &str, keywords: &[String], proximity: Option<usize>) -> Result<Self, DlpError> {
        let error = |source| DlpError::Pattern {
            name: name.to_string(),
            source,
        };
        let regex = RegexBuilder::new(pattern)
            .size_limit(PATTERN_SIZE_LIMIT)
            .build()
            .map_err(error)?;
        let keywords: Vec<String> = keywords
            .iter()
            .map(|k| k.trim().to_lowercase())
            .filter(|k| !k.is_empty())
            .collect();
        let keyword_regex = if keywords.is_empty() {
            None
        } else {
            Some(keyword_regex(&keywords).map_err(error)?)
        };
        Ok(Self {
            name: name.to_string(),
            regex,
            keywords,
            keyword_regex,
            proximity: proximity.unwrap_or(DEFAULT_PROXIMITY),
        })
    }
}

impl InfoType {
    /// The built-in types by their configuration names; custom types are built with
    /// [`CustomType::new`].
    pub fn parse(name: &str) -> Option<InfoType> {
        match name.trim().to_ascii_lowercase().as_str() {
            "credit_card" => Some(InfoType::CreditCard),
            "iban" => Some(InfoType::Iban),
            "jp_my_number" => Some(InfoType::JapanMyNumber),
            "us_ssn" => Some(InfoType::UsSsn),
            _ => None,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            InfoType::CreditCard => "credit_card",
            InfoType::Iban => "iban",
            InfoType::JapanMyNumber => "jp_my_number",
            InfoType::UsSsn => "us_ssn",
            InfoType::Custom(custom) => &custom.name,
        }
    }
}

/// One validated value. `start` and `end` are byte offsets into the scanned text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Match {
    pub info_type: String,
    /// Never the clear value: see [`mask`].
    pub masked: String,
    pub confidence: u8,
    pub start: usize,
    pub end: usize,
}

/// Validated values of `info_type` in the first [`MAX_SCANNED`] bytes of `text`, in order, at
/// most [`MAX_MATCHES`].
pub fn find(text: &str, info_type: &InfoType) -> Vec<Match> {
    scan(text, info_type).into_iter().map(|(m, _)| m).collect()
}

/// Matches of `info_type` at or above `min_confidence`, counted (distinct values).
pub fn count(text: &str, info_type: &InfoType, min_confidence: u8) -> usize {
    find_counted(text, info_type, min_confidence).1
}

/// In one pass: the matches at or above `min_confidence`, and how many distinct values they are.
pub fn find_counted(text: &str, info_type: &InfoType, min_confidence: u8) -> (Vec<Match>, usize) {
    let found: Vec<(Match, String)> = scan(text, info_type)
        .into_iter()
        .filter(|(m, _)| m.confidence >= min_confidence)
        .collect();
    let distinct = found.iter().map(|(_, value)| value).collect::<HashSet<_>>().len();
    (found.into_iter().map(|(m, _)| m).collect(), distinct)
}

/// Hides all but the last four letters and digits of `value`; separators stay so the shape is
/// recognisable. Four or fewer letters and digits are all hidden.
pub fn mask(value: &str) -> String {
    let alphanumerics = value.chars().filter(|c| c.is_alphanumeric()).count();
    let hidden = if alphanumerics <= 4 {
        alphanumerics
    } else {
        alphanumerics - 4
    };
    let mut seen = 0;
    value
        .chars()
        .map(|c| {
            if !c.is_alphanumeric() {
                return c;
            }
            seen += 1;
            if seen <= hidden { '*' } else { c }
        })
        .collect()
}

/// A validated value before keywords are weighed.
struct Found {
    start: usize,
    end: usize,
    /// Normalised clear value, so `count` sees one value however it is written. Never leaves
    /// this module.
    value: String,
    /// Confidence when no keyword is near.
    confidence: u8,
}

fn scan(text: &str, info_type: &InfoType) -> Vec<(Match, String)> {
    let limit = text.floor_char_boundary(MAX_SCANNED);
    let scanned = &text[..limit];
    let mut found = Vec::new();
    let (keywords, proximity) = match info_type {
        InfoType::CreditCard => {
            scan_digits(text, limit, &mut found, card);
            (Some(&*CARD_KEYWORD_REGEX), DEFAULT_PROXIMITY)
        }
        InfoType::Iban => {
            scan_ibans(text, limit, &mut found);
            (Some(&*IBAN_KEYWORD_REGEX), DEFAULT_PROXIMITY)
        }
        InfoType::JapanMyNumber => {
            scan_digits(text, limit, &mut found, my_number);
            (Some(&*MY_NUMBER_KEYWORD_REGEX), DEFAULT_PROXIMITY)
        }
        InfoType::UsSsn => {
            scan_digits(text, limit, &mut found, ssn);
            (Some(&*SSN_KEYWORD_REGEX), DEFAULT_PROXIMITY)
        }
        InfoType::Custom(custom) => {
            scan_custom(scanned, custom, &mut found);
            (custom.keyword_regex.as_ref(), custom.proximity)
        }
    };
    if found.is_empty() {
        return Vec::new();
    }
    let keywords = KeywordHits::find(scanned, keywords);
    let mut chars = CharCounter::new(scanned);
    found
        .into_iter()
        .map(|f| {
            let (start, end) = (chars.at(f.start), chars.at(f.end));
            let confidence = if keywords.near(start, end, proximity) {
                HIGH_CONFIDENCE
            } else {
                f.confidence
            };
            let m = Match {
                info_type: info_type.name().to_string(),
                masked: mask(&scanned[f.start..f.end]),
                confidence,
                start: f.start,
                end: f.end,
            };
            (m, f.value)
        })
        .collect()
}

fn scan_custom(scanned: &str, custom: &CustomType, found: &mut Vec<Found>) {
    let confidence = if custom.keywords.is_empty() {
        MEDIUM_CONFIDENCE
    } else {
        LOW_CONFIDENCE
    };
    for m in custom.regex.find_iter(scanned) {
        if found.len() >= MAX_MATCHES {
            break;
        }
        // An empty match carries no data; patterns like `\d*` would otherwise match everywhere.
        if m.is_empty() {
            continue;
        }
        found.push(Found {
            start: m.start(),
            end: m.end(),
            value: m.as_str().to_string(),
            confidence,
        });
    }
}

// Keywords.

fn builtin_keywords(keywords: &[&str]) -> Regex {
    keyword_regex(keywords).expect("built-in keywords compile")
}

/// One case-insensitive alternation, longest keyword first so `ss #` is not cut to a shorter one.
fn keyword_regex(keywords: &[impl AsRef<str>]) -> Result<Regex, regex::Error> {
    let mut keywords: Vec<&str> = keywords.iter().map(AsRef::as_ref).collect();
    keywords.sort_by_key(|k| std::cmp::Reverse(k.len()));
    let alternation: Vec<String> = keywords.iter().map(|k| regex::escape(k)).collect();
    RegexBuilder::new(&format!("(?i){}", alternation.join("|")))
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
}

/// Keyword occurrences as character offsets, sorted, so each match is weighed by two binary
/// searches however large the proximity.
struct KeywordHits {
    spans: Vec<(usize, usize)>,
}

impl KeywordHits {
    /// A keyword must start a word (`card` is not found in `discard`), but may end inside one, so
    /// `cards`, `banking` and `Kontonummer` count.
    fn find(scanned: &str, regex: Option<&Regex>) -> Self {
        let bytes = scanned.as_bytes();
        let mut chars = CharCounter::new(scanned);
        let spans = regex
            .into_iter()
            .flat_map(|regex| regex.find_iter(scanned))
            .filter(|hit| !(is_word(bytes[hit.start()]) && hit.start() > 0 && is_word(bytes[hit.start() - 1])))
            .map(|hit| (chars.at(hit.start()), chars.at(hit.end())))
            .collect();
        Self { spans }
    }

    /// Whether a keyword ends at most `proximity` characters before `start` or begins at most
    /// `proximity` characters after `end`. A keyword inside the value does not count: a custom
    /// pattern such as `EMP-\d{6}` would otherwise vouch for itself.
    fn near(&self, start: usize, end: usize, proximity: usize) -> bool {
        let before = self.spans.partition_point(|&(_, e)| e <= start);
        if before > 0 && start - self.spans[before - 1].1 <= proximity {
            return true;
        }
        let after = self.spans.partition_point(|&(s, _)| s < end);
        after < self.spans.len() && self.spans[after].0 - end <= proximity
    }
}

/// Byte offsets to character offsets, walking only the distance from the previous offset: the
/// offsets asked for mostly come in order.
struct CharCounter<'a> {
    text: &'a str,
    byte: usize,
    chars: usize,
}

impl<'a> CharCounter<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            byte: 0,
            chars: 0,
        }
    }

    fn at(&mut self, byte: usize) -> usize {
        if byte >= self.byte {
            self.chars += self.text[self.byte..byte].chars().count();
        } else {
            self.chars -= self.text[byte..self.byte].chars().count();
        }
        self.byte = byte;
        self.chars
    }
}

// Boundaries. Candidates begin and end on ASCII bytes, which are always character boundaries,
// and the bytes around them are only compared with ASCII, so none of this can split a character.

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether the bytes beside a value (`near` adjacent, `far` one further out) leave it standing
/// alone rather than inside a longer number or identifier. `grouping` is the value's own
/// separator: digits beyond that same separator would continue the grouped number, while a space
/// after a bare or dashed value only starts the next token (`4111111111111111 12/25`).
fn stands_alone(near: Option<u8>, far: Option<u8>, grouping: Option<u8>) -> bool {
    let Some(near) = near else { return true };
    if is_word(near) {
        return false;
    }
    let Some(far) = far else { return true };
    match near {
        b'-' => !is_word(far),
        b' ' => !(far.is_ascii_digit() && grouping == Some(b' ')),
        b'.' | b',' => !far.is_ascii_digit(),
        _ => true,
    }
}

fn stands_alone_within(bytes: &[u8], start: usize, end: usize, grouping: Option<u8>) -> bool {
    let before = |k: usize| start.checked_sub(k).map(|i| bytes[i]);
    let after = |k: usize| bytes.get(end + k - 1).copied();
    stands_alone(before(1), before(2), grouping) && stands_alone(after(1), after(2), grouping)
}

// Digit-based types.

const MAX_DIGITS: usize = 19;
const MAX_GROUPS: usize = 5;

/// Digit groups as written, joined by one consistent separator: `4111 1111 1111 1111`,
/// `536-22-8726`, `123456789018`.
struct Digits {
    start: usize,
    end: usize,
    /// Values 0–9.
    digits: [u8; MAX_DIGITS],
    len: usize,
    groups: [usize; MAX_GROUPS],
    group_count: usize,
    separator: Option<u8>,
}

impl Digits {
    fn value(&self) -> &[u8] {
        &self.digits[..self.len]
    }

    fn shape(&self) -> &[usize] {
        &self.groups[..self.group_count]
    }
}

/// Offers `validate` every run of up to [`MAX_GROUPS`] digit groups within the first `limit` bytes
/// that stands alone, shortest first; `validate` returns the confidence without keywords. Scanning
/// resumes after each accepted value, so values never overlap.
fn scan_digits(text: &str, limit: usize, found: &mut Vec<Found>, validate: fn(&Digits) -> Option<u8>) {
    let bytes = text.as_bytes();
    let scanned = &bytes[..limit];
    let digits_end = |from: usize| {
        from + scanned[from..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(scanned.len() - from)
    };
    let mut at = 0;
    while found.len() < MAX_MATCHES {
        let Some(offset) = scanned[at..].iter().position(u8::is_ascii_digit) else {
            break;
        };
        let start = at + offset;
        let first_end = digits_end(start);
        let mut run = Digits {
            start,
            end: start,
            digits: [0; MAX_DIGITS],
            len: 0,
            groups: [0; MAX_GROUPS],
            group_count: 0,
            separator: None,
        };
        let (mut group_start, mut group_end) = (start, first_end);
        let mut accepted = None;
        loop {
            let group_len = group_end - group_start;
            if run.len + group_len > MAX_DIGITS {
                break;
            }
            for (slot, b) in run.digits[run.len..].iter_mut().zip(&scanned[group_start..group_end]) {
                *slot = b - b'0';
            }
            run.len += group_len;
            run.groups[run.group_count] = group_len;
            run.group_count += 1;
            run.end = group_end;
            if stands_alone_within(bytes, run.start, run.end, run.separator)
                && let Some(confidence) = validate(&run)
            {
                accepted = Some(confidence);
                break;
            }
            if run.group_count == MAX_GROUPS {
                break;
            }
            let Some(&separator) = scanned.get(run.end) else {
                break;
            };
            let joined = (separator == b' ' || separator == b'-')
                && run.separator.is_none_or(|s| s == separator)
                && scanned.get(run.end + 1).is_some_and(u8::is_ascii_digit);
            if !joined {
                break;
            }
            run.separator = Some(separator);
            group_start = run.end + 1;
            group_end = digits_end(group_start);
        }
        match accepted {
            Some(confidence) => {
                found.push(Found {
                    start: run.start,
                    end: run.end,
                    value: run.value().iter().map(|d| char::from(b'0' + d)).collect(),
                    confidence,
                });
                at = run.end;
            }
            None => at = first_end,
        }
    }
}

fn all_same(digits: &[u8]) -> bool {
    digits.iter().all(|&d| d == digits[0])
}

fn number(digits: &[u8]) -> u32 {
    digits.iter().fold(0, |n, &d| n * 10 + u32::from(d))
}

/// Issuer ranges: numbers whose first `prefix` digits fall in `low..=high`, with these lengths.
struct CardRange {
    low: u32,
    high: u32,
    prefix: usize,
    lengths: RangeInclusive<usize>,
}

const fn range(low: u32, high: u32, prefix: usize, lengths: RangeInclusive<usize>) -> CardRange {
    CardRange {
        low,
        high,
        prefix,
        lengths,
    }
}

const CARD_RANGES: &[CardRange] = &[
    // Visa
    range(4, 4, 1, 13..=13),
    range(4, 4, 1, 16..=16),
    range(4, 4, 1, 19..=19),
    // Mastercard
    range(51, 55, 2, 16..=16),
    range(2221, 2720, 4, 16..=16),
    // American Express
    range(34, 34, 2, 15..=15),
    range(37, 37, 2, 15..=15),
    // Discover
    range(6011, 6011, 4, 16..=19),
    range(644, 649, 3, 16..=19),
    range(65, 65, 2, 16..=19),
    // JCB
    range(3528, 3589, 4, 16..=19),
    // Diners Club
    range(300, 305, 3, 14..=19),
    range(36, 36, 2, 14..=19),
    range(38, 39, 2, 14..=19),
    // UnionPay
    range(62, 62, 2, 16..=19),
    // Maestro: issued from 12 digits, but shorter than 13 is not scanned as a card.
    range(50, 50, 2, 12..=19),
    range(56, 58, 2, 12..=19),
    range(6304, 6304, 4, 12..=19),
    range(6759, 6759, 4, 12..=19),
    range(6761, 6763, 4, 12..=19),
];

/// Bare, or grouped as cards are printed: a first group of four (4-4-4-4, 4-6-5, 4-6-4,
/// 4-4-4-4-3, 4-4-4-1).
fn card(run: &Digits) -> Option<u8> {
    let digits = run.value();
    if !(13..=19).contains(&digits.len()) {
        return None;
    }
    if let [first, middle @ .., last] = run.shape()
        && (*first != 4 || middle.iter().any(|n| !(3..=6).contains(n)) || !(1..=6).contains(last))
    {
        return None;
    }
    let issued = CARD_RANGES
        .iter()
        .any(|r| r.lengths.contains(&digits.len()) && (r.low..=r.high).contains(&number(&digits[..r.prefix])));
    (issued && !all_same(digits) && luhn(digits)).then_some(MEDIUM_CONFIDENCE)
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            match (i % 2, d * 2) {
                (0, _) => d,
                (_, doubled) if doubled > 9 => doubled - 9,
                (_, doubled) => doubled,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Twelve digits, bare or 4-4-4. A bare number is low confidence on its own: one random
/// twelve-digit number in eleven passes the check digit.
fn my_number(run: &Digits) -> Option<u8> {
    let confidence = match run.shape() {
        [12] => LOW_CONFIDENCE,
        [4, 4, 4] => MEDIUM_CONFIDENCE,
        _ => return None,
    };
    let digits = run.value();
    (!all_same(digits) && my_number_check_digit(&digits[..11]) == digits[11]).then_some(confidence)
}

/// The check digit of the 11 leading digits: P_n is the n-th digit counting leftwards from the
/// check digit, weighted n + 1 for n ≤ 6 and n − 5 above.
fn my_number_check_digit(leading: &[u8]) -> u8 {
    let remainder = leading
        .iter()
        .rev()
        .zip(1u32..)
        .map(|(&p, n)| u32::from(p) * if n <= 6 { n + 1 } else { n - 5 })
        .sum::<u32>()
        % 11;
    if remainder <= 1 { 0 } else { (11 - remainder) as u8 }
}

/// AAA-GG-SSSS with dashes or spaces, or nine bare digits, within the ranges the SSA can issue.
/// Nine bare digits are low confidence on their own: most random ones are in range.
fn ssn(run: &Digits) -> Option<u8> {
    let confidence = match run.shape() {
        [9] => LOW_CONFIDENCE,
        [3, 2, 4] => MEDIUM_CONFIDENCE,
        _ => return None,
    };
    let digits = run.value();
    let (area, group, serial) = (number(&digits[..3]), number(&digits[3..5]), number(&digits[5..]));
    let unissued = area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0;
    // Published in advertising and on sample cards, so never someone's number.
    let published = matches!((area, group, serial), (78, 5, 1120) | (219, 9, 9999) | (123, 45, 6789));
    (!unissued && !published && !all_same(digits)).then_some(confidence)
}

// IBAN.

/// IBAN lengths by country, from the SWIFT IBAN registry.
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

fn scan_ibans(text: &str, limit: usize, found: &mut Vec<Found>) {
    let mut at = 0;
    while at + 4 <= limit && found.len() < MAX_MATCHES {
        match iban_at(text.as_bytes(), limit, at) {
            Some((end, value)) => {
                found.push(Found {
                    start: at,
                    end,
                    value,
                    confidence: MEDIUM_CONFIDENCE,
                });
                at = end;
            }
            None => at += 1,
        }
    }
}

/// The IBAN starting at `start`, compact or in groups of four split by single spaces, as its end
/// and its uppercase compact form.
fn iban_at(bytes: &[u8], limit: usize, start: usize) -> Option<(usize, String)> {
    let scanned = &bytes[..limit];
    let head = scanned.get(start..start + 4)?;
    if !(head[0].is_ascii_alphabetic()
        && head[1].is_ascii_alphabetic()
        && head[2].is_ascii_digit()
        && head[3].is_ascii_digit())
    {
        return None;
    }
    if !stands_alone(
        start.checked_sub(1).map(|i| bytes[i]),
        start.checked_sub(2).map(|i| bytes[i]),
        None,
    ) {
        return None;
    }
    let country = [head[0].to_ascii_uppercase(), head[1].to_ascii_uppercase()];
    let length = IBAN_LENGTHS.iter().find(|(c, _)| **c == country)?.1;
    // 00, 01 and 99 pass mod 97 on some BBANs but ISO 13616 never issues them.
    if !(2..=98).contains(&number(&[head[2] - b'0', head[3] - b'0'])) {
        return None;
    }
    let mut value: Vec<u8> = head.iter().map(u8::to_ascii_uppercase).collect();
    let mut end = start + 4;
    let grouped = scanned.get(end) == Some(&b' ');
    while value.len() < length {
        let mut take = length - value.len();
        if grouped {
            if scanned.get(end) != Some(&b' ') {
                return None;
            }
            end += 1;
            take = take.min(4);
        }
        let chunk = scanned.get(end..end + take)?;
        if !chunk.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        value.extend(chunk.iter().map(u8::to_ascii_uppercase));
        end += take;
    }
    if !stands_alone(
        bytes.get(end).copied(),
        bytes.get(end + 1).copied(),
        grouped.then_some(b' '),
    ) {
        return None;
    }
    (iban_remainder(&value) == 1).then(|| (end, String::from_utf8_lossy(&value).into_owned()))
}

/// ISO 7064 mod 97 of the rearranged IBAN (BBAN, then country and check digits; letters as
/// 10–35), one digit at a time so no big integer is needed.
fn iban_remainder(value: &[u8]) -> u32 {
    value[4..].iter().chain(&value[..4]).fold(0, |r, &c| {
        if c.is_ascii_digit() {
            (r * 10 + u32::from(c - b'0')) % 97
        } else {
            (r * 100 + u32::from(c - b'A') + 10) % 97
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confidences(text: &str, info_type: &InfoType) -> Vec<u8> {
        find(text, info_type).iter().map(|m| m.confidence).collect()
    }

    fn custom(keywords: &[&str]) -> InfoType {
        let keywords: Vec<String> = keywords.iter().map(|k| k.to_string()).collect();
        InfoType::Custom(CustomType::new("employee_id", r"EMP-\d{6}", &keywords, None).unwrap())
    }

    #[test]
    fn valid_cards_of_each_network_match() {
        for number in [
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "4111111111111111",
            "378282246310005",
            "3782 822463 10005",
            "5555555555554444",
            "2223000048400011",
            "3530111333300000",
            "6011111111111117",
            "36227206271667",
        ] {
            let text = format!("Please charge {number} today.");
            let matches = find(&text, &InfoType::CreditCard);
            assert_eq!(matches.len(), 1, "{number}");
            assert_eq!(&text[matches[0].start..matches[0].end], number);
            assert_eq!(matches[0].confidence, MEDIUM_CONFIDENCE, "{number}");
            assert_eq!(matches[0].info_type, "credit_card");
        }
    }

    #[test]
    fn invalid_cards_do_not_match() {
        for number in [
            // Luhn fails.
            "4111 1111 1111 1112",
            // Luhn passes but no network issues numbers starting with 9.
            "9111111111111110",
            // Luhn passes, but Visa is never 15 digits, Amex never 16.
            "411111111111116",
            "3782822463100052",
            // Mixed separators.
            "4111-1111 1111-1111",
            // Odd grouping.
            "41 11111111111111",
        ] {
            assert!(
                find(&format!("card {number}"), &InfoType::CreditCard).is_empty(),
                "{number}"
            );
        }
        assert!(luhn(&[9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]));
    }

    #[test]
    fn a_card_inside_a_longer_number_or_identifier_is_no_match() {
        for text in [
            "12344111111111111111",
            "41111111111111119999",
            "x4111111111111111",
            "4111111111111111x",
            "REF-4111111111111111",
            "4111111111111111-77",
            "4111 1111 1111 1111 1111",
            "9 4111 1111 1111 1111",
            "3.4111111111111111",
            "4111111111111111.25",
        ] {
            assert!(find(text, &InfoType::CreditCard).is_empty(), "{text}");
        }
        // A separate token after a bare or dashed number is not part of it.
        for text in [
            "4111111111111111 12/25",
            "4111-1111-1111-1111 12/25",
            "(4111111111111111).",
        ] {
            assert_eq!(find(text, &InfoType::CreditCard).len(), 1, "{text}");
        }
    }

    #[test]
    fn keywords_within_proximity_raise_confidence() {
        let card = "4111 1111 1111 1111";
        assert_eq!(
            confidences(&format!("Credit card: {card}"), &InfoType::CreditCard),
            [HIGH_CONFIDENCE]
        );
        assert_eq!(
            confidences(&format!("{card} is the Visa"), &InfoType::CreditCard),
            [HIGH_CONFIDENCE]
        );
        assert_eq!(
            confidences(&format!("cards: {card}"), &InfoType::CreditCard),
            [HIGH_CONFIDENCE]
        );
        // Exactly at the edge of the window, and one character past it.
        let at_edge = format!("card{}{card}", " ".repeat(DEFAULT_PROXIMITY));
        assert_eq!(confidences(&at_edge, &InfoType::CreditCard), [HIGH_CONFIDENCE]);
        let past_edge = format!("card{}{card}", " ".repeat(DEFAULT_PROXIMITY + 1));
        assert_eq!(confidences(&past_edge, &InfoType::CreditCard), [MEDIUM_CONFIDENCE]);
        // A keyword must start a word.
        assert_eq!(
            confidences(&format!("discard {card}"), &InfoType::CreditCard),
            [MEDIUM_CONFIDENCE]
        );
    }

    #[test]
    fn ibans_are_validated_by_country_length_and_mod_97() {
        for iban in [
            "GB82 WEST 1234 5698 7654 32",
            "GB82WEST12345698765432",
            "gb82 west 1234 5698 7654 32",
            "DE89 3704 0044 0532 0130 00",
            "DE89370400440532013000",
        ] {
            let text = format!("Pay to {iban} please");
            let matches = find(&text, &InfoType::Iban);
            assert_eq!(matches.len(), 1, "{iban}");
            assert_eq!(&text[matches[0].start..matches[0].end], iban);
            assert_eq!(matches[0].confidence, MEDIUM_CONFIDENCE);
        }
        for iban in [
            // Changed digit.
            "DE89 3704 0044 0532 0130 01",
            "GB82 WEST 1234 5698 7654 33",
            // Too short and too long for the country.
            "DE89 3704 0044 0532 0130 0",
            "DE89 3704 0044 0532 0130 001",
            "DE89 3704 0044 0532 0130 00 1",
            "DE8937040044053201300",
            // No such country.
            "ZZ89 3704 0044 0532 0130 00",
            // Broken grouping.
            "DE89 37 04 0044 0532 0130 00",
            // Inside an identifier.
            "XDE89370400440532013000",
        ] {
            assert!(find(&format!("Pay to {iban}"), &InfoType::Iban).is_empty(), "{iban}");
        }
        assert_eq!(
            confidences("IBAN: DE89 3704 0044 0532 0130 00", &InfoType::Iban),
            [HIGH_CONFIDENCE]
        );
        assert_eq!(
            confidences("Kontonummer DE89370400440532013000", &InfoType::Iban),
            [HIGH_CONFIDENCE]
        );
    }

    #[test]
    fn every_iban_length_is_a_real_one() {
        for (country, length) in IBAN_LENGTHS {
            assert!((15..=34).contains(length), "{country:?}");
        }
        let mut countries: Vec<_> = IBAN_LENGTHS.iter().map(|(c, _)| c).collect();
        countries.sort();
        countries.dedup();
        assert_eq!(countries.len(), IBAN_LENGTHS.len());
    }

    #[test]
    fn my_numbers_are_validated_by_check_digit() {
        // 1 2 3 4 5 6 7 8 9 0 1 read leftwards from the check digit: P = 1 0 9 8 7 6 5 4 3 2 1,
        // Q = 2 3 4 5 6 7 2 3 4 5 6; Σ = 2+0+36+40+42+42+10+12+12+10+6 = 212; 212 mod 11 = 3;
        // so the check digit is 11 − 3 = 8.
        assert_eq!(my_number_check_digit(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]), 8);
        let t = InfoType::JapanMyNumber;
        assert_eq!(confidences("番号 123456789018 です", &t), [LOW_CONFIDENCE]);
        assert_eq!(confidences("1234-5678-9018", &t), [MEDIUM_CONFIDENCE]);
        assert_eq!(confidences("1234 5678 9018", &t), [MEDIUM_CONFIDENCE]);
        assert_eq!(confidences("マイナンバー：1234 5678 9018", &t), [HIGH_CONFIDENCE]);
        assert_eq!(confidences("My Number 123456789018", &t), [HIGH_CONFIDENCE]);
        // Each single changed digit breaks the check.
        let valid = *b"123456789018";
        for i in 0..12 {
            let mut changed = valid;
            changed[i] = b'0' + (changed[i] - b'0' + 1) % 10;
            let changed = std::str::from_utf8(&changed).unwrap();
            assert!(find(changed, &t).is_empty(), "{changed}");
        }
        // Valid check digit, but a placeholder; and shapes that are not a My Number.
        for text in ["000000000000", "1234-5678 9018", "123 456 789 018", "1234567890185"] {
            assert!(find(text, &t).is_empty(), "{text}");
        }
    }

    #[test]
    fn ssns_are_validated_against_issuing_rules() {
        let t = InfoType::UsSsn;
        assert_eq!(confidences("SSN: 536-22-8726", &t), [HIGH_CONFIDENCE]);
        assert_eq!(confidences("social security no 536 22 8726", &t), [HIGH_CONFIDENCE]);
        assert_eq!(confidences("ref 536-22-8726", &t), [MEDIUM_CONFIDENCE]);
        assert_eq!(confidences("ref 536228726", &t), [LOW_CONFIDENCE]);
        for ssn in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-12-3456",
            "536-00-8726",
            "536-22-0000",
            "078-05-1120",
            "219-09-9999",
            "123-45-6789",
            "111-11-1111",
            "536-22 8726",
            "5362-2-8726",
            "1536-22-8726",
            "536-22-87261",
        ] {
            assert!(find(&format!("SSN {ssn}"), &t).is_empty(), "{ssn}");
        }
    }

    #[test]
    fn custom_types_weigh_keywords() {
        let t = custom(&["Employee"]);
        assert_eq!(confidences("employee EMP-123456", &t), [HIGH_CONFIDENCE]);
        assert_eq!(confidences("badge EMP-123456", &t), [LOW_CONFIDENCE]);
        assert_eq!(confidences("badge EMP-123456", &custom(&[])), [MEDIUM_CONFIDENCE]);
        // The value's own text is no supporting evidence.
        assert_eq!(confidences("EMP-123456", &custom(&["emp"])), [LOW_CONFIDENCE]);
        let matches = find("従業員 employee: EMP-123456", &t);
        assert_eq!(matches[0].info_type, "employee_id");
        assert_eq!(matches[0].masked, "***-**3456");
        let near =
            InfoType::Custom(CustomType::new("employee_id", r"EMP-\d{6}", &["employee".into()], Some(3)).unwrap());
        assert_eq!(confidences("employee   EMP-123456", &near), [HIGH_CONFIDENCE]);
        assert_eq!(confidences("employee    EMP-123456", &near), [LOW_CONFIDENCE]);
        // Empty matches are not values.
        let empty = InfoType::Custom(CustomType::new("digits", r"\d*", &[], None).unwrap());
        assert_eq!(find("a 12 b", &empty).len(), 1);
    }

    #[test]
    fn bad_custom_patterns_are_errors_naming_the_type() {
        let error = CustomType::new("broken", "EMP-(", &[], None).unwrap_err();
        assert!(error.to_string().contains("\"broken\""), "{error}");
        let error = CustomType::new("huge", r"\w{1000}\w{1000}\w{1000}", &[], None).unwrap_err();
        assert!(error.to_string().contains("\"huge\""), "{error}");
    }

    #[test]
    fn count_keeps_distinct_values_at_or_above_the_threshold() {
        let text = format!(
            "Visa 4111 1111 1111 1111, again 4111-1111-1111-1111.{}Other: 5555555555554444",
            " ".repeat(400)
        );
        let t = InfoType::CreditCard;
        assert_eq!(find(&text, &t).len(), 3);
        assert_eq!(count(&text, &t, 0), 2);
        assert_eq!(count(&text, &t, MEDIUM_CONFIDENCE), 2);
        assert_eq!(count(&text, &t, HIGH_CONFIDENCE), 1);
        assert_eq!(count(&text, &t, HIGH_CONFIDENCE + 1), 0);
        let ssns = "536228726 and 536-22-8726";
        assert_eq!(count(ssns, &InfoType::UsSsn, LOW_CONFIDENCE), 1);
        assert_eq!(count(ssns, &InfoType::UsSsn, MEDIUM_CONFIDENCE), 1);
    }

    #[test]
    fn mask_keeps_only_the_last_four() {
        assert_eq!(mask("4111 1111 1111 1111"), "**** **** **** 1111");
        assert_eq!(mask("536-22-8726"), "***-**-8726");
        assert_eq!(mask("GB82 WEST 1234 5698 7654 32"), "**** **** **** **** **54 32");
        assert_eq!(mask("1234"), "****");
        assert_eq!(mask("1-2"), "*-*");
        assert_eq!(mask(""), "");
        for value in [
            "4111111111111111",
            "社員番号123456",
            "a b c d e f g",
            "EMP-123456",
            "x",
            "ＡＢＣＤＥＦ１２３",
        ] {
            let masked = mask(value);
            assert_eq!(masked.chars().count(), value.chars().count(), "{value}");
            assert!(masked.chars().filter(|c| c.is_alphanumeric()).count() <= 4, "{value}");
        }
    }

    #[test]
    fn matches_never_hold_the_clear_value() {
        let text = "card 4111 1111 1111 1111 IBAN DE89370400440532013000 SSN 536-22-8726";
        for t in [InfoType::CreditCard, InfoType::Iban, InfoType::UsSsn] {
            let matches = find(text, &t);
            assert_eq!(matches.len(), 1, "{}", t.name());
            let json = serde_json::to_string(&matches).unwrap();
            for clear in ["4111 1111 1111", "370400440532", "536-22"] {
                assert!(!json.contains(clear), "{json}");
            }
        }
    }

    #[test]
    fn scanning_is_bounded() {
        // 3 MiB of three-byte characters, so MAX_SCANNED falls inside one.
        let filler = "あ".repeat(MAX_SCANNED);
        let text = format!("card: 4111111111111111 {filler} 5555555555554444");
        assert!(text.len() > 3 * MAX_SCANNED - 100);
        assert!(!text.is_char_boundary(MAX_SCANNED));
        let matches = find(&text, &InfoType::CreditCard);
        assert_eq!(matches.len(), 1);
        assert_eq!(matches[0].confidence, HIGH_CONFIDENCE);
        for t in [InfoType::Iban, InfoType::JapanMyNumber, InfoType::UsSsn, custom(&["a"])] {
            find(&text, &t);
        }

        // A number cut by the limit is not reported.
        let cut = format!("{}4111111111111111123", "x ".repeat((MAX_SCANNED - 16) / 2));
        assert!(find(&cut, &InfoType::CreditCard).is_empty());

        let many = "4111111111111111 ".repeat(2 * MAX_MATCHES);
        assert_eq!(find(&many, &InfoType::CreditCard).len(), MAX_MATCHES);
        assert_eq!(count(&many, &InfoType::CreditCard, 0), 1);
        let many = "EMP-123456 ".repeat(2 * MAX_MATCHES);
        assert_eq!(find(&many, &custom(&[])).len(), MAX_MATCHES);
    }

    #[test]
    fn japanese_text_around_values() {
        let text = "クレジットカード番号：4111-1111-1111-1111　有効期限は来月です。";
        let matches = find(text, &InfoType::CreditCard);
        assert_eq!(matches.len(), 1);
        assert_eq!(&text[matches[0].start..matches[0].end], "4111-1111-1111-1111");
        assert_eq!(matches[0].confidence, HIGH_CONFIDENCE);
        assert_eq!(matches[0].masked, "****-****-****-1111");

        let text = "お客様の個人番号は123456789018です";
        assert_eq!(confidences(text, &InfoType::JapanMyNumber), [HIGH_CONFIDENCE]);
        let text = "振込先口座：GB82WEST12345698765432（英国）";
        assert_eq!(confidences(text, &InfoType::Iban), [HIGH_CONFIDENCE]);
        // The keyword is counted in characters, not bytes: 300 kana of 3 bytes each still count.
        let text = format!("カード{}4111111111111111", "あ".repeat(DEFAULT_PROXIMITY));
        assert_eq!(confidences(&text, &InfoType::CreditCard), [HIGH_CONFIDENCE]);
        let text = format!("カード{}4111111111111111", "あ".repeat(DEFAULT_PROXIMITY + 1));
        assert_eq!(confidences(&text, &InfoType::CreditCard), [MEDIUM_CONFIDENCE]);
    }

    #[test]
    fn info_type_names_round_trip() {
        for name in ["credit_card", "iban", "jp_my_number", "us_ssn"] {
            assert_eq!(InfoType::parse(name).unwrap().name(), name);
        }
        assert!(InfoType::parse("passport").is_none());
        assert_eq!(custom(&[]).name(), "employee_id");
    }
}
