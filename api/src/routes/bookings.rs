//! Bookings, payments and invitations: all commands on the activity's stream, so
//! capacity is checked under the stream's optimistic lock and never oversold.

use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::http::{accepted, active_member, command_response, run_active, run_command};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use gather_domain::activity::{Activity, ActivityCommand, ActivityEvent, BookedChild, InvitationRequest};
use gather_domain::payment::{BookingSnapshot, Payment, PaymentCommand};
use gather_domain::values::{Email, PaymentRef};
use gather_domain::{Actor, DomainError};
use gather_projections::queries;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// At most this many emails in one invitation request (DOMAIN.md).
pub const MAX_INVITATIONS: usize = 500;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(book))
        .routes(routes!(pay))
        .routes(routes!(cancel_booking))
        .routes(routes!(invite))
        .routes(routes!(accept_invitation))
        .routes(routes!(decline_invitation))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct BookBody {
    #[schema(minimum = 1, maximum = 100_000)]
    seats: i64,
    #[serde(default)]
    #[schema(max_items = 20)]
    child_ids: Vec<Uuid>,
}

/// Books seats: confirmed, waitlisted, or reserved for 15 minutes on a paid activity.
#[utoipa::path(post, path = "/v1/activities/{id}/bookings", tag = "bookings", params(("id" = Uuid, Path, description = "The activity id")), request_body(content = BookBody, example = json!({"seats": 2, "child_ids": []})), responses((status = 201, description = "Booked; `Location` points at the booking", body = crate::openapi::BookingCreated)), security(("bearer" = [])))]
async fn book(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Json(body): Json<BookBody>,
) -> Result<Response, ApiError> {
    let seats = u32::try_from(body.seats)
        .ok()
        .filter(|s| (1..=100_000).contains(s))
        .ok_or_else(|| ApiError::field("seats", "must be between 1 and 100000"))?;
    // The age check needs the children's birth dates, from the member's own stream.
    let member = active_member(&state, &actor).await?;
    let mut children = Vec::with_capacity(body.child_ids.len());
    for child_id in body.child_ids {
        let child = member
            .children
            .get(&child_id)
            .ok_or_else(|| ApiError::field("child_ids", format!("{child_id} is not one of your children")))?;
        children.push(BookedChild { child_id, birth_date: child.birth_date });
    }
    let booking_id = crate::http::new_id(&headers, actor.id, &format!("bookings/{id}"), "booking");
    let command = ActivityCommand::BookSeats { booking_id, seats, children };
    let outcome = run_active::<Activity>(&state, actor, &headers, "bookings", id, command).await?;
    let status = outcome.events.iter().find_map(|e| match e {
        ActivityEvent::BookingConfirmed { booking_id: b, .. } if *b == booking_id => Some("confirmed"),
        ActivityEvent::WaitlistJoined { booking_id: b, .. } if *b == booking_id => Some("waitlisted"),
        ActivityEvent::BookingReserved { booking_id: b, .. } if *b == booking_id => Some("reserved"),
        _ => None,
    });
    let mut res = command_response(StatusCode::CREATED, booking_id, &outcome, json!({"status": status}));
    if let Ok(loc) = format!("/v1/activities/{id}/bookings/{booking_id}").parse() {
        res.headers_mut().insert(axum::http::header::LOCATION, loc);
    }
    Ok(res)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct PayBody {
    #[schema(min_length = 1, max_length = 200)]
    payment_ref: String,
}

/// Records the provider's reference for the caller's reserved booking. It confirms
/// nothing: only the signed webhook (`routes::payments`) does.
#[utoipa::path(post, path = "/v1/activities/{id}/bookings/{booking_id}/payment", tag = "bookings", params(("id" = Uuid, Path, description = "The activity id"), ("booking_id" = Uuid, Path, description = "The booking id")), request_body(content = PayBody, example = json!({"payment_ref": "pi_3Nv1"})), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn pay(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path((id, booking_id)): Path<(Uuid, Uuid)>,
    Json(body): Json<PayBody>,
) -> Result<Response, ApiError> {
    let payment_ref = PaymentRef::parse(&body.payment_ref)?;
    let activity = state.commands.load_current::<Activity>(id).await?.state;
    if !activity.created {
        return Err(DomainError::ActivityNotFound.into());
    }
    let booking = activity.bookings.get(&booking_id).ok_or(DomainError::BookingNotFound)?;
    let booking = BookingSnapshot { member_id: booking.member_id, status: booking.status };
    let command = PaymentCommand::RecordReference { activity_id: id, booking_id, payment_ref, booking };
    let outcome = run_command::<Payment>(&state, actor, &headers, "bookings/payment", booking_id, command).await?;
    Ok(accepted(booking_id, &outcome))
}

