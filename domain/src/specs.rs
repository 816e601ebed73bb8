//! The spec catalogue: every given-when-then spec of the domain, as data.
//!
//! Each aggregate lists its specs with [`spec_section!`], which defines every
//! spec once and turns it into both a `#[test]` and an entry of
//! [`catalogue`]. [`catalogue_markdown`] renders the whole catalogue (what
//! `gather specs` prints and `docs/specs.md` holds): deterministic, because
//! specs use the fixed ids and times of [`fixtures`].

use crate::testkit::{Rendered, Specification};

/// One named spec.
pub struct Spec {
    name: &'static str,
    scenario: Box<dyn Specification>,
}

impl Spec {
    /// A spec named by a sentence in snake case (`a_full_activity_refuses_bookings`).
    pub fn new(name: &'static str, scenario: impl Specification + 'static) -> Self {
        Spec { name, scenario: Box::new(scenario) }
    }

    /// The snake-case name (also the test's name).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The name as a sentence: `A full activity refuses bookings`.
    pub fn title(&self) -> String {
        let sentence = self.name.replace('_', " ");
        let mut chars = sentence.chars();
        match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => String::new(),
        }
    }

    /// Runs the spec: `Err` explains the failure with a diff.
    pub fn check(&self) -> Result<(), String> {
        self.scenario.check().map_err(|message| format!("spec `{}` failed: {message}", self.name))
    }

    /// Runs the spec and panics with the explanation if it fails.
    #[track_caller]
    pub fn assert(&self) {
        if let Err(message) = self.check() {
            panic!("{message}");
        }
    }

    /// The Given / When / Then in words.
    pub fn render(&self) -> Rendered {
        self.scenario.render()
    }
}

/// A titled group of specs (one rule or one command family).
pub struct Section {
    /// The heading (`Activity — bookings`).
    pub title: &'static str,
    /// The specs, in reading order.
    pub specs: Vec<Spec>,
}

impl Section {
    /// A section.
    pub fn new(title: &'static str, specs: Vec<Spec>) -> Self {
        Section { title, specs }
    }
}

