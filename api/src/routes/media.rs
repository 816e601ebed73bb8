//! Media: `POST /v1/activities/{id}/media` streams a photo or video (≤ 50 MiB, its type
//! checked by its first bytes) to the blob store, then appends `MediaAttached`;
//! `GET /v1/media/{id}` serves it with its content type, `ETag`, `Cache-Control` and
//! byte ranges, to whoever may see its activity.

use crate::auth::{Authed, MaybeAuthed};
use crate::error::ApiError;
use crate::extract::Path;
use crate::http::{consistent_read, ensure_active, position_headers, run_active};
use crate::media::{UploadError, declared_matches};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gather_domain::DomainError;
use gather_domain::activity::{Activity, ActivityCommand};
use gather_domain::values::MediaFile;
use gather_projections::queries;
use serde_json::json;
use std::ops::Range;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The most media an activity holds (DOMAIN.md; the domain decides, this refuses early).
const MAX_MEDIA: usize = 20;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upload)).routes(routes!(serve))
}

/// Whether `path` is an upload, whose body is streamed, never buffered (the
/// idempotency layer leaves it alone; the upload derives its media id from the key).
pub fn is_upload(path: &str) -> bool {
    path.strip_prefix("/v1/activities/")
        .and_then(|rest| rest.strip_suffix("/media"))
        .is_some_and(|id| !id.contains('/'))
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::TooLarge(max) => ApiError::PayloadTooLarge(usize::try_from(max).unwrap_or(usize::MAX)),
            UploadError::Empty => ApiError::field("body", "is empty: send the file's bytes"),
            UploadError::Unsupported(why) => ApiError::UnsupportedMediaType(why),
            UploadError::Aborted(why) => {
                ApiError::BadRequest { detail: format!("the upload broke off: {why}"), errors: vec![] }
            }
            UploadError::Store(e) => ApiError::internal(e),
        }
    }
}

/// Uploads a photo (`image/*`) or video (`video/*`) of an activity (owner): the raw
/// body, streamed to the blob store. An `Idempotency-Key` names the media id, so a
/// repeat answers the first upload.
#[utoipa::path(post, path = "/v1/activities/{id}/media", tag = "media",
    params(("id" = Uuid, Path, description = "The activity id"),
        ("Content-Type" = String, Header, description = "`image/*` or `video/*`, matching the file's first bytes (JPEG, PNG, GIF, WebP, AVIF, HEIC, TIFF; MP4, QuickTime, WebM, Ogg, AVI)")),
    request_body(description = "The file's bytes (≤ 50 MiB)", content((Vec<u8> = "image/*"), (Vec<u8> = "video/*"))),
    responses((status = 201, description = "Stored and attached; `Location` serves it", body = crate::openapi::MediaCreated)),
    security(("bearer" = [])))]
