//! Value objects that parse rather than validate.
//!
//! Each type has private fields, a `parse(...)` returning
//! [`DomainError::Invalid`] naming the request field, and borrowed getters.
//! Once a value exists it is within its limits (DOMAIN.md), so commands and
//! events carry them instead of raw strings. They serialize as plain values
//! (transparent where they hold one field) so they can sit inside events;
//! deserializing trusts the stored event and does not re-check the limits.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::errors::DomainError;

mod specs;
pub use specs::sections as spec_sections;

/// Trims `raw` and checks its length in characters and that it holds no control characters.
fn bounded_text(field: &'static str, raw: &str, min: usize, max: usize) -> Result<String, DomainError> {
    let text = raw.trim();
    let len = text.chars().count();
    if len < min {
        return Err(if min == 1 {
            DomainError::invalid(field, "must not be empty")
        } else {
            DomainError::invalid(field, format!("must be at least {min} characters"))
        });
    }
    if len > max {
        return Err(DomainError::invalid(field, format!("must be at most {max} characters")));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t') {
        return Err(DomainError::invalid(field, "must not contain control characters"));
    }
    Ok(text.to_owned())
}

macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, field = $field:literal, min = $min:expr, max = $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The fewest characters allowed (after trimming).
            pub const MIN_CHARS: usize = $min;
            /// The most characters allowed (after trimming).
            pub const MAX_CHARS: usize = $max;

            /// Parses a trimmed text of `MIN_CHARS..=MAX_CHARS` characters.
            pub fn parse(raw: &str) -> Result<Self, DomainError> {
                bounded_text($field, raw, $min, $max).map($name)
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_value!(
    /// A member's public name: 1–60 characters.
    DisplayName, field = "display_name", min = 1, max = 60
);
text_value!(
    /// A child's first name as the parent enters it: 1–60 characters.
    ChildName, field = "name", min = 1, max = 60
);
text_value!(
    /// The name of an organiser's organisation: 2–120 characters.
    OrganisationName, field = "organisation_name", min = 2, max = 120
);
text_value!(
    /// An activity's title: 3–120 characters.
    Title, field = "title", min = 3, max = 120
);
text_value!(
    /// An activity's description: at most 5,000 characters (may be empty).
    Description, field = "description", min = 0, max = 5_000
);
text_value!(
    /// Why a moderator rejected an activity or suspended a member, or why an activity was cancelled: 1–1,000 characters.
    Reason, field = "reason", min = 1, max = 1_000
);
text_value!(
    /// A chat's optional title: 1–100 characters.
    ChatTitle, field = "title", min = 1, max = 100
);
text_value!(
    /// A chat message: 1–4,000 characters.
    MessageText, field = "text", min = 1, max = 4_000
);
text_value!(
    /// The payment provider's reference for a payment: 1–200 characters.
    PaymentRef, field = "payment_ref", min = 1, max = 200
);

/// Unicode's invisible formatting characters (category Cf) that can hide in text:
/// bidi marks, embeddings, overrides and isolates, zero-width characters, the BOM.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// An email address, stored as given (trimmed); compare with [`Email::normalized`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// The longest address accepted (RFC 5321 path limit).
    pub const MAX_CHARS: usize = 254;

    /// Parses `local@domain.tld`: one `@`, a local part of 1–64 characters, a
    /// domain with a dot and no empty label, no whitespace, at most 254 characters.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let email = raw.trim();
        let invalid = |reason: &str| DomainError::invalid("email", reason);
        if email.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if email.chars().count() > Self::MAX_CHARS {
            return Err(invalid("must be at most 254 characters"));
        }
        if email.chars().any(char::is_whitespace) {
            return Err(invalid("must not contain spaces"));
        }
        // Control and invisible formatting characters (bidi overrides, zero-width
        // spaces) make an address that looks like another and that mail servers refuse.
        if email.chars().any(|c| c.is_control() || is_invisible_format(c)) {
            return Err(invalid("must not contain control or formatting characters"));
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(invalid("must contain @"));
        };
        if domain.contains('@') {
            return Err(invalid("must contain a single @"));
        }
        if local.is_empty() || local.chars().count() > 64 {
            return Err(invalid("the part before @ must have 1 to 64 characters"));
        }
        if !domain.contains('.') || domain.split('.').any(str::is_empty) {
            return Err(invalid("the domain must look like example.org"));
        }
        Ok(Email(email.to_owned()))
    }

    /// The address as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lowercase form used for uniqueness and lookups.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An activity category used for search facets: a lowercase word or phrase of 2–40 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Category(String);

impl Category {
    /// Parses letters, digits, spaces and dashes; stored lowercase.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let text = bounded_text("category", raw, 2, 40)?.to_lowercase();
        if !text.chars().all(|c| c.is_alphanumeric() || c == ' ' || c == '-') {
            return Err(DomainError::invalid("category", "may hold letters, digits, spaces and dashes only"));
        }
        Ok(Category(text))
    }

    /// The category.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An activity's tags: at most 10, each 1–30 characters, lowercase, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tags(Vec<String>);

