//! The member aggregate — stream `member-{id}`: registration, profile,
//! password, children, organiser profile, favourites, suspension and forgetting.
//!
//! A member acts on their own stream only; moderators suspend and forget; a
//! suspended member's commands are refused (forgetting excepted: the right to
//! be forgotten outlives a suspension). Email uniqueness is a set-wide rule
//! checked outside (ARCHITECTURE.md, "set validation").

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::{Aggregate, Context, DomainEvent, Personal, Role};
use crate::errors::DomainError;
use crate::specs::fixtures::name;
use crate::testkit::{AggregateCommand, AggregateEvent, Describe};
use crate::values::{ChildName, DisplayName, Email, OrganisationName, Reason};

mod specs;
pub use specs::sections as spec_sections;

/// The member aggregate (stream category `member`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Member;

/// The most children one member may add.
pub const MAX_CHILDREN: usize = 10;

/// No child's birth date is earlier than this (an earlier one is a typo).
pub const EARLIEST_BIRTH_DATE: NaiveDate = NaiveDate::from_ymd_opt(1900, 1, 1).expect("a valid date");

/// What a member (or a moderator) asks of a member stream.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberCommand {
    /// `RegisterMember`: open the account. The handler hashes the password (argon2)
    /// and reserves the email (set validation) before deciding.
    Register {
        /// The new member's id (the stream id).
        member_id: Uuid,
        /// The login email.
        email: Email,
        /// The argon2 hash of the password; the plain password never reaches the domain.
        password_hash: String,
        /// The public name.
        display_name: DisplayName,
    },
    /// `UpdateProfile`: change the display name.
    UpdateProfile {
        /// The new public name.
        display_name: DisplayName,
    },
    /// `ChangePassword`: the handler verified the old password and hashed the new one.
    ChangePassword {
        /// The argon2 hash of the new password.
        new_password_hash: String,
    },
    /// `AddChild`: a child the member can book for.
    AddChild {
        /// The child's id (chosen by the caller).
        child_id: Uuid,
        /// The child's name.
        name: ChildName,
        /// The child's birth date (not in the future).
        birth_date: NaiveDate,
    },
    /// `RemoveChild`.
    RemoveChild {
        /// The child to remove.
        child_id: Uuid,
    },
    /// `BecomeOrganiser`: create the organiser profile (once).
    BecomeOrganiser {
        /// The organisation's name (2–120 characters).
        organisation_name: String,
    },
    /// `FavouriteActivity` (idempotent).
    FavouriteActivity {
        /// The activity.
        activity_id: Uuid,
    },
    /// `UnfavouriteActivity` (idempotent).
    UnfavouriteActivity {
        /// The activity.
        activity_id: Uuid,
    },
    /// `SuspendMember` (moderator).
    Suspend {
        /// Why, for the record.
        reason: Reason,
    },
    /// `ForgetMember` (the member, or a moderator): crypto-shred personal data.
    Forget,
    /// `GrantRole` (a moderator, or the system for bootstrap accounts and the CLI):
    /// moderator, auditor or organiser. Granting a role held already emits nothing.
    GrantRole {
        /// The role to grant (`Moderator`, `Auditor` or `Organiser`).
        role: Role,
    },
    /// `RevokeRole` (a moderator, or the system for the CLI): takes back moderator,
    /// auditor or organiser. Revoking a role not held emits nothing.
    RevokeRole {
        /// The role to take back (`Moderator`, `Auditor` or `Organiser`).
        role: Role,
    },
}

