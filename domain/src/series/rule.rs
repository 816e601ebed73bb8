//! Recurrence rules: a subset of RFC 5545 `RRULE`, expanded in an IANA time zone.
//!
//! A series repeats an activity on the dates a [`Rule`] picks, at the same local
//! wall-clock time ([`Schedule::local_start`]) in the organiser's time zone. "Every
//! second Tuesday at 19:00 in Amsterdam" stays at 19:00 local on both sides of a
//! daylight-saving change, so it moves by an hour in UTC.
//!
//! # The subset
//!
//! | Part         | Accepted                                                                                  |
//! |--------------|-------------------------------------------------------------------------------------------|
//! | `FREQ`       | `WEEKLY` or `MONTHLY`; required                                                           |
//! | `INTERVAL`   | 1–99, default 1                                                                           |
//! | `BYDAY`      | comma list of `MO`…`SU`; a position 1–5 or -5…-1 (`2TU`, `-1FR`) with `FREQ=MONTHLY` only |
//! | `BYMONTHDAY` | `FREQ=MONTHLY` only: comma list of 1–31 or -31…-1 (counted from the month's end)          |
//! | `COUNT`      | 1–1000                                                                                    |
//! | `UNTIL`      | `YYYYMMDD` or `YYYYMMDDTHHMMSSZ`; only the date counts (see below)                        |
//! | `WKST`       | `MO` only: weeks start on Monday                                                          |
//!
//! Names and values are case-insensitive, parts are separated by `;`, an `RRULE:`
//! prefix is allowed, and the text has at most [`MAX_RULE_CHARS`] characters. Every
//! other part (`BYSETPOS`, `BYMONTH`, `BYHOUR`, `BYWEEKNO`, `X-…`, …) is refused with
//! `unsupported rule part NAME` rather than silently ignored, so a rule never means
//! less than its author wrote. [`Rule::parse`] normalizes: `BYDAY` and `BYMONTHDAY`
//! lists are sorted and deduplicated, and [`Rule`]'s `Display` writes the canonical
//! text (`FREQ=MONTHLY;INTERVAL=1;BYDAY=2TU;COUNT=6`), which parses back to the same
//! rule.
//!
//! # Expansion
//!
//! A [`Schedule`] expands a rule from its `anchor`, the first local date considered
//! (dates before it are never produced; unlike RFC 5545's `DTSTART`, the anchor
//! itself is not an occurrence unless the rule picks it).
//!
//! - `WEEKLY`: the `BYDAY` weekdays (the anchor's weekday when `BYDAY` is absent) of
//!   every `INTERVAL`-th week, weeks starting on Monday and counted from the anchor's.
//! - `MONTHLY`: every `INTERVAL`-th month counted from the anchor's month. The days
//!   are the `BYMONTHDAY` days (a month without that day is skipped: `BYMONTHDAY=31`
//!   gives nothing in April) and the `BYDAY` days (`2TU` the second Tuesday, `-1FR`
//!   the last Friday, skipped in a month without a fifth one for `5…`/`-5…`; a bare
//!   `TU` every Tuesday). With both lists a day must match both (RFC 5545: `BYDAY`
//!   limits `BYMONTHDAY`); with neither, the anchor's day of the month.
//!
//! The expansion walks period by period (a week or a month at a time, its days as a
//! bit set), never day by day.
//!
//! # Time zones and daylight saving
//!
//! Each date is combined with `local_start` in the schedule's IANA zone:
//!
//! - a local time that exists once is used as is;
//! - an *ambiguous* one (clocks going back: 02:30 happens twice) takes the **earlier**
//!   instant, as RFC 5545 does, so the activity does not start an hour "late";
//! - a *nonexistent* one (clocks going forward: 02:30 is skipped) moves **forward to
//!   the first valid minute** (03:00 local, the end of the gap). RFC 5545 would shift
//!   by the gap's length (to 03:30); the end of the gap keeps the start as close as
//!   possible to what the organiser chose and never earlier than it.
//!
//! [`Occurrence::date`] stays the local date the rule picked; `ends_at` is `starts_at`
//! plus the duration in real (UTC) minutes, so a 2-hour activity lasts 2 hours even
//! across a change.
//!
//! # End and window
//!
//! `COUNT` gives exactly that many occurrences, `UNTIL` stops after that local date
//! (inclusive), and without either the series stops [`MAX_AHEAD_DAYS`] days after the
//! anchor. [`Schedule::new`] refuses a rule that reaches further (an `UNTIL` after the
//! window, a `COUNT` whose last date would fall after it) or that gives no date at
//! all inside it. Iteration is bounded by that window whatever the rule, so it
//! always terminates, even for a [`Schedule`] built field by field.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Timelike, Utc,
    Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::errors::DomainError;

/// The longest rule text accepted, in characters.
pub const MAX_RULE_CHARS: usize = 500;
/// The largest `INTERVAL`.
pub const MAX_INTERVAL: u32 = 99;
/// The largest `COUNT`.
pub const MAX_COUNT: u32 = 1_000;
/// The longest occurrence, in minutes (a week).
pub const MAX_DURATION_MINUTES: u32 = 10_080;
/// How far a series reaches: its last date is at most this many days after the anchor ("at most 2 years ahead").
pub const MAX_AHEAD_DAYS: i64 = 731;
/// How far forward a local time in a daylight-saving gap may move (a zone once skipped a whole day).
const MAX_GAP_MINUTES: i64 = 2 * 24 * 60;

/// How often a rule repeats (`FREQ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Frequency {
    /// `FREQ=WEEKLY`: every `INTERVAL`-th week.
    Weekly,
    /// `FREQ=MONTHLY`: every `INTERVAL`-th month.
    Monthly,
}

impl Frequency {
    /// The RFC 5545 name (`WEEKLY`, `MONTHLY`).
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Weekly => "WEEKLY",
            Frequency::Monthly => "MONTHLY",
        }
    }
}

impl fmt::Display for Frequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `BYDAY` entry: a weekday, with a position in the month for `FREQ=MONTHLY`.
///
/// `2TU` is `position: Some(2)` (the second Tuesday), `-1FR` is `Some(-1)` (the last
/// Friday), `MO` is `None` (every Monday of the period).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByDay {
    /// The nth (1–5) or nth-from-last (-1…-5) such weekday of the month; `None` for every one.
    pub position: Option<i8>,
    /// The weekday.
    pub weekday: Weekday,
}

impl ByDay {
    /// The order of entries in a normalized rule: by weekday (Monday first), then bare, 1…5, -1…-5.
    fn sort_key(self) -> (u32, i16) {
        let position = match self.position {
            None => 0,
            Some(p) if p > 0 => i16::from(p),
            Some(p) => 100 - i16::from(p),
        };
        (self.weekday.num_days_from_monday(), position)
    }
}

impl fmt::Display for ByDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(position) = self.position {
            write!(f, "{position}")?;
        }
        f.write_str(weekday_code(self.weekday))
    }
}

/// When a rule stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleEnd {
    /// `COUNT`: exactly this many occurrences (1–1000).
    Count(u32),
    /// `UNTIL`: no occurrence after this local date (inclusive).
    Until(NaiveDate),
}

/// A parsed recurrence rule (the supported subset of RFC 5545 `RRULE`, see the module doc).
///
/// Build one with [`Rule::parse`]; it serializes as its canonical text and
/// deserializing parses (and so re-checks) that text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Rule {
    /// `FREQ`.
    pub frequency: Frequency,
    /// `INTERVAL`: every how many weeks or months (1–99).
    pub interval: u32,
    /// `BYDAY` entries, sorted and deduplicated by [`Rule::parse`]; empty when absent.
    pub by_day: Vec<ByDay>,
    /// `BYMONTHDAY` days (1–31, or -31…-1 from the month's end), sorted and deduplicated; empty when absent.
    pub by_month_day: Vec<i8>,
    /// `COUNT` or `UNTIL`; `None` runs to the end of the window ([`MAX_AHEAD_DAYS`]).
    pub end: Option<RuleEnd>,
}

/// An `invalid("rule", reason)` error.
fn rule_error(reason: impl Into<String>) -> DomainError {
    DomainError::invalid("rule", reason)
}

/// Refuses a part given twice.
fn once(seen: bool, name: &str) -> Result<(), DomainError> {
    if seen { Err(rule_error(format!("repeated rule part {name}"))) } else { Ok(()) }
}

/// The two-letter RFC 5545 code of a weekday.
fn weekday_code(weekday: Weekday) -> &'static str {
    match weekday {
        Weekday::Mon => "MO",
        Weekday::Tue => "TU",
        Weekday::Wed => "WE",
        Weekday::Thu => "TH",
        Weekday::Fri => "FR",
        Weekday::Sat => "SA",
        Weekday::Sun => "SU",
    }
}

/// Parses an (upper-case) two-letter weekday code.
fn parse_weekday(code: &str) -> Option<Weekday> {
    Some(match code {
        "MO" => Weekday::Mon,
        "TU" => Weekday::Tue,
        "WE" => Weekday::Wed,
        "TH" => Weekday::Thu,
        "FR" => Weekday::Fri,
        "SA" => Weekday::Sat,
        "SU" => Weekday::Sun,
        _ => return None,
    })
}

