//! The member's specs: one per rule and per command's happy path.

use super::*;
use crate::specs::fixtures::*;
use crate::specs::{Section, spec_section};
use crate::testkit::{given, given_nothing};

/// Every section of the member's specs.
pub fn sections() -> Vec<Section> {
    vec![
        registration::section(),
        profile::section(),
        children::section(),
        organiser::section(),
        favourites::section(),
        roles::section(),
        suspension::section(),
        forgetting::section(),
    ]
}

fn email(raw: &str) -> Email {
    Email::parse(raw).expect("fixture email")
}

fn display_name(raw: &str) -> DisplayName {
    DisplayName::parse(raw).expect("fixture name")
}

fn child_name(raw: &str) -> ChildName {
    ChildName::parse(raw).expect("fixture name")
}

fn reason(raw: &str) -> Reason {
    Reason::parse(raw).expect("fixture reason")
}

fn registered() -> MemberEvent {
    MemberEvent::MemberRegistered {
        member_id: BEN,
        email: email("Ben@Example.org").into(),
        display_name: display_name("Ben").into(),
    }
}

fn password_set() -> MemberEvent {
    MemberEvent::PasswordSet { hash: "$argon2id$v=19$ben".to_owned().into() }
}

fn ben_member() -> [MemberEvent; 2] {
    [registered(), password_set()]
}

fn history(more: impl IntoIterator<Item = MemberEvent>) -> Vec<MemberEvent> {
    ben_member().into_iter().chain(more).collect()
}

fn child_added(child_id: Uuid, name: &str) -> MemberEvent {
    MemberEvent::ChildAdded { child_id, name: child_name(name).into(), birth_date: mia_born().into() }
}

fn add_child(child_id: Uuid, name: &str, birth_date: NaiveDate) -> MemberCommand {
    MemberCommand::AddChild { child_id, name: child_name(name), birth_date }
}

fn suspended() -> MemberEvent {
    MemberEvent::MemberSuspended { reason: (reason("spam in chats")).into() }
}

fn forgotten() -> MemberEvent {
    MemberEvent::MemberForgotten { member_id: BEN }
}

fn ten_children() -> Vec<MemberEvent> {
    (0..10u128).map(|n| child_added(Uuid::from_u128(0x0c00 + n), "Kid")).collect()
}

spec_section!(registration, "Member — registration", {
    a_visitor_registers_with_an_email_a_display_name_and_a_password_hash =>
        given_nothing().as_actor(ben()).at(t0())
            .when(MemberCommand::Register {
                member_id: BEN,
                email: email("Ben@Example.org"),
                password_hash: "$argon2id$v=19$ben".to_owned(),
                display_name: display_name("Ben"),
            })
            .then(ben_member()),
    registering_again_on_an_existing_member_stream_is_refused =>
        given(ben_member()).as_actor(ben()).at(t0())
            .when(MemberCommand::Register {
                member_id: BEN,
                email: email("ben@example.org"),
                password_hash: "$argon2id$v=19$again".to_owned(),
                display_name: display_name("Ben"),
            })
            .then_error(DomainError::AlreadyRegistered),
    registering_without_a_password_hash_is_refused =>
        given_nothing().as_actor(ben()).at(t0())
            .when(MemberCommand::Register {
                member_id: BEN,
                email: email("ben@example.org"),
                password_hash: " ".to_owned(),
                display_name: display_name("Ben"),
            })
            .then_error(DomainError::invalid("password", "the password hash is missing")),
    commands_on_a_member_that_never_registered_are_refused =>
        given_nothing().as_actor(ben()).at(t0())
            .when(MemberCommand::UpdateProfile { display_name: display_name("Benjamin") })
            .then_error(DomainError::MemberNotFound),
});

