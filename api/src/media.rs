//! The blob store behind media uploads: a small port over `object_store`. Files under
//! `$GATHER_DATA_DIR/media` by default; an S3-compatible bucket with
//! `GATHER_MEDIA_URL=s3://bucket[/prefix]` (credentials, region and endpoint from the
//! `AWS_*` variables). Uploads stream through a multipart upload that is completed only
//! once the whole body has arrived within bounds and aborted otherwise, so an aborted
//! or refused upload leaves nothing behind. Blobs are immutable: a media id names one
//! upload forever.

use crate::settings::Settings;
use anyhow::Context as _;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use gather_domain::values::MediaKind;
use object_store::path::Path as BlobPath;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};
use std::ops::Range;
use std::sync::Arc;
use uuid::Uuid;

/// Bytes read before the type is checked (enough for every signature below).
const SNIFF: usize = 16;
/// Multipart chunk size (S3's minimum part is 5 MiB).
const CHUNK: usize = 5 * 1024 * 1024;

/// Where media live.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// What the store is, for logs (`files:/…`, `s3://…`).
    pub describe: String,
}

/// Why an upload was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The body is longer than allowed.
    #[error("the body is larger than {0} bytes")]
    TooLarge(u64),
    /// The body is empty.
    #[error("the body is empty")]
    Empty,
    /// The bytes are not an image or video of the declared kind.
    #[error("{0}")]
    Unsupported(String),
    /// The client's body broke off.
    #[error("the upload broke off: {0}")]
    Aborted(String),
    /// The blob store failed.
    #[error("the blob store failed: {0}")]
    Store(#[from] object_store::Error),
}

/// A stored upload.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its size.
    pub bytes: u64,
    /// Its content type, from its first bytes.
    pub content_type: &'static str,
    /// Photo or video.
    pub kind: MediaKind,
}

/// A blob read back (a whole one or a range of it).
pub struct Fetched {
    /// The blob's whole size.
    pub size: u64,
    /// The bytes served.
    pub range: Range<u64>,
    /// Those bytes, streamed.
    pub body: futures::stream::BoxStream<'static, Result<Bytes, object_store::Error>>,
}

/// The content type (and kind) the first bytes of a file show, if it is an image or a
/// video this server accepts. SVG and other formats that can carry scripts are not.
pub fn sniff(head: &[u8]) -> Option<(&'static str, MediaKind)> {
    use MediaKind::{Photo, Video};
    let at = |i: usize, sig: &[u8]| head.len() >= i + sig.len() && &head[i..i + sig.len()] == sig;
    if at(0, &[0xFF, 0xD8, 0xFF]) {
        return Some(("image/jpeg", Photo));
    }
    if at(0, b"\x89PNG\r\n\x1a\n") {
        return Some(("image/png", Photo));
    }
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        return Some(("image/gif", Photo));
    }
    if at(0, b"RIFF") && at(8, b"WEBP") {
        return Some(("image/webp", Photo));
    }
    if at(0, b"RIFF") && at(8, b"AVI ") {
        return Some(("video/x-msvideo", Video));
    }
    if at(0, b"II*\0") || at(0, b"MM\0*") {
        return Some(("image/tiff", Photo));
    }
    if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some(("video/webm", Video));
    }
    if at(0, b"OggS") {
        return Some(("video/ogg", Video));
    }
    if at(4, b"ftyp") && head.len() >= 12 {
        return Some(match &head[8..12] {
            b"avif" | b"avis" => ("image/avif", Photo),
            b"heic" | b"heix" | b"heim" | b"heis" | b"mif1" | b"msf1" => ("image/heic", Photo),
            b"qt  " => ("video/quicktime", Video),
            _ => ("video/mp4", Video),
        });
    }
    None
}

/// Whether a declared content type names the sniffed one (or a common alias of it).
pub fn declared_matches(declared: &str, sniffed: &str) -> bool {
    let declared = declared.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if declared == sniffed {
        return true;
    }
    let aliases: &[&str] = match sniffed {
        "image/jpeg" => &["image/jpg", "image/pjpeg"],
        "image/heic" => &["image/heif", "image/heic-sequence", "image/heif-sequence"],
        "video/mp4" => &["video/x-m4v", "video/mpeg4", "video/3gpp", "video/3gpp2"],
        "video/webm" => &["video/x-matroska", "video/matroska"],
        "video/x-msvideo" => &["video/avi", "video/msvideo"],
        _ => &[],
    };
    aliases.contains(&declared.as_str())
}