/// Parses an unsigned decimal number made of ASCII digits only.
fn parse_digits(value: &str) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// Parses a signed small number: an optional `+` or `-`, then ASCII digits.
fn parse_signed(value: &str) -> Option<i8> {
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn parse_frequency(value: &str) -> Result<Frequency, DomainError> {
    match value {
        "WEEKLY" => Ok(Frequency::Weekly),
        "MONTHLY" => Ok(Frequency::Monthly),
        other => Err(rule_error(format!("unsupported FREQ={other} (WEEKLY or MONTHLY)"))),
    }
}

fn parse_by_day(value: &str) -> Result<Vec<ByDay>, DomainError> {
    let mut entries = Vec::new();
    for entry in value.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(rule_error("BYDAY has an empty entry"));
        }
        let split = entry.find(|c: char| c.is_alphabetic()).unwrap_or(entry.len());
        let (position, code) = entry.split_at(split);
        if code.is_empty() {
            return Err(rule_error(format!("BYDAY entry {entry} has no weekday")));
        }
        let Some(weekday) = parse_weekday(code) else {
            return Err(rule_error(format!("unknown weekday {code} in BYDAY")));
        };
        let position = if position.is_empty() {
            None
        } else {
            match parse_signed(position) {
                Some(p) if (1..=5).contains(&p.abs()) => Some(p),
                _ => return Err(rule_error(format!("BYDAY position must be 1–5 or -5–-1 (got {entry})"))),
            }
        };
        entries.push(ByDay { position, weekday });
    }
    Ok(entries)
}

fn parse_by_month_day(value: &str) -> Result<Vec<i8>, DomainError> {
    let mut days = Vec::new();
    for entry in value.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(rule_error("BYMONTHDAY has an empty entry"));
        }
        match parse_signed(entry) {
            Some(day) if (1..=31).contains(&day.abs()) => days.push(day),
            _ => return Err(rule_error(format!("BYMONTHDAY must be 1–31 or -31–-1 (got {entry})"))),
        }
    }
    Ok(days)
}

/// Parses `YYYYMMDD` or `YYYYMMDDTHHMMSSZ` (the time is checked, then dropped).
fn parse_until(value: &str) -> Result<NaiveDate, DomainError> {
    let bad = || rule_error(format!("UNTIL must be a date YYYYMMDD or YYYYMMDDTHHMMSSZ (got {value})"));
    let bytes = value.as_bytes();
    let date_part = match bytes.len() {
        8 => value,
        16 if bytes.get(8) == Some(&b'T') && bytes.get(15) == Some(&b'Z') => {
            let time = value.get(9..15).ok_or_else(bad)?;
            let number = |range: std::ops::Range<usize>| time.get(range).and_then(parse_digits);
            match (number(0..2), number(2..4), number(4..6)) {
                (Some(h), Some(m), Some(s)) if NaiveTime::from_hms_opt(h, m, s).is_some() => {}
                _ => return Err(bad()),
            }
            value.get(..8).ok_or_else(bad)?
        }
        _ => return Err(bad()),
    };
    let number = |range: std::ops::Range<usize>| date_part.get(range).and_then(parse_digits);
    let (Some(year), Some(month), Some(day)) = (number(0..4), number(4..6), number(6..8)) else {
        return Err(bad());
    };
    let year = i32::try_from(year).map_err(|_| bad())?;
    NaiveDate::from_ymd_opt(year, month, day).ok_or_else(bad)
}

/// Strips a case-insensitive `RRULE:` prefix.
fn strip_rrule_prefix(text: &str) -> &str {
    const PREFIX: &str = "RRULE:";
    match text.get(..PREFIX.len()) {
        Some(head) if head.eq_ignore_ascii_case(PREFIX) => text.get(PREFIX.len()..).unwrap_or(""),
        _ => text,
    }
}

impl Rule {
    /// Parses an RFC 5545 `RRULE` value in the supported subset (see the module doc).
    ///
    /// Every refusal is `invalid("rule", reason)` with a reason naming the part at fault.
    /// The `BYDAY` and `BYMONTHDAY` lists come back sorted and deduplicated.
    pub fn parse(text: &str) -> Result<Rule, DomainError> {
        let text = text.trim();
        if text.chars().count() > MAX_RULE_CHARS {
            return Err(rule_error(format!("must be at most {MAX_RULE_CHARS} characters")));
        }
        let body = strip_rrule_prefix(text).trim();
        if body.is_empty() {
            return Err(rule_error("must not be empty"));
        }

        let mut frequency = None;
        let mut interval = None;
        let mut by_day: Option<Vec<ByDay>> = None;
        let mut by_month_day: Option<Vec<i8>> = None;
        let mut count = None;
        let mut until = None;
        let mut week_start = false;
        for part in body.split(';') {
            let part = part.trim();
            if part.is_empty() {
                return Err(rule_error("empty rule part (a stray ;)"));
            }
            let Some((name, value)) = part.split_once('=') else {
                return Err(rule_error(format!("rule part {part} must be NAME=VALUE")));
            };
            let name = name.trim().to_ascii_uppercase();
            let value = value.trim().to_ascii_uppercase();
            match name.as_str() {
                "FREQ" => {
                    once(frequency.is_some(), &name)?;
                    frequency = Some(parse_frequency(&value)?);
                }
                "INTERVAL" => {
                    once(interval.is_some(), &name)?;
                    // Out-of-range numbers are refused by `check` with the same reason.
                    let parsed = parse_digits(&value).ok_or_else(interval_error)?;
                    interval = Some(parsed);
                }
                "BYDAY" => {
                    once(by_day.is_some(), &name)?;
                    by_day = Some(parse_by_day(&value)?);
                }
                "BYMONTHDAY" => {
                    once(by_month_day.is_some(), &name)?;
                    by_month_day = Some(parse_by_month_day(&value)?);
                }
                "COUNT" => {
                    once(count.is_some(), &name)?;
                    count = Some(parse_digits(&value).ok_or_else(count_error)?);
                }
                "UNTIL" => {
                    once(until.is_some(), &name)?;
                    until = Some(parse_until(&value)?);
                }
                "WKST" => {
                    once(week_start, &name)?;
                    if value != "MO" {
                        return Err(rule_error(format!("unsupported WKST={value} (only MO)")));
                    }
                    week_start = true;
                }
                "" => return Err(rule_error(format!("rule part {part} has no name"))),
                _ => return Err(rule_error(format!("unsupported rule part {name}"))),
            }
        }

        let Some(frequency) = frequency else {
            return Err(rule_error("FREQ is required (WEEKLY or MONTHLY)"));
        };
        let end = match (count, until) {
            (Some(_), Some(_)) => return Err(rule_error("COUNT and UNTIL cannot both be given")),
            (Some(count), None) => Some(RuleEnd::Count(count)),
            (None, Some(until)) => Some(RuleEnd::Until(until)),
            (None, None) => None,
        };
        let mut by_day = by_day.unwrap_or_default();
        by_day.sort_by_key(|entry| entry.sort_key());
        by_day.dedup();
        let mut by_month_day = by_month_day.unwrap_or_default();
        by_month_day.sort_by_key(|&day| if day > 0 { i16::from(day) } else { 100 - i16::from(day) });
        by_month_day.dedup();

        let rule = Rule { frequency, interval: interval.unwrap_or(1), by_day, by_month_day, end };
        rule.check()?;
        Ok(rule)
    }

    /// Checks the limits that do not depend on the text, so a rule built field by
    /// field is held to the same limits as a parsed one ([`Schedule::new`] calls it).
    fn check(&self) -> Result<(), DomainError> {
        if !(1..=MAX_INTERVAL).contains(&self.interval) {
            return Err(interval_error());
        }
        for entry in &self.by_day {
            match entry.position {
                Some(p) if !(1..=5).contains(&p.abs()) => {
                    return Err(rule_error(format!("BYDAY position must be 1–5 or -5–-1 (got {entry})")));
                }
                Some(_) if self.frequency == Frequency::Weekly => {
                    return Err(rule_error(format!("BYDAY positions ({entry}) need FREQ=MONTHLY")));
                }
                _ => {}
            }
        }
        if let Some(day) = self.by_month_day.iter().find(|day| !(1..=31).contains(&day.abs())) {
            return Err(rule_error(format!("BYMONTHDAY must be 1–31 or -31–-1 (got {day})")));
        }
        if !self.by_month_day.is_empty() && self.frequency == Frequency::Weekly {
            return Err(rule_error("BYMONTHDAY needs FREQ=MONTHLY"));
        }
        match self.end {
            Some(RuleEnd::Count(count)) if !(1..=MAX_COUNT).contains(&count) => Err(count_error()),
            // Outside 4-digit years the canonical text would not parse back.
            Some(RuleEnd::Until(until)) if !(1..=9999).contains(&until.year()) => {
                Err(rule_error(format!("UNTIL must be in the years 0001–9999 (got {until})")))
            }
            _ => Ok(()),
        }
    }
}

fn interval_error() -> DomainError {
    rule_error(format!("INTERVAL must be 1–{MAX_INTERVAL}"))
}

fn count_error() -> DomainError {
    rule_error(format!("COUNT must be 1–{MAX_COUNT}"))
}