/// Cancels the caller's booking.
#[utoipa::path(delete, path = "/v1/activities/{id}/bookings/{booking_id}", tag = "bookings", params(("id" = Uuid, Path, description = "The activity id"), ("booking_id" = Uuid, Path, description = "The booking id")), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn cancel_booking(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path((id, booking_id)): Path<(Uuid, Uuid)>,
) -> Result<Response, ApiError> {
    let command = ActivityCommand::CancelBooking { booking_id };
    let outcome = run_command::<Activity>(&state, actor, &headers, "bookings/cancel", id, command).await?;
    Ok(accepted(booking_id, &outcome))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct InviteBody {
    #[schema(min_items = 1, max_items = 500)]
    emails: Vec<String>,
}

/// Invites people by email (owner).
#[utoipa::path(post, path = "/v1/activities/{id}/invitations", tag = "bookings", params(("id" = Uuid, Path, description = "The activity id")), request_body(content = InviteBody, example = json!({"emails": ["grace@example.com"]})), responses((status = 201, description = "Invited", body = crate::openapi::InvitationsCreated)), security(("bearer" = [])))]
async fn invite(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Json(body): Json<InviteBody>,
) -> Result<Response, ApiError> {
    if body.emails.is_empty() || body.emails.len() > MAX_INVITATIONS {
        return Err(ApiError::field("emails", format!("must hold 1 to {MAX_INVITATIONS} addresses")));
    }
    let mut invitations = Vec::with_capacity(body.emails.len());
    for (i, raw) in body.emails.iter().enumerate() {
        let email = Email::parse(raw).map_err(|e| ApiError::field(&format!("emails[{i}]"), e.to_string()))?;
        let invitation_id = crate::http::new_id(&headers, actor.id, &format!("invitations/{id}"), &i.to_string());
        invitations.push(InvitationRequest { invitation_id, email });
    }
    let command = ActivityCommand::InviteGuests { invitations: invitations.clone() };
    let outcome = run_command::<Activity>(&state, actor, &headers, "invitations", id, command).await?;
    // Addresses invited before are skipped by the domain: answer with what was sent now.
    let sent: Vec<_> = outcome
        .events
        .iter()
        .flat_map(|e| match e {
            ActivityEvent::GuestsInvited { invitations } => invitations.clone(),
            _ => Vec::new(),
        })
        .map(|i| json!({"id": i.invitation_id, "email": i.email.to_string()}))
        .collect();
    Ok(command_response(StatusCode::CREATED, id, &outcome, json!({"invitations": sent})))
}

/// Accepts or declines an invitation: finds its activity and checks it was addressed
/// to the caller's email.
async fn answer_invitation(
    state: AppState,
    actor: Actor,
    headers: HeaderMap,
    invitation_id: Uuid,
    accept: bool,
) -> Result<Response, ApiError> {
    let member = active_member(&state, &actor).await?;
    let not_found = || ApiError::NotFound(format!("no invitation {invitation_id} for you"));
    let activity_id = queries::invitation_activity(&state.db, invitation_id).await?.ok_or_else(not_found)?;
    let activity = state.commands.load_current::<Activity>(activity_id).await?.state;
    let invitation = activity.invitations.get(&invitation_id).ok_or_else(not_found)?;
    let mine =
        member.email.as_ref().zip(invitation.email.known()).is_some_and(|(e, i)| e.normalized() == i.normalized());
    if !mine {
        return Err(ApiError::Forbidden {
            code: "not_the_invitee",
            detail: "this invitation is addressed to another email".into(),
        });
    }
    let (command, route) = if accept {
        (ActivityCommand::AcceptInvitation { invitation_id }, "invitations/accept")
    } else {
        (ActivityCommand::DeclineInvitation { invitation_id }, "invitations/decline")
    };
    let outcome = run_active::<Activity>(&state, actor, &headers, route, activity_id, command).await?;
    Ok(accepted(invitation_id, &outcome))
}

/// Accepts an invitation addressed to the caller's email (books one seat; reserves on a paid activity).
#[utoipa::path(post, path = "/v1/invitations/{id}/accept", tag = "bookings", params(("id" = Uuid, Path, description = "The invitation id")), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn accept_invitation(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(invitation_id): Path<Uuid>,
) -> Result<Response, ApiError> {
    answer_invitation(state, actor, headers, invitation_id, true).await
}

/// Declines an invitation addressed to the caller's email.
#[utoipa::path(post, path = "/v1/invitations/{id}/decline", tag = "bookings", params(("id" = Uuid, Path, description = "The invitation id")), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn decline_invitation(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(invitation_id): Path<Uuid>,
) -> Result<Response, ApiError> {
    answer_invitation(state, actor, headers, invitation_id, false).await
}