/// What happened to a member. Serialized as `{"type": "...", "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum MemberEvent {
    /// The account was opened. Personal: `email`, `display_name`.
    MemberRegistered {
        /// The member.
        member_id: Uuid,
        /// The login email as given.
        email: Personal<Email>,
        /// The public name.
        display_name: Personal<DisplayName>,
    },
    /// A password hash was set (at registration or on change). Personal: `hash`.
    PasswordSet {
        /// The argon2 hash.
        hash: Personal<String>,
    },
    /// The display name changed. Personal: `display_name`.
    ProfileUpdated {
        /// The new name.
        display_name: Personal<DisplayName>,
    },
    /// A child was added. Personal: `name`, `birth_date`.
    ChildAdded {
        /// The child.
        child_id: Uuid,
        /// The child's name.
        name: Personal<ChildName>,
        /// The child's birth date.
        birth_date: Personal<NaiveDate>,
    },
    /// A child was removed.
    ChildRemoved {
        /// The child.
        child_id: Uuid,
    },
    /// The member became an organiser.
    OrganiserProfileCreated {
        /// The organisation's name (public on the member's activities).
        organisation_name: OrganisationName,
    },
    /// The member favourited an activity.
    ActivityFavourited {
        /// The activity.
        activity_id: Uuid,
    },
    /// The member removed an activity from their favourites.
    ActivityUnfavourited {
        /// The activity.
        activity_id: Uuid,
    },
    /// A moderator suspended the member. Personal: `reason` (a moderator's words about them).
    MemberSuspended {
        /// Why.
        reason: Personal<Reason>,
    },
    /// The member's personal data was forgotten (its key is to be deleted).
    MemberForgotten {
        /// The member.
        member_id: Uuid,
    },
    /// A moderator or the system granted a role.
    RoleGranted {
        /// The role.
        role: Role,
    },
    /// A moderator or the system took a role back.
    RoleRevoked {
        /// The role.
        role: Role,
    },
}

impl DomainEvent for MemberEvent {
    fn event_type(&self) -> &'static str {
        match self {
            MemberEvent::MemberRegistered { .. } => "MemberRegistered",
            MemberEvent::PasswordSet { .. } => "PasswordSet",
            MemberEvent::ProfileUpdated { .. } => "ProfileUpdated",
            MemberEvent::ChildAdded { .. } => "ChildAdded",
            MemberEvent::ChildRemoved { .. } => "ChildRemoved",
            MemberEvent::OrganiserProfileCreated { .. } => "OrganiserProfileCreated",
            MemberEvent::ActivityFavourited { .. } => "ActivityFavourited",
            MemberEvent::ActivityUnfavourited { .. } => "ActivityUnfavourited",
            MemberEvent::MemberSuspended { .. } => "MemberSuspended",
            MemberEvent::MemberForgotten { .. } => "MemberForgotten",
            MemberEvent::RoleGranted { .. } => "RoleGranted",
            MemberEvent::RoleRevoked { .. } => "RoleRevoked",
        }
    }

    fn personal_fields(&self) -> &'static [&'static str] {
        match self {
            MemberEvent::MemberRegistered { .. } => &["email", "display_name"],
            MemberEvent::PasswordSet { .. } => &["hash"],
            MemberEvent::ProfileUpdated { .. } => &["display_name"],
            MemberEvent::ChildAdded { .. } => &["name", "birth_date"],
            MemberEvent::MemberSuspended { .. } => &["reason"],
            _ => &[],
        }
    }
}

/// A child on a member's profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Child {
    /// The child's name.
    pub name: ChildName,
    /// The child's birth date.
    pub birth_date: NaiveDate,
}

/// The folded member stream (serializable for snapshots only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberState {
    /// Whether `MemberRegistered` happened.
    pub registered: bool,
    /// The member's id (nil before registration).
    pub member_id: Uuid,
    /// The login email (`None` before registration and once forgotten).
    pub email: Option<Email>,
    /// The public name (`None` before registration and once forgotten).
    pub display_name: Option<DisplayName>,
    /// The current password hash.
    pub password_hash: Option<String>,
    /// The organisation name, once the member is an organiser.
    pub organiser: Option<OrganisationName>,
    /// Whether a moderator suspended the member.
    pub suspended: bool,
    /// The suspension's reason.
    pub suspension_reason: Option<Reason>,
    /// Children by id.
    pub children: BTreeMap<Uuid, Child>,
    /// Favourite activities.
    pub favourites: BTreeSet<Uuid>,
    /// Whether the member was forgotten.
    pub forgotten: bool,
    /// Roles granted beyond member (moderator, auditor, organiser without a profile).
    pub roles: BTreeSet<Role>,
}

