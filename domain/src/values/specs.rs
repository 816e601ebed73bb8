//! The value objects' specs: every limit of DOMAIN.md, at and just past its bound.

use super::*;
use crate::specs::{Section, spec_section};
use crate::testkit::parsing;

/// Every section of the value objects' specs.
pub fn sections() -> Vec<Section> {
    vec![
        people::section(),
        activity_text::section(),
        activity_numbers::section(),
        places_and_times::section(),
        media_and_chat::section(),
    ]
}

fn chars(n: usize) -> String {
    "a".repeat(n)
}

fn refused(field: &'static str, reason: &str) -> DomainError {
    DomainError::invalid(field, reason)
}

spec_section!(people, "Values — emails and names", {
    an_email_is_kept_as_given_and_compared_in_lowercase =>
        parsing("an email", "\" Ben@Example.org \"", || {
            Email::parse(" Ben@Example.org ").map(|e| format!("{} (compared as {})", e.as_str(), e.normalized()))
        })
        .accepted_as("Ben@Example.org (compared as ben@example.org)"),
    an_email_needs_an_at_sign =>
        parsing("an email", "\"ben.example.org\"", || Email::parse("ben.example.org").map(|e| e.to_string()))
            .refused(refused("email", "must contain @")),
    an_email_has_a_single_at_sign =>
        parsing("an email", "\"ben@home@example.org\"", || Email::parse("ben@home@example.org").map(|e| e.to_string()))
            .refused(refused("email", "must contain a single @")),
    an_emails_domain_has_a_dot =>
        parsing("an email", "\"ben@localhost\"", || Email::parse("ben@localhost").map(|e| e.to_string()))
            .refused(refused("email", "the domain must look like example.org")),
    an_email_has_no_spaces =>
        parsing("an email", "\"ben smith@example.org\"", || Email::parse("ben smith@example.org").map(|e| e.to_string()))
            .refused(refused("email", "must not contain spaces")),
    an_email_has_at_most_254_characters =>
        parsing("an email", "a 64-character local part and a 190-character domain (255 in all)", || {
            Email::parse(&format!("{}@{}.org", chars(64), chars(186))).map(|e| e.to_string())
        })
        .refused(refused("email", "must be at most 254 characters")),
    an_email_has_no_control_characters =>
        parsing("an email", "\"ben\\u{7}@example.org\"", || Email::parse("ben\u{7}@example.org").map(|e| e.to_string()))
            .refused(refused("email", "must not contain control or formatting characters")),
    an_email_has_no_bidi_override =>
        parsing("an email", "\"\\u{202e}A@example.org\"", || Email::parse("\u{202e}A@example.org").map(|e| e.to_string()))
            .refused(refused("email", "must not contain control or formatting characters")),
    an_email_has_no_zero_width_characters =>
        parsing("an email", "\"be\\u{200b}n@example.org\"", || Email::parse("be\u{200b}n@example.org").map(|e| e.to_string()))
            .refused(refused("email", "must not contain control or formatting characters")),
    a_display_name_is_trimmed =>
        parsing("a display name", "\"  Ben  \"", || DisplayName::parse("  Ben  ").map(|n| format!("\"{n}\"")))
            .accepted_as("\"Ben\""),
    a_display_name_is_not_empty =>
        parsing("a display name", "\"   \"", || DisplayName::parse("   ").map(|n| n.to_string()))
            .refused(refused("display_name", "must not be empty")),
    a_display_name_has_at_most_60_characters =>
        parsing("a display name", "61 characters", || DisplayName::parse(&chars(61)).map(|n| n.to_string()))
            .refused(refused("display_name", "must be at most 60 characters")),
    a_childs_name_is_not_empty =>
        parsing("a child's name", "\"\"", || ChildName::parse("").map(|n| n.to_string()))
            .refused(refused("name", "must not be empty")),
});

