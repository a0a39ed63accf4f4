//! Timestamps: an instant in microseconds, and the text form it was written in.
//!
//! The old store wrote Python `datetime.isoformat()` strings: naive ones in its
//! first generation, `+00:00` ones in its second, with the fraction left out at
//! zero microseconds. A [`Timestamp`] compares by instant and renders back to
//! exactly the text it was parsed from, so a converted file round-trips byte
//! for byte.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};

/// An instant (microseconds since the Unix epoch, UTC) and the text form it came in.
///
/// ```
/// use sessionstore::Timestamp;
/// let naive = Timestamp::parse("2026-01-13T09:41:07.123456").unwrap();
/// let aware = Timestamp::parse("2026-01-13T09:41:07.123456+00:00").unwrap();
/// assert_eq!(naive.micros(), aware.micros());
/// assert_eq!(naive.to_text(), "2026-01-13T09:41:07.123456");
/// assert_eq!(aware.to_text(), "2026-01-13T09:41:07.123456+00:00");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Timestamp {
    micros: i64,
    form: TimestampForm,
}

/// How a [`Timestamp`] is written out.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TimestampForm {
    /// Python's naive `isoformat()`: `2026-01-13T09:41:07.123456`, read as UTC.
    Naive,
    /// Python's aware `isoformat()` in UTC: `2026-01-13T09:41:07.123456+00:00`.
    Utc,
    /// Any other ISO 8601 text (another offset, `Z`, a space separator,
    /// a fraction of other length): kept exactly as it was read.
    Verbatim(Box<str>),
}

/// Why a text is not a timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an ISO 8601 timestamp")]
pub struct TimestampError {
    /// The text that failed to parse.
    pub text: String,
}

impl Timestamp {
    /// The current time, in the aware form the second-generation store writes.
    pub fn now() -> Self {
        Timestamp {
            micros: Utc::now().timestamp_micros(),
            form: TimestampForm::Utc,
        }
    }

    /// A timestamp from microseconds since the epoch, written in `form`.
    pub fn from_micros(micros: i64, form: TimestampForm) -> Self {
        Timestamp { micros, form }
    }

    /// Parses ISO 8601 text: naive (taken as UTC) or with an offset, `T` or a
    /// space between date and time, any fraction. The text is remembered.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        if let Some((micros, form)) = parse_python(text) {
            return Ok(Timestamp { micros, form });
        }
        Self::parse_general(text)
    }

    /// [`Timestamp::parse`] through chrono's parsers, for any form.
    fn parse_general(text: &str) -> Result<Self, TimestampError> {
        let micros = parse_micros(text).ok_or_else(|| TimestampError {
            text: text.to_owned(),
        })?;
        let form = if render(micros, &TimestampForm::Naive) == text {
            TimestampForm::Naive
        } else if render(micros, &TimestampForm::Utc) == text {
            TimestampForm::Utc
        } else {
            TimestampForm::Verbatim(text.into())
        };
        Ok(Timestamp { micros, form })
    }

    /// Microseconds since the Unix epoch, UTC.
    pub fn micros(&self) -> i64 {
        self.micros
    }

    /// The text form.
    pub fn form(&self) -> &TimestampForm {
        &self.form
    }

    /// The instant as a chrono value.
    pub fn instant(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.micros).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The text this timestamp is written as.
    pub fn to_text(&self) -> Cow<'_, str> {
        match &self.form {
            TimestampForm::Verbatim(text) => Cow::Borrowed(text),
            form => Cow::Owned(render(self.micros, form)),
        }
    }
}

/// The two forms Python writes (`YYYY-MM-DDTHH:MM:SS`, a six-digit
/// fraction when not zero, `+00:00` when aware), read directly: a
/// conversion parses millions. `None` for anything else, which
/// [`Timestamp::parse_general`] then decides.
fn parse_python(text: &str) -> Option<(i64, TimestampForm)> {
    let (body, form) = match text.len() {
        19 | 26 => (text.as_bytes(), TimestampForm::Naive),
        25 | 32 if text.ends_with("+00:00") => (&text.as_bytes()[..text.len() - 6], TimestampForm::Utc),
        _ => return None,
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, byte)| body[at] != byte) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        body[range].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let fraction = if body.len() == 26 {
        // A zero fraction written out is not Python's form: kept verbatim.
        match (body[19], number(20..26)?) {
            (b'.', fraction) if fraction != 0 => fraction,
            _ => return None,
        }
    } else {
        0
    };
    let year = i32::try_from(number(0..4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, number(5..7)?, number(8..10)?)?;
    let time = NaiveTime::from_hms_micro_opt(number(11..13)?, number(14..16)?, number(17..19)?, fraction)?;
    Some((NaiveDateTime::new(date, time).and_utc().timestamp_micros(), form))
}