/// Defines a module holding a section of specs: `section()` lists them and,
/// under `cfg(test)`, every spec becomes a `#[test]` of the same name.
///
/// ```text
/// spec_section!(booking, "Activity — bookings", {
///     a_member_books_seats_on_a_published_activity =>
///         given([drafted(), published()]).as_actor(ben()).at(t0()).when(book(B1, 2)).then([confirmed(B1, BEN, 2, 8)]),
/// });
/// ```
macro_rules! spec_section {
    ($(#[doc = $doc:literal])* $module:ident, $title:literal, { $( $name:ident => $scenario:expr ),+ $(,)? }) => {
        $(#[doc = $doc])*
        pub mod $module {
            #[allow(unused_imports)]
            use super::*;

            /// The specs of this section, in order.
            pub fn section() -> $crate::specs::Section {
                $crate::specs::Section::new($title, vec![$( $crate::specs::Spec::new(stringify!($name), $scenario) ),+])
            }

            #[cfg(test)]
            mod tests {
                #[allow(unused_imports)]
                use super::*;
                $(
                    #[test]
                    fn $name() {
                        $crate::specs::Spec::new(stringify!($name), $scenario).assert();
                    }
                )+
            }
        }
    };
}
pub(crate) use spec_section;

/// Every section of every aggregate, in reading order.
pub fn catalogue() -> Vec<Section> {
    let mut sections = crate::member::spec_sections();
    sections.extend(crate::activity::spec_sections());
    sections.extend(crate::chat::spec_sections());
    sections.extend(crate::payment::spec_sections());
    sections.extend(crate::series::spec_sections());
    sections.extend(crate::values::spec_sections());
    sections
}

/// Runs every spec and returns the failures (for tools; `cargo test` runs them one by one).
pub fn failures() -> Vec<String> {
    catalogue().iter().flat_map(|s| s.specs.iter()).filter_map(|spec| spec.check().err()).collect()
}

/// The whole catalogue as Markdown: one `##` per section, one `###` per spec.
pub fn catalogue_markdown() -> String {
    let sections = catalogue();
    let count: usize = sections.iter().map(|s| s.specs.len()).sum();
    let mut out = String::new();
    out.push_str("# Gather — domain specs\n\n");
    out.push_str(
        "<!-- Generated from the specs in domain/src by `gather specs`; do not edit by hand.\n     \
         Regenerate with `UPDATE_SPECS=1 cargo test -p gather-domain`. -->\n\n",
    );
    out.push_str(
        "Every rule of the domain (DOMAIN.md) as a given-when-then spec. Each one below is also a \
         test of `gather-domain`, so this page cannot drift from the code. Times are UTC.\n\n",
    );
    out.push_str(&format!("{count} specs in {} sections.\n\n", sections.len()));
    out.push_str("## Contents\n\n");
    for section in &sections {
        out.push_str(&format!("- {} ({})\n", section.title, section.specs.len()));
    }
    for section in &sections {
        out.push_str(&format!("\n## {}\n", section.title));
        for spec in &section.specs {
            let rendered = spec.render();
            out.push_str(&format!("\n### {}\n\n", spec.title()));
            if rendered.given.is_empty() {
                out.push_str(&format!("- **Given** a new `{}` stream\n", rendered.category));
            }
            for (i, line) in rendered.given.iter().enumerate() {
                let word = if i == 0 { "Given" } else { "And" };
                out.push_str(&format!("- **{word}** {line}\n"));
            }
            out.push_str(&format!("- **When** {}\n", rendered.when));
            for (i, line) in rendered.then.iter().enumerate() {
                let word = if i == 0 { "Then" } else { "And" };
                out.push_str(&format!("- **{word}** {line}\n"));
            }
        }
    }
    out
}

pub mod fixtures {
    //! Fixed ids, people and times shared by the specs, so the catalogue is
    //! deterministic and reads with names instead of UUIDs.

    use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
    use uuid::Uuid;

    use crate::testkit::{Actor, DEFAULT_ACTOR_ID};

    const fn id(n: u128) -> Uuid {
        Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0000 | n)
    }

    /// Olivia, an organiser.
    pub const OLIVIA: Uuid = id(0x10);
    /// Oscar, another organiser.
    pub const OSCAR: Uuid = id(0x11);
    /// Mo, a moderator.
    pub const MO: Uuid = id(0x12);
    /// Ben, a member (parent of Mia and Leo).
    pub const BEN: Uuid = id(0x20);
    /// Cara, a member.
    pub const CARA: Uuid = id(0x21);
    /// Dan, a member.
    pub const DAN: Uuid = id(0x22);
    /// Eve, a member.
    pub const EVE: Uuid = id(0x23);
    /// Finn, a member.
    pub const FINN: Uuid = id(0x24);
    /// Mia, Ben's daughter.
    pub const MIA: Uuid = id(0x30);
    /// Leo, Ben's son.
    pub const LEO: Uuid = id(0x31);
    /// The activity of the specs.
    pub const ACTIVITY: Uuid = id(0x40);
    /// Another activity.
    pub const OTHER_ACTIVITY: Uuid = id(0x41);
    /// The chat of the specs.
    pub const CHAT: Uuid = id(0x50);
    /// Bookings B1–B6.
    pub const B1: Uuid = id(0x61);
    /// Booking B2.
    pub const B2: Uuid = id(0x62);
    /// Booking B3.
    pub const B3: Uuid = id(0x63);
    /// Booking B4.
    pub const B4: Uuid = id(0x64);
    /// Booking B5.
    pub const B5: Uuid = id(0x65);
    /// Booking B6.
    pub const B6: Uuid = id(0x66);
    /// Invitations I1–I3.
    pub const I1: Uuid = id(0x71);
    /// Invitation I2.
    pub const I2: Uuid = id(0x72);
    /// Invitation I3.
    pub const I3: Uuid = id(0x73);
    /// Media M1.
    pub const M1: Uuid = id(0x81);
    /// Media M2.
    pub const M2: Uuid = id(0x82);
    /// Messages MSG1–MSG3.
    pub const MSG1: Uuid = id(0x91);
    /// Message MSG2.
    pub const MSG2: Uuid = id(0x92);
    /// Message MSG3.
    pub const MSG3: Uuid = id(0x93);
    /// The series of the specs.
    pub const SERIES: Uuid = id(0xA0);

    const NAMES: &[(Uuid, &str)] = &[
        (OLIVIA, "Olivia"),
        (OSCAR, "Oscar"),
        (MO, "Mo"),
        (BEN, "Ben"),
        (CARA, "Cara"),
        (DAN, "Dan"),
        (EVE, "Eve"),
        (FINN, "Finn"),
        (MIA, "Mia"),
        (LEO, "Leo"),
        (ACTIVITY, "the activity"),
        (OTHER_ACTIVITY, "another activity"),
        (CHAT, "the chat"),
        (B1, "B1"),
        (B2, "B2"),
        (B3, "B3"),
        (B4, "B4"),
        (B5, "B5"),
        (B6, "B6"),
        (I1, "I1"),
        (I2, "I2"),
        (I3, "I3"),
        (M1, "M1"),
        (M2, "M2"),
        (MSG1, "MSG1"),
        (MSG2, "MSG2"),
        (MSG3, "MSG3"),
        (SERIES, "the series"),
        (DEFAULT_ACTOR_ID, "a member"),
        (Actor::SYSTEM_ID, "the system"),
    ];

    /// The fixture's name for an id, else the first 8 hex digits.
    pub fn name(id: Uuid) -> String {
        NAMES
            .iter()
            .find(|(known, _)| *known == id)
            .map(|(_, name)| (*name).to_owned())
            .unwrap_or_else(|| id.simple().to_string()[..8].to_owned())
    }

    /// Names for a list of ids: `Ben, Cara`.
    pub fn names(ids: &[Uuid]) -> String {
        if ids.is_empty() {
            return "nobody".to_owned();
        }
        ids.iter().map(|id| name(*id)).collect::<Vec<_>>().join(", ")
    }

    /// A UTC time; out-of-range input gives the epoch (fixtures are constants).
    pub fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    /// A date; out-of-range input gives 1970-01-01.
    pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
    }

    /// "Now" in most specs: 2030-05-01 09:00.
    pub fn t0() -> DateTime<Utc> {
        at(2030, 5, 1, 9, 0)
    }

    /// `t0` plus some minutes.
    pub fn t0_plus_minutes(minutes: i64) -> DateTime<Utc> {
        t0() + Duration::minutes(minutes)
    }

    /// The activity's start: 2030-06-01 10:00.
    pub fn starts() -> DateTime<Utc> {
        at(2030, 6, 1, 10, 0)
    }

    /// The activity's end: 2030-06-01 12:00.
    pub fn ends() -> DateTime<Utc> {
        at(2030, 6, 1, 12, 0)
    }

    /// Mia's birth date (7 at the activity's start).
    pub fn mia_born() -> NaiveDate {
        date(2022, 9, 15)
    }

    /// Leo's birth date (2 at the activity's start).
    pub fn leo_born() -> NaiveDate {
        date(2028, 1, 20)
    }

    /// Olivia acting as organiser.
    pub fn olivia() -> Actor {
        Actor::organiser(OLIVIA)
    }

    /// Oscar acting as organiser.
    pub fn oscar() -> Actor {
        Actor::organiser(OSCAR)
    }

    /// Mo acting as moderator.
    pub fn mo() -> Actor {
        Actor::moderator(MO)
    }

    /// Ben acting as member.
    pub fn ben() -> Actor {
        Actor::member(BEN)
    }

    /// Cara acting as member.
    pub fn cara() -> Actor {
        Actor::member(CARA)
    }

    /// Dan acting as member.
    pub fn dan() -> Actor {
        Actor::member(DAN)
    }

    /// Eve acting as member.
    pub fn eve() -> Actor {
        Actor::member(EVE)
    }

    /// Finn acting as member.
    pub fn finn() -> Actor {
        Actor::member(FINN)
    }

    /// The scheduler / process managers.
    pub fn system() -> Actor {
        Actor::system()
    }
}

/// Formats a time for the catalogue.
pub(crate) fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_has_a_unique_name() {
        let mut names: Vec<&str> = catalogue().iter().flat_map(|s| s.specs.iter().map(|spec| spec.name())).collect();
        let total = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), total, "two specs share a name");
    }

    #[test]
    fn the_catalogue_is_deterministic() {
        assert_eq!(catalogue_markdown(), catalogue_markdown());
    }

    #[test]
    fn docs_specs_md_is_the_current_catalogue() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/specs.md");
        let current = catalogue_markdown();
        if std::env::var_os("UPDATE_SPECS").is_some() {
            std::fs::write(path, &current).expect("could not write docs/specs.md");
            return;
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        if committed == current {
            return;
        }
        let changes: Vec<String> = crate::testkit::line_diff(&committed, &current)
            .lines()
            .filter(|line| !line.starts_with("  "))
            .take(80)
            .map(str::to_owned)
            .collect();
        panic!(
            "docs/specs.md is not the current spec catalogue; regenerate it with \
             `UPDATE_SPECS=1 cargo test -p gather-domain` (or `gather specs > docs/specs.md`).\n\
             first changed lines (- committed, + current):\n{}",
            changes.join("\n")
        );
    }
}
