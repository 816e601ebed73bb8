//! Typed settings from the `GATHER_*` environment variables. Only this module reads the
//! environment; a wrong value stops start-up with one line naming the variable.

use secrecy::SecretString;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Which parts of Gather this process runs (`GATHER_ROLES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessRole {
    /// The HTTP API.
    Api,
    /// The projector workers.
    Projector,
    /// The notification worker.
    Notifier,
    /// Timers and process managers.
    Scheduler,
}

/// An account created at start-up if missing (`email:password`).
#[derive(Debug, Clone)]
pub struct BootstrapAccount {
    /// Login email.
    pub email: String,
    /// Initial password.
    pub password: SecretString,
}

/// Everything Gather reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `GATHER_BIND`: listen address.
    pub bind: SocketAddr,
    /// `GATHER_DATA_DIR`: embedded database, mail files, generated secrets.
    pub data_dir: PathBuf,
    /// `GATHER_DATABASE_URL`: `sqlite://…` (default) or `postgres://…`.
    pub database_url: String,
    /// `GATHER_MIGRATE_DATABASE_URL`: Postgres only: the role that owns the schema and
    /// runs migrations; the role of `GATHER_DATABASE_URL` then gets only SELECT and
    /// INSERT on the log. Unset = the main URL's role does both.
    pub migrate_database_url: Option<String>,
    /// `GATHER_AMQP_URL`: RabbitMQ; unset = in-process bus.
    pub amqp_url: Option<String>,
    /// `GATHER_SMTP_URL`: SMTP; unset = mail files.
    pub smtp_url: Option<String>,
    /// `GATHER_JWT_SECRET`: required in production; generated into the data dir otherwise.
    pub jwt_secret: Option<SecretString>,
    /// `GATHER_LOOKUP_KEY`: names email reservations by a keyed hash; required in
    /// production, generated into the data dir otherwise.
    pub lookup_key: Option<SecretString>,
    /// `GATHER_KEK`: the key-encryption key (64 hex characters) that wraps the members'
    /// data keys (crypto-shredding); required in production, generated into the data
    /// dir otherwise.
    pub kek: Option<SecretString>,
    /// `GATHER_BOOTSTRAP_MODERATOR`.
    pub bootstrap_moderator: Option<BootstrapAccount>,
    /// `GATHER_BOOTSTRAP_AUDITOR`.
    pub bootstrap_auditor: Option<BootstrapAccount>,
    /// `GATHER_ROLES`.
    pub roles: Vec<ProcessRole>,
    /// `GATHER_PASSWORD_HASHING_CONCURRENCY`: argon2 runs at once (default: the cores).
    pub password_hashing_concurrency: usize,
    /// `GATHER_PAYMENT_WEBHOOK_SECRET`: the payment provider's signing secret; unset,
    /// the webhook answers 503.
    pub payment_webhook_secret: Option<SecretString>,
    /// `GATHER_PUBLIC_BASE_URL`: where clients reach the API (links in emails, such as
    /// an invitation's accept and decline links). Default: `http://` + `GATHER_BIND`.
    pub public_base_url: String,
    /// `GATHER_AUDIT_EXCHANGE`: `on` publishes every event to the `gather.audit`
    /// exchange through the outbox (default `off`).
    pub audit_exchange: bool,
    /// `GATHER_RATE_LIMIT_COMMANDS`: commands per second per member (bursts of twice
    /// that); 0 = off. Default 20.
    pub rate_limit_commands: u32,
    /// `GATHER_RATE_LIMIT_GUESTS`: requests per second per IP without a token; 0 = off.
    /// Default 20.
    pub rate_limit_guests: u32,
    /// `GATHER_RATE_LIMIT_AUTH`: logins and registrations per second per IP; 0 = off.
    /// Default 5.
    pub rate_limit_auth: u32,
    /// `GATHER_REQUEST_TIMEOUT_SECS`: the longest a request may take to answer (a
    /// stream's body is not bounded); 503 after it. Default 30.
    pub request_timeout: std::time::Duration,
    /// `GATHER_CORS_ORIGINS`: origins allowed to call the API from a browser,
    /// comma-separated (`https://app.example.com`); unset = no cross-origin access.
    pub cors_origins: Vec<String>,
    /// `GATHER_MEDIA_URL`: where uploaded media go: unset = files under
    /// `$GATHER_DATA_DIR/media`; `s3://bucket[/prefix]` = an S3-compatible store
    /// (credentials, region and endpoint from the usual `AWS_*` variables).
    pub media_url: Option<String>,
    /// `GATHER_ARGON2_MEMORY_KIB`, `GATHER_ARGON2_ITERATIONS`, `GATHER_ARGON2_PARALLELISM`:
    /// argon2id's costs for new hashes. Default OWASP's 19456 KiB, 2, 1.
    pub argon2: crate::passwords::HashParams,
    /// `GATHER_SHUTDOWN_TIMEOUT_SECS`: how long a stop waits for in-flight requests, and
    /// then for the projectors to commit their batch. Default 20.
    pub shutdown_timeout: std::time::Duration,
    /// `GATHER_READY_MAX_LAG_SECS`: `/health/ready` answers 503 while a projection's
    /// oldest unapplied event is older than this. Default 30.
    pub ready_max_lag: std::time::Duration,
    /// `GATHER_JWT_ISSUER`: the `iss` of the tokens this deployment issues and accepts.
    /// Default `gather`.
    pub jwt_issuer: String,
    /// `GATHER_TOKEN_TTL_MINUTES`: how long a token lives (5 minutes to 30 days).
    /// Default 720 (12 h).
    pub token_ttl: chrono::Duration,
}