impl fmt::Display for Rule {
    /// The canonical text: `FREQ`, `INTERVAL` (always), `BYDAY`, `BYMONTHDAY`, then `COUNT` or `UNTIL=YYYYMMDD`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FREQ={};INTERVAL={}", self.frequency, self.interval)?;
        for (i, entry) in self.by_day.iter().enumerate() {
            f.write_str(if i == 0 { ";BYDAY=" } else { "," })?;
            write!(f, "{entry}")?;
        }
        for (i, day) in self.by_month_day.iter().enumerate() {
            f.write_str(if i == 0 { ";BYMONTHDAY=" } else { "," })?;
            write!(f, "{day}")?;
        }
        match self.end {
            Some(RuleEnd::Count(count)) => write!(f, ";COUNT={count}"),
            Some(RuleEnd::Until(until)) => write!(f, ";UNTIL={}", until.format("%Y%m%d")),
            None => Ok(()),
        }
    }
}

impl FromStr for Rule {
    type Err = DomainError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Rule::parse(text)
    }
}

impl TryFrom<String> for Rule {
    type Error = DomainError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Rule::parse(&text)
    }
}

impl From<Rule> for String {
    fn from(rule: Rule) -> Self {
        rule.to_string()
    }
}

/// Parses an IANA time zone name (`Europe/Amsterdam`, `UTC`); names are case-sensitive.
///
/// An unknown name is `invalid("timezone", "unknown time zone \"Mars/Olympus\"")`.
pub fn parse_timezone(name: &str) -> Result<Tz, DomainError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(DomainError::invalid("timezone", "must not be empty"));
    }
    name.parse::<Tz>().map_err(|_| {
        let shown: String = name.chars().take(64).collect();
        DomainError::invalid("timezone", format!("unknown time zone {shown:?}"))
    })
}

/// Parses a local start time `HH:MM` from `00:00` to `23:59` (two digits each).
///
/// Anything else is `invalid("local_start", ...)`.
pub fn parse_local_start(text: &str) -> Result<NaiveTime, DomainError> {
    let bad = || DomainError::invalid("local_start", "must be a time HH:MM from 00:00 to 23:59");
    let text = text.trim();
    let (hours, minutes) = text.split_once(':').ok_or_else(bad)?;
    if hours.len() != 2 || minutes.len() != 2 {
        return Err(bad());
    }
    let (Some(hours), Some(minutes)) = (parse_digits(hours), parse_digits(minutes)) else {
        return Err(bad());
    };
    if hours > 23 || minutes > 59 {
        return Err(bad());
    }
    NaiveTime::from_hms_opt(hours, minutes, 0).ok_or_else(bad)
}

/// One occurrence of a [`Schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    /// Its position in the series, from 0.
    pub index: u32,
    /// The local date the rule picked, in the schedule's time zone.
    pub date: NaiveDate,
    /// `date` at `local_start` in the time zone (see the module doc for daylight-saving gaps and overlaps).
    pub starts_at: DateTime<Utc>,
    /// `starts_at` plus the duration.
    pub ends_at: DateTime<Utc>,
}

/// A rule anchored at a date and expanded at a local time in a time zone.
///
/// [`Schedule::new`] checks that the series fits the window ([`MAX_AHEAD_DAYS`])
/// and has at least one occurrence. It serializes as
/// `{"rule": "FREQ=…", "timezone": "Europe/Amsterdam", "local_start": "19:00",
/// "duration_minutes": 90, "anchor": "2027-03-01"}`; deserializing goes through
/// [`Schedule::new`] again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ScheduleRecord", into = "ScheduleRecord")]
pub struct Schedule {
    /// Which dates.
    pub rule: Rule,
    /// The IANA time zone the dates and `local_start` are in.
    pub timezone: Tz,
    /// The local wall-clock start time (a whole minute).
    pub local_start: NaiveTime,
    /// How long each occurrence lasts, 1–10080 minutes.
    pub duration_minutes: u32,
    /// The first local date considered; nothing before it is produced.
    pub anchor: NaiveDate,
}

impl Schedule {
    /// Checks and builds a schedule.
    ///
    /// Refuses `duration_minutes` outside 1–10080 (`invalid("duration_minutes", …)`), a
    /// `local_start` with seconds (`invalid("local_start", …)`), a rule out of its
    /// limits, an `UNTIL` later than `anchor` + [`MAX_AHEAD_DAYS`], a `COUNT` whose
    /// last occurrence would fall after that, and a rule without any occurrence in
    /// that window (all `invalid("rule", …)`). An anchor so far in the future that the
    /// window overflows the calendar is `invalid("anchor", …)`.
    pub fn new(
        rule: Rule,
        timezone: Tz,
        local_start: NaiveTime,
        duration_minutes: u32,
        anchor: NaiveDate,
    ) -> Result<Schedule, DomainError> {
        if !(1..=MAX_DURATION_MINUTES).contains(&duration_minutes) {
            return Err(DomainError::invalid(
                "duration_minutes",
                format!("must be 1–{MAX_DURATION_MINUTES} minutes (at most a week)"),
            ));
        }
        if local_start.second() != 0 || local_start.nanosecond() != 0 {
            return Err(DomainError::invalid("local_start", "must be a whole minute (HH:MM)"));
        }
        rule.check()?;
        let window_end = window_end(anchor).ok_or_else(|| DomainError::invalid("anchor", "is out of range"))?;
        if let Some(RuleEnd::Until(until)) = rule.end
            && until > window_end
        {
            return Err(rule_error(format!(
                "UNTIL={} is more than {MAX_AHEAD_DAYS} days after {anchor} (at most {})",
                until.format("%Y%m%d"),
                window_end.format("%Y%m%d"),
            )));
        }
        let schedule = Schedule { rule, timezone, local_start, duration_minutes, anchor };
        let found = schedule.occurrences().count();
        if found == 0 {
            let last = schedule.last_day().unwrap_or(window_end);
            return Err(rule_error(format!("the rule gives no date from {anchor} to {last}")));
        }
        if let Some(RuleEnd::Count(count)) = schedule.rule.end
            && found < count as usize
        {
            return Err(rule_error(format!(
                "COUNT={count} reaches past {window_end} ({MAX_AHEAD_DAYS} days after {anchor}): \
                 only {found} dates fit"
            )));
        }
        Ok(schedule)
    }

    /// The occurrences, lazily and in order, indexed from 0.
    ///
    /// Always finite: it stops at `COUNT`, after `UNTIL`, and in any case after
    /// `anchor` + [`MAX_AHEAD_DAYS`].
    pub fn occurrences(&self) -> impl Iterator<Item = Occurrence> + '_ {
        Occurrences::new(self)
    }

    /// The `index`-th occurrence (from 0), if the series has that many.
    pub fn occurrence(&self, index: u32) -> Option<Occurrence> {
        self.occurrences().nth(usize::try_from(index).ok()?)
    }

    /// The last local date that can hold an occurrence: `UNTIL` or the end of the window, whichever is first.
    fn last_day(&self) -> Option<NaiveDate> {
        let window_end = window_end(self.anchor)?;
        Some(match self.rule.end {
            Some(RuleEnd::Until(until)) => until.min(window_end),
            _ => window_end,
        })
    }
}

/// `anchor` + [`MAX_AHEAD_DAYS`], if the calendar goes that far.
fn window_end(anchor: NaiveDate) -> Option<NaiveDate> {
    anchor.checked_add_days(Days::new(MAX_AHEAD_DAYS.unsigned_abs()))
}

/// The instant a local date and time denote in `timezone`: the single mapping, the
/// earlier of two (clocks going back), or the first valid minute after a gap
/// (clocks going forward). `None` only at the edges of the calendar.
fn resolve(timezone: Tz, date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    let local = date.and_time(time);
    if let Some(instant) = earliest(timezone, local) {
        return Some(instant);
    }
    for minutes in 1..=MAX_GAP_MINUTES {
        let shifted = local.checked_add_signed(TimeDelta::try_minutes(minutes)?)?;
        if let Some(instant) = earliest(timezone, shifted) {
            return Some(instant);
        }
    }
    None
}

/// The earliest instant a local date-time maps to, `None` in a gap.
fn earliest(timezone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match timezone.from_local_datetime(&local) {
        LocalResult::Single(instant) => Some(instant.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.with_timezone(&Utc).min(b.with_timezone(&Utc))),
        LocalResult::None => None,
    }
}

/// The days of one month a monthly rule picks, as bits (bit `d - 1` for day `d`).
fn month_days(rule: &Rule, anchor_day: u32, first: NaiveDate) -> u32 {
    let length = i32::from(first.num_days_in_month());
    let bit = |day: i32| if (1..=length).contains(&day) { 1u32 << (day - 1) } else { 0 };
    let by_month_day = (!rule.by_month_day.is_empty()).then(|| {
        rule.by_month_day
            .iter()
            .map(|&day| if day > 0 { i32::from(day) } else { length + 1 + i32::from(day) })
            .fold(0, |days, day| days | bit(day))
    });
    let by_day = (!rule.by_day.is_empty()).then(|| {
        rule.by_day.iter().fold(0, |days, entry| {
            let wanted = i32::try_from(entry.weekday.num_days_from_monday()).unwrap_or(0);
            let of_first = i32::try_from(first.weekday().num_days_from_monday()).unwrap_or(0);
            let first_match = 1 + (wanted - of_first).rem_euclid(7);
            let last_match = first_match + 7 * ((length - first_match) / 7);
            days | match entry.position.map(i32::from) {
                None => (0..5).fold(0, |all, week| all | bit(first_match + 7 * week)),
                Some(p) if p > 0 => bit(first_match + 7 * (p - 1)),
                Some(p) if p < 0 => bit(last_match + 7 * (p + 1)),
                Some(_) => 0,
            }
        })
    });
    match (by_month_day, by_day) {
        (Some(month_days), Some(weekdays)) => month_days & weekdays,
        (Some(days), None) | (None, Some(days)) => days,
        (None, None) => i32::try_from(anchor_day).map_or(0, bit),
    }
}