fn parse_micros(text: &str) -> Option<i64> {
    // chrono's RFC 3339 parser takes `T`, `t` or a space, and `Z` or an offset.
    if let Ok(aware) = DateTime::parse_from_rfc3339(text) {
        return Some(aware.timestamp_micros());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc().timestamp_micros());
        }
    }
    None
}

fn render(micros: i64, form: &TimestampForm) -> String {
    let mut out = [0; PYTHON_TEXT];
    if let Some(text) = render_python(micros, form, &mut out) {
        return text.to_owned();
    }
    let Some(instant) = DateTime::from_timestamp_micros(micros) else {
        return micros.to_string();
    };
    let mut text = instant.format("%Y-%m-%dT%H:%M:%S").to_string();
    let fraction = micros.rem_euclid(1_000_000);
    if fraction != 0 {
        text.push_str(&format!(".{fraction:06}"));
    }
    if *form == TimestampForm::Utc {
        text.push_str("+00:00");
    }
    text
}

/// The longest text [`render_python`] writes:
/// `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`.
const PYTHON_TEXT: usize = 32;

/// [`render`] for the years 0 to 9999, written into `out` (no allocation:
/// a session's answer renders two timestamps a message); `None` for other
/// years and for the verbatim form.
fn render_python<'a>(micros: i64, form: &TimestampForm, out: &'a mut [u8; PYTHON_TEXT]) -> Option<&'a str> {
    let utc = match form {
        TimestampForm::Naive => false,
        TimestampForm::Utc => true,
        TimestampForm::Verbatim(_) => return None,
    };
    let instant = DateTime::from_timestamp_micros(micros)?;
    let year = u32::try_from(instant.year()).ok().filter(|year| *year <= 9999)?;
    let fields = [
        (year, 4, b'-'),
        (instant.month(), 2, b'-'),
        (instant.day(), 2, b'T'),
        (instant.hour(), 2, b':'),
        (instant.minute(), 2, b':'),
        (instant.second(), 2, b'.'),
    ];
    let mut at = 0;
    for (n, width, separator) in fields {
        write_digits(&mut out[at..at + width], n);
        out[at + width] = separator;
        at += width + 1;
    }
    // The fraction, only when not zero: else the `.` written is dropped.
    let fraction = micros.rem_euclid(1_000_000) as u32;
    if fraction == 0 {
        at -= 1;
    } else {
        write_digits(&mut out[at..at + 6], fraction);
        at += 6;
    }
    if utc {
        out[at..at + 6].copy_from_slice(b"+00:00");
        at += 6;
    }
    // Only ASCII digits and separators were written.
    std::str::from_utf8(&out[..at]).ok()
}