async fn upload(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    body: Body,
) -> Result<Response, ApiError> {
    ensure_active(&state, &actor).await?;
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !(declared.starts_with("image/") || declared.starts_with("video/")) {
        return Err(ApiError::UnsupportedMediaType("a media upload is image/* or video/*".into()));
    }
    let max = MediaFile::MAX_BYTES;
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n > max) {
        return Err(ApiError::PayloadTooLarge(usize::try_from(max).unwrap_or(usize::MAX)));
    }
    // Refused before a byte is stored: no such activity, not the owner, no room left.
    let loaded = state.commands.load_current::<Activity>(id).await?;
    let activity = loaded.state;
    if !activity.created {
        return Err(ApiError::NotFound(format!("no activity {id}")));
    }
    if activity.organiser_id != actor.id {
        return Err(ApiError::Forbidden {
            code: "forbidden",
            detail: "only the activity's organiser attaches media".into(),
        });
    }
    let route = format!("activities/{id}/media");
    let media_id = crate::http::new_id(&headers, actor.id, &route, "media");
    if let Some((_, file)) = activity.media.iter().find(|(m, _)| *m == media_id) {
        // A repeat of an upload that succeeded: its answer again, nothing stored twice.
        // Another file under the same key (by size or type: the bytes are not kept to
        // compare) is refused, as for every other command.
        if length.is_some_and(|n| n != file.bytes()) || !declared_matches(&declared, file.content_type()) {
            return Err(ApiError::Unprocessable {
                code: "idempotency_key_reused",
                detail: "this Idempotency-Key was used with a different file".into(),
            });
        }
        let position = match queries::media(&state.db, media_id).await? {
            Some(row) => row.position,
            None => state.store.head().await?.position,
        };
        return Ok(created(media_id, position, loaded.version.unwrap_or(0)));
    }
    if activity.media.len() >= MAX_MEDIA {
        return Err(DomainError::TooManyMedia { max: MAX_MEDIA }.into());
    }
    let stored = state
        .blobs
        .upload(media_id, body.into_data_stream(), max, |sniffed, _| {
            if declared_matches(&declared, sniffed) {
                Ok(())
            } else {
                Err(UploadError::Unsupported(format!(
                    "the body is {sniffed}, not the {declared} its Content-Type says"
                )))
            }
        })
        .await?;
    let attached = async {
        let file = MediaFile::parse(stored.kind, stored.content_type, stored.bytes)?;
        let command = ActivityCommand::AttachMedia { media_id, file };
        run_active::<Activity>(&state, actor, &headers, &route, id, command).await
    }
    .await;
    match attached {
        Ok(outcome) => Ok(created(media_id, outcome.position, outcome.version)),
        Err(e) => {
            // Refused (or failed) after the bytes were stored: they go again.
            if let Err(cleanup) = state.blobs.delete(media_id).await {
                tracing::warn!(%media_id, error = %cleanup, "could not delete the blob of a refused upload");
            }
            Err(e)
        }
    }
}

/// `201 {id, url, position, version}` with `Location`, `ETag` and `Gather-Position`.
fn created(media_id: Uuid, position: i64, version: i64) -> Response {
    let url = format!("/v1/media/{media_id}");
    let body = json!({"id": media_id, "url": url, "position": position, "version": version});
    let mut res = (StatusCode::CREATED, axum::Json(body)).into_response();
    position_headers(res.headers_mut(), position, Some(version));
    if let Ok(loc) = HeaderValue::from_str(&url) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    res
}

/// A `Range: bytes=…` header against a blob of `size` bytes: `Ok(None)` for the whole
/// blob (no header, several ranges, or another unit), `Err` when it cannot be served.
fn byte_range(value: Option<&str>, size: u64) -> Result<Option<Range<u64>>, ()> {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        // The last `end` bytes.
        let n: u64 = end.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        size.saturating_sub(n)..size
    } else {
        let first: u64 = start.parse().map_err(|_| ())?;
        let last = if end.is_empty() { size.saturating_sub(1) } else { end.parse::<u64>().map_err(|_| ())? };
        if last < first {
            return Err(());
        }
        first..last.min(size.saturating_sub(1)) + 1
    };
    if range.start >= size || range.is_empty() { Err(()) } else { Ok(Some(range)) }
}

/// Serves a media item to whoever may see its activity, with byte ranges.
#[utoipa::path(get, path = "/v1/media/{media_id}", tag = "media",
    params(("media_id" = Uuid, Path, description = "The media id"),
        ("Range" = Option<String>, Header, description = "`bytes=first-last`, `bytes=first-` or `bytes=-suffix`"),
        ("If-None-Match" = Option<String>, Header, description = "The `ETag` of a cached copy")),
    responses(
        (status = 200, description = "The file, with `Content-Type`, `ETag`, `Cache-Control`, `Accept-Ranges`", content((Vec<u8> = "image/*"), (Vec<u8> = "video/*"))),
        (status = 206, description = "The requested range, with `Content-Range`", content((Vec<u8> = "image/*"), (Vec<u8> = "video/*"))),
        (status = 304, description = "The cached copy is current"),
        (status = 416, description = "The range is outside the file (`Content-Range: bytes */size`)", body = crate::openapi::Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = [])))]