/// The lazy expansion behind [`Schedule::occurrences`]: one period (week or month)
/// at a time, its days held as bits over the period's first day.
struct Occurrences<'a> {
    schedule: &'a Schedule,
    /// The last local date that may be produced (`UNTIL` or the window's end).
    last_day: NaiveDate,
    /// How many more may be produced (`COUNT`, or unbounded).
    remaining: u32,
    /// The Monday of the anchor's week (weekly rules).
    first_week: NaiveDate,
    /// The anchor's month as `year * 12 + month0` (monthly rules).
    first_month: i64,
    /// The weekdays of a weekly rule, bit 0 = Monday.
    week_days: u32,
    /// The next period to load, counted in steps of `INTERVAL` from the anchor's.
    next_period: u64,
    /// The first day of the loaded period.
    base: NaiveDate,
    /// The loaded period's days not produced yet, as offsets from `base`.
    pending: u32,
    next_index: u32,
    done: bool,
}

impl<'a> Occurrences<'a> {
    fn new(schedule: &'a Schedule) -> Self {
        let anchor = schedule.anchor;
        let first_week = anchor.checked_sub_days(Days::new(u64::from(anchor.weekday().num_days_from_monday())));
        let last_day = schedule.last_day();
        let week_days = if schedule.rule.by_day.is_empty() {
            1 << anchor.weekday().num_days_from_monday()
        } else {
            schedule.rule.by_day.iter().fold(0, |days, entry| days | 1 << entry.weekday.num_days_from_monday())
        };
        let remaining = match schedule.rule.end {
            Some(RuleEnd::Count(count)) => count,
            _ => u32::MAX,
        };
        Occurrences {
            schedule,
            last_day: last_day.unwrap_or(anchor),
            remaining,
            first_week: first_week.unwrap_or(anchor),
            first_month: i64::from(anchor.year()) * 12 + i64::from(anchor.month0()),
            week_days,
            next_period: 0,
            base: anchor,
            pending: 0,
            next_index: 0,
            done: first_week.is_none() || last_day.is_none(),
        }
    }

    /// The first day of the `period`-th period and its days, `None` past the calendar.
    fn period(&self, period: u64) -> Option<(NaiveDate, u32)> {
        let rule = &self.schedule.rule;
        // An interval of 0 (a rule built field by field) would never advance.
        let steps = period.checked_mul(u64::from(rule.interval.max(1)))?;
        match rule.frequency {
            Frequency::Weekly => {
                let base = self.first_week.checked_add_days(Days::new(steps.checked_mul(7)?))?;
                Some((base, self.week_days))
            }
            Frequency::Monthly => {
                let month = self.first_month.checked_add(i64::try_from(steps).ok()?)?;
                let year = i32::try_from(month.div_euclid(12)).ok()?;
                let month0 = u32::try_from(month.rem_euclid(12)).ok()?;
                let base = NaiveDate::from_ymd_opt(year, month0 + 1, 1)?;
                Some((base, month_days(rule, self.schedule.anchor.day(), base)))
            }
        }
    }
}

impl Iterator for Occurrences<'_> {
    type Item = Occurrence;

    fn next(&mut self) -> Option<Occurrence> {
        let schedule = self.schedule;
        loop {
            if self.done || self.remaining == 0 {
                self.done = true;
                return None;
            }
            if self.pending == 0 {
                // Periods start strictly later each time and the last day is at most
                // MAX_AHEAD_DAYS after the anchor, so this loads a bounded number of them.
                match self.period(self.next_period) {
                    Some((base, days)) if base <= self.last_day => {
                        self.base = base;
                        self.pending = days;
                        self.next_period += 1;
                        continue;
                    }
                    _ => {
                        self.done = true;
                        return None;
                    }
                }
            }
            let offset = self.pending.trailing_zeros();
            self.pending &= self.pending - 1;
            let Some(date) = self.base.checked_add_days(Days::new(u64::from(offset))) else {
                self.done = true;
                return None;
            };
            if date < schedule.anchor {
                continue;
            }
            if date > self.last_day {
                // Days come in order within a period and periods in order.
                self.done = true;
                return None;
            }
            let Some(starts_at) = resolve(schedule.timezone, date, schedule.local_start) else {
                continue;
            };
            let Some(ends_at) = TimeDelta::try_minutes(i64::from(schedule.duration_minutes))
                .and_then(|duration| starts_at.checked_add_signed(duration))
            else {
                continue;
            };
            let index = self.next_index;
            self.next_index += 1;
            self.remaining -= 1;
            return Some(Occurrence { index, date, starts_at, ends_at });
        }
    }
}

/// The serialized form of a [`Schedule`]: plain strings and numbers.
#[derive(Serialize, Deserialize)]
struct ScheduleRecord {
    rule: Rule,
    timezone: String,
    local_start: String,
    duration_minutes: u32,
    anchor: NaiveDate,
}

impl From<Schedule> for ScheduleRecord {
    fn from(schedule: Schedule) -> Self {
        ScheduleRecord {
            rule: schedule.rule,
            timezone: schedule.timezone.name().to_owned(),
            local_start: schedule.local_start.format("%H:%M").to_string(),
            duration_minutes: schedule.duration_minutes,
            anchor: schedule.anchor,
        }
    }
}

impl TryFrom<ScheduleRecord> for Schedule {
    type Error = DomainError;

    fn try_from(record: ScheduleRecord) -> Result<Self, Self::Error> {
        Schedule::new(
            record.rule,
            parse_timezone(&record.timezone)?,
            parse_local_start(&record.local_start)?,
            record.duration_minutes,
            record.anchor,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Offset;
    use pretty_assertions::assert_eq;
    use proptest::prelude::*;
    use serde::de::IntoDeserializer;
    use serde::de::value::{Error as ValueError, MapDeserializer, StrDeserializer};

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).unwrap()
    }

    fn utc(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(year, month, day, hour, minute, 0).unwrap()
    }

    fn rule(text: &str) -> Rule {
        Rule::parse(text).unwrap()
    }

    fn schedule(text: &str, zone: &str, start: &str, anchor: NaiveDate) -> Schedule {
        let zone = parse_timezone(zone).unwrap();
        Schedule::new(rule(text), zone, parse_local_start(start).unwrap(), 60, anchor).unwrap()
    }

    fn dates(schedule: &Schedule) -> Vec<NaiveDate> {
        schedule.occurrences().map(|o| o.date).collect()
    }

    /// The reason of an `Invalid` error, after checking its field.
    #[track_caller]
    fn reason<T: fmt::Debug>(result: Result<T, DomainError>, expected_field: &str) -> String {
        match result {
            Err(DomainError::Invalid { field, reason }) => {
                assert_eq!(field, expected_field, "reason: {reason}");
                reason
            }
            other => panic!("expected invalid {expected_field}, got {other:?}"),
        }
    }

    #[track_caller]
    fn rule_reason(text: &str) -> String {
        reason(Rule::parse(text), "rule")
    }

    // ----- parsing and display -----

    #[test]
    fn parses_the_supported_parts() {
        let parsed = rule("FREQ=MONTHLY;BYDAY=2TU;COUNT=6");
        assert_eq!(
            parsed,
            Rule {
                frequency: Frequency::Monthly,
                interval: 1,
                by_day: vec![ByDay { position: Some(2), weekday: Weekday::Tue }],
                by_month_day: vec![],
                end: Some(RuleEnd::Count(6)),
            }
        );
        assert_eq!(parsed.to_string(), "FREQ=MONTHLY;INTERVAL=1;BYDAY=2TU;COUNT=6");
    }

    #[test]
    fn names_and_values_are_case_insensitive_with_an_optional_rrule_prefix() {
        let parsed = rule(" rrule:freq=weekly; Interval=2 ;byday=th,mo;wkst=mo ");
        assert_eq!(parsed.frequency, Frequency::Weekly);
        assert_eq!(parsed.interval, 2);
        assert_eq!(parsed.to_string(), "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH");
    }

    #[test]
    fn until_keeps_only_the_date() {
        assert_eq!(rule("FREQ=WEEKLY;UNTIL=20271231T235959Z").end, Some(RuleEnd::Until(date(2027, 12, 31))));
        assert_eq!(rule("FREQ=WEEKLY;UNTIL=20271231").end, Some(RuleEnd::Until(date(2027, 12, 31))));
        assert_eq!(rule("FREQ=WEEKLY;UNTIL=20271231T000000Z").to_string(), "FREQ=WEEKLY;INTERVAL=1;UNTIL=20271231");
    }

    #[test]
    fn lists_are_sorted_and_deduplicated() {
        let parsed = rule("FREQ=MONTHLY;BYMONTHDAY=-1,15,1,15,-2;BYDAY=-1FR,2TU,TU,+2TU");
        assert_eq!(parsed.by_month_day, vec![1, 15, -1, -2]);
        assert_eq!(parsed.to_string(), "FREQ=MONTHLY;INTERVAL=1;BYDAY=TU,2TU,-1FR;BYMONTHDAY=1,15,-1,-2");
    }