impl Tags {
    /// The most tags an activity may have.
    pub const MAX: usize = 10;
    /// The longest tag.
    pub const MAX_CHARS: usize = 30;

    /// Parses tags: trimmed, lowercased, duplicates dropped (first one kept), then at most 10.
    pub fn parse<S: AsRef<str>>(raw: impl IntoIterator<Item = S>) -> Result<Self, DomainError> {
        let mut tags: Vec<String> = Vec::new();
        for tag in raw {
            let tag = bounded_text("tags", tag.as_ref(), 1, Self::MAX_CHARS)?.to_lowercase();
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        if tags.len() > Self::MAX {
            return Err(DomainError::invalid("tags", format!("at most {} tags", Self::MAX)));
        }
        Ok(Tags(tags))
    }

    /// No tags.
    pub fn none() -> Self {
        Tags(Vec::new())
    }

    /// The tags in the order given.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// The seats an activity offers: 1–100,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Capacity(u32);

impl Capacity {
    /// The largest capacity.
    pub const MAX: u32 = 100_000;

    /// Parses a number of seats between 1 and 100,000.
    pub fn parse(seats: i64) -> Result<Self, DomainError> {
        if !(1..=i64::from(Self::MAX)).contains(&seats) {
            return Err(DomainError::invalid("capacity", "must be between 1 and 100000 seats"));
        }
        // The range check above makes the conversion lossless.
        Ok(Capacity(seats as u32))
    }

    /// The number of seats.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// An amount of money in minor units (cents) of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    amount: i64,
    currency: String,
}

impl Money {
    /// The largest amount accepted, in minor units (1,000,000.00).
    pub const MAX_AMOUNT: i64 = 100_000_000;

    /// Parses a non-negative amount in minor units (at most 100,000,000) and a
    /// three-letter currency code (stored uppercase).
    pub fn parse(amount: i64, currency: &str) -> Result<Self, DomainError> {
        if !(0..=Self::MAX_AMOUNT).contains(&amount) {
            return Err(DomainError::invalid("price", "the amount must be between 0 and 100000000 minor units"));
        }
        let currency = currency.trim();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(DomainError::invalid("currency", "must be a three-letter ISO 4217 code"));
        }
        Ok(Money { amount, currency: currency.to_ascii_uppercase() })
    }

    /// The amount in minor units.
    pub fn amount(&self) -> i64 {
        self.amount
    }

    /// The ISO 4217 code (`EUR`).
    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// Whether the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.amount == 0
    }

    /// This amount times `n`, or `None` on overflow.
    pub fn times(&self, n: u32) -> Option<Money> {
        Some(Money { amount: self.amount.checked_mul(i64::from(n))?, currency: self.currency.clone() })
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:02} {}", self.amount / 100, self.amount % 100, self.currency)
    }
}

/// The ages a children's activity is for, inclusive, within 0–18.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AgeRange {
    min: u8,
    max: u8,
}

impl AgeRange {
    /// The oldest age a range may name.
    pub const MAX_AGE: u8 = 18;

    /// Parses `min ≤ max`, both within 0–18.
    pub fn parse(min: i64, max: i64) -> Result<Self, DomainError> {
        let limit = i64::from(Self::MAX_AGE);
        if !(0..=limit).contains(&min) {
            return Err(DomainError::invalid("age_min", "must be between 0 and 18"));
        }
        if !(0..=limit).contains(&max) {
            return Err(DomainError::invalid("age_max", "must be between 0 and 18"));
        }
        if min > max {
            return Err(DomainError::invalid("age_max", "must not be below age_min"));
        }
        // Both are within 0–18, so they fit a u8.
        Ok(AgeRange { min: min as u8, max: max as u8 })
    }

    /// The youngest age.
    pub fn min(self) -> u8 {
        self.min
    }

    /// The oldest age.
    pub fn max(self) -> u8 {
        self.max
    }

    /// Whether someone born on `birth_date` is within the range on `day`.
    pub fn admits(self, birth_date: NaiveDate, day: NaiveDate) -> bool {
        match age_on(birth_date, day) {
            Some(age) => (i64::from(self.min)..=i64::from(self.max)).contains(&age),
            None => false,
        }
    }
}

/// Whole years between `birth_date` and `day`; `None` if born after `day`.
pub fn age_on(birth_date: NaiveDate, day: NaiveDate) -> Option<i64> {
    if birth_date > day {
        return None;
    }
    let mut years = i64::from(day.year()) - i64::from(birth_date.year());
    if (day.month(), day.day()) < (birth_date.month(), birth_date.day()) {
        years -= 1;
    }
    Some(years)
}

/// A physical venue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Venue {
    name: String,
    address: String,
    lat: f64,
    lng: f64,
}

impl Venue {
    /// The venue's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The postal address.
    pub fn address(&self) -> &str {
        &self.address
    }
    /// Latitude in degrees (−90 to 90).
    pub fn lat(&self) -> f64 {
        self.lat
    }
    /// Longitude in degrees (−180 to 180).
    pub fn lng(&self) -> f64 {
        self.lng
    }
}