spec_section!(profile, "Member — profile and password", {
    a_member_changes_their_display_name =>
        given(ben_member()).as_actor(ben()).at(t0())
            .when(MemberCommand::UpdateProfile { display_name: display_name("Benjamin") })
            .then([MemberEvent::ProfileUpdated { display_name: display_name("Benjamin").into() }]),
    setting_the_same_display_name_again_changes_nothing =>
        given(ben_member()).as_actor(ben()).at(t0())
            .when(MemberCommand::UpdateProfile { display_name: display_name("Ben") })
            .then_nothing(),
    a_member_changes_their_password_and_only_the_new_hash_is_recorded =>
        given(ben_member()).as_actor(ben()).at(t0())
            .when(MemberCommand::ChangePassword { new_password_hash: "$argon2id$v=19$new".to_owned() })
            .then([MemberEvent::PasswordSet { hash: "$argon2id$v=19$new".to_owned().into() }]),
    a_new_password_without_a_hash_is_refused =>
        given(ben_member()).as_actor(ben()).at(t0())
            .when(MemberCommand::ChangePassword { new_password_hash: String::new() })
            .then_error(DomainError::invalid("password", "the password hash is missing")),
    a_member_cannot_change_another_members_profile =>
        given(ben_member()).as_actor(cara()).at(t0())
            .when(MemberCommand::UpdateProfile { display_name: display_name("Not Ben") })
            .then_error(DomainError::NotTheMember),
    a_member_cannot_change_another_members_password =>
        given(ben_member()).as_actor(cara()).at(t0())
            .when(MemberCommand::ChangePassword { new_password_hash: "$argon2id$v=19$cara".to_owned() })
            .then_error(DomainError::NotTheMember),
    a_moderator_cannot_edit_a_members_profile_either =>
        given(ben_member()).as_actor(mo()).at(t0())
            .when(MemberCommand::UpdateProfile { display_name: display_name("Renamed") })
            .then_error(DomainError::NotTheMember),
});

spec_section!(children, "Member — children", {
    a_member_adds_a_child =>
        given(ben_member()).as_actor(ben()).at(t0())
            .when(add_child(MIA, "Mia", mia_born()))
            .then([MemberEvent::ChildAdded { child_id: MIA, name: child_name("Mia").into(), birth_date: mia_born().into() }]),
    a_child_born_today_can_be_added =>
        given(ben_member()).as_actor(ben()).at(t0())
            .when(add_child(LEO, "Leo", date(2030, 5, 1)))
            .then([MemberEvent::ChildAdded { child_id: LEO, name: child_name("Leo").into(), birth_date: (date(2030, 5, 1)).into() }]),
    a_birth_date_in_the_future_is_refused =>
        given(ben_member()).as_actor(ben()).at(t0())
            .when(add_child(LEO, "Leo", date(2030, 5, 2)))
            .then_error(DomainError::invalid("birth_date", "must not be in the future")),
    a_birth_date_before_1900_is_refused =>
        given(ben_member()).as_actor(ben()).at(t0())
            .when(add_child(LEO, "Leo", date(1899, 12, 31)))
            .then_error(DomainError::invalid("birth_date", "must not be before 1900-01-01")),
    a_child_born_on_the_first_day_of_1900_can_be_added =>
        given(ben_member()).as_actor(ben()).at(t0())
            .when(add_child(LEO, "Leo", date(1900, 1, 1)))
            .then([MemberEvent::ChildAdded { child_id: LEO, name: child_name("Leo").into(), birth_date: (date(1900, 1, 1)).into() }]),
    the_same_child_cannot_be_added_twice =>
        given(history([child_added(MIA, "Mia")])).as_actor(ben()).at(t0())
            .when(add_child(MIA, "Mia", mia_born()))
            .then_error(DomainError::ChildAlreadyAdded),
    a_member_has_at_most_ten_children =>
        given(history(ten_children())).as_actor(ben()).at(t0())
            .when(add_child(MIA, "Mia", mia_born()))
            .then_error(DomainError::TooManyChildren { max: 10 }),
    removing_a_child_makes_room_for_another =>
        given(history(ten_children().into_iter().chain([MemberEvent::ChildRemoved { child_id: Uuid::from_u128(0x0c00) }])))
            .as_actor(ben()).at(t0())
            .when(add_child(MIA, "Mia", mia_born()))
            .then([MemberEvent::ChildAdded { child_id: MIA, name: child_name("Mia").into(), birth_date: mia_born().into() }]),
    a_member_removes_a_child =>
        given(history([child_added(MIA, "Mia")])).as_actor(ben()).at(t0())
            .when(MemberCommand::RemoveChild { child_id: MIA })
            .then([MemberEvent::ChildRemoved { child_id: MIA }]),
    removing_a_child_that_is_not_on_the_profile_is_refused =>
        given(ben_member()).as_actor(ben()).at(t0())
            .when(MemberCommand::RemoveChild { child_id: MIA })
            .then_error(DomainError::ChildNotFound),
    a_member_cannot_add_a_child_to_another_members_profile =>
        given(ben_member()).as_actor(cara()).at(t0())
            .when(add_child(MIA, "Mia", mia_born()))
            .then_error(DomainError::NotTheMember),
});

