//! The given-when-then kit: `given([events]).when(command).then([events])`.
//!
//! A scenario is data until it is checked, so that the same value can be run
//! by a `#[test]` ([`Scenario::assert`]) and rendered into the spec catalogue
//! ([`crate::specs`]):
//!
//! ```
//! use gather_domain::member::{MemberCommand, MemberEvent};
//! use gather_domain::testkit::{given, Actor};
//! use gather_domain::values::DisplayName;
//! # use gather_domain::values::Email;
//! # let ben = uuid::Uuid::from_u128(2);
//! # let registered = MemberEvent::MemberRegistered {
//! #     member_id: ben,
//! #     email: Email::parse("ben@example.org").unwrap().into(),
//! #     display_name: DisplayName::parse("Ben").unwrap().into(),
//! # };
//! let name = DisplayName::parse("Benjamin").unwrap();
//! given([registered])
//!     .as_actor(Actor::member(ben))
//!     .when(MemberCommand::UpdateProfile { display_name: name.clone() })
//!     .then([MemberEvent::ProfileUpdated { display_name: name.into() }])
//!     .assert();
//! ```
//!
//! A failing check explains itself with a line diff of the expected and the
//! actual outcome. The kit is generic over [`Aggregate`]; process managers and
//! projections can add their own `when_*` steps on [`Given`] and reuse
//! [`Outcome`], [`line_diff`] and [`Specification`].

use std::fmt::Debug;

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

pub use crate::core::Actor;
use crate::core::{Aggregate, Context, DomainEvent, Role};
use crate::errors::DomainError;

/// Ties an event type to its aggregate, so `given([events])` infers the aggregate.
pub trait AggregateEvent: DomainEvent {
    /// The aggregate emitting this event.
    type Aggregate: Aggregate<Event = Self>;
}

/// Ties a command type to its aggregate, so `given_nothing().when(command)` infers it.
pub trait AggregateCommand: Clone + Debug {
    /// The aggregate deciding on this command.
    type Aggregate: Aggregate<Command = Self>;
}

/// A short human sentence for an event or a command, used by the spec catalogue.
pub trait Describe {
    /// For example `BookingConfirmed: Ben's booking B1, 2 seats, 8 left`.
    fn describe(&self) -> String;
}

impl Actor {
    /// A member without other roles.
    pub fn member(id: Uuid) -> Self {
        Actor::new(id, [Role::Member])
    }

    /// A member with an organiser profile.
    pub fn organiser(id: Uuid) -> Self {
        Actor::new(id, [Role::Member, Role::Organiser])
    }

    /// A moderator.
    pub fn moderator(id: Uuid) -> Self {
        Actor::new(id, [Role::Member, Role::Moderator])
    }
}

/// The member acting when a scenario names nobody.
pub const DEFAULT_ACTOR_ID: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0001);

/// The time of a decision when a scenario names none: 2030-01-01 09:00 UTC.
pub fn default_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).single().unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The context used when a scenario sets none: [`DEFAULT_ACTOR_ID`] as a member, at [`default_now`].
pub fn default_context() -> Context {
    Context::new(Actor::member(DEFAULT_ACTOR_ID), default_now())
}

/// Starts a scenario from an aggregate's history.
pub fn given<E: AggregateEvent>(events: impl IntoIterator<Item = E>) -> Given<E::Aggregate> {
    Given { history: events.into_iter().collect(), ctx: default_context() }
}

/// Starts a scenario from an empty stream; the command names the aggregate.
pub fn given_nothing() -> GivenNothing {
    GivenNothing { ctx: default_context() }
}

/// An empty history whose aggregate is not known until the command.
#[derive(Debug, Clone)]
pub struct GivenNothing {
    ctx: Context,
}

impl GivenNothing {
    /// Who issues the command.
    pub fn as_actor(mut self, actor: Actor) -> Self {
        self.ctx.actor = actor;
        self
    }

    /// When the command is decided.
    pub fn at(mut self, now: DateTime<Utc>) -> Self {
        self.ctx.now = now;
        self
    }

    /// The command to decide.
    pub fn when<C: AggregateCommand>(self, command: C) -> When<C::Aggregate> {
        When { history: Vec::new(), ctx: self.ctx, command }
    }
}

/// A history to decide on.
pub struct Given<A: Aggregate> {
    history: Vec<A::Event>,
    ctx: Context,
}

impl<A: Aggregate> Given<A> {
    /// Who issues the command.
    pub fn as_actor(mut self, actor: Actor) -> Self {
        self.ctx.actor = actor;
        self
    }

    /// When the command is decided.
    pub fn at(mut self, now: DateTime<Utc>) -> Self {
        self.ctx.now = now;
        self
    }

    /// The whole context at once.
    pub fn with_context(mut self, ctx: Context) -> Self {
        self.ctx = ctx;
        self
    }

    /// The history so far.
    pub fn history(&self) -> &[A::Event] {
        &self.history
    }

    /// The command to decide.
    pub fn when(self, command: A::Command) -> When<A> {
        When { history: self.history, ctx: self.ctx, command }
    }
}