spec_section!(activity_text, "Values — activity texts", {
    a_title_of_3_characters_is_accepted =>
        parsing("a title", "\"Art\"", || Title::parse("Art").map(|t| format!("\"{t}\""))).accepted_as("\"Art\""),
    a_title_has_at_least_3_characters =>
        parsing("a title", "\"Ar\"", || Title::parse("Ar").map(|t| t.to_string()))
            .refused(refused("title", "must be at least 3 characters")),
    a_title_of_120_characters_is_accepted =>
        parsing("a title", "120 characters", || Title::parse(&chars(120)).map(|t| format!("{} characters", t.as_str().len())))
            .accepted_as("120 characters"),
    a_title_has_at_most_120_characters =>
        parsing("a title", "121 characters", || Title::parse(&chars(121)).map(|t| t.to_string()))
            .refused(refused("title", "must be at most 120 characters")),
    a_title_counts_characters_not_bytes =>
        parsing("a title", "\"Été\" (3 characters, 5 bytes)", || Title::parse("Été").map(|t| format!("\"{t}\"")))
            .accepted_as("\"Été\""),
    a_description_may_be_empty =>
        parsing("a description", "\"\"", || Description::parse("").map(|d| format!("\"{d}\""))).accepted_as("\"\""),
    a_description_of_5000_characters_is_accepted =>
        parsing("a description", "5,000 characters", || {
            Description::parse(&chars(5_000)).map(|d| format!("{} characters", d.as_str().len()))
        })
        .accepted_as("5000 characters"),
    a_description_has_at_most_5000_characters =>
        parsing("a description", "5,001 characters", || Description::parse(&chars(5_001)).map(|d| d.to_string()))
            .refused(refused("description", "must be at most 5000 characters")),
    a_category_is_stored_in_lowercase =>
        parsing("a category", "\"Arts and Crafts\"", || Category::parse("Arts and Crafts").map(|c| c.as_str().to_owned()))
            .accepted_as("arts and crafts"),
    a_category_has_no_punctuation =>
        parsing("a category", "\"crafts!\"", || Category::parse("crafts!").map(|c| c.as_str().to_owned()))
            .refused(refused("category", "may hold letters, digits, spaces and dashes only")),
    tags_are_lowercased_and_deduplicated =>
        parsing("tags", "[\"Clay\", \"kids\", \"clay\"]", || Tags::parse(["Clay", "kids", "clay"]).map(|t| t.as_slice().join(", ")))
            .accepted_as("clay, kids"),
    an_activity_has_at_most_10_tags =>
        parsing("tags", "11 different tags", || {
            Tags::parse((0..11).map(|i| format!("tag{i}"))).map(|t| t.as_slice().join(", "))
        })
        .refused(refused("tags", "at most 10 tags")),
    ten_tags_are_accepted =>
        parsing("tags", "10 different tags", || {
            Tags::parse((0..10).map(|i| format!("tag{i}"))).map(|t| format!("{} tags", t.as_slice().len()))
        })
        .accepted_as("10 tags"),
    a_tag_has_at_most_30_characters =>
        parsing("tags", "one tag of 31 characters", || Tags::parse([chars(31)]).map(|t| t.as_slice().join(", ")))
            .refused(refused("tags", "must be at most 30 characters")),
    a_tag_is_not_empty =>
        parsing("tags", "[\"clay\", \" \"]", || Tags::parse(["clay", " "]).map(|t| t.as_slice().join(", ")))
            .refused(refused("tags", "must not be empty")),
    a_reason_has_at_most_1000_characters =>
        parsing("a reason", "1,001 characters", || Reason::parse(&chars(1_001)).map(|r| r.to_string()))
            .refused(refused("reason", "must be at most 1000 characters")),
    a_reason_is_not_empty =>
        parsing("a reason", "\"\"", || Reason::parse("").map(|r| r.to_string())).refused(refused("reason", "must not be empty")),
});