    #[test]
    fn display_round_trips_through_parse() {
        for text in [
            "FREQ=WEEKLY",
            "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH",
            "FREQ=MONTHLY;INTERVAL=3;BYDAY=-1FR;UNTIL=20280101",
            "FREQ=MONTHLY;BYMONTHDAY=31,-1;COUNT=1000",
            "FREQ=MONTHLY;BYDAY=5SU,-5SA,WE;BYMONTHDAY=1,2,3;COUNT=1",
            "RRULE:FREQ=MONTHLY;WKST=MO;INTERVAL=99",
        ] {
            let parsed = rule(text);
            let canonical = parsed.to_string();
            assert_eq!(rule(&canonical), parsed, "{text}");
            assert_eq!(rule(&canonical).to_string(), canonical, "{text}");
        }
    }

    #[test]
    fn refuses_bad_rules_naming_the_part() {
        let long = format!("FREQ=WEEKLY;BYDAY={}", vec!["MO"; 200].join(","));
        let cases: &[(&str, &str)] = &[
            ("", "must not be empty"),
            ("   ", "must not be empty"),
            ("RRULE:", "must not be empty"),
            (&long, "at most 500 characters"),
            ("FREQ", "rule part FREQ must be NAME=VALUE"),
            ("FREQ=WEEKLY;COUNT", "rule part COUNT must be NAME=VALUE"),
            ("FREQ=WEEKLY;;COUNT=2", "empty rule part"),
            ("FREQ=WEEKLY;", "empty rule part"),
            ("=WEEKLY", "has no name"),
            ("FREQ=WEEKLY;FREQ=MONTHLY", "repeated rule part FREQ"),
            ("FREQ=WEEKLY;count=2;COUNT=3", "repeated rule part COUNT"),
            ("FREQ=WEEKLY;BYDAY=MO;BYDAY=TU", "repeated rule part BYDAY"),
            ("FREQ=MONTHLY;BYDAY=TU;BYSETPOS=2", "unsupported rule part BYSETPOS"),
            ("FREQ=WEEKLY;BYHOUR=9", "unsupported rule part BYHOUR"),
            ("FREQ=WEEKLY;BYMINUTE=9", "unsupported rule part BYMINUTE"),
            ("FREQ=WEEKLY;BYSECOND=9", "unsupported rule part BYSECOND"),
            ("FREQ=WEEKLY;BYWEEKNO=9", "unsupported rule part BYWEEKNO"),
            ("FREQ=WEEKLY;BYYEARDAY=9", "unsupported rule part BYYEARDAY"),
            ("FREQ=MONTHLY;BYMONTH=9", "unsupported rule part BYMONTH"),
            ("FREQ=WEEKLY;X-GATHER=1", "unsupported rule part X-GATHER"),
            ("FREQ=WEEKLY;DTSTART=20270101", "unsupported rule part DTSTART"),
            ("FREQ=DAILY", "unsupported FREQ=DAILY (WEEKLY or MONTHLY)"),
            ("FREQ=yearly", "unsupported FREQ=YEARLY (WEEKLY or MONTHLY)"),
            ("FREQ=", "unsupported FREQ= (WEEKLY or MONTHLY)"),
            ("INTERVAL=2;BYDAY=MO", "FREQ is required"),
            ("FREQ=WEEKLY;INTERVAL=0", "INTERVAL must be 1–99"),
            ("FREQ=WEEKLY;INTERVAL=100", "INTERVAL must be 1–99"),
            ("FREQ=WEEKLY;INTERVAL=-1", "INTERVAL must be 1–99"),
            ("FREQ=WEEKLY;INTERVAL=two", "INTERVAL must be 1–99"),
            ("FREQ=WEEKLY;INTERVAL=99999999999999", "INTERVAL must be 1–99"),
            ("FREQ=WEEKLY;COUNT=0", "COUNT must be 1–1000"),
            ("FREQ=WEEKLY;COUNT=1001", "COUNT must be 1–1000"),
            ("FREQ=WEEKLY;COUNT=", "COUNT must be 1–1000"),
            ("FREQ=WEEKLY;COUNT=2;UNTIL=20270101", "COUNT and UNTIL cannot both be given"),
            ("FREQ=WEEKLY;BYDAY=2TU", "BYDAY positions (2TU) need FREQ=MONTHLY"),
            ("FREQ=WEEKLY;BYDAY=MO,-1FR", "BYDAY positions (-1FR) need FREQ=MONTHLY"),
            ("BYDAY=2TU;FREQ=WEEKLY", "BYDAY positions (2TU) need FREQ=MONTHLY"),
            ("FREQ=WEEKLY;BYMONTHDAY=1", "BYMONTHDAY needs FREQ=MONTHLY"),
            ("FREQ=WEEKLY;BYDAY=XX", "unknown weekday XX"),
            ("FREQ=MONTHLY;BYDAY=2XX", "unknown weekday XX"),
            ("FREQ=MONTHLY;BYDAY=2", "BYDAY entry 2 has no weekday"),
            ("FREQ=WEEKLY;BYDAY=MO,,TU", "BYDAY has an empty entry"),
            ("FREQ=MONTHLY;BYDAY=6TU", "BYDAY position must be 1–5 or -5–-1 (got 6TU)"),
            ("FREQ=MONTHLY;BYDAY=0TU", "BYDAY position must be 1–5 or -5–-1 (got 0TU)"),
            ("FREQ=MONTHLY;BYDAY=-6TU", "BYDAY position must be 1–5 or -5–-1 (got -6TU)"),
            ("FREQ=MONTHLY;BYDAY=200TU", "BYDAY position must be 1–5 or -5–-1 (got 200TU)"),
            ("FREQ=MONTHLY;BYDAY=--1TU", "BYDAY position must be 1–5 or -5–-1 (got --1TU)"),
            ("FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY must be 1–31 or -31–-1 (got 0)"),
            ("FREQ=MONTHLY;BYMONTHDAY=32", "BYMONTHDAY must be 1–31 or -31–-1 (got 32)"),
            ("FREQ=MONTHLY;BYMONTHDAY=-32", "BYMONTHDAY must be 1–31 or -31–-1 (got -32)"),
            ("FREQ=MONTHLY;BYMONTHDAY=x", "BYMONTHDAY must be 1–31 or -31–-1 (got X)"),
            ("FREQ=MONTHLY;BYMONTHDAY=1,", "BYMONTHDAY has an empty entry"),
            ("FREQ=WEEKLY;WKST=SU", "unsupported WKST=SU (only MO)"),
            ("FREQ=WEEKLY;WKST=MO;WKST=MO", "repeated rule part WKST"),
            ("FREQ=WEEKLY;UNTIL=2027", "UNTIL must be a date YYYYMMDD or YYYYMMDDTHHMMSSZ"),
            ("FREQ=WEEKLY;UNTIL=20271301", "UNTIL must be a date"),
            ("FREQ=WEEKLY;UNTIL=20270230", "UNTIL must be a date"),
            ("FREQ=WEEKLY;UNTIL=20270101T250000Z", "UNTIL must be a date"),
            ("FREQ=WEEKLY;UNTIL=20270101T120000", "UNTIL must be a date"),
            ("FREQ=WEEKLY;UNTIL=2027-01-01", "UNTIL must be a date"),
        ];
        for (text, expected) in cases {
            let reason = rule_reason(text);
            assert!(reason.contains(expected), "{text:?}: {reason:?} should contain {expected:?}");
        }
    }

    #[test]
    fn a_rule_serializes_as_its_canonical_text_and_deserializing_reparses() {
        assert_eq!(String::from(rule("freq=monthly;byday=2tu")), "FREQ=MONTHLY;INTERVAL=1;BYDAY=2TU");
        let parsed = Rule::deserialize(StrDeserializer::<ValueError>::new("FREQ=MONTHLY;BYDAY=2TU;COUNT=6")).unwrap();
        assert_eq!(parsed, rule("FREQ=MONTHLY;BYDAY=2TU;COUNT=6"));
        let refused = Rule::deserialize(StrDeserializer::<ValueError>::new("FREQ=DAILY")).unwrap_err();
        assert!(refused.to_string().contains("unsupported FREQ=DAILY"), "{refused}");
    }

    // ----- time zones, start times, durations -----

    #[test]
    fn parses_iana_time_zones() {
        assert_eq!(parse_timezone("Europe/Amsterdam").unwrap(), Tz::Europe__Amsterdam);
        assert_eq!(parse_timezone(" UTC ").unwrap(), Tz::UTC);
        assert_eq!(reason(parse_timezone("Mars/Olympus"), "timezone"), "unknown time zone \"Mars/Olympus\"");
        assert_eq!(reason(parse_timezone(""), "timezone"), "must not be empty");
    }

    #[test]
    fn parses_local_start_times() {
        assert_eq!(parse_local_start("19:00").unwrap(), NaiveTime::from_hms_opt(19, 0, 0).unwrap());
        assert_eq!(parse_local_start("00:00").unwrap(), NaiveTime::MIN);
        assert_eq!(parse_local_start("23:59").unwrap(), NaiveTime::from_hms_opt(23, 59, 0).unwrap());
        for bad in ["24:00", "12:60", "7:00", "19:00:00", "ab:cd", "", "1900", "-1:00", "+1:00", "١٩:٠٠"] {
            let reason = reason(parse_local_start(bad), "local_start");
            assert!(reason.contains("HH:MM"), "{bad:?}: {reason}");
        }
    }