impl MemberState {
    /// Whether the member holds an organiser profile.
    pub fn is_organiser(&self) -> bool {
        self.organiser.is_some()
    }
}

impl Aggregate for Member {
    const CATEGORY: &'static str = "member";
    /// 2: personal fields are sealed in snapshots (version 1 held them in clear).
    const STATE_VERSION: u32 = 2;
    const PERSONAL_STATE: &'static [&'static str] =
        &["email", "display_name", "password_hash", "children{}.name", "children{}.birth_date", "suspension_reason"];
    type State = MemberState;
    type Command = MemberCommand;
    type Event = MemberEvent;

    fn decide(state: &MemberState, command: MemberCommand, ctx: &Context) -> Result<Vec<MemberEvent>, DomainError> {
        use MemberCommand as C;
        use MemberEvent as E;

        if let C::Register { member_id, email, password_hash, display_name } = command {
            if state.registered {
                return Err(DomainError::AlreadyRegistered);
            }
            let hash = parse_hash(password_hash)?;
            return Ok(vec![
                E::MemberRegistered { member_id, email: email.into(), display_name: display_name.into() },
                E::PasswordSet { hash: hash.into() },
            ]);
        }

        if !state.registered {
            return Err(DomainError::MemberNotFound);
        }
        if state.forgotten {
            return Err(DomainError::MemberForgotten);
        }
        let own = ctx.actor.id == state.member_id || ctx.is_system();
        match command {
            C::Register { .. } => Err(DomainError::AlreadyRegistered),
            C::GrantRole { role } => {
                if !ctx.has(Role::Moderator) && !ctx.is_system() {
                    return Err(DomainError::NotAModerator);
                }
                if !matches!(role, Role::Moderator | Role::Auditor | Role::Organiser) {
                    return Err(DomainError::invalid("role", "only moderator, auditor or organiser can be granted"));
                }
                if state.roles.contains(&role) {
                    return Ok(vec![]);
                }
                Ok(vec![E::RoleGranted { role }])
            }
            C::RevokeRole { role } => {
                if !ctx.has(Role::Moderator) && !ctx.is_system() {
                    return Err(DomainError::NotAModerator);
                }
                if !matches!(role, Role::Moderator | Role::Auditor | Role::Organiser) {
                    return Err(DomainError::invalid("role", "only moderator, auditor or organiser can be revoked"));
                }
                if !state.roles.contains(&role) {
                    return Ok(vec![]);
                }
                Ok(vec![E::RoleRevoked { role }])
            }
            C::Suspend { reason } => {
                if !ctx.has(Role::Moderator) && !ctx.is_system() {
                    return Err(DomainError::NotAModerator);
                }
                if state.suspended {
                    return Ok(vec![]);
                }
                Ok(vec![E::MemberSuspended { reason: reason.into() }])
            }
            C::Forget => {
                if !own && !ctx.has(Role::Moderator) {
                    return Err(DomainError::NotTheMember);
                }
                Ok(vec![E::MemberForgotten { member_id: state.member_id }])
            }
            command => {
                if !own {
                    return Err(DomainError::NotTheMember);
                }
                if state.suspended {
                    return Err(DomainError::MemberSuspended);
                }
                decide_own(state, command, ctx)
            }
        }
    }

    fn evolve(mut state: MemberState, event: &MemberEvent) -> MemberState {
        match event {
            MemberEvent::MemberRegistered { member_id, email, display_name } => {
                state.registered = true;
                state.member_id = *member_id;
                state.email = email.known().cloned();
                state.display_name = display_name.known().cloned();
            }
            MemberEvent::PasswordSet { hash } => state.password_hash = hash.known().cloned(),
            MemberEvent::ProfileUpdated { display_name } => state.display_name = display_name.known().cloned(),
            // Forgotten fields only come from a forgotten member's stream, whose
            // `MemberForgotten` clears the children anyway.
            MemberEvent::ChildAdded {
                child_id,
                name: Personal::Known(name),
                birth_date: Personal::Known(birth_date),
            } => {
                state.children.insert(*child_id, Child { name: name.clone(), birth_date: *birth_date });
            }
            MemberEvent::ChildAdded { .. } => {}
            MemberEvent::ChildRemoved { child_id } => {
                state.children.remove(child_id);
            }
            MemberEvent::OrganiserProfileCreated { organisation_name } => {
                state.organiser = Some(organisation_name.clone());
            }
            MemberEvent::ActivityFavourited { activity_id } => {
                state.favourites.insert(*activity_id);
            }
            MemberEvent::ActivityUnfavourited { activity_id } => {
                state.favourites.remove(activity_id);
            }
            MemberEvent::RoleGranted { role } => {
                state.roles.insert(*role);
            }
            MemberEvent::RoleRevoked { role } => {
                state.roles.remove(role);
            }
            MemberEvent::MemberSuspended { reason } => {
                state.suspended = true;
                state.suspension_reason = reason.known().cloned();
            }
            MemberEvent::MemberForgotten { .. } => {
                state.forgotten = true;
                state.email = None;
                state.display_name = None;
                state.password_hash = None;
                state.suspension_reason = None;
                state.children.clear();
            }
        }
        state
    }
}

