//! Request hardening: per-key token-bucket rate limits and a bound on how long a
//! request may take to answer.
//!
//! - Commands (every method but GET, HEAD and OPTIONS) of a member with a valid token:
//!   `GATHER_RATE_LIMIT_COMMANDS` per second per member, bursts of twice that.
//! - Requests without a valid token: `GATHER_RATE_LIMIT_GUESTS` per second per IP.
//! - `POST /v1/auth/login` and `/v1/auth/register`: `GATHER_RATE_LIMIT_AUTH` per
//!   second per IP, whoever asks (password guessing, argon2 cost).
//!
//! A refusal is a 429 problem+json (`rate_limited`) with `Retry-After`, and nothing
//! runs. A request that takes longer than `GATHER_REQUEST_TIMEOUT_SECS` to answer gets
//! a 503 (a streamed body, SSE or the audit follow, is not bounded; a media upload gets
//! at least 10 minutes).

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The least time a media upload gets (50 MiB at ~100 KiB/s), whatever
/// `GATHER_REQUEST_TIMEOUT_SECS` says.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// Keys tracked at most; beyond it, idle (full) buckets are dropped.
const MAX_KEYS: usize = 100_000;

/// Who a bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// A member's commands.
    Member(Uuid),
    /// A guest's requests.
    Guest(IpAddr),
    /// Logins and registrations from an address.
    Auth(IpAddr),
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per key: `rate` per second, bursts of `2 × rate`.
pub struct RateLimiter {
    rate: f64,
    buckets: Mutex<HashMap<Key, Bucket>>,
}

impl RateLimiter {
    /// `rate` per second (0 = unlimited).
    pub fn new(rate: u32) -> RateLimiter {
        RateLimiter { rate: f64::from(rate), buckets: Mutex::default() }
    }

    fn burst(&self) -> f64 {
        (self.rate * 2.0).max(1.0)
    }

    /// Takes a token for `key`, or says how long until one is there.
    pub fn take(&self, key: Key, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let burst = self.burst();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(&key) {
            let rate = self.rate;
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(key).or_insert(Bucket { tokens: burst, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }
}

/// The three limiters of a process.
pub struct Limits {
    commands: RateLimiter,
    guests: RateLimiter,
    auth: RateLimiter,
}

impl Limits {
    /// From the settings' rates.
    pub fn new(commands: u32, guests: u32, auth: u32) -> Limits {
        Limits { commands: RateLimiter::new(commands), guests: RateLimiter::new(guests), auth: RateLimiter::new(auth) }
    }
}

fn refuse(scope: &'static str, wait: Duration) -> Response {
    metrics::counter!("gather_rate_limited_total", "scope" => scope).increment(1);
    ApiError::TooManyRequests {
        detail: format!("too many requests ({scope}); retry later"),
        retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
    }
    .into_response()
}

/// The rate limits, then the timeout, around every request.
pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let now = Instant::now();
    let ip =
        request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let limits = &state.limits;
    let path = request.uri().path();
    if request.method() == Method::POST
        && (path == "/v1/auth/login" || path == "/v1/auth/register")
        && let Err(wait) = limits.auth.take(Key::Auth(ip), now)
    {
        return refuse("auth", wait);
    }
    let member = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| state.jwt.verify(t.trim()).ok())
        .map(|a| a.id);
    let command = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let limited = match member {
        Some(id) if command => limits.commands.take(Key::Member(id), now).map_err(|w| ("commands", w)),
        Some(_) => Ok(()),
        None => limits.guests.take(Key::Guest(ip), now).map_err(|w| ("guests", w)),
    };
    if let Err((scope, wait)) = limited {
        return refuse(scope, wait);
    }
    // A media upload reads up to 50 MiB from the client first: it gets more time.
    let bound = if crate::routes::media::is_upload(request.uri().path()) {
        state.settings.request_timeout.max(UPLOAD_TIMEOUT)
    } else {
        state.settings.request_timeout
    };
    let mut cut_off = state.cut_off.clone();
    let run = async {
        tokio::select! {
            r = next.run(request) => Ok(r),
            _ = cut_off.wait_for(|c| *c) => Err(()),
        }
    };
    match tokio::time::timeout(bound, run).await {
        Ok(Ok(response)) => response,
        Ok(Err(())) => ApiError::Unavailable("the server is shutting down; retry on another".into()).into_response(),
        Err(_) => {
            metrics::counter!("gather_request_timeouts_total").increment(1);
            ApiError::Unavailable(format!(
                "the request took longer than {} s; if it was a command, retry it with the same Idempotency-Key",
                bound.as_secs()
            ))
            .into_response()
        }
    }
}

/// CORS for the configured origins (none: no cross-origin access).
pub fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderName, HeaderValue};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    let header = |n: &'static str| HeaderName::from_static(n);
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::PUT, Method::DELETE])
            .allow_headers([
                header("authorization"),
                header("content-type"),
                header("idempotency-key"),
                header("if-match"),
                header("gather-min-position"),
                header("last-event-id"),
            ])
            .expose_headers([
                header("gather-position"),
                header("etag"),
                header("location"),
                header("retry-after"),
                header("gather-next-cursor"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_a_burst_then_refuses_until_it_refills() {
        let limiter = RateLimiter::new(5);
        let key = Key::Guest(IpAddr::from([10, 0, 0, 1]));
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(limiter.take(key, t0).is_ok());
        }
        let wait = limiter.take(key, t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(200), "{wait:?}");
        assert!(limiter.take(key, t0 + Duration::from_millis(200)).is_ok());
        // Another key has its own bucket.
        assert!(limiter.take(Key::Guest(IpAddr::from([10, 0, 0, 2])), t0).is_ok());
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = RateLimiter::new(0);
        let key = Key::Member(Uuid::nil());
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| limiter.take(key, t0).is_ok()));
    }
}
