//! Calendar time for people and for other tools: RFC 3339 timestamps in and out, ISO 8601
//! durations and intervals (`start/end`, `PT30M/end`, `start/PT1H`) as the SIEM API takes them,
//! and the civil date of a day number. All in UTC; offsets given on input are applied.

/// The civil date (year, month 1–12, day 1–31) of a day counted from 1970-01-01 (Howard
/// Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// The day number (from 1970-01-01) of a civil date.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `2026-11-29T05:00:00.000Z` for Unix milliseconds.
pub fn rfc3339_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let second_of_day = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        ms.rem_euclid(1000)
    )
}

/// `2026-11-29T05:00:00Z` for Unix seconds.
pub fn rfc3339(secs: i64) -> String {
    let mut text = rfc3339_millis(secs.saturating_mul(1000));
    text.replace_range(text.len() - 5.., "Z");
    text
}

/// Unix milliseconds of an RFC 3339 timestamp (`2026-11-29T05:00:00Z`, fractions and offsets
/// allowed, `t`/`z` and a space for `T` too). Also plain Unix seconds.
pub fn parse_rfc3339_millis(text: &str) -> Option<i64> {
    let text = text.trim();
    if !text.is_empty() && text.len() <= 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok().map(|secs| secs * 1000);
    }
    let bytes = text.as_bytes();
    if bytes.len() < 20 {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded: String = fraction[..digits].chars().chain("000".chars()).take(3).collect();
        millis = padded.parse().ok()?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && rest.is_ascii()
            && (rest.starts_with('+') || rest.starts_with('-'))
            && &rest[3..4] == ":" =>
        {
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (hours * 60 + minutes)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_minutes * 60;
    Some(secs * 1000 + millis)
}

/// Milliseconds of an ISO 8601 duration of days, hours, minutes and seconds (`PT30M`,
/// `P1DT2H`, `PT1.5S`); years, months and weeks are refused (their length depends on the date).
pub fn parse_duration_millis(text: &str) -> Option<i64> {
    let rest = text.trim().strip_prefix(['P', 'p'])?;
    let mut total: f64 = 0.0;
    let mut in_time = false;
    let mut number = String::new();
    let mut any = false;
    for c in rest.chars() {
        match c {
            'T' | 't' if number.is_empty() && !in_time => in_time = true,
            '0'..='9' | '.' | ',' => number.push(if c == ',' { '.' } else { c }),
            unit => {
                let value: f64 = number.parse().ok()?;
                number.clear();
                let scale = match (unit.to_ascii_uppercase(), in_time) {
                    ('D', false) => 86_400_000.0,
                    ('H', true) => 3_600_000.0,
                    ('M', true) => 60_000.0,
                    ('S', true) => 1000.0,
                    _ => return None,
                };
                total += value * scale;
                any = true;
            }
        }
    }
    if !number.is_empty() || !any || !total.is_finite() || total > 1e15 {
        return None;
    }
    Some(total as i64)
}

/// An ISO 8601 interval as `(start, end)` Unix milliseconds: `start/end`, `duration/end` or
/// `start/duration`.
pub fn parse_interval_millis(text: &str) -> Option<(i64, i64)> {
    let (first, second) = text.split_once('/')?;
    let (start, end) = match (parse_rfc3339_millis(first), parse_rfc3339_millis(second)) {
        (Some(start), Some(end)) => (start, end),
        (None, Some(end)) => (end - parse_duration_millis(first)?, end),
        (Some(start), None) => (start, start + parse_duration_millis(second)?),
        (None, None) => return None,
    };
    (start <= end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_offsets_apply() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_928_400), "2026-11-29T05:00:00Z");
        for ms in [0, 951_782_400_123, 1_795_928_400_000, 4_107_542_399_999] {
            assert_eq!(parse_rfc3339_millis(&rfc3339_millis(ms)), Some(ms), "{ms}");
        }
        assert_eq!(
            parse_rfc3339_millis("2026-11-29T14:00:00+09:00"),
            parse_rfc3339_millis("2026-11-29T05:00:00Z")
        );
        assert_eq!(parse_rfc3339_millis("2026-11-29T05:00:00.5Z"), Some(1_795_928_400_500));
        assert_eq!(parse_rfc3339_millis("1795928400"), Some(1_795_928_400_000));
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-11-29T05:00:00",
            "2026-11-29T05:00:00+9",
            "yesterday",
        ] {
            assert_eq!(parse_rfc3339_millis(bad), None, "{bad}");
        }
    }

    #[test]
    fn intervals_take_either_end_as_a_duration() {
        let end = parse_rfc3339_millis("2016-05-01T13:00:00Z").unwrap();
        assert_eq!(
            parse_interval_millis("2016-05-01T12:00:00Z/2016-05-01T13:00:00Z"),
            Some((end - 3_600_000, end))
        );
        assert_eq!(
            parse_interval_millis("PT30M/2016-05-01T13:00:00Z"),
            Some((end - 1_800_000, end))
        );
        assert_eq!(
            parse_interval_millis("2016-05-01T12:00:00Z/PT1H"),
            Some((end - 3_600_000, end))
        );
        assert_eq!(parse_duration_millis("P1DT1H"), Some(90_000_000));
        assert_eq!(parse_duration_millis("P1M"), None);
        assert_eq!(parse_interval_millis("2016-05-01T13:00:00Z/2016-05-01T12:00:00Z"), None);
        assert_eq!(parse_interval_millis("PT1H/PT1H"), None);
    }

    proptest::proptest! {
        /// Whatever a query string carries, parsing answers or refuses; it never panics, and a
        /// time it accepts formats back to the same instant.
        #[test]
        fn arbitrary_text_never_panics_the_parsers(text in "\\PC{0,40}", tail in "[0-9:+.Zz \u{e9}-]{0,8}") {
            let _ = parse_duration_millis(&text);
            let _ = parse_interval_millis(&text);
            let candidate = format!("2026-11-29T05:00:00{tail}");
            if let Some(ms) = parse_rfc3339_millis(&candidate) {
                proptest::prop_assert_eq!(parse_rfc3339_millis(&rfc3339_millis(ms)), Some(ms));
            }
            let _ = parse_rfc3339_millis(&text);
        }
    }
}