/// Commands a registered, active member issues on their own stream.
fn decide_own(state: &MemberState, command: MemberCommand, ctx: &Context) -> Result<Vec<MemberEvent>, DomainError> {
    use MemberCommand as C;
    use MemberEvent as E;
    match command {
        C::UpdateProfile { display_name } => {
            if state.display_name.as_ref() == Some(&display_name) {
                return Ok(vec![]);
            }
            Ok(vec![E::ProfileUpdated { display_name: display_name.into() }])
        }
        C::ChangePassword { new_password_hash } => {
            Ok(vec![E::PasswordSet { hash: parse_hash(new_password_hash)?.into() }])
        }
        C::AddChild { child_id, name, birth_date } => {
            if birth_date > ctx.now.date_naive() {
                return Err(DomainError::invalid("birth_date", "must not be in the future"));
            }
            if birth_date < EARLIEST_BIRTH_DATE {
                return Err(DomainError::invalid("birth_date", "must not be before 1900-01-01"));
            }
            if state.children.contains_key(&child_id) {
                return Err(DomainError::ChildAlreadyAdded);
            }
            if state.children.len() >= MAX_CHILDREN {
                return Err(DomainError::TooManyChildren { max: MAX_CHILDREN });
            }
            Ok(vec![E::ChildAdded { child_id, name: name.into(), birth_date: birth_date.into() }])
        }
        C::RemoveChild { child_id } => {
            if !state.children.contains_key(&child_id) {
                return Err(DomainError::ChildNotFound);
            }
            Ok(vec![E::ChildRemoved { child_id }])
        }
        C::BecomeOrganiser { organisation_name } => {
            if state.organiser.is_some() {
                return Err(DomainError::AlreadyOrganiser);
            }
            let organisation_name = OrganisationName::parse(&organisation_name)?;
            Ok(vec![E::OrganiserProfileCreated { organisation_name }])
        }
        C::FavouriteActivity { activity_id } => {
            if state.favourites.contains(&activity_id) {
                return Ok(vec![]);
            }
            Ok(vec![E::ActivityFavourited { activity_id }])
        }
        C::UnfavouriteActivity { activity_id } => {
            if !state.favourites.contains(&activity_id) {
                return Ok(vec![]);
            }
            Ok(vec![E::ActivityUnfavourited { activity_id }])
        }
        // Handled by `decide` before reaching here.
        C::Register { .. } => Err(DomainError::AlreadyRegistered),
        C::Suspend { .. } | C::GrantRole { .. } | C::RevokeRole { .. } => Err(DomainError::NotAModerator),
        C::Forget => Ok(vec![E::MemberForgotten { member_id: state.member_id }]),
    }
}

