//! Password hashing and verification (argon2id), bounded.
//!
//! Each argon2 run takes 19 MiB and a core for tens of milliseconds; unbounded, a
//! flood of logins runs hundreds at once and the process grows by gigabytes. At most
//! `limit` run at once (the number of cores by default); a few more requests may wait
//! for a turn, and beyond that the server answers 503 with `Retry-After` at once.

use crate::error::ApiError;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How many requests may wait for a turn, per hash allowed at once.
pub const WAITING_PER_PERMIT: usize = 4;
/// How long a request waits for a turn before it is answered 503.
pub const MAX_WAIT: Duration = Duration::from_secs(2);

/// A hash every unknown email is verified against when the parameters are OWASP's
/// (the others make their own at start-up), so it takes as long as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Y4mMmDpnyXmaDi0QVv4Xbfbi3p0Cy7Q/lj6nwkbAQrE";

/// Argon2id cost parameters (`GATHER_ARGON2_*`); the default is OWASP's current
/// recommendation: 19 MiB, 2 iterations, 1 lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        HashParams { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 }
    }
}

impl HashParams {
    /// The argon2 parameters, or why these are not acceptable.
    pub fn params(self) -> Result<Params, String> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None).map_err(|e| e.to_string())
    }
}

/// Runs argon2 on blocking threads, at most `limit` at once, and counts how many ran
/// at once (`high_water`, read by tests and health).
pub struct Passwords {
    limit: usize,
    params: Params,
    dummy: String,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    running: AtomicUsize,
    high_water: AtomicUsize,
}

impl Passwords {
    /// At most `limit` hashes at once (at least one), with OWASP's parameters.
    pub fn new(limit: usize) -> Arc<Self> {
        Passwords::with(limit, HashParams::default()).expect("the default argon2 parameters are valid")
    }

    /// At most `limit` hashes at once, with `params` (checked here: a bad value stops
    /// start-up). Hashes made with other parameters still verify (the PHC string
    /// carries its own); new ones use these.
    pub fn with(limit: usize, params: HashParams) -> Result<Arc<Self>, String> {
        let limit = limit.max(1);
        let argon = params.params()?;
        let dummy = if params == HashParams::default() {
            DUMMY_HASH.to_owned()
        } else {
            Argon2::new(Algorithm::Argon2id, Version::V0x13, argon.clone())
                .hash_password(b"not a password anyone has")
                .map(|h| h.to_string())
                .map_err(|e| e.to_string())?
        };
        Ok(Arc::new(Passwords {
            limit,
            params: argon,
            dummy,
            permits: Arc::new(Semaphore::new(limit)),
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            high_water: AtomicUsize::new(0),
        }))
    }

    fn argon(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// The bound: hashes that may run at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Hashes running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// The most hashes that ever ran at once.
    pub fn high_water(&self) -> usize {
        self.high_water.load(Ordering::SeqCst)
    }

    /// Runs `work` on a blocking thread once a permit is free; 503 when too many wait.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let busy = || ApiError::Unavailable("too many password checks at once; retry shortly".into());
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.limit * WAITING_PER_PERMIT {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(busy());
                }
                let waited = tokio::time::timeout(MAX_WAIT, self.permits.clone().acquire_owned()).await;
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                match waited {
                    Ok(Ok(permit)) => permit,
                    _ => return Err(busy()),
                }
            }
        };
        let me = self.clone();
        // The permit moves into the blocking task: a request dropped meanwhile still
        // holds it until its hash has finished.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let now = me.running.fetch_add(1, Ordering::SeqCst) + 1;
            me.high_water.fetch_max(now, Ordering::SeqCst);
            let out = work();
            me.running.fetch_sub(1, Ordering::SeqCst);
            out
        })
        .await
        .map_err(ApiError::internal)
    }

    /// Hashes a password with argon2id.
    pub async fn hash(self: &Arc<Self>, password: String) -> Result<String, ApiError> {
        let argon = self.argon();
        self.run(move || {
            argon.hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| anyhow::anyhow!("{e}"))
        })
        .await?
        .map_err(ApiError::Internal)
    }

    /// Checks a password against a stored hash (false for an unreadable or missing hash;
    /// a missing one still costs a verification, so unknown emails answer alike).
    pub async fn verify(self: &Arc<Self>, password: String, hash: Option<String>) -> Result<bool, ApiError> {
        let (argon, dummy) = (self.argon(), self.dummy.clone());
        self.run(move || {
            let stored = hash.as_deref().unwrap_or(&dummy);
            let Ok(parsed) = PasswordHash::new(stored) else { return false };
            argon.verify_password(password.as_bytes(), &parsed).is_ok() && hash.is_some()
        })
        .await
    }
}

/// Makes glibc return argon2's blocks to the system once freed. Each hash allocates
/// 19 MiB; glibc's dynamic mmap threshold rises to the size of the last freed mapping,
/// so after the first hash these blocks come from per-thread arenas and stay mapped
/// (a login flood left the process at gigabytes). A fixed threshold of 1 MiB keeps every
/// such block an `mmap` of its own, unmapped on free. Call once at start-up.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_MMAP_THRESHOLD: i32 = -3;
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only changes glibc's allocation policy; it is safe to call at
        // any time and returns 0 when the value is refused (then nothing changed).
        let accepted = unsafe { mallopt(M_MMAP_THRESHOLD, 1024 * 1024) };
        if accepted == 0 {
            tracing::warn!("could not set glibc's mmap threshold; freed password hashes may stay mapped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn configured_costs_shape_new_hashes_and_older_hashes_still_verify() {
        let cheap = Passwords::with(2, HashParams { memory_kib: 8 * 1024, iterations: 1, parallelism: 1 }).unwrap();
        let hash = cheap.hash("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{hash}");
        assert!(cheap.verify("correct horse battery".into(), Some(hash.clone())).await.unwrap());
        assert!(!cheap.verify("wrong horse battery".into(), Some(hash)).await.unwrap());
        // A hash made with OWASP's defaults (carried in its PHC string) still verifies.
        let owasp = Passwords::new(1).hash("older password".into()).await.unwrap();
        assert!(owasp.contains("m=19456,t=2,p=1"), "{owasp}");
        assert!(cheap.verify("older password".into(), Some(owasp)).await.unwrap());
        // An unknown email costs a verification and is refused.
        assert!(!cheap.verify("anything".into(), None).await.unwrap());
        assert!(Passwords::with(1, HashParams { memory_kib: 1, iterations: 1, parallelism: 1 }).is_err());
    }
}