spec_section!(activity_numbers, "Values — capacity, price and ages", {
    a_capacity_of_one_seat_is_accepted =>
        parsing("a capacity", "1", || Capacity::parse(1).map(|c| format!("{} seat", c.get()))).accepted_as("1 seat"),
    a_capacity_of_100000_seats_is_accepted =>
        parsing("a capacity", "100000", || Capacity::parse(100_000).map(|c| format!("{} seats", c.get())))
            .accepted_as("100000 seats"),
    a_capacity_has_at_least_one_seat =>
        parsing("a capacity", "0", || Capacity::parse(0).map(|c| c.get().to_string()))
            .refused(refused("capacity", "must be between 1 and 100000 seats")),
    a_capacity_has_at_most_100000_seats =>
        parsing("a capacity", "100001", || Capacity::parse(100_001).map(|c| c.get().to_string()))
            .refused(refused("capacity", "must be between 1 and 100000 seats")),
    a_negative_capacity_is_refused =>
        parsing("a capacity", "-5", || Capacity::parse(-5).map(|c| c.get().to_string()))
            .refused(refused("capacity", "must be between 1 and 100000 seats")),
    a_price_of_zero_means_free =>
        parsing("a price", "0 EUR", || Money::parse(0, "EUR").map(|m| if m.is_zero() { "free".to_owned() } else { m.to_string() }))
            .accepted_as("free"),
    a_price_is_in_minor_units_of_an_iso_currency_stored_uppercase =>
        parsing("a price", "1250 \"eur\"", || Money::parse(1250, "eur").map(|m| m.to_string())).accepted_as("12.50 EUR"),
    a_price_is_not_negative =>
        parsing("a price", "-1 EUR", || Money::parse(-1, "EUR").map(|m| m.to_string()))
            .refused(refused("price", "the amount must be between 0 and 100000000 minor units")),
    a_price_has_an_upper_bound =>
        parsing("a price", "100000001 EUR", || Money::parse(100_000_001, "EUR").map(|m| m.to_string()))
            .refused(refused("price", "the amount must be between 0 and 100000000 minor units")),
    a_currency_is_three_letters =>
        parsing("a price", "500 \"EURO\"", || Money::parse(500, "EURO").map(|m| m.to_string()))
            .refused(refused("currency", "must be a three-letter ISO 4217 code")),
    an_age_range_spans_0_to_18 =>
        parsing("an age range", "0–18", || AgeRange::parse(0, 18).map(|r| format!("ages {}–{}", r.min(), r.max())))
            .accepted_as("ages 0–18"),
    an_age_range_stops_at_18 =>
        parsing("an age range", "5–19", || AgeRange::parse(5, 19).map(|r| format!("ages {}–{}", r.min(), r.max())))
            .refused(refused("age_max", "must be between 0 and 18")),
    an_age_range_starts_at_0 =>
        parsing("an age range", "-1–5", || AgeRange::parse(-1, 5).map(|r| format!("ages {}–{}", r.min(), r.max())))
            .refused(refused("age_min", "must be between 0 and 18")),
    an_age_range_is_not_upside_down =>
        parsing("an age range", "10–5", || AgeRange::parse(10, 5).map(|r| format!("ages {}–{}", r.min(), r.max())))
            .refused(refused("age_max", "must not be below age_min")),
});

spec_section!(places_and_times, "Values — locations and times", {
    a_venue_has_a_name_an_address_and_coordinates =>
        parsing("a venue", "\"Clay Studio\", \"1 Kiln Street, Leeds\", 53.8, -1.55", || {
            Location::venue("Clay Studio", "1 Kiln Street, Leeds", 53.8, -1.55).map(|l| match l {
                Location::Venue(v) => format!("{} at {}, {}", v.name(), v.lat(), v.lng()),
                Location::Online(o) => o.url().to_owned(),
            })
        })
        .accepted_as("Clay Studio at 53.8, -1.55"),
    a_venues_latitude_is_within_90_degrees =>
        parsing("a venue", "latitude 91", || Location::venue("Clay Studio", "Leeds", 91.0, 0.0).map(|_| String::new()))
            .refused(refused("location.lat", "must be between -90 and 90")),
    a_venues_longitude_is_within_180_degrees =>
        parsing("a venue", "longitude -181", || Location::venue("Clay Studio", "Leeds", 0.0, -181.0).map(|_| String::new()))
            .refused(refused("location.lng", "must be between -180 and 180")),
    a_venue_has_a_name =>
        parsing("a venue", "an empty name", || Location::venue(" ", "Leeds", 0.0, 0.0).map(|_| String::new()))
            .refused(refused("location.name", "must not be empty")),
    an_online_location_is_an_http_url =>
        parsing("an online location", "\"https://meet.example.org/pottery\"", || {
            Location::online("https://meet.example.org/pottery").map(|l| if l.is_online() { "online".to_owned() } else { "venue".to_owned() })
        })
        .accepted_as("online"),
    an_online_location_refuses_other_schemes =>
        parsing("an online location", "\"ftp://files.example.org\"", || Location::online("ftp://files.example.org").map(|_| String::new()))
            .refused(refused("location.url", "must be an http(s) URL")),
    an_activity_ends_after_it_starts =>
        parsing("a time range", "12:00 to 10:00 on 2030-06-01", || {
            TimeRange::parse(crate::specs::fixtures::ends(), crate::specs::fixtures::starts()).map(|_| String::new())
        })
        .refused(refused("ends_at", "must be after starts_at")),
    an_activity_lasts_more_than_an_instant =>
        parsing("a time range", "10:00 to 10:00 on 2030-06-01", || {
            TimeRange::parse(crate::specs::fixtures::starts(), crate::specs::fixtures::starts()).map(|_| String::new())
        })
        .refused(refused("ends_at", "must be after starts_at")),
    an_activity_starts_before_the_year_2100 =>
        parsing("a time range", "+10000-01-01 00:00 to 02:00", || {
            let starts = "+10000-01-01T00:00:00Z".parse::<DateTime<Utc>>().expect("fixture");
            TimeRange::parse(starts, starts + chrono::Duration::hours(2)).map(|_| String::new())
        })
        .refused(refused("starts_at", "must be between 2000-01-01 and 2100-01-01 (UTC)")),
    an_activity_ends_before_the_year_2100 =>
        parsing("a time range", "2030-06-01 10:00 to 9999-12-31 23:59", || {
            let ends = "9999-12-31T23:59:00Z".parse::<DateTime<Utc>>().expect("fixture");
            TimeRange::parse(crate::specs::fixtures::starts(), ends).map(|_| String::new())
        })
        .refused(refused("ends_at", "must be between 2000-01-01 and 2100-01-01 (UTC)")),
    an_activity_starts_after_the_year_2000 =>
        parsing("a time range", "1999-12-31 23:00 to 2000-01-01 01:00", || {
            let starts = "1999-12-31T23:00:00Z".parse::<DateTime<Utc>>().expect("fixture");
            TimeRange::parse(starts, starts + chrono::Duration::hours(2)).map(|_| String::new())
        })
        .refused(refused("starts_at", "must be between 2000-01-01 and 2100-01-01 (UTC)")),
    an_age_range_needs_both_bounds =>
        parsing("activity details", "age_min 5 without age_max", || {
            crate::activity::ActivityDetails::parse(crate::activity::RawActivityDetails {
                title: "Kids pottery".to_owned(),
                description: String::new(),
                category: "crafts".to_owned(),
                tags: vec![],
                starts_at: crate::specs::fixtures::starts(),
                ends_at: crate::specs::fixtures::ends(),
                capacity: 10,
                price_amount: 0,
                price_currency: "EUR".to_owned(),
                visibility: crate::activity::Visibility::Public,
                location: crate::activity::RawLocation::Online { url: "https://meet.example.org".to_owned() },
                age_min: Some(5),
                age_max: None,
                waitlist: false,
            })
            .map(|d| d.title.to_string())
        })
        .refused(refused("age_max", "is required with age_min")),
});

