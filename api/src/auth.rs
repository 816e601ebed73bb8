//! Authentication: HS256 JWTs and the actor extractors (password hashing is in
//! [`crate::passwords`]).

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::{Duration, Utc};
use gather_domain::{Actor, Role};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long a token lives.
pub const TOKEN_TTL_HOURS: i64 = 12;

/// The token's claims (API.md: `sub`, `roles`, `exp`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The member id.
    pub sub: Uuid,
    /// Role names.
    pub roles: Vec<String>,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
}

/// Signs and checks tokens with the configured secret.
#[derive(Clone)]
pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Jwt {
    /// Keys from a secret.
    pub fn new(secret: &SecretString) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        Jwt { encoding: EncodingKey::from_secret(bytes), decoding: DecodingKey::from_secret(bytes) }
    }

    /// A token for `member_id` with `roles`.
    pub fn issue(&self, member_id: Uuid, roles: &[Role]) -> Result<String, ApiError> {
        let now = Utc::now();
        let claims = Claims {
            sub: member_id,
            roles: roles.iter().map(|r| r.as_str().to_string()).collect(),
            iat: now.timestamp(),
            exp: (now + Duration::hours(TOKEN_TTL_HOURS)).timestamp(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(ApiError::internal)
    }

    /// The actor a token names; any failure is a 401.
    pub fn verify(&self, token: &str) -> Result<Actor, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &Validation::new(Algorithm::HS256))
            .map_err(|e| ApiError::Unauthorized(format!("invalid token: {e}")))?;
        let mut roles: Vec<Role> =
            data.claims.roles.iter().filter_map(|r| Role::parse(r)).filter(|r| *r != Role::System).collect();
        if !roles.contains(&Role::Member) {
            roles.push(Role::Member);
        }
        Ok(Actor::new(data.claims.sub, roles))
    }
}

fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(value) = parts.headers.get(AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
    let token = value
        .strip_prefix("Bearer ")
        .ok_or_else(|| ApiError::Unauthorized("expected Authorization: Bearer <token>".into()))?;
    Ok(Some(token.trim()))
}

/// An authenticated member (401 without a valid token).
pub struct Authed(pub Actor);

/// The caller if a token was sent (a bad token is still a 401).
pub struct MaybeAuthed(pub Option<Actor>);

impl FromRequestParts<AppState> for MaybeAuthed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match bearer(parts)? {
            Some(token) => Ok(MaybeAuthed(Some(state.jwt.verify(token)?))),
            None => Ok(MaybeAuthed(None)),
        }
    }
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match MaybeAuthed::from_request_parts(parts, state).await? {
            MaybeAuthed(Some(actor)) => Ok(Authed(actor)),
            MaybeAuthed(None) => Err(ApiError::Unauthorized("this endpoint needs a Bearer token".into())),
        }
    }
}

impl Authed {
    /// Refuses the request unless the actor holds `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.0.has(role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden { code: "forbidden", detail: format!("this needs the {} role", role.as_str()) })
        }
    }
}