    #[test]
    fn refuses_durations_outside_one_minute_to_a_week() {
        let make = |minutes| Schedule::new(rule("FREQ=WEEKLY"), Tz::UTC, NaiveTime::MIN, minutes, date(2027, 1, 1));
        assert!(reason(make(0), "duration_minutes").contains("1–10080"));
        assert!(reason(make(10_081), "duration_minutes").contains("1–10080"));
        assert!(make(1).is_ok());
        assert!(make(10_080).is_ok());
    }

    #[test]
    fn refuses_a_start_time_with_seconds() {
        let start = NaiveTime::from_hms_opt(19, 0, 30).unwrap();
        let result = Schedule::new(rule("FREQ=WEEKLY"), Tz::UTC, start, 60, date(2027, 1, 1));
        assert!(reason(result, "local_start").contains("whole minute"));
    }

    // ----- the window -----

    #[test]
    fn refuses_an_until_beyond_the_window() {
        let anchor = date(2027, 3, 1);
        let last = anchor + Days::new(731);
        let make = |until: NaiveDate| {
            let text = format!("FREQ=WEEKLY;UNTIL={}", until.format("%Y%m%d"));
            Schedule::new(rule(&text), Tz::UTC, NaiveTime::MIN, 60, anchor)
        };
        assert!(make(last).is_ok());
        let reason = reason(make(last + Days::new(1)), "rule");
        assert!(reason.contains("UNTIL") && reason.contains("731 days"), "{reason}");
    }

    #[test]
    fn refuses_a_count_beyond_the_window() {
        // From 2027-03-01 the window ends on 2029-03-01: 25 first-of-the-months.
        let anchor = date(2027, 3, 1);
        assert_eq!(window_end(anchor), Some(date(2029, 3, 1)));
        let make = |text: &str| Schedule::new(rule(text), Tz::UTC, NaiveTime::MIN, 60, anchor);
        let fits = make("FREQ=MONTHLY;COUNT=25").unwrap();
        assert_eq!(fits.occurrence(24).map(|o| o.date), Some(date(2029, 3, 1)));
        let reason = reason(make("FREQ=MONTHLY;COUNT=26"), "rule");
        assert!(reason.contains("COUNT=26") && reason.contains("only 25"), "{reason}");
    }

    #[test]
    fn refuses_a_rule_without_any_date_in_the_window() {
        let make = |text: &str, anchor| Schedule::new(rule(text), Tz::UTC, NaiveTime::MIN, 60, anchor);
        // February never has a 30th.
        let never = make("FREQ=MONTHLY;INTERVAL=12;BYMONTHDAY=30", date(2027, 2, 1));
        assert!(reason(never, "rule").contains("no date"));
        // Until the day before the anchor.
        let before = make("FREQ=WEEKLY;UNTIL=20270301", date(2027, 3, 2));
        assert!(reason(before, "rule").contains("no date"));
        // No fifth Monday in a February of a non-leap year, once a year.
        let fifth = make("FREQ=MONTHLY;INTERVAL=12;BYDAY=5MO", date(2027, 2, 1));
        assert!(reason(fifth, "rule").contains("no date"));
    }

    #[test]
    fn schedule_new_rechecks_a_rule_built_field_by_field() {
        let mut built = rule("FREQ=WEEKLY");
        built.interval = 0;
        let result = Schedule::new(built.clone(), Tz::UTC, NaiveTime::MIN, 60, date(2027, 1, 1));
        assert!(reason(result, "rule").contains("INTERVAL"));
        built.interval = 1;
        built.by_month_day = vec![3];
        let result = Schedule::new(built, Tz::UTC, NaiveTime::MIN, 60, date(2027, 1, 1));
        assert!(reason(result, "rule").contains("BYMONTHDAY needs FREQ=MONTHLY"));
    }

    #[test]
    fn iteration_ends_even_for_a_schedule_built_field_by_field() {
        let anchor = date(2027, 1, 1);
        let mut by_hand = Schedule {
            rule: Rule {
                frequency: Frequency::Weekly,
                interval: 0,
                by_day: vec![],
                by_month_day: vec![],
                end: Some(RuleEnd::Count(u32::MAX)),
            },
            timezone: Tz::UTC,
            local_start: NaiveTime::MIN,
            duration_minutes: 60,
            anchor,
        };
        assert_eq!(by_hand.occurrences().count(), 105);
        by_hand.rule.interval = u32::MAX;
        assert_eq!(by_hand.occurrences().count(), 1);
        by_hand.rule =
            Rule { frequency: Frequency::Monthly, interval: 1, by_day: vec![], by_month_day: vec![0, 40], end: None };
        assert_eq!(by_hand.occurrences().count(), 0);
        by_hand.anchor = NaiveDate::MAX;
        assert_eq!(by_hand.occurrences().count(), 0);
        assert_eq!(by_hand.occurrence(0), None);
    }

    // ----- expansion -----

    #[test]
    fn second_tuesdays_keep_their_local_time_across_the_dst_change() {
        let series = schedule("FREQ=MONTHLY;BYDAY=2TU;COUNT=6", "Europe/Amsterdam", "19:00", date(2027, 3, 1));
        let all: Vec<Occurrence> = series.occurrences().collect();
        assert_eq!(
            all.iter().map(|o| (o.index, o.date, o.starts_at)).collect::<Vec<_>>(),
            vec![
                (0, date(2027, 3, 9), utc(2027, 3, 9, 18, 0)),
                (1, date(2027, 4, 13), utc(2027, 4, 13, 17, 0)),
                (2, date(2027, 5, 11), utc(2027, 5, 11, 17, 0)),
                (3, date(2027, 6, 8), utc(2027, 6, 8, 17, 0)),
                (4, date(2027, 7, 13), utc(2027, 7, 13, 17, 0)),
                (5, date(2027, 8, 10), utc(2027, 8, 10, 17, 0)),
            ]
        );
        assert!(all.iter().all(|o| o.ends_at - o.starts_at == TimeDelta::minutes(60)));
        assert_eq!(series.occurrence(3), Some(all[3]));
        assert_eq!(series.occurrence(6), None);

        let winter = schedule("FREQ=MONTHLY;BYDAY=2TU;COUNT=12", "Europe/Amsterdam", "19:00", date(2027, 1, 1));
        let january = winter.occurrence(0).unwrap();
        assert_eq!((january.date, january.starts_at), (date(2027, 1, 12), utc(2027, 1, 12, 18, 0)));
        let july = winter.occurrence(6).unwrap();
        assert_eq!((july.date, july.starts_at), (date(2027, 7, 13), utc(2027, 7, 13, 17, 0)));
    }

    #[test]
    fn a_start_in_the_spring_forward_gap_moves_to_the_end_of_the_gap() {
        let series = schedule("FREQ=WEEKLY;BYDAY=SU;COUNT=2", "Europe/Amsterdam", "02:30", date(2027, 3, 28));
        let gap = series.occurrence(0).unwrap();
        assert_eq!(gap.date, date(2027, 3, 28));
        assert_eq!(gap.starts_at, utc(2027, 3, 28, 1, 0)); // 03:00 CEST
        assert_eq!(gap.ends_at, utc(2027, 3, 28, 2, 0));
        assert_eq!(series.occurrence(1).unwrap().starts_at, utc(2027, 4, 4, 0, 30)); // 02:30 CEST
        // Lord Howe Island moves by half an hour: 02:00–02:30 does not exist on 2027-10-03.
        let lord_howe = schedule("FREQ=WEEKLY;COUNT=1", "Australia/Lord_Howe", "02:10", date(2027, 10, 3));
        let local = lord_howe.occurrence(0).unwrap().starts_at.with_timezone(&Tz::Australia__Lord_Howe);
        assert_eq!(local.naive_local(), date(2027, 10, 3).and_hms_opt(2, 30, 0).unwrap());
    }

    #[test]
    fn an_ambiguous_start_in_the_fall_back_overlap_takes_the_earlier_instant() {
        let series = schedule("FREQ=WEEKLY;BYDAY=SU;COUNT=1", "Europe/Amsterdam", "02:30", date(2027, 10, 31));
        let overlap = series.occurrence(0).unwrap();
        assert_eq!(overlap.date, date(2027, 10, 31));
        assert_eq!(overlap.starts_at, utc(2027, 10, 31, 0, 30)); // 02:30 CEST, not 02:30 CET
        assert_eq!(overlap.ends_at, utc(2027, 10, 31, 1, 30)); // 60 real minutes
    }

    #[test]
    fn month_day_31_skips_months_without_one() {
        let series = schedule("FREQ=MONTHLY;BYMONTHDAY=31;COUNT=7", "UTC", "10:00", date(2027, 1, 1));
        assert_eq!(
            dates(&series),
            [(1, 31), (3, 31), (5, 31), (7, 31), (8, 31), (10, 31), (12, 31)].map(|(m, d)| date(2027, m, d))
        );
    }

    #[test]
    fn month_day_minus_one_is_the_last_day_of_each_month() {
        let series = schedule("FREQ=MONTHLY;BYMONTHDAY=-1;COUNT=14", "UTC", "10:00", date(2027, 1, 1));
        let all = dates(&series);
        assert_eq!(all[..4], [date(2027, 1, 31), date(2027, 2, 28), date(2027, 3, 31), date(2027, 4, 30)]);
        assert_eq!(all[13], date(2028, 2, 29));
    }

