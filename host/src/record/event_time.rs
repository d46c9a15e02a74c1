//! A record's event time, read by a source from the record itself: the value at the
//! source's `event_time` JSON pointer, an integer of milliseconds since the Unix epoch or
//! an RFC 3339 date-time string.

use serde_json::Value;

use crate::job::JsonPointer;

/// Reads event times at a pointer.
#[derive(Debug, Clone)]
pub struct EventTime {
    pointer: JsonPointer,
    tokens: Vec<String>,
}

/// Why a record has no event time.
#[derive(Debug, thiserror::Error)]
pub enum EventTimeError {
    /// The payload is not one JSON document.
    #[error("not a JSON document: {0}")]
    NotJson(#[from] serde_json::Error),
    /// Nothing at the pointer.
    #[error("no event time at `{}`", .0.as_str())]
    Missing(JsonPointer),
    /// Something at the pointer that is not a time.
    #[error(
        "the event time at `{}` is {found}: expected an integer of milliseconds since \
         1970-01-01T00:00:00Z or an RFC 3339 date-time such as \"2026-12-03T10:15:30.250Z\"",
        pointer.as_str()
    )]
    NotATime {
        /// The source's pointer.
        pointer: JsonPointer,
        /// What is there, as JSON.
        found: String,
    },
}

impl EventTime {
    /// Reads the event time at `pointer`.
    pub fn new(pointer: JsonPointer) -> EventTime {
        EventTime {
            tokens: pointer.tokens(),
            pointer,
        }
    }

    /// The event time of the record `payload`, in milliseconds since the epoch.
    pub fn of(&self, payload: &[u8]) -> Result<i64, EventTimeError> {
        let value = super::value_at(payload, &self.tokens)?
            .ok_or_else(|| EventTimeError::Missing(self.pointer.clone()))?;
        let millis = match &value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => rfc3339_millis(s),
            _ => None,
        };
        millis.ok_or_else(|| EventTimeError::NotATime {
            pointer: self.pointer.clone(),
            found: value.to_string(),
        })
    }
}

/// An RFC 3339 date-time (`2026-12-03T10:15:30Z`, with optional fractions of a second,
/// `t`/`z` or a space for the `T`, and a `±hh:mm` offset instead of `Z`) as milliseconds
/// since the Unix epoch; fractions below a millisecond are cut off. None if it is not one.
pub fn rfc3339_millis(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |from: usize, n: usize| -> Option<i64> {
        let part = b.get(from..from + n)?;
        part.iter().try_fold(0i64, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(4, b'-') && at(7, b'-') && matches!(b.get(10), Some(b'T' | b't' | b' '))) {
        return None;
    }
    if !(at(13, b':') && at(16, b':')) {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let valid = (1..=12).contains(&month)
        && (1..=month_days[(month - 1).clamp(0, 11) as usize]).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61; // 60: a leap second, counted as the next second's start
    if !valid {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if at(i, b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let kept = (i - start).min(3);
        millis = digits(start, kept)? * 10i64.pow(3 - kept as u32);
    }
    let offset_minutes = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && at(i + 3, b':') => {
            let (h, m) = (digits(i + 1, 2)?, digits(i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// Days from 1970-01-01 to the proleptic Gregorian date `year-month-day` (the
/// well-known era-based conversion: 400-year eras of 146 097 days).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_date_times_become_epoch_milliseconds() {
        let cases = [
            ("1970-01-01T00:00:00Z", 0),
            ("1970-01-01T00:00:00.001Z", 1),
            ("2026-12-03T10:15:30.250Z", 1_796_292_930_250),
            ("2026-12-03t10:15:30.2509z", 1_796_292_930_250),
            ("2026-12-03 12:15:30.25+02:00", 1_796_292_930_250),
            ("2026-12-03T05:15:30.25-05:00", 1_796_292_930_250),
            ("2000-02-29T23:59:59Z", 951_868_799_000),
            ("1969-12-31T23:59:59.5Z", -500),
        ];
        for (text, millis) in cases {
            assert_eq!(rfc3339_millis(text), Some(millis), "{text}");
        }
    }

    #[test]
    fn what_is_not_an_rfc3339_date_time_is_refused() {
        for text in [
            "",
            "2026-12-03",
            "2026-12-03T10:15:30",
            "2026-12-03T10:15Z",
            "2026-13-03T10:15:30Z",
            "2026-02-29T10:15:30Z",
            "2026-12-03T24:00:00Z",
            "2026-12-03T10:15:30.Z",
            "2026-12-03T10:15:30+0200",
            "2026-12-03T10:15:30Zjunk",
            "１９７０-01-01T00:00:00Z",
        ] {
            assert_eq!(rfc3339_millis(text), None, "{text:?}");
        }
    }

    #[test]
    fn an_event_time_is_an_integer_or_a_date_time_string_at_the_pointer() {
        let time = EventTime::new(JsonPointer::parse("/at/ts").unwrap());
        assert_eq!(
            time.of(br#"{"at":{"ts":1700000000123}}"#).unwrap(),
            1_700_000_000_123
        );
        assert_eq!(
            time.of(br#"{"at":{"ts":"1970-01-01T00:00:01Z"}}"#).unwrap(),
            1000
        );
        let missing = time.of(br#"{"at":{}}"#).unwrap_err();
        assert_eq!(missing.to_string(), "no event time at `/at/ts`");
        for bad in [
            r#"{"at":{"ts":1.5}}"#,
            r#"{"at":{"ts":"soon"}}"#,
            r#"{"at":{"ts":null}}"#,
        ] {
            let error = time.of(bad.as_bytes()).unwrap_err().to_string();
            assert!(
                error.contains("expected an integer of milliseconds"),
                "{error}"
            );
        }
        assert!(matches!(time.of(b"{nope"), Err(EventTimeError::NotJson(_))));
    }
}