spec_section!(organiser, "Member — organiser profile", {
    a_member_becomes_an_organiser =>
        given(ben_member()).as_actor(ben()).at(t0())
            .when(MemberCommand::BecomeOrganiser { organisation_name: "Ben's Clay Club".to_owned() })
            .then([MemberEvent::OrganiserProfileCreated {
                organisation_name: OrganisationName::parse("Ben's Clay Club").expect("fixture"),
            }]),
    the_organiser_profile_is_created_only_once =>
        given(history([MemberEvent::OrganiserProfileCreated {
            organisation_name: OrganisationName::parse("Ben's Clay Club").expect("fixture"),
        }]))
            .as_actor(ben()).at(t0())
            .when(MemberCommand::BecomeOrganiser { organisation_name: "Another Club".to_owned() })
            .then_error(DomainError::AlreadyOrganiser),
    an_organisation_name_needs_at_least_two_characters =>
        given(ben_member()).as_actor(ben()).at(t0())
            .when(MemberCommand::BecomeOrganiser { organisation_name: " B ".to_owned() })
            .then_error(DomainError::invalid("organisation_name", "must be at least 2 characters")),
    an_organisation_name_has_at_most_120_characters =>
        given(ben_member()).as_actor(ben()).at(t0())
            .when(MemberCommand::BecomeOrganiser { organisation_name: "x".repeat(121) })
            .then_error(DomainError::invalid("organisation_name", "must be at most 120 characters")),
    a_member_cannot_make_someone_else_an_organiser =>
        given(ben_member()).as_actor(cara()).at(t0())
            .when(MemberCommand::BecomeOrganiser { organisation_name: "Cara's Club".to_owned() })
            .then_error(DomainError::NotTheMember),
});

spec_section!(favourites, "Member — favourites", {
    a_member_favourites_an_activity =>
        given(ben_member()).as_actor(ben()).at(t0())
            .when(MemberCommand::FavouriteActivity { activity_id: ACTIVITY })
            .then([MemberEvent::ActivityFavourited { activity_id: ACTIVITY }]),
    favouriting_twice_emits_nothing_the_second_time =>
        given(history([MemberEvent::ActivityFavourited { activity_id: ACTIVITY }])).as_actor(ben()).at(t0())
            .when(MemberCommand::FavouriteActivity { activity_id: ACTIVITY })
            .then_nothing(),
    a_member_unfavourites_an_activity =>
        given(history([MemberEvent::ActivityFavourited { activity_id: ACTIVITY }])).as_actor(ben()).at(t0())
            .when(MemberCommand::UnfavouriteActivity { activity_id: ACTIVITY })
            .then([MemberEvent::ActivityUnfavourited { activity_id: ACTIVITY }]),
    unfavouriting_an_activity_that_is_no_favourite_emits_nothing =>
        given(history([MemberEvent::ActivityFavourited { activity_id: OTHER_ACTIVITY }])).as_actor(ben()).at(t0())
            .when(MemberCommand::UnfavouriteActivity { activity_id: ACTIVITY })
            .then_nothing(),
    an_activity_can_be_favourited_again_after_unfavouriting =>
        given(history([
            MemberEvent::ActivityFavourited { activity_id: ACTIVITY },
            MemberEvent::ActivityUnfavourited { activity_id: ACTIVITY },
        ]))
            .as_actor(ben()).at(t0())
            .when(MemberCommand::FavouriteActivity { activity_id: ACTIVITY })
            .then([MemberEvent::ActivityFavourited { activity_id: ACTIVITY }]),
    a_member_cannot_favourite_for_someone_else =>
        given(ben_member()).as_actor(cara()).at(t0())
            .when(MemberCommand::FavouriteActivity { activity_id: ACTIVITY })
            .then_error(DomainError::NotTheMember),
});