    #[test]
    fn minus_one_friday_is_the_last_friday_of_each_month() {
        let series = schedule("FREQ=MONTHLY;BYDAY=-1FR;COUNT=4", "Europe/Amsterdam", "18:00", date(2027, 1, 1));
        assert_eq!(dates(&series), [date(2027, 1, 29), date(2027, 2, 26), date(2027, 3, 26), date(2027, 4, 30)]);
    }

    #[test]
    fn every_other_week_on_monday_and_thursday() {
        // 2027-03-03 is a Wednesday: that week's Monday is before the anchor, the next week is skipped.
        let series =
            schedule("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH;COUNT=5", "Europe/Amsterdam", "09:00", date(2027, 3, 3));
        assert_eq!(
            dates(&series),
            [date(2027, 3, 4), date(2027, 3, 15), date(2027, 3, 18), date(2027, 3, 29), date(2027, 4, 1)]
        );
    }

    #[test]
    fn without_byday_or_bymonthday_the_anchor_day_repeats() {
        let weekly = schedule("FREQ=WEEKLY;COUNT=3", "UTC", "10:00", date(2027, 3, 3));
        assert_eq!(dates(&weekly), [date(2027, 3, 3), date(2027, 3, 10), date(2027, 3, 17)]);
        let monthly = schedule("FREQ=MONTHLY;INTERVAL=2;COUNT=3", "UTC", "10:00", date(2027, 1, 31));
        assert_eq!(dates(&monthly), [date(2027, 1, 31), date(2027, 3, 31), date(2027, 5, 31)]);
    }

    #[test]
    fn byday_limits_bymonthday() {
        let fridays_13 = schedule("FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13;COUNT=3", "UTC", "20:00", date(2026, 1, 1));
        assert_eq!(dates(&fridays_13), [date(2026, 2, 13), date(2026, 3, 13), date(2026, 11, 13)]);
        let all_tuesdays = schedule("FREQ=MONTHLY;BYDAY=TU;UNTIL=20270331", "UTC", "20:00", date(2027, 3, 1));
        assert_eq!(dates(&all_tuesdays), [2, 9, 16, 23, 30].map(|d| date(2027, 3, d)));
    }

    #[test]
    fn until_is_inclusive_and_compared_with_the_local_date() {
        // 23:30 in Kolkata is 18:00 UTC the same day; in Sydney 00:30 local is the previous day in UTC.
        let sydney = schedule("FREQ=WEEKLY;UNTIL=20270111", "Australia/Sydney", "00:30", date(2027, 1, 4));
        let all: Vec<Occurrence> = sydney.occurrences().collect();
        assert_eq!(all.iter().map(|o| o.date).collect::<Vec<_>>(), [date(2027, 1, 4), date(2027, 1, 11)]);
        assert_eq!(all[1].starts_at, utc(2027, 1, 10, 13, 30));
    }

    #[test]
    fn without_an_end_the_series_stops_at_the_window() {
        let series = schedule("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA,SU", "UTC", "10:00", date(2027, 3, 1));
        let all = dates(&series);
        assert_eq!(all.len(), 732);
        assert_eq!(all.last(), Some(&date(2029, 3, 1)));
    }

    #[derive(Clone, Copy)]
    enum Value<'a> {
        Text(&'a str),
        Number(u32),
    }

    impl<'de> serde::Deserializer<'de> for Value<'_> {
        type Error = ValueError;