spec_section!(media_and_chat, "Values — media and messages", {
    a_photo_is_an_image =>
        parsing("a media file", "a photo of type image/png, 2 MB", || {
            MediaFile::parse(MediaKind::Photo, "image/png", 2_000_000).map(|m| format!("{} {}", m.kind().as_str(), m.content_type()))
        })
        .accepted_as("photo image/png"),
    a_photo_cannot_be_a_video_file =>
        parsing("a media file", "a photo of type video/mp4", || {
            MediaFile::parse(MediaKind::Photo, "video/mp4", 2_000_000).map(|m| m.content_type().to_owned())
        })
        .refused(refused("content_type", "a photo must be image/*")),
    a_video_is_a_video_file =>
        parsing("a media file", "a video of type image/gif", || {
            MediaFile::parse(MediaKind::Video, "image/gif", 2_000_000).map(|m| m.content_type().to_owned())
        })
        .refused(refused("content_type", "a video must be video/*")),
    a_media_file_of_50_mib_is_accepted =>
        parsing("a media file", "a video of exactly 50 MiB", || {
            MediaFile::parse(MediaKind::Video, "video/mp4", 50 * 1024 * 1024).map(|m| format!("{} bytes", m.bytes()))
        })
        .accepted_as("52428800 bytes"),
    a_media_file_has_at_most_50_mib =>
        parsing("a media file", "a video of 50 MiB and 1 byte", || {
            MediaFile::parse(MediaKind::Video, "video/mp4", 50 * 1024 * 1024 + 1).map(|m| m.bytes().to_string())
        })
        .refused(refused("bytes", "must be between 1 byte and 50 MiB")),
    a_media_file_is_not_empty =>
        parsing("a media file", "a photo of 0 bytes", || {
            MediaFile::parse(MediaKind::Photo, "image/png", 0).map(|m| m.bytes().to_string())
        })
        .refused(refused("bytes", "must be between 1 byte and 50 MiB")),
    a_message_is_not_empty =>
        parsing("a message", "\"  \"", || MessageText::parse("  ").map(|t| t.to_string()))
            .refused(refused("text", "must not be empty")),
    a_message_of_4000_characters_is_accepted =>
        parsing("a message", "4,000 characters", || MessageText::parse(&chars(4_000)).map(|t| format!("{} characters", t.as_str().len())))
            .accepted_as("4000 characters"),
    a_message_has_at_most_4000_characters =>
        parsing("a message", "4,001 characters", || MessageText::parse(&chars(4_001)).map(|t| t.to_string()))
            .refused(refused("text", "must be at most 4000 characters")),
    a_chat_title_has_at_most_100_characters =>
        parsing("a chat title", "101 characters", || ChatTitle::parse(&chars(101)).map(|t| t.to_string()))
            .refused(refused("title", "must be at most 100 characters")),
});