/// A password hash is opaque to the domain but never empty.
fn parse_hash(hash: String) -> Result<String, DomainError> {
    if hash.trim().is_empty() {
        return Err(DomainError::invalid("password", "the password hash is missing"));
    }
    Ok(hash)
}

impl AggregateEvent for MemberEvent {
    type Aggregate = Member;
}

impl AggregateCommand for MemberCommand {
    type Aggregate = Member;
}

impl Describe for MemberEvent {
    fn describe(&self) -> String {
        use MemberEvent as E;
        match self {
            E::MemberRegistered { member_id, email, display_name } => {
                format!("MemberRegistered: {} with email {email}, display name \"{display_name}\"", name(*member_id))
            }
            E::PasswordSet { hash } => format!("PasswordSet: hash `{hash}`"),
            E::ProfileUpdated { display_name } => format!("ProfileUpdated: display name \"{display_name}\""),
            E::ChildAdded { child_id, name: child, birth_date } => {
                format!("ChildAdded: {} \"{child}\", born {birth_date}", name(*child_id))
            }
            E::ChildRemoved { child_id } => format!("ChildRemoved: {}", name(*child_id)),
            E::OrganiserProfileCreated { organisation_name } => {
                format!("OrganiserProfileCreated: \"{organisation_name}\"")
            }
            E::ActivityFavourited { activity_id } => format!("ActivityFavourited: {}", name(*activity_id)),
            E::ActivityUnfavourited { activity_id } => format!("ActivityUnfavourited: {}", name(*activity_id)),
            E::MemberSuspended { reason } => format!("MemberSuspended: \"{reason}\""),
            E::MemberForgotten { member_id } => format!("MemberForgotten: {}", name(*member_id)),
            E::RoleGranted { role } => format!("RoleGranted: {}", role.as_str()),
            E::RoleRevoked { role } => format!("RoleRevoked: {}", role.as_str()),
        }
    }
}

impl Describe for MemberCommand {
    fn describe(&self) -> String {
        use MemberCommand as C;
        match self {
            C::Register { member_id, email, password_hash, display_name } => format!(
                "RegisterMember {} with email {email}, password hash `{password_hash}`, display name \"{display_name}\"",
                name(*member_id)
            ),
            C::UpdateProfile { display_name } => format!("UpdateProfile: display name \"{display_name}\""),
            C::ChangePassword { new_password_hash } => format!("ChangePassword: new hash `{new_password_hash}`"),
            C::AddChild { child_id, name: child, birth_date } => {
                format!("AddChild {} \"{child}\", born {birth_date}", name(*child_id))
            }
            C::RemoveChild { child_id } => format!("RemoveChild {}", name(*child_id)),
            C::BecomeOrganiser { organisation_name } => format!("BecomeOrganiser \"{organisation_name}\""),
            C::FavouriteActivity { activity_id } => format!("FavouriteActivity {}", name(*activity_id)),
            C::UnfavouriteActivity { activity_id } => format!("UnfavouriteActivity {}", name(*activity_id)),
            C::Suspend { reason } => format!("SuspendMember: \"{reason}\""),
            C::Forget => "ForgetMember".to_owned(),
            C::GrantRole { role } => format!("GrantRole {}", role.as_str()),
            C::RevokeRole { role } => format!("RevokeRole {}", role.as_str()),
        }
    }
}