        fn deserialize_any<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
            match self {
                Value::Text(text) => visitor.visit_str(text),
                Value::Number(number) => visitor.visit_u32(number),
            }
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
        }
    }

    impl IntoDeserializer<'_, ValueError> for Value<'_> {
        type Deserializer = Self;

        fn into_deserializer(self) -> Self {
            self
        }
    }

    fn deserialize_schedule(rule: &str, zone: &str, start: &str, minutes: u32) -> Result<Schedule, ValueError> {
        let fields = [
            ("rule", Value::Text(rule)),
            ("timezone", Value::Text(zone)),
            ("local_start", Value::Text(start)),
            ("duration_minutes", Value::Number(minutes)),
            ("anchor", Value::Text("2027-03-01")),
        ];
        Schedule::deserialize(MapDeserializer::<_, ValueError>::new(fields.into_iter()))
    }

    #[test]
    fn a_schedule_serializes_as_plain_fields_and_deserializing_revalidates() {
        let series = schedule("FREQ=MONTHLY;BYDAY=2TU;COUNT=6", "Europe/Amsterdam", "19:05", date(2027, 3, 1));
        let record = ScheduleRecord::from(series.clone());
        assert_eq!(record.rule.to_string(), "FREQ=MONTHLY;INTERVAL=1;BYDAY=2TU;COUNT=6");
        assert_eq!(record.timezone, "Europe/Amsterdam");
        assert_eq!(record.local_start, "19:05");
        assert_eq!(record.anchor.to_string(), "2027-03-01");
        assert_eq!(Schedule::try_from(record).unwrap(), series);

        let read = deserialize_schedule("FREQ=MONTHLY;BYDAY=2TU;COUNT=6", "Europe/Amsterdam", "19:05", 60).unwrap();
        assert_eq!(read, series);
        for (rule, zone, start, minutes, expected) in [
            ("FREQ=DAILY", "Europe/Amsterdam", "19:05", 60, "invalid rule"),
            ("FREQ=MONTHLY;COUNT=100", "Europe/Amsterdam", "19:05", 60, "invalid rule: COUNT=100"),
            ("FREQ=MONTHLY", "Mars/Olympus", "19:05", 60, "invalid timezone"),
            ("FREQ=MONTHLY", "Europe/Amsterdam", "25:00", 60, "invalid local_start"),
            ("FREQ=MONTHLY", "Europe/Amsterdam", "19:05", 0, "invalid duration_minutes"),
        ] {
            let error = deserialize_schedule(rule, zone, start, minutes).unwrap_err().to_string();
            assert!(error.contains(expected), "{error} should contain {expected}");
        }
    }

    // ----- properties -----

    const ZONES: [Tz; 7] = [
        Tz::Europe__Amsterdam,
        Tz::America__New_York,
        Tz::Australia__Sydney,
        Tz::Asia__Kolkata,
        Tz::UTC,
        Tz::Australia__Lord_Howe,
        Tz::America__Sao_Paulo,
    ];

    /// The zones of [`ZONES`] with daylight saving in 2026–2030.
    const DST_ZONES: [Tz; 4] =
        [Tz::Europe__Amsterdam, Tz::America__New_York, Tz::Australia__Sydney, Tz::Australia__Lord_Howe];

    /// How a generated rule ends; `Until` is days after the anchor (past the window on purpose at times).
    #[derive(Debug, Clone, Copy)]
    enum End {
        Open,
        Count(u32),
        Until(u64),
    }

    fn weekday() -> impl Strategy<Value = Weekday> {
        (0u8..7).prop_map(|n| Weekday::try_from(n).unwrap())
    }

    fn by_day(monthly: bool) -> BoxedStrategy<Vec<ByDay>> {
        let position = if monthly {
            prop_oneof![2 => Just(None), 1 => (1i8..=5).prop_map(Some), 1 => (-5i8..=-1).prop_map(Some)].boxed()
        } else {
            Just(None).boxed()
        };
        let entry = (position, weekday()).prop_map(|(position, weekday)| ByDay { position, weekday });
        proptest::collection::vec(entry, 0..4).boxed()
    }

    fn rule_parts() -> impl Strategy<Value = (Rule, End)> {
        let interval = prop_oneof![4 => 1u32..=4, 1 => 1u32..=MAX_INTERVAL];
        let end = prop_oneof![
            1 => Just(End::Open),
            3 => (1u32..=60).prop_map(End::Count),
            1 => (1u32..=MAX_COUNT).prop_map(End::Count),
            2 => (0u64..=740).prop_map(End::Until),
        ];
        let weekly = (interval.clone(), by_day(false)).prop_map(|(interval, by_day)| Rule {
            frequency: Frequency::Weekly,
            interval,
            by_day,
            by_month_day: vec![],
            end: None,
        });
        let month_day = prop_oneof![1i8..=31, -31i8..=-1];
        let month_days = prop_oneof![2 => Just(vec![]), 1 => proptest::collection::vec(month_day, 1..4)];
        let monthly = (interval, by_day(true), month_days).prop_map(|(interval, by_day, by_month_day)| Rule {
            frequency: Frequency::Monthly,
            interval,
            by_day,
            by_month_day,
            end: None,
        });
        (prop_oneof![weekly, monthly], end)
    }

    fn local_start() -> impl Strategy<Value = NaiveTime> {
        // Night hours more often: that is where the daylight-saving gaps and overlaps are.
        let hour = prop_oneof![1 => 0u32..24, 1 => 0u32..4];
        (hour, prop_oneof![0u32..60, Just(0u32), Just(30u32)])
            .prop_map(|(hour, minute)| NaiveTime::from_hms_opt(hour, minute, 0).unwrap())
    }

    fn anchor() -> impl Strategy<Value = NaiveDate> {
        (0u64..5 * 365).prop_map(|days| date(2026, 1, 1) + Days::new(days))
    }

    /// The days of 2026–2030 on which `zone`'s offset changes (its UTC offset at noon differs from the day before).
    fn transition_days(zone: Tz) -> Vec<NaiveDate> {
        let noon_offset = |day: NaiveDate| {
            zone.from_local_datetime(&day.and_hms_opt(12, 0, 0).unwrap()).earliest().unwrap().offset().fix()
        };
        date(2026, 1, 1)
            .iter_days()
            .take_while(|day| day.year() <= 2030)
            .filter(|day| noon_offset(*day) != noon_offset(day.pred_opt().unwrap()))
            .collect()
    }

    /// A zone and an anchor in 2026–2030: half of the time at most five weeks before one of its offset changes.
    fn zone_and_anchor() -> impl Strategy<Value = (Tz, NaiveDate)> {
        proptest::sample::select(&ZONES[..]).prop_flat_map(|zone| {
            let transitions = transition_days(zone);
            let anchor = if transitions.is_empty() {
                anchor().boxed()
            } else {
                let near =
                    (proptest::sample::select(transitions), 0u64..35).prop_map(|(day, back)| day - Days::new(back));
                prop_oneof![anchor(), near].boxed()
            };
            (Just(zone), anchor)
        })
    }

    /// The occurrence starts at `local_start` on its date, unless that time falls in a
    /// gap: then at the first minute after the gap. An ambiguous time takes the earlier instant.
    fn check_wall_time(zone: Tz, start: NaiveTime, occurrence: &Occurrence) -> Result<(), TestCaseError> {
        let wanted = occurrence.date.and_time(start);
        let local = occurrence.starts_at.with_timezone(&zone).naive_local();
        match zone.from_local_datetime(&wanted) {
            LocalResult::Single(_) => prop_assert_eq!(local, wanted),
            LocalResult::Ambiguous(a, b) => {
                prop_assert_eq!(local, wanted);
                prop_assert_eq!(occurrence.starts_at, a.min(b).with_timezone(&Utc));
            }
            LocalResult::None => {
                // In a gap: the first minute after it, later the same day.
                prop_assert!(local > wanted && local - wanted <= TimeDelta::hours(1));
                prop_assert_eq!(local.date(), occurrence.date);
                prop_assert_eq!(local.second(), 0);
                let before = local - TimeDelta::minutes(1);
                prop_assert!(zone.from_local_datetime(&before).earliest().is_none());
            }
        }
        Ok(())
    }

    #[test]
    fn the_zones_used_by_the_properties_change_offsets_as_expected() {
        assert_eq!(transition_days(Tz::Europe__Amsterdam)[..2], [date(2026, 3, 29), date(2026, 10, 25)]);
        assert_eq!(transition_days(Tz::Europe__Amsterdam).len(), 10);
        assert_eq!(transition_days(Tz::Australia__Lord_Howe).len(), 10);
        assert_eq!(transition_days(Tz::Asia__Kolkata), []);
        assert_eq!(transition_days(Tz::UTC), []);
    }

    fn days_in_month(day: NaiveDate) -> i64 {
        let (year, month) = if day.month() == 12 { (day.year() + 1, 1) } else { (day.year(), day.month() + 1) };
        i64::from(date(year, month, 1).pred_opt().unwrap().day())
    }

    /// Whether `day` (on or after the anchor) belongs to the rule, written day by day, straight from the RFC.
    fn matches(rule: &Rule, anchor: NaiveDate, day: NaiveDate) -> bool {
        let interval = i64::from(rule.interval);
        match rule.frequency {
            Frequency::Weekly => {
                let monday =
                    |d: NaiveDate| i64::from(d.num_days_from_ce()) - i64::from(d.weekday().num_days_from_monday());
                let weeks = (monday(day) - monday(anchor)) / 7;
                let weekday_ok = if rule.by_day.is_empty() {
                    day.weekday() == anchor.weekday()
                } else {
                    rule.by_day.iter().any(|entry| entry.weekday == day.weekday())
                };
                weeks % interval == 0 && weekday_ok
            }
            Frequency::Monthly => {
                let month = |d: NaiveDate| i64::from(d.year()) * 12 + i64::from(d.month0());
                let months = month(day) - month(anchor);
                let length = days_in_month(day);
                let dom = i64::from(day.day());
                let month_day_ok = rule.by_month_day.iter().any(|&d| {
                    let d = i64::from(d);
                    if d > 0 { dom == d } else { dom == length + 1 + d }
                });
                let weekday_ok = rule.by_day.iter().any(|entry| {
                    entry.weekday == day.weekday()
                        && match entry.position.map(i64::from) {
                            None => true,
                            Some(p) if p > 0 => (dom - 1) / 7 + 1 == p,
                            Some(p) => (length - dom) / 7 + 1 == -p,
                        }
                });
                let day_ok = match (rule.by_month_day.is_empty(), rule.by_day.is_empty()) {
                    (true, true) => day.day() == anchor.day(),
                    (false, true) => month_day_ok,
                    (true, false) => weekday_ok,
                    (false, false) => month_day_ok && weekday_ok,
                };
                months % interval == 0 && day_ok
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn expansion_follows_the_rule(
            (mut rule, end) in rule_parts(),
            (zone, anchor) in zone_and_anchor(),
            start in local_start(),
            duration in prop_oneof![1u32..=240, Just(MAX_DURATION_MINUTES)],
        ) {
            let window_end = anchor + Days::new(731);
            rule.end = match end {
                End::Open => None,
                End::Count(count) => Some(RuleEnd::Count(count)),
                End::Until(days) => Some(RuleEnd::Until(anchor + Days::new(days))),
            };
            // The generated rule is normalized and its text round-trips.
            let rule = Rule::parse(&rule.to_string()).unwrap();
            prop_assert_eq!(Rule::parse(&rule.to_string()).unwrap(), rule.clone());

            let until = match rule.end { Some(RuleEnd::Until(until)) => until, _ => window_end };
            let in_window: Vec<NaiveDate> = anchor
                .iter_days()
                .take_while(|day| *day <= until.min(window_end))
                .filter(|day| matches(&rule, anchor, *day))
                .collect();
            let count = match rule.end { Some(RuleEnd::Count(count)) => Some(count as usize), _ => None };

            let series = match Schedule::new(rule.clone(), zone, start, duration, anchor) {
                Ok(series) => series,
                Err(refused) => {
                    let reason = reason::<()>(Err(refused), "rule");
                    prop_assert!(
                        until > window_end || in_window.is_empty() || count.is_some_and(|c| c > in_window.len()),
                        "refused {} from {}: {}", rule, anchor, reason
                    );
                    return Ok(());
                }
            };
            prop_assert!(until <= window_end && !in_window.is_empty());
            let all: Vec<Occurrence> = series.occurrences().collect();
            let expected: Vec<NaiveDate> = in_window.iter().copied().take(count.unwrap_or(usize::MAX)).collect();
            prop_assert_eq!(all.iter().map(|o| o.date).collect::<Vec<_>>(), expected);
            if let Some(count) = count {
                prop_assert_eq!(all.len(), count);
            }

            for (i, occurrence) in all.iter().enumerate() {
                prop_assert_eq!(occurrence.index as usize, i);
                prop_assert!(occurrence.date >= anchor && occurrence.date <= until && occurrence.date <= window_end);
                prop_assert!(matches(&rule, anchor, occurrence.date));
                prop_assert_eq!(occurrence.ends_at - occurrence.starts_at, TimeDelta::minutes(i64::from(duration)));
                if i > 0 {
                    prop_assert!(occurrence.starts_at > all[i - 1].starts_at);
                }

                check_wall_time(zone, start, occurrence)?;
            }

            let last = all.len() - 1;
            for i in [0, last / 2, last] {
                prop_assert_eq!(series.occurrence(i as u32), Some(all[i]));
            }
            prop_assert_eq!(series.occurrence(all.len() as u32), None);
            prop_assert_eq!(Schedule::try_from(ScheduleRecord::from(series.clone())).unwrap(), series);
        }

        #[test]
        fn a_start_on_an_offset_change_day_follows_the_wall_clock(
            (zone, day) in proptest::sample::select(&DST_ZONES[..]).prop_flat_map(|zone| {
                (Just(zone), proptest::sample::select(transition_days(zone)))
            }),
            start in local_start(),
        ) {
            let series = Schedule::new(rule("FREQ=WEEKLY;COUNT=2"), zone, start, 90, day).unwrap();
            let all: Vec<Occurrence> = series.occurrences().collect();
            prop_assert_eq!(all.iter().map(|o| o.date).collect::<Vec<_>>(), vec![day, day + Days::new(7)]);
            prop_assert!(all[0].starts_at < all[1].starts_at);
            for occurrence in &all {
                check_wall_time(zone, start, occurrence)?;
                prop_assert_eq!(occurrence.ends_at - occurrence.starts_at, TimeDelta::minutes(90));
            }
        }

        #[test]
        fn parsing_any_text_never_panics_and_what_parses_round_trips(
            text in prop_oneof![
                concat!(
                    "(FREQ|INTERVAL|BYDAY|BYMONTHDAY|COUNT|UNTIL|WKST|BYSETPOS|freq|x)",
                    "(=([A-Z0-9,+-]|MO|TU|FR|WEEKLY|MONTHLY){0,6})?",
                    "(;(FREQ|INTERVAL|BYDAY|BYMONTHDAY|COUNT|UNTIL|WKST)",
                    "=([A-Za-z0-9,+-]|2TU|-1FR|WEEKLY|MONTHLY){0,6}){0,4}",
                ),
                any::<String>(),
            ],
        ) {
            if let Ok(parsed) = Rule::parse(&text) {
                let canonical = parsed.to_string();
                prop_assert_eq!(Rule::parse(&canonical).unwrap(), parsed);
            }
        }
    }
}