/// A history and a command, waiting for the expected outcome.
pub struct When<A: Aggregate> {
    history: Vec<A::Event>,
    ctx: Context,
    command: A::Command,
}

impl<A: Aggregate> When<A>
where
    A::Command: Clone,
{
    /// Who issues the command.
    pub fn as_actor(mut self, actor: Actor) -> Self {
        self.ctx.actor = actor;
        self
    }

    /// When the command is decided.
    pub fn at(mut self, now: DateTime<Utc>) -> Self {
        self.ctx.now = now;
        self
    }

    /// Decides now and returns what `decide` answered.
    pub fn run(&self) -> Result<Vec<A::Event>, DomainError> {
        let state = A::fold(&self.history);
        A::decide(&state, self.command.clone(), &self.ctx)
    }

    /// Expects exactly these events (in order). Check with [`Scenario::assert`].
    pub fn then(self, events: impl IntoIterator<Item = A::Event>) -> Scenario<A> {
        self.expect(Outcome::Events(events.into_iter().collect()))
    }

    /// Expects the command to emit nothing (it is already satisfied).
    pub fn then_nothing(self) -> Scenario<A> {
        self.expect(Outcome::Events(Vec::new()))
    }

    /// Expects the command to be refused with this error.
    pub fn then_error(self, error: DomainError) -> Scenario<A> {
        self.expect(Outcome::Error(error))
    }

    fn expect(self, expected: Outcome<A::Event>) -> Scenario<A> {
        Scenario { history: self.history, ctx: self.ctx, command: self.command, expected }
    }
}

/// What a decision produced or is expected to produce.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<E> {
    /// These events, in order (none means "nothing to do").
    Events(Vec<E>),
    /// A refusal.
    Error(DomainError),
}

impl<E> From<Result<Vec<E>, DomainError>> for Outcome<E> {
    fn from(result: Result<Vec<E>, DomainError>) -> Self {
        match result {
            Ok(events) => Outcome::Events(events),
            Err(error) => Outcome::Error(error),
        }
    }
}

/// A complete given-when-then: data until checked.
#[must_use = "a scenario does nothing until checked: call .assert(), or list it in a specs! block"]
pub struct Scenario<A: Aggregate> {
    history: Vec<A::Event>,
    ctx: Context,
    command: A::Command,
    expected: Outcome<A::Event>,
}

impl<A: Aggregate> Scenario<A>
where
    A::Command: Clone,
{
    /// Runs the decision and compares; `Err` holds a readable explanation with a diff.
    pub fn check(&self) -> Result<(), String> {
        let state = A::fold(&self.history);
        let actual: Outcome<A::Event> = A::decide(&state, self.command.clone(), &self.ctx).into();
        if let Outcome::Events(events) = &actual {
            // The stored type name must be the serde variant name (the Debug name).
            for event in events {
                let debug = format!("{event:?}");
                let name = debug.split([' ', '{', '(']).next().unwrap_or_default();
                if name != event.event_type() {
                    return Err(format!("event_type() says {:?} for a {name} event", event.event_type()));
                }
            }
            // The new events must fold onto the state they were decided on.
            let _ = events.iter().fold(state, A::evolve);
        }
        if actual == self.expected {
            return Ok(());
        }
        let expected = format!("{:#?}", self.expected);
        let actual = format!("{:#?}", actual);
        Err(format!(
            "the {} decision differs from the spec\nwhen: {:?}\ndiff (- expected, + actual):\n{}",
            A::CATEGORY,
            self.command,
            line_diff(&expected, &actual)
        ))
    }

    /// Runs the decision and panics with a diff if it differs from the expectation.
    #[track_caller]
    pub fn assert(&self) {
        if let Err(message) = self.check() {
            panic!("{message}");
        }
    }

    /// The command's context.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The expected outcome.
    pub fn expected(&self) -> &Outcome<A::Event> {
        &self.expected
    }
}

/// A spec the catalogue can run and render without knowing its aggregate.
pub trait Specification {
    /// Runs it: `Err` explains a failure.
    fn check(&self) -> Result<(), String>;
    /// The Given / When / Then in words.
    fn render(&self) -> Rendered;
}

/// A spec in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The stream category.
    pub category: &'static str,
    /// One line per past event (empty: a new stream).
    pub given: Vec<String>,
    /// Who does what, when.
    pub when: String,
    /// One line per expected event, or the refusal.
    pub then: Vec<String>,
}

impl<A: Aggregate> Specification for Scenario<A>
where
    A::Command: Clone + Describe,
    A::Event: Describe,
{
    fn check(&self) -> Result<(), String> {
        Scenario::check(self)
    }

    fn render(&self) -> Rendered {
        let then = match &self.expected {
            Outcome::Events(events) if events.is_empty() => vec!["nothing happens (no events)".to_owned()],
            Outcome::Events(events) => events.iter().map(Describe::describe).collect(),
            Outcome::Error(error) => vec![format!("refused with `{}`: {}", error.code(), error)],
        };
        Rendered {
            category: A::CATEGORY,
            given: self.history.iter().map(Describe::describe).collect(),
            when: format!(
                "{} at {}: {}",
                describe_actor(&self.ctx.actor),
                self.ctx.now.format("%Y-%m-%d %H:%M"),
                self.command.describe()
            ),
            then,
        }
    }
}

