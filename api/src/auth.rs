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

/// How long a token lives unless `GATHER_TOKEN_TTL_MINUTES` says otherwise.
pub const TOKEN_TTL_HOURS: i64 = 12;
/// The issuer unless `GATHER_JWT_ISSUER` says otherwise.
pub const DEFAULT_ISSUER: &str = "gather";

/// The token's claims (API.md: `sub`, `roles`, `exp`; and `iat`, `iss`).
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
    /// Who issued it.
    pub iss: String,
}

/// Signs and checks tokens with the configured secret: HS256 only (`alg: none` and
/// every other algorithm are refused), `exp`, `iat`, `iss` and `sub` required, the
/// issuer checked, 30 s of clock leeway.
#[derive(Clone)]
pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    ttl: Duration,
    validation: Validation,
}

impl Jwt {
    /// Keys from a secret, with the default issuer and lifetime.
    pub fn new(secret: &SecretString) -> Self {
        Jwt::with(secret, DEFAULT_ISSUER, Duration::hours(TOKEN_TTL_HOURS))
    }

    /// Keys from a secret; tokens name `issuer` and live `ttl`.
    pub fn with(secret: &SecretString, issuer: &str, ttl: Duration) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        validation.leeway = 30;
        Jwt {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            issuer: issuer.to_owned(),
            ttl,
            validation,
        }
    }

    /// A token for `member_id` with `roles`.
    pub fn issue(&self, member_id: Uuid, roles: &[Role]) -> Result<String, ApiError> {
        self.issue_at(member_id, roles, Utc::now())
    }

    /// A token issued at `now` (tests make expired ones with it).
    pub fn issue_at(&self, member_id: Uuid, roles: &[Role], now: chrono::DateTime<Utc>) -> Result<String, ApiError> {
        let claims = Claims {
            sub: member_id,
            roles: roles.iter().map(|r| r.as_str().to_string()).collect(),
            iat: now.timestamp(),
            exp: (now + self.ttl).timestamp(),
            iss: self.issuer.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(ApiError::internal)
    }

    /// The actor a token names; any failure is a 401.
    pub fn verify(&self, token: &str) -> Result<Actor, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
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

/// Whether the members read model shows `member` forgotten (its token is worthless
/// then). A member it does not show yet (just registered) is not.
pub(crate) async fn forgotten(state: &AppState, member: Uuid) -> Result<bool, ApiError> {
    let row: Option<(bool,)> = gather_commands::on_db_read!(&state.db, p =>
        sqlx::query_as("SELECT email = '' FROM members WHERE member_id = $1").bind(member).fetch_optional(p).await)?;
    Ok(row.is_some_and(|(f,)| f))
}

/// An authenticated member (401 without a valid token).
pub struct Authed(pub Actor);

/// The caller if a token was sent (a bad token is still a 401).
pub struct MaybeAuthed(pub Option<Actor>);

impl FromRequestParts<AppState> for MaybeAuthed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match bearer(parts)? {
            Some(token) => {
                let actor = state.jwt.verify(token)?;
                // Commands check the member's own stream on their one path
                // (`http::ensure_active`); reads check the members read model here.
                let read = matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD);
                if read && forgotten(state, actor.id).await? {
                    return Err(ApiError::Unauthorized("this member no longer exists".into()));
                }
                Ok(MaybeAuthed(Some(actor)))
            }
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