impl Blobs {
    /// The store `settings` name.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Blobs> {
        match &settings.media_url {
            Some(url) => {
                let store = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url)
                    .build()
                    .context("GATHER_MEDIA_URL: could not set up the S3 store")?;
                Ok(Blobs { store: Arc::new(store), describe: url.clone() })
            }
            None => {
                let dir = settings.data_dir.join("media");
                std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .with_context(|| format!("could not open {}", dir.display()))?
                    .with_automatic_cleanup(true);
                Ok(Blobs { store: Arc::new(store), describe: format!("files:{}", dir.display()) })
            }
        }
    }

    fn key(id: Uuid) -> BlobPath {
        BlobPath::from(format!("media/{id}"))
    }

    /// Streams `body` into the blob `id`: at most `max` bytes, its first bytes an image
    /// or a video `check` accepts. Completed only when all of it arrived within bounds;
    /// aborted (nothing left) on any refusal or failure.
    pub async fn upload<S, E>(
        &self,
        id: Uuid,
        body: S,
        max: u64,
        check: impl FnOnce(&'static str, MediaKind) -> Result<(), UploadError>,
    ) -> Result<Stored, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut body = body;
        // The first bytes decide before anything is written.
        let mut head = Vec::with_capacity(SNIFF);
        let mut pending: Vec<Bytes> = Vec::new();
        while head.len() < SNIFF {
            match body.next().await {
                Some(Ok(chunk)) => {
                    head.extend_from_slice(&chunk[..chunk.len().min(SNIFF - head.len())]);
                    pending.push(chunk);
                }
                Some(Err(e)) => return Err(UploadError::Aborted(e.to_string())),
                None => break,
            }
        }
        if head.is_empty() {
            return Err(UploadError::Empty);
        }
        let (content_type, kind) = sniff(&head).ok_or_else(|| {
            UploadError::Unsupported("the content is not an image or a video this server accepts".into())
        })?;
        check(content_type, kind)?;
        let upload = self.store.put_multipart(&Self::key(id)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
        let mut bytes: u64 = 0;
        let outcome: Result<(), UploadError> = async {
            let mut next = futures::stream::iter(pending.into_iter().map(Ok::<_, E>)).chain(&mut body);
            while let Some(chunk) = next.next().await {
                let chunk = chunk.map_err(|e| UploadError::Aborted(e.to_string()))?;
                bytes += chunk.len() as u64;
                if bytes > max {
                    return Err(UploadError::TooLarge(max));
                }
                writer.wait_for_capacity(2).await?;
                writer.write(&chunk);
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => {
                writer.finish().await?;
                Ok(Stored { bytes, content_type, kind })
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(media_id = %id, error = %abort, "could not abort a refused upload");
                }
                Err(e)
            }
        }
    }

    /// Removes the blob `id` (an upload whose command was refused). Missing is fine.
    pub async fn delete(&self, id: Uuid) -> Result<(), object_store::Error> {
        match self.store.delete(&Self::key(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The blob `id`, or the `range` of it (already checked against its size).
    pub async fn fetch(&self, id: Uuid, size: u64, range: Option<Range<u64>>) -> Result<Fetched, object_store::Error> {
        let options = GetOptions { range: range.clone().map(GetRange::Bounded), ..GetOptions::default() };
        let got = self.store.get_opts(&Self::key(id), options).await?;
        Ok(Fetched { size, range: got.range.clone(), body: got.into_stream() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_images_and_videos_by_their_first_bytes() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]).map(|s| s.0), Some("image/jpeg"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").map(|s| s.0), Some("image/png"));
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0").map(|s| s.0), Some("image/gif"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ").map(|s| s.0), Some("image/webp"));
        assert_eq!(sniff(b"\0\0\0\x20ftypisom\0\0\x02\0").map(|s| s.0), Some("video/mp4"));
        assert_eq!(sniff(b"\0\0\0\x14ftypqt  \0\0\0\0").map(|s| s.0), Some("video/quicktime"));
        assert_eq!(sniff(b"\0\0\0\x1cftypavif\0\0\0\0").map(|s| s.0), Some("image/avif"));
        assert_eq!(sniff(&[0x1A, 0x45, 0xDF, 0xA3, 1]).map(|s| s.0), Some("video/webm"));
        assert_eq!(sniff(b"<svg xmlns=\"http://www.w3.org/2000/svg\">"), None, "SVG can carry scripts");
        assert_eq!(sniff(b"<html><script>"), None);
        assert_eq!(sniff(b"%PDF-1.7"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn a_declared_type_must_name_what_the_bytes_are() {
        assert!(declared_matches("image/jpeg", "image/jpeg"));
        assert!(declared_matches("IMAGE/JPG; charset=binary", "image/jpeg"));
        assert!(!declared_matches("image/png", "image/jpeg"));
        assert!(!declared_matches("video/mp4", "image/jpeg"));
    }
}