spec_section!(roles, "Member — granted roles (moderator, auditor, organiser)", {
    a_moderator_grants_the_auditor_role =>
        given(ben_member()).as_actor(mo()).at(t0())
            .when(MemberCommand::GrantRole { role: Role::Auditor })
            .then([MemberEvent::RoleGranted { role: Role::Auditor }]),
    the_system_grants_the_moderator_role_to_a_bootstrap_account =>
        given(ben_member()).as_actor(system()).at(t0())
            .when(MemberCommand::GrantRole { role: Role::Moderator })
            .then([MemberEvent::RoleGranted { role: Role::Moderator }]),
    only_moderators_grant_roles =>
        given(ben_member()).as_actor(ben()).at(t0())
            .when(MemberCommand::GrantRole { role: Role::Moderator })
            .then_error(DomainError::NotAModerator),
    granting_a_role_held_already_changes_nothing =>
        given(history([MemberEvent::RoleGranted { role: Role::Auditor }])).as_actor(mo()).at(t0())
            .when(MemberCommand::GrantRole { role: Role::Auditor })
            .then_nothing(),
    the_system_grants_the_organiser_role_from_the_command_line =>
        given(ben_member()).as_actor(system()).at(t0())
            .when(MemberCommand::GrantRole { role: Role::Organiser })
            .then([MemberEvent::RoleGranted { role: Role::Organiser }]),
    only_the_moderator_auditor_and_organiser_roles_are_granted =>
        given(ben_member()).as_actor(mo()).at(t0())
            .when(MemberCommand::GrantRole { role: Role::System })
            .then_error(DomainError::invalid("role", "only moderator, auditor or organiser can be granted")),
    the_system_revokes_a_role_from_the_command_line =>
        given(history([MemberEvent::RoleGranted { role: Role::Moderator }])).as_actor(system()).at(t0())
            .when(MemberCommand::RevokeRole { role: Role::Moderator })
            .then([MemberEvent::RoleRevoked { role: Role::Moderator }]),
    revoking_a_role_not_held_changes_nothing =>
        given(ben_member()).as_actor(mo()).at(t0())
            .when(MemberCommand::RevokeRole { role: Role::Auditor })
            .then_nothing(),
    only_moderators_revoke_roles =>
        given(history([MemberEvent::RoleGranted { role: Role::Organiser }])).as_actor(ben()).at(t0())
            .when(MemberCommand::RevokeRole { role: Role::Organiser })
            .then_error(DomainError::NotAModerator),
    the_member_role_cannot_be_revoked =>
        given(ben_member()).as_actor(mo()).at(t0())
            .when(MemberCommand::RevokeRole { role: Role::Member })
            .then_error(DomainError::invalid("role", "only moderator, auditor or organiser can be revoked")),
    a_revoked_role_can_be_granted_again =>
        given(history([
            MemberEvent::RoleGranted { role: Role::Auditor },
            MemberEvent::RoleRevoked { role: Role::Auditor },
        ])).as_actor(mo()).at(t0())
            .when(MemberCommand::GrantRole { role: Role::Auditor })
            .then([MemberEvent::RoleGranted { role: Role::Auditor }]),
});

spec_section!(suspension, "Member — suspension", {
    a_moderator_suspends_a_member =>
        given(ben_member()).as_actor(mo()).at(t0())
            .when(MemberCommand::Suspend { reason: reason("spam in chats") })
            .then([suspended()]),
    only_a_moderator_suspends_members =>
        given(ben_member()).as_actor(cara()).at(t0())
            .when(MemberCommand::Suspend { reason: reason("I don't like Ben") })
            .then_error(DomainError::NotAModerator),
    a_member_cannot_suspend_themselves =>
        given(ben_member()).as_actor(ben()).at(t0())
            .when(MemberCommand::Suspend { reason: reason("taking a break") })
            .then_error(DomainError::NotAModerator),
    suspending_a_suspended_member_changes_nothing =>
        given(history([suspended()])).as_actor(mo()).at(t0())
            .when(MemberCommand::Suspend { reason: reason("again") })
            .then_nothing(),
    a_suspended_member_cannot_change_their_profile =>
        given(history([suspended()])).as_actor(ben()).at(t0())
            .when(MemberCommand::UpdateProfile { display_name: display_name("Benjamin") })
            .then_error(DomainError::MemberSuspended),
    a_suspended_member_cannot_add_a_child =>
        given(history([suspended()])).as_actor(ben()).at(t0())
            .when(add_child(MIA, "Mia", mia_born()))
            .then_error(DomainError::MemberSuspended),
    a_suspended_member_cannot_become_an_organiser =>
        given(history([suspended()])).as_actor(ben()).at(t0())
            .when(MemberCommand::BecomeOrganiser { organisation_name: "Ben's Clay Club".to_owned() })
            .then_error(DomainError::MemberSuspended),
    a_suspended_member_cannot_favourite_activities =>
        given(history([suspended()])).as_actor(ben()).at(t0())
            .when(MemberCommand::FavouriteActivity { activity_id: ACTIVITY })
            .then_error(DomainError::MemberSuspended),
    a_suspended_member_can_still_ask_to_be_forgotten =>
        given(history([suspended()])).as_actor(ben()).at(t0())
            .when(MemberCommand::Forget)
            .then([forgotten()]),
});

