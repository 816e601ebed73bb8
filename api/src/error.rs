//! `ApiError`: the one place where errors become status codes and problem+json
//! (RFC 9457). Internal errors are logged with their cause chain and answered with a
//! generic body; bad input is always a 4xx.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gather_commands::{CommandError, StoreError};
use gather_domain::{DomainError, ErrorKind};
use serde::Serialize;

/// One invalid field of a request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's name (`title`, `location.lat`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// Every error an endpoint can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed or invalid input.
    #[error("{detail}")]
    BadRequest {
        /// What is wrong.
        detail: String,
        /// Per-field errors.
        errors: Vec<FieldError>,
    },
    /// 401: missing, bad or expired credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: role or ownership.
    #[error("{detail}")]
    Forbidden {
        /// Stable code.
        code: &'static str,
        /// Why.
        detail: String,
    },
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: a domain rule or a taken key.
    #[error("{detail}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// Why.
        detail: String,
    },
    /// 405: the path exists, the method does not.
    #[error("this path does not answer this method")]
    MethodNotAllowed,
    /// 412: `If-Match` names a stale version.
    #[error("the resource is at version {actual}")]
    PreconditionFailed {
        /// The actual version (-1: none).
        actual: i64,
    },
    /// 413.
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 416: a `Range` outside the file.
    #[error("{0}")]
    RangeNotSatisfiable(String),
    /// 422: semantically impossible input or idempotency-key reuse.
    #[error("{detail}")]
    Unprocessable {
        /// Stable code.
        code: &'static str,
        /// Why.
        detail: String,
    },
    /// 503 with `Retry-After`.
    #[error("{0}")]
    Unavailable(String),
    /// 429 with `Retry-After` (seconds).
    #[error("{detail}")]
    TooManyRequests {
        /// Why.
        detail: String,
        /// When to try again, in whole seconds.
        retry_after: u64,
    },
    /// 500: logged, never detailed to the client.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
}

impl ApiError {
    /// A 400 about one field.
    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::BadRequest {
            detail: format!("{field}: {message}"),
            errors: vec![FieldError { field: field.into(), message }],
        }
    }

    /// Wraps any internal failure.
    pub fn internal(e: impl Into<anyhow::Error>) -> ApiError {
        ApiError::Internal(e.into())
    }

    /// The problem's `code` (`validation_failed`, `forbidden`, a domain code, …).
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "validation_failed"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden { code, .. } => (StatusCode::FORBIDDEN, code),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::PreconditionFailed { .. } => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::RangeNotSatisfiable(_) => (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable"),
            ApiError::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let detail = match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = %gather_projections::runtime::error_chain(e.as_ref()), "internal error");
                "an internal error occurred; it has been logged".to_string()
            }
            other => other.to_string(),
        };
        let errors = match &self {
            ApiError::BadRequest { errors, .. } if !errors.is_empty() => Some(errors.as_slice()),
            _ => None,
        };
        let body = Problem {
            kind: format!("https://gather.example/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            code,
            errors,
        };
        let mut res = (status, axum::Json(body)).into_response();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::TooManyRequests { retry_after, .. } = &self
            && let Ok(v) = HeaderValue::from_str(&retry_after.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let ApiError::PreconditionFailed { actual } = self
            && let Ok(v) = HeaderValue::from_str(&format!("\"{actual}\""))
        {
            res.headers_mut().insert(header::ETAG, v);
        }
        res
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let code = e.code();
        let detail = e.to_string();
        match e.kind() {
            ErrorKind::Validation => {
                let errors = e
                    .field()
                    .map(|f| vec![FieldError { field: f.to_string(), message: detail.clone() }])
                    .unwrap_or_default();
                ApiError::BadRequest { detail, errors }
            }
            ErrorKind::Forbidden => ApiError::Forbidden { code, detail },
            ErrorKind::NotFound => ApiError::NotFound(detail),
            ErrorKind::Conflict => ApiError::Conflict { code, detail },
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Domain(d) => d.into(),
            CommandError::PreconditionFailed { actual } => {
                ApiError::PreconditionFailed { actual: actual.unwrap_or(-1) }
            }
            CommandError::Taken { stream } => {
                ApiError::Conflict { code: "taken", detail: format!("{stream} is already taken") }
            }
            CommandError::Contention { .. } => {
                ApiError::Unavailable("too many concurrent changes to this resource; retry".into())
            }
            CommandError::Store(s) => s.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(e)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(e)
    }
}
