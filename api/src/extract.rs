//! Extractors that answer bad input with problem+json instead of axum's plain text.

use crate::error::{ApiError, FieldError};
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::{DeserializeOwned, IgnoredAny};

/// The largest JSON body accepted (API.md: 413 above 1 MiB).
pub const MAX_BODY: usize = 1024 * 1024;

/// A JSON body; malformed JSON, wrong types and missing fields are 400s naming the field,
/// a wrong content type 415, an oversize body 413.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::UnsupportedMediaType("expected Content-Type: application/json".into()));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|_| ApiError::PayloadTooLarge(MAX_BODY))?;
        parse_json(&bytes).map(Json)
    }
}

/// Parses a JSON body already read (a signed webhook's raw body), with the same
/// answers as [`Json`]: 400 naming the field for wrong types and missing fields.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match axum::Json::<T>::from_bytes(bytes) {
        Ok(axum::Json(v)) => Ok(v),
        Err(JsonRejection::JsonDataError(e)) => Err(data_error(&e.body_text())),
        // serde_json reports some wrong types (`null` where an enum is expected) as
        // syntax errors: if the body is well-formed JSON, it is a field's fault.
        Err(JsonRejection::JsonSyntaxError(e)) if serde_json::from_slice::<IgnoredAny>(bytes).is_ok() => {
            Err(data_error(&e.body_text()))
        }
        Err(JsonRejection::JsonSyntaxError(_)) => {
            Err(ApiError::BadRequest { detail: "the body is not valid JSON".into(), errors: vec![] })
        }
        Err(other) => Err(ApiError::BadRequest { detail: other.body_text(), errors: vec![] }),
    }
}

/// `application/json` or any `application/*+json`, as axum's own `Json` accepts.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Turns serde's message ("…: missing field `title` at line 1 column 2") into a field error.
fn data_error(text: &str) -> ApiError {
    let msg = PREFIXES.iter().find_map(|p| text.strip_prefix(p)).unwrap_or(text);
    let (path, reason) = match msg.split_once(": ") {
        Some((p, r)) if !p.contains(' ') => (p.to_string(), r.to_string()),
        _ => (String::new(), msg.to_string()),
    };
    let mut reason = reason.split(" at line ").next().unwrap_or(&reason).to_string();
    if reason == "expected value" {
        reason = "invalid type or value".into();
    }
    let field = if let Some(f) = reason.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
        if path.is_empty() || path == "." { f.to_string() } else { format!("{path}.{f}") }
    } else if path.is_empty() || path == "." {
        "body".to_string()
    } else {
        path
    };
    ApiError::BadRequest { detail: format!("{field}: {reason}"), errors: vec![FieldError { field, message: reason }] }
}

/// How axum's rejections open their messages.
const PREFIXES: [&str; 2] =
    ["Failed to deserialize the JSON body into the target type: ", "Failed to parse the request body as JSON: "];

/// A path parameter; an unparseable id is a 404 (no such resource).
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => {
                Err(ApiError::NotFound("no such resource (ids are UUIDs)".into()))
            }
            Err(e) => Err(ApiError::internal(anyhow::anyhow!(e.body_text()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_field_is_named() {
        let e = data_error(
            "Failed to deserialize the JSON body into the target type: missing field `title` at line 1 column 2",
        );
        match e {
            ApiError::BadRequest { errors, .. } => assert_eq!(errors[0].field, "title"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_wrong_type_names_its_path() {
        let e = data_error(
            "Failed to deserialize the JSON body into the target type: capacity: invalid type: string \"x\", expected i64 at line 1 column 20",
        );
        match e {
            ApiError::BadRequest { errors, .. } => {
                assert_eq!(errors[0].field, "capacity");
                assert!(errors[0].message.starts_with("invalid type"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