spec_section!(forgetting, "Member — forgetting (crypto-shredding)", {
    a_member_asks_to_be_forgotten =>
        given(history([child_added(MIA, "Mia")])).as_actor(ben()).at(t0())
            .when(MemberCommand::Forget)
            .then([forgotten()]),
    a_moderator_forgets_a_member =>
        given(ben_member()).as_actor(mo()).at(t0())
            .when(MemberCommand::Forget)
            .then([forgotten()]),
    another_member_cannot_forget_someone =>
        given(ben_member()).as_actor(cara()).at(t0())
            .when(MemberCommand::Forget)
            .then_error(DomainError::NotTheMember),
    a_forgotten_member_cannot_change_anything =>
        given(history([forgotten()])).as_actor(ben()).at(t0())
            .when(MemberCommand::UpdateProfile { display_name: display_name("Ben again") })
            .then_error(DomainError::MemberForgotten),
    a_forgotten_member_cannot_be_forgotten_twice =>
        given(history([forgotten()])).as_actor(mo()).at(t0())
            .when(MemberCommand::Forget)
            .then_error(DomainError::MemberForgotten),
    a_forgotten_members_stream_cannot_be_registered_again =>
        given(history([forgotten()])).as_actor(ben()).at(t0())
            .when(MemberCommand::Register {
                member_id: BEN,
                email: email("ben@example.org"),
                password_hash: "$argon2id$v=19$again".to_owned(),
                display_name: display_name("Ben"),
            })
            .then_error(DomainError::AlreadyRegistered),
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Aggregate;

    #[test]
    fn forgetting_clears_personal_data_from_the_state() {
        let events = history([child_added(MIA, "Mia"), forgotten()]);
        let state = Member::fold(&events);
        assert!(state.forgotten);
        assert_eq!(state.email, None);
        assert_eq!(state.display_name, None);
        assert!(state.children.is_empty());
    }

    #[test]
    fn a_stream_whose_personal_fields_are_shredded_replays_as_forgotten() {
        // As the store reads the stream once the member's key is shredded: every
        // personal field is `{"forgotten": true}`.
        let shredded: Vec<MemberEvent> = history([child_added(MIA, "Mia"), suspended(), forgotten()])
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e).unwrap();
                for field in e.personal_fields() {
                    v["data"][*field] = serde_json::json!({"forgotten": true});
                }
                serde_json::from_value(v).unwrap()
            })
            .collect();
        let MemberEvent::MemberRegistered { email, display_name, .. } = &shredded[0] else { panic!("{shredded:?}") };
        assert!(email.is_forgotten() && display_name.is_forgotten(), "typed as forgotten, not as a value");
        let state = Member::fold(&shredded);
        assert!(state.registered && state.forgotten);
        assert_eq!((state.email, state.display_name, state.password_hash), (None, None, None));
        assert!(state.children.is_empty());
        assert_eq!(state.suspension_reason, None);
        // A forgotten value serializes back as the mark, never as an empty value.
        assert_eq!(serde_json::to_value(email).unwrap(), serde_json::json!({"forgotten": true}));
    }

    #[test]
    fn personal_fields_are_marked_on_member_events() {
        assert_eq!(registered().personal_fields(), &["email", "display_name"]);
        assert_eq!(child_added(MIA, "Mia").personal_fields(), &["name", "birth_date"]);
        assert!(forgotten().personal_fields().is_empty());
        assert_eq!(suspended().personal_fields(), &["reason"], "a moderator's words about the member");
        assert_eq!(registered().event_type(), "MemberRegistered");
        assert_eq!(registered().schema_version(), 1);
    }
}