/// Starts a value-object spec: `what` names the type in words, `input`
/// describes the raw input, `parse` parses it and shows the value.
pub fn parsing(
    what: &'static str,
    input: impl Into<String>,
    parse: impl Fn() -> Result<String, DomainError> + 'static,
) -> Parsing {
    Parsing { what, input: input.into(), parse: Box::new(parse) }
}

/// A value-object input waiting for its expected outcome.
pub struct Parsing {
    what: &'static str,
    input: String,
    parse: Box<dyn Fn() -> Result<String, DomainError>>,
}

impl Parsing {
    /// Expects the input to parse into a value shown as `shown`.
    pub fn accepted_as(self, shown: impl Into<String>) -> ValueScenario {
        ValueScenario { parsing: self, expected: Ok(shown.into()) }
    }

    /// Expects the input to be refused with `error`.
    pub fn refused(self, error: DomainError) -> ValueScenario {
        ValueScenario { parsing: self, expected: Err(error) }
    }
}

/// A value-object spec: an input, a parse, an expected value or refusal.
#[must_use = "a scenario does nothing until checked: call .assert(), or list it in a specs! block"]
pub struct ValueScenario {
    parsing: Parsing,
    expected: Result<String, DomainError>,
}

impl ValueScenario {
    /// Parses and panics with an explanation if the outcome differs.
    #[track_caller]
    pub fn assert(&self) {
        if let Err(message) = Specification::check(self) {
            panic!("{message}");
        }
    }
}

impl Specification for ValueScenario {
    fn check(&self) -> Result<(), String> {
        let actual = (self.parsing.parse)();
        if actual == self.expected {
            return Ok(());
        }
        Err(format!(
            "parsing {} from {} gave {:?}, expected {:?}",
            self.parsing.what, self.parsing.input, actual, self.expected
        ))
    }

    fn render(&self) -> Rendered {
        let then = match &self.expected {
            Ok(shown) => format!("accepted as {shown}"),
            Err(error) => format!("refused with `{}`: {}", error.code(), error),
        };
        Rendered {
            category: "value",
            given: vec![format!("the input {}", self.parsing.input)],
            when: format!("it is parsed as {}", self.parsing.what),
            then: vec![then],
        }
    }
}

/// `Olivia (organiser)`, `the system`, `Mo (moderator)`.
pub fn describe_actor(actor: &Actor) -> String {
    if actor.has(Role::System) {
        return "the system".to_owned();
    }
    let role =
        [Role::Moderator, Role::Organiser, Role::Auditor].into_iter().find(|r| actor.has(*r)).unwrap_or(Role::Member);
    format!("{} ({})", crate::specs::fixtures::name(actor.id), role.as_str())
}

/// A line diff of two texts (longest common subsequence): unchanged lines
/// start with two spaces, lines only in `expected` with `- `, only in `actual` with `+ `.
pub fn line_diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    // Common head and tail lines need no table, which keeps long texts cheap.
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..].iter().rev().zip(b[head..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (a_mid, b_mid) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let mut out = String::new();
    for line in &a[..head] {
        out.push_str(&format!("  {line}\n"));
    }
    // lcs[i][j] = length of the longest common subsequence of a_mid[i..] and b_mid[j..].
    let mut lcs = vec![vec![0usize; b_mid.len() + 1]; a_mid.len() + 1];
    for i in (0..a_mid.len()).rev() {
        for j in (0..b_mid.len()).rev() {
            lcs[i][j] = if a_mid[i] == b_mid[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < a_mid.len() || j < b_mid.len() {
        if i < a_mid.len() && j < b_mid.len() && a_mid[i] == b_mid[j] {
            out.push_str(&format!("  {}\n", a_mid[i]));
            i += 1;
            j += 1;
        } else if i < a_mid.len() && (j == b_mid.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("- {}\n", a_mid[i]));
            i += 1;
        } else {
            out.push_str(&format!("+ {}\n", b_mid[j]));
            j += 1;
        }
    }
    for line in &a[a.len() - tail..] {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_diff_marks_removed_and_added_lines() {
        let diff = line_diff("a\nb\nc\nd", "a\nx\nc\nd\ne");
        assert_eq!(diff, "  a\n- b\n+ x\n  c\n  d\n+ e\n");
    }

    #[test]
    fn a_failing_scenario_explains_itself_with_a_diff() {
        use crate::chat::{ChatCommand, ChatEvent};
        let scenario =
            given_nothing().when(ChatCommand::Leave).then([ChatEvent::ChatMemberLeft { member_id: DEFAULT_ACTOR_ID }]);
        let message = scenario.check().expect_err("a chat that never started cannot be left");
        assert!(message.contains("- Events("), "{message}");
        assert!(message.contains("+ Error("), "{message}");
        assert!(message.contains("ChatNotFound"), "{message}");
    }
}