/// An online meeting place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Online {
    url: String,
}

impl Online {
    /// The meeting URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Where an activity happens: `{"kind": "venue", name, address, lat, lng}` or `{"kind": "online", url}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Location {
    /// A physical place.
    Venue(Venue),
    /// A URL.
    Online(Online),
}

impl Location {
    /// Parses a venue: name 1–200 characters, address 1–500, latitude −90..90, longitude −180..180.
    pub fn venue(name: &str, address: &str, lat: f64, lng: f64) -> Result<Self, DomainError> {
        let name = bounded_text("location.name", name, 1, 200)?;
        let address = bounded_text("location.address", address, 1, 500)?;
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(DomainError::invalid("location.lat", "must be between -90 and 90"));
        }
        if !lng.is_finite() || !(-180.0..=180.0).contains(&lng) {
            return Err(DomainError::invalid("location.lng", "must be between -180 and 180"));
        }
        Ok(Location::Venue(Venue { name, address, lat, lng }))
    }

    /// Parses an online place: an `http(s)://` URL of at most 2,000 characters.
    pub fn online(url: &str) -> Result<Self, DomainError> {
        let url = bounded_text("location.url", url, 1, 2_000)?;
        let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
        match rest {
            Some(host) if !host.is_empty() && !url.chars().any(char::is_whitespace) => {
                Ok(Location::Online(Online { url }))
            }
            _ => Err(DomainError::invalid("location.url", "must be an http(s) URL")),
        }
    }

    /// Whether the activity happens online.
    pub fn is_online(&self) -> bool {
        matches!(self, Location::Online(_))
    }
}

/// When an activity happens: `starts_at < ends_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeRange {
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
}

impl TimeRange {
    /// The earliest time an activity may start or end.
    pub const EARLIEST: &'static str = "2000-01-01T00:00:00Z";
    /// Activities start and end before this time. Beyond it a date is a typo or a
    /// probe; far beyond (past year 9999) RFC 3339 text no longer sorts in time order,
    /// and SQLite compares stored times as text.
    pub const LATEST: &'static str = "2100-01-01T00:00:00Z";

    /// Whether `t` lies in `[EARLIEST, LATEST)`.
    pub fn in_range(t: DateTime<Utc>) -> bool {
        let bound = |s: &str| s.parse::<DateTime<Utc>>().expect("a valid constant");
        bound(Self::EARLIEST) <= t && t < bound(Self::LATEST)
    }

    /// Parses a range within `[EARLIEST, LATEST)` that starts strictly before it ends.
    pub fn parse(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> Result<Self, DomainError> {
        let out_of_range =
            |field: &'static str| DomainError::invalid(field, "must be between 2000-01-01 and 2100-01-01 (UTC)");
        if !Self::in_range(starts_at) {
            return Err(out_of_range("starts_at"));
        }
        if !Self::in_range(ends_at) {
            return Err(out_of_range("ends_at"));
        }
        if starts_at >= ends_at {
            return Err(DomainError::invalid("ends_at", "must be after starts_at"));
        }
        Ok(TimeRange { starts_at, ends_at })
    }

    /// The start.
    pub fn starts_at(self) -> DateTime<Utc> {
        self.starts_at
    }

    /// The end.
    pub fn ends_at(self) -> DateTime<Utc> {
        self.ends_at
    }
}

/// The kind of an attached media item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// An image (`image/*`).
    Photo,
    /// A video (`video/*`).
    Video,
}

impl MediaKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Photo => "photo",
            MediaKind::Video => "video",
        }
    }
}

/// An uploaded file's description: its kind, content type and size (≤ 50 MiB).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MediaFile {
    kind: MediaKind,
    content_type: String,
    bytes: u64,
}

impl MediaFile {
    /// The largest upload (50 MiB, API.md).
    pub const MAX_BYTES: u64 = 50 * 1024 * 1024;

    /// Parses a content type (`image/*` for photos, `video/*` for videos) and a size of 1 byte to 50 MiB.
    pub fn parse(kind: MediaKind, content_type: &str, bytes: u64) -> Result<Self, DomainError> {
        let content_type = content_type.trim().to_ascii_lowercase();
        let prefix = match kind {
            MediaKind::Photo => "image/",
            MediaKind::Video => "video/",
        };
        match content_type.strip_prefix(prefix) {
            Some(sub) if !sub.is_empty() && content_type.len() <= 100 => {}
            _ => {
                return Err(DomainError::invalid("content_type", format!("a {} must be {prefix}*", kind.as_str())));
            }
        }
        if bytes == 0 || bytes > Self::MAX_BYTES {
            return Err(DomainError::invalid("bytes", "must be between 1 byte and 50 MiB"));
        }
        Ok(MediaFile { kind, content_type, bytes })
    }

    /// Photo or video.
    pub fn kind(&self) -> MediaKind {
        self.kind
    }

    /// The MIME type.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// The size in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}
