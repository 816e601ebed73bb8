//! `POST /v1/payments/webhook`: the payment provider reports a payment's outcome.
//!
//! The delivery is signed (`crate::payments`: HMAC-SHA256 over `"<t>.<raw body>"` with
//! `GATHER_PAYMENT_WEBHOOK_SECRET`, `t` within 5 minutes); anything else is a 401 and
//! changes nothing. A `succeeded` payment confirms the reservation when booking,
//! activity, amount and currency match (`ConfirmPayment` as the system); a `failed` one
//! releases it (`FailPayment`). The provider's `event_id` is the command's id, so a
//! redelivered event is recognised by the store and changes nothing. An applied
//! delivery answers `204` with `Gather-Position`, like any command.

use crate::error::ApiError;
use crate::extract::parse_json;
use crate::http::position_headers;
use crate::payments::{SIGNATURE_HEADER, verify};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gather_commands::CommandMeta;
use gather_commands::ids::derived;
use gather_domain::Actor;
use gather_domain::activity::{Activity, ActivityCommand};
use gather_domain::values::{Money, PaymentRef};
use secrecy::ExposeSecret;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(webhook))
}

/// A payment's outcome as the provider reports it.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Succeeded,
    Failed,
}

/// The webhook's payload (API.md).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct Delivery {
    #[schema(min_length = 1, max_length = 200)]
    event_id: String,
    booking_id: Uuid,
    activity_id: Uuid,
    #[schema(min_length = 1, max_length = 200)]
    payment_ref: String,
    #[schema(minimum = 0)]
    amount: i64,
    #[schema(pattern = "^[A-Za-z]{3}$")]
    currency: String,
    status: Outcome,
}

/// The command id of a provider event: the same event always names the same command.
pub fn command_id(event_id: &str) -> Uuid {
    derived(format!("payment-webhook|{event_id}"))
}

/// The payment provider's signed webhook (see the README for the signature).
#[utoipa::path(post, path = "/v1/payments/webhook", tag = "bookings", operation_id = "payment_webhook", params(("Gather-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">`")), request_body(content = Delivery, example = json!({"event_id": "evt_1", "booking_id": "0190f5a4-8b7e-7c3d-9a51-3f2e8d6c4b10", "activity_id": "0190f5a4-8b7e-7c3d-9a51-3f2e8d6c4b11", "payment_ref": "pi_3Nv1", "amount": 1500, "currency": "EUR", "status": "succeeded"})), responses((status = 204, description = "Applied, or a repeat of an applied event"), (status = 401, description = "A bad signature or a stale timestamp; nothing changes", body = crate::openapi::Problem, content_type = "application/problem+json")))]
async fn webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let Some(secret) = &state.settings.payment_webhook_secret else {
        tracing::warn!("a payment webhook arrived but GATHER_PAYMENT_WEBHOOK_SECRET is not set");
        return Err(ApiError::Unavailable("the payment webhook is not configured".into()));
    };
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let now = chrono::Utc::now().timestamp();
    verify(secret.expose_secret().as_bytes(), signature, &body, now).map_err(|e| {
        tracing::warn!(error = %e, "refused a payment webhook delivery");
        ApiError::Unauthorized(e.to_string())
    })?;
    let delivery: Delivery = parse_json(&body)?;
    let event_id = delivery.event_id.trim();
    if event_id.is_empty() || event_id.len() > 200 {
        return Err(ApiError::field("event_id", "must be 1 to 200 characters"));
    }
    let payment_ref = PaymentRef::parse(&delivery.payment_ref)?;
    let amount = Money::parse(delivery.amount, &delivery.currency)?;

    let mut meta = CommandMeta::new(Actor::system());
    meta.command_id = command_id(event_id);
    meta.correlation_id = meta.command_id;
    // A redelivered event changes nothing, whatever the booking's state is now.
    if state.store.recorded(meta.command_id).await?.is_some() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let command = match delivery.status {
        Outcome::Succeeded => {
            ActivityCommand::ConfirmPayment { booking_id: delivery.booking_id, payment_ref, amount: Some(amount) }
        }
        Outcome::Failed => ActivityCommand::FailPayment { booking_id: delivery.booking_id },
    };
    // The booking is looked up in the named activity's stream: a booking of another
    // activity is not found there, so a delivery for the wrong activity confirms nothing.
    let outcome = state.commands.handle::<Activity>(delivery.activity_id, command, &meta).await?;
    tracing::info!(
        event_id,
        booking_id = %delivery.booking_id,
        activity_id = %delivery.activity_id,
        outcome = ?delivery.status,
        "payment webhook applied"
    );
    // Like every command's answer, the position to read the change at.
    let mut res = StatusCode::NO_CONTENT.into_response();
    position_headers(res.headers_mut(), outcome.position, Some(outcome.version));
    Ok(res)
}