/// A setting that cannot be used; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {reason}")]
pub struct SettingsError {
    /// The variable's name.
    pub variable: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn err(variable: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError { variable, reason: reason.into() }
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Settings, SettingsError> {
        Settings::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let bind = match get("GATHER_BIND") {
            Some(v) => v.parse().map_err(|_| err("GATHER_BIND", format!("not a socket address: {v:?}")))?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let data_dir = PathBuf::from(get("GATHER_DATA_DIR").unwrap_or_else(|| "./gather-data".into()));
        let database_url = match get("GATHER_DATABASE_URL") {
            Some(v) if v.starts_with("postgres://") || v.starts_with("postgresql://") || v.starts_with("sqlite:") => v,
            Some(v) => {
                return Err(err("GATHER_DATABASE_URL", format!("expected postgres://… or sqlite://…, got {v:?}")));
            }
            None => format!("sqlite://{}/gather.db", data_dir.display()),
        };
        let migrate_database_url = match get("GATHER_MIGRATE_DATABASE_URL") {
            Some(v) if database_url.starts_with("sqlite:") => {
                let _ = v;
                return Err(err("GATHER_MIGRATE_DATABASE_URL", "only for Postgres (GATHER_DATABASE_URL is SQLite)"));
            }
            Some(v) if v.starts_with("postgres://") || v.starts_with("postgresql://") => Some(v),
            Some(_) => return Err(err("GATHER_MIGRATE_DATABASE_URL", "expected postgres://…")),
            None => None,
        };
        let amqp_url = match get("GATHER_AMQP_URL") {
            Some(v) if v.starts_with("amqp://") || v.starts_with("amqps://") => Some(v),
            Some(v) => return Err(err("GATHER_AMQP_URL", format!("expected amqp://…, got {v:?}"))),
            None => None,
        };
        let smtp_url = match get("GATHER_SMTP_URL") {
            Some(v) if v.starts_with("smtp://") || v.starts_with("smtps://") => Some(v),
            Some(v) => return Err(err("GATHER_SMTP_URL", format!("expected smtp://host:port, got {v:?}"))),
            None => None,
        };
        let jwt_secret = match get("GATHER_JWT_SECRET") {
            Some(v) if v.len() < 32 => return Err(err("GATHER_JWT_SECRET", "must be at least 32 characters")),
            Some(v) => Some(SecretString::from(v)),
            None if !database_url.starts_with("sqlite:") => {
                return Err(err("GATHER_JWT_SECRET", "required when GATHER_DATABASE_URL is not SQLite"));
            }
            None => None,
        };
        let lookup_key = match get("GATHER_LOOKUP_KEY") {
            Some(v) if v.len() < 32 => return Err(err("GATHER_LOOKUP_KEY", "must be at least 32 characters")),
            Some(v) => Some(SecretString::from(v)),
            None if !database_url.starts_with("sqlite:") => {
                return Err(err("GATHER_LOOKUP_KEY", "required when GATHER_DATABASE_URL is not SQLite"));
            }
            None => None,
        };
        let kek = match get("GATHER_KEK") {
            Some(v) => match gather_commands::store::Kek::from_hex(&v) {
                Ok(_) => Some(SecretString::from(v)),
                Err(why) => return Err(err("GATHER_KEK", why)),
            },
            None if !database_url.starts_with("sqlite:") => {
                return Err(err("GATHER_KEK", "required when GATHER_DATABASE_URL is not SQLite (64 hex characters)"));
            }
            None => None,
        };
        let bootstrap = |var: &'static str| -> Result<Option<BootstrapAccount>, SettingsError> {
            let Some(v) = get(var) else { return Ok(None) };
            let (email, password) = v.split_once(':').ok_or_else(|| err(var, "expected email:password"))?;
            if !email.contains('@') || password.len() < 10 {
                return Err(err(var, "expected email:password with a password of at least 10 characters"));
            }
            Ok(Some(BootstrapAccount { email: email.to_string(), password: SecretString::from(password.to_string()) }))
        };
        let roles = match get("GATHER_ROLES") {
            None => vec![ProcessRole::Api, ProcessRole::Projector, ProcessRole::Notifier, ProcessRole::Scheduler],
            Some(v) => v
                .split(',')
                .map(|r| match r.trim() {
                    "api" => Ok(ProcessRole::Api),
                    "projector" => Ok(ProcessRole::Projector),
                    "notifier" => Ok(ProcessRole::Notifier),
                    "scheduler" => Ok(ProcessRole::Scheduler),
                    other => Err(err(
                        "GATHER_ROLES",
                        format!("unknown role {other:?} (expected api, projector, notifier, scheduler)"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let password_hashing_concurrency =
            match get("GATHER_PASSWORD_HASHING_CONCURRENCY") {
                Some(v) => v.trim().parse::<usize>().ok().filter(|n| (1..=1024).contains(n)).ok_or_else(|| {
                    err("GATHER_PASSWORD_HASHING_CONCURRENCY", format!("expected 1 to 1024, got {v:?}"))
                })?,
                None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            };
        let payment_webhook_secret = match get("GATHER_PAYMENT_WEBHOOK_SECRET") {
            Some(v) if v.len() < 16 => {
                return Err(err("GATHER_PAYMENT_WEBHOOK_SECRET", "must be at least 16 characters"));
            }
            Some(v) => Some(SecretString::from(v)),
            None => None,
        };
        let public_base_url = match get("GATHER_PUBLIC_BASE_URL") {
            Some(v) if (v.starts_with("http://") || v.starts_with("https://")) && !v.contains(char::is_whitespace) => {
                v.trim_end_matches('/').to_owned()
            }
            Some(v) => {
                return Err(err("GATHER_PUBLIC_BASE_URL", format!("expected http(s)://host[:port][/path], got {v:?}")));
            }
            None => format!("http://{bind}"),
        };
        let audit_exchange = match get("GATHER_AUDIT_EXCHANGE").as_deref().map(str::trim) {
            None | Some("off") => false,
            Some("on") => true,
            Some(v) => return Err(err("GATHER_AUDIT_EXCHANGE", format!("expected on or off, got {v:?}"))),
        };
        let number = |var: &'static str, default: u32, max: u32| -> Result<u32, SettingsError> {
            match get(var) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n <= max)
                    .ok_or_else(|| err(var, format!("expected 0 to {max}, got {v:?}"))),
            }
        };
        let rate_limit_commands = number("GATHER_RATE_LIMIT_COMMANDS", 20, 100_000)?;
        let rate_limit_guests = number("GATHER_RATE_LIMIT_GUESTS", 20, 100_000)?;
        let rate_limit_auth = number("GATHER_RATE_LIMIT_AUTH", 5, 100_000)?;
        let timeout = number("GATHER_REQUEST_TIMEOUT_SECS", 30, 3600)?;
        if timeout == 0 {
            return Err(err("GATHER_REQUEST_TIMEOUT_SECS", "must be at least 1"));
        }
        let cors_origins = match get("GATHER_CORS_ORIGINS") {
            None => Vec::new(),
            Some(v) => v
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .map(|o| {
                    if (o.starts_with("http://") || o.starts_with("https://")) && !o[8..].contains('/') {
                        Ok(o)
                    } else {
                        Err(err(
                            "GATHER_CORS_ORIGINS",
                            format!("expected origins like https://app.example.com, got {o:?}"),
                        ))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let jwt_issuer = match get("GATHER_JWT_ISSUER") {
            Some(v) if v.len() <= 200 && !v.chars().any(char::is_control) => v.trim().to_owned(),
            Some(_) => return Err(err("GATHER_JWT_ISSUER", "at most 200 printable characters")),
            None => crate::auth::DEFAULT_ISSUER.to_owned(),
        };
        let ttl = number("GATHER_TOKEN_TTL_MINUTES", 720, 43_200)?;
        if ttl < 5 {
            return Err(err("GATHER_TOKEN_TTL_MINUTES", "at least 5 minutes"));
        }
        let ready_max_lag = number("GATHER_READY_MAX_LAG_SECS", 30, 86_400)?;
        let d = crate::passwords::HashParams::default();
        let argon2 = crate::passwords::HashParams {
            memory_kib: number("GATHER_ARGON2_MEMORY_KIB", d.memory_kib, 4 * 1024 * 1024)?,
            iterations: number("GATHER_ARGON2_ITERATIONS", d.iterations, 100)?,
            parallelism: number("GATHER_ARGON2_PARALLELISM", d.parallelism, 64)?,
        };
        if let Err(e) = argon2.params() {
            return Err(err("GATHER_ARGON2_MEMORY_KIB", format!("the argon2 parameters are not usable: {e}")));
        }
        let shutdown_timeout = number("GATHER_SHUTDOWN_TIMEOUT_SECS", 20, 3600)?;
        let media_url = match get("GATHER_MEDIA_URL") {
            None => None,
            Some(v) if v.starts_with("s3://") && v.len() > 5 => Some(v),
            Some(_) => {
                return Err(err("GATHER_MEDIA_URL", "must be s3://bucket[/prefix] (unset: files in GATHER_DATA_DIR)"));
            }
        };
        Ok(Settings {
            media_url,
            shutdown_timeout: std::time::Duration::from_secs(u64::from(shutdown_timeout)),
            argon2,
            ready_max_lag: std::time::Duration::from_secs(u64::from(ready_max_lag)),
            jwt_issuer,
            token_ttl: chrono::Duration::minutes(i64::from(ttl)),
            rate_limit_commands,
            rate_limit_guests,
            rate_limit_auth,
            request_timeout: std::time::Duration::from_secs(u64::from(timeout)),
            cors_origins,
            public_base_url,
            audit_exchange,
            bind,
            data_dir,
            database_url,
            migrate_database_url,
            amqp_url,
            smtp_url,
            jwt_secret,
            lookup_key,
            kek,
            bootstrap_moderator: bootstrap("GATHER_BOOTSTRAP_MODERATOR")?,
            bootstrap_auditor: bootstrap("GATHER_BOOTSTRAP_AUDITOR")?,
            roles,
            password_hashing_concurrency,
            payment_webhook_secret,
        })
    }

    /// Whether this process runs `role`.
    pub fn runs(&self, role: ProcessRole) -> bool {
        self.roles.contains(&role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_embedded_profile() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database_url, "sqlite://./gather-data/gather.db");
        assert!(s.amqp_url.is_none());
        assert_eq!(s.public_base_url, "http://127.0.0.1:8080");
        assert!(!s.audit_exchange);
        assert_eq!(s.roles.len(), 4);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let e = settings(&[("GATHER_BIND", "nope")]).unwrap_err();
        assert_eq!(e.variable, "GATHER_BIND");
        let e = settings(&[("GATHER_ROLES", "api,cook")]).unwrap_err();
        assert!(e.to_string().starts_with("GATHER_ROLES: unknown role \"cook\""), "{e}");
        let e = settings(&[("GATHER_MIGRATE_DATABASE_URL", "postgres://owner@localhost/x")]).unwrap_err();
        assert_eq!(e.variable, "GATHER_MIGRATE_DATABASE_URL");
        let e = settings(&[("GATHER_DATABASE_URL", "mysql://x")]).unwrap_err();
        assert_eq!(e.variable, "GATHER_DATABASE_URL");
        let e = settings(&[("GATHER_AMQP_URL", "http://x")]).unwrap_err();
        assert_eq!(e.variable, "GATHER_AMQP_URL");
        let e = settings(&[("GATHER_PUBLIC_BASE_URL", "gather.example")]).unwrap_err();
        assert_eq!(e.variable, "GATHER_PUBLIC_BASE_URL");
        let e = settings(&[("GATHER_AUDIT_EXCHANGE", "yes")]).unwrap_err();
        assert_eq!(e.variable, "GATHER_AUDIT_EXCHANGE");
        let e = settings(&[("GATHER_RATE_LIMIT_COMMANDS", "-1")]).unwrap_err();
        assert_eq!(e.variable, "GATHER_RATE_LIMIT_COMMANDS");
        let e = settings(&[("GATHER_ARGON2_MEMORY_KIB", "1")]).unwrap_err();
        assert_eq!(e.variable, "GATHER_ARGON2_MEMORY_KIB");
        let e = settings(&[("GATHER_TOKEN_TTL_MINUTES", "1")]).unwrap_err();
        assert_eq!(e.variable, "GATHER_TOKEN_TTL_MINUTES");
        let e = settings(&[("GATHER_REQUEST_TIMEOUT_SECS", "0")]).unwrap_err();
        assert_eq!(e.variable, "GATHER_REQUEST_TIMEOUT_SECS");
        let e = settings(&[("GATHER_CORS_ORIGINS", "app.example.com")]).unwrap_err();
        assert_eq!(e.variable, "GATHER_CORS_ORIGINS");
        let e = settings(&[("GATHER_CORS_ORIGINS", "https://app.example.com/path")]).unwrap_err();
        assert_eq!(e.variable, "GATHER_CORS_ORIGINS");
        let e = settings(&[("GATHER_BOOTSTRAP_MODERATOR", "no-colon")]).unwrap_err();
        assert_eq!(e.variable, "GATHER_BOOTSTRAP_MODERATOR");
    }

    #[test]
    fn production_requires_a_jwt_secret() {
        let e = settings(&[("GATHER_DATABASE_URL", "postgres://localhost/x")]).unwrap_err();
        assert_eq!(e.variable, "GATHER_JWT_SECRET");
        let e = settings(&[
            ("GATHER_DATABASE_URL", "postgres://localhost/x"),
            ("GATHER_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "GATHER_LOOKUP_KEY", "production requires a lookup key too");
        let e = settings(&[
            ("GATHER_DATABASE_URL", "postgres://localhost/x"),
            ("GATHER_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("GATHER_LOOKUP_KEY", "short"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "GATHER_LOOKUP_KEY");
        let base = [
            ("GATHER_DATABASE_URL", "postgres://localhost/x"),
            ("GATHER_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("GATHER_LOOKUP_KEY", "fedcba9876543210fedcba9876543210"),
        ];
        assert_eq!(settings(&base).unwrap_err().variable, "GATHER_KEK", "production requires a KEK too");
        let short = settings(&[base[0], base[1], base[2], ("GATHER_KEK", "abcd")]).unwrap_err();
        assert_eq!(short.variable, "GATHER_KEK");
        assert!(short.to_string().contains("64 hex"), "{short}");
        let not_hex = settings(&[base[0], base[1], base[2], ("GATHER_KEK", &"zz".repeat(32))]).unwrap_err();
        assert_eq!(not_hex.variable, "GATHER_KEK");
        let ok = settings(&[base[0], base[1], base[2], ("GATHER_KEK", &"0f".repeat(32))]);
        assert!(ok.is_ok());
    }
}