async fn serve(
    State(state): State<AppState>,
    MaybeAuthed(actor): MaybeAuthed,
    headers: HeaderMap,
    Path(media_id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let position = consistent_read(&state, &headers, &["media", "activities", "invitations"]).await?;
    let not_found = || ApiError::NotFound(format!("no media {media_id}"));
    let row = queries::media(&state.db, media_id).await?.ok_or_else(not_found)?;
    let activity = crate::routes::activities::visible_activity(&state, actor.as_ref(), row.activity_id)
        .await
        .map_err(|e| if matches!(e, ApiError::NotFound(_)) { not_found() } else { e })?;
    let public = activity.visibility == "public" && activity.status != "draft" && activity.status != "pending";
    let etag = format!("\"{media_id}\"");
    let cache = if public { "public, max-age=31536000, immutable" } else { "private, max-age=3600" };
    let mut common = HeaderMap::new();
    common.insert(header::ETAG, HeaderValue::from_str(&etag).map_err(ApiError::internal)?);
    common.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    common.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    common.insert(header::VARY, HeaderValue::from_static("Authorization"));
    position_headers(&mut common, position, None);
    let matches_etag = |v: &str| v.split(',').any(|t| t.trim() == etag || t.trim() == "*");
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(matches_etag) {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        res.headers_mut().extend(common);
        return Ok(res);
    }
    let size = u64::try_from(row.bytes).unwrap_or(0);
    // `If-Range` with another validator: the whole file, as if no range was asked.
    let if_range_ok = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()).is_none_or(|v| v.trim() == etag);
    let asked = if if_range_ok { headers.get(header::RANGE).and_then(|v| v.to_str().ok()) } else { None };
    let range = match byte_range(asked, size) {
        Ok(r) => r,
        Err(()) => {
            let mut res = ApiError::RangeNotSatisfiable(format!("the file has {size} bytes")).into_response();
            res.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).map_err(ApiError::internal)?,
            );
            return Ok(res);
        }
    };
    let fetched = match state.blobs.fetch(media_id, size, range.clone()).await {
        Ok(f) => f,
        Err(object_store::Error::NotFound { .. }) => {
            tracing::error!(%media_id, "an attached media item's blob is missing from the blob store");
            return Err(not_found());
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let served = fetched.range.clone();
    let mut res = Response::new(Body::from_stream(fetched.body));
    *res.status_mut() = if range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    let h = res.headers_mut();
    h.extend(common);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_str(&row.content_type).map_err(ApiError::internal)?);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(served.end - served.start));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("inline"));
    if range.is_some() {
        let value = format!("bytes {}-{}/{}", served.start, served.end - 1, fetched.size);
        h.insert(header::CONTENT_RANGE, HeaderValue::from_str(&value).map_err(ApiError::internal)?);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_are_read_as_rfc_9110_says() {
        assert_eq!(byte_range(None, 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=0-9"), 100), Ok(Some(0..10)));
        assert_eq!(byte_range(Some("bytes=90-"), 100), Ok(Some(90..100)));
        assert_eq!(byte_range(Some("bytes=-5"), 100), Ok(Some(95..100)));
        assert_eq!(byte_range(Some("bytes=-500"), 100), Ok(Some(0..100)));
        assert_eq!(byte_range(Some("bytes=50-500"), 100), Ok(Some(50..100)));
        assert_eq!(byte_range(Some("bytes=0-1,5-6"), 100), Ok(None), "several ranges: the whole file");
        assert_eq!(byte_range(Some("items=0-1"), 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=9-3"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=-0"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=x-"), 100), Err(()));
    }

    #[test]
    fn uploads_are_recognised_by_their_path() {
        assert!(is_upload("/v1/activities/0190f5a4-8b7e-7c3d-9a51-3f2e8d6c4b10/media"));
        assert!(!is_upload("/v1/activities/x/bookings"));
        assert!(!is_upload("/v1/activities/a/b/media"));
    }
}