/// `n` in decimal, filling `out` with leading zeros.
fn write_digits(out: &mut [u8], mut n: u32) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(text)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = [0; PYTHON_TEXT];
        match render_python(self.micros, &self.form, &mut out) {
            Some(text) => serializer.serialize_str(text),
            None => serializer.serialize_str(&self.to_text()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct rendering writes what chrono's formatting wrote, for
    /// instants over the years 0 to 9999, with and without a fraction,
    /// and through serde as through `to_text`.
    #[test]
    fn the_python_forms_render_as_chrono_formats_them() {
        let first: i64 = -62_167_219_200_000_000; // 0000-01-01T00:00:00
        let last: i64 = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999
        let check = |micros: i64| {
            let instant = DateTime::from_timestamp_micros(micros).unwrap();
            let mut chrono_text = instant.format("%Y-%m-%dT%H:%M:%S").to_string();
            if micros.rem_euclid(1_000_000) != 0 {
                chrono_text.push_str(&format!(".{:06}", micros.rem_euclid(1_000_000)));
            }
            for (form, suffix) in [(TimestampForm::Naive, ""), (TimestampForm::Utc, "+00:00")] {
                let expected = format!("{chrono_text}{suffix}");
                let ts = Timestamp::from_micros(micros, form);
                assert_eq!(ts.to_text(), expected);
                assert_eq!(serde_json::to_string(&ts).unwrap(), format!("\"{expected}\""));
            }
        };
        check(first);
        check(last);
        check(0);
        let span = (last - first) as u64;
        let mut draw: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..50_000 {
            draw = draw
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let micros = first + (draw % span) as i64;
            // Half of them on a whole second: no fraction.
            check(if i % 2 == 0 {
                micros - micros.rem_euclid(1_000_000)
            } else {
                micros
            });
        }
        let after = Timestamp::from_micros(last + 1, TimestampForm::Utc);
        assert_eq!(after.to_text(), "+10000-01-01T00:00:00+00:00");
    }

    #[test]
    fn python_forms_round_trip() {
        for text in [
            "2026-01-13T09:41:07.123456",
            "2026-01-13T09:41:07",
            "2026-01-13T09:41:07.123456+00:00",
            "2026-01-13T09:41:07+00:00",
        ] {
            let ts = Timestamp::parse(text).unwrap();
            assert_eq!(ts.to_text(), text);
            assert!(!matches!(ts.form(), TimestampForm::Verbatim(_)), "{text}");
        }
    }

    #[test]
    fn other_iso_forms_are_kept_verbatim_and_ordered_by_instant() {
        let zulu = Timestamp::parse("2026-01-13T09:41:07Z").unwrap();
        let paris = Timestamp::parse("2026-01-13T10:41:07+01:00").unwrap();
        let spaced = Timestamp::parse("2026-01-13 09:41:07.5").unwrap();
        assert_eq!(zulu.micros(), paris.micros());
        assert_eq!(spaced.micros(), zulu.micros() + 500_000);
        assert_eq!(paris.to_text(), "2026-01-13T10:41:07+01:00");
        assert_eq!(spaced.to_text(), "2026-01-13 09:41:07.5");
        assert_eq!(
            Timestamp::parse("2026-01-13T09:41:07.000000").unwrap().to_text(),
            "2026-01-13T09:41:07.000000"
        );
    }

    #[test]
    fn the_direct_reading_of_python_forms_agrees_with_chrono() {
        for text in [
            "2026-01-13T09:41:07.123456",
            "2026-01-13T09:41:07",
            "2026-01-13T09:41:07.123456+00:00",
            "2026-01-13T09:41:07+00:00",
            "2026-01-13T09:41:07.000000",
            "2026-01-13T09:41:07.000000+00:00",
            "2026-01-13T09:41:07.000001",
            "2026-01-13T09:41:60",
            "2026-01-13T09:41:59.999999+00:00",
            "2024-02-29T23:59:59",
            "2026-02-29T00:00:00",
            "2026-01-13T24:00:00",
            "0000-01-01T00:00:00",
            "1969-12-31T23:59:59.500000",
            "2026-01-13 09:41:07.123456",
            "2026-01-13T09:41:07.12345a",
            "2026-01-13T09:41:07+01:00",
            "2026-01-13T09:41:07-00:00",
            "2026-1-13T09:41:07.1234567",
        ] {
            let general = Timestamp::parse_general(text);
            match parse_python(text) {
                Some((micros, form)) => {
                    assert_eq!(Ok(Timestamp { micros, form }), general, "{text}");
                }
                None => assert!(
                    general
                        .as_ref()
                        .map_or(true, |t| matches!(t.form(), TimestampForm::Verbatim(_))),
                    "{text}: the direct reading missed a Python form: {general:?}"
                ),
            }
            if let Ok(ts) = general {
                assert_eq!(ts.to_text(), text, "{text}");
            }
        }
    }

    #[test]
    fn garbage_is_refused() {
        for text in [
            "",
            "yesterday",
            "2026-13-01T00:00:00",
            "2026-01-13",
            "2026-01-13T25:00:00",
        ] {
            assert!(Timestamp::parse(text).is_err(), "{text}");
        }
    }
}
