//! `App::build(settings)`: shared by `main` and the tests. Connects, migrates, starts
//! the projectors, creates bootstrap accounts, binds the listener.

use crate::auth::Jwt;
use crate::passwords::Passwords;
use crate::routes;
use crate::settings::{BootstrapAccount, ProcessRole, Settings};
use crate::state::AppState;
use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use gather_commands::store::postgres::PostgresStore;
use gather_commands::store::sqlite::SqliteStore;
use gather_commands::uniqueness::{email_owner, reserve_email_again};
use gather_commands::{CommandHandler, CommandMeta, Db, EventStore};
use gather_domain::member::{Member, MemberCommand};
use gather_domain::values::{DisplayName, Email};
use gather_domain::{Actor, Role};
use gather_projections::Projectors;
use gather_projections::bus::{Broker, LocalBus};
use gather_projections::mail::{Mailer, run_sender};
use gather_projections::notifier::Notifier;
use gather_projections::relay::{Relay, Sink};
use secrecy::{ExposeSecret, SecretString};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

/// A built, not yet serving, Gather process.
pub struct App {
    listener: TcpListener,
    state: AppState,
    shutdown: watch::Sender<bool>,
    /// Flipped when a stop's bound has passed: requests still running answer 503.
    cut_off: watch::Sender<bool>,
}

/// Connects to the database of `settings` and returns the store over it, sealed by
/// its vault (personal fields encrypted under per-member keys, ARCHITECTURE.md
/// decision 12). The tables it reads are those of the migrations: migrate first on a
/// new database.
pub async fn open_store(settings: &Settings) -> anyhow::Result<(Db, Arc<dyn EventStore>)> {
    let (db, store) = open_plain_store(settings).await?;
    let kek = kek(settings)?;
    let vault = gather_commands::store::Vault::open(db.clone(), &kek, lookup_key(settings)?.secret()).await?;
    Ok((db, Arc::new(gather_commands::store::Sealed::new(store, vault))))
}

/// The key-encryption key (`GATHER_KEK`, or generated once into the data dir).
fn kek(settings: &Settings) -> anyhow::Result<gather_commands::store::Kek> {
    let secret = secret(settings, settings.kek.as_ref(), "kek")?;
    gather_commands::store::Kek::from_hex(secret.expose_secret()).map_err(|why| anyhow::anyhow!("GATHER_KEK {why}"))
}

/// The store without its vault: reads show sealed fields as stored.
pub async fn open_plain_store(settings: &Settings) -> anyhow::Result<(Db, Arc<dyn EventStore>)> {
    if settings.database_url.starts_with("sqlite:") {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("could not create GATHER_DATA_DIR {}", settings.data_dir.display()))?;
    }
    let db = Db::connect(&settings.database_url).await.context("could not open GATHER_DATABASE_URL")?;
    let store: Arc<dyn EventStore> = match &db {
        Db::Postgres(pool) => Arc::new(PostgresStore::new(pool.clone())),
        Db::Sqlite { writer, reader } => Arc::new(SqliteStore::new(writer.clone(), reader.clone())),
    };
    Ok((db, store))
}

/// The JWT secret: configured, or generated once into the data dir (embedded only).
fn jwt_secret(settings: &Settings) -> anyhow::Result<SecretString> {
    secret(settings, settings.jwt_secret.as_ref(), "jwt-secret")
}

/// The email lookup key (`GATHER_LOOKUP_KEY`, or generated once into the data dir).
pub fn lookup_key(settings: &Settings) -> anyhow::Result<gather_commands::uniqueness::LookupKey> {
    let secret = secret(settings, settings.lookup_key.as_ref(), "lookup-key")?;
    Ok(gather_commands::uniqueness::LookupKey::new(secret.expose_secret().as_bytes()))
}

/// A configured secret, or one generated once into the data dir as `file`.
fn secret(settings: &Settings, configured: Option<&SecretString>, file: &str) -> anyhow::Result<SecretString> {
    if let Some(s) = configured {
        return Ok(s.clone());
    }
    let path = settings.data_dir.join(file);
    if let Ok(s) = std::fs::read_to_string(&path)
        && s.trim().len() >= 32
    {
        return Ok(SecretString::from(s.trim().to_string()));
    }
    let secret: String = {
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        hex::encode(bytes)
    };
    std::fs::write(&path, &secret).with_context(|| format!("could not write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    tracing::info!(path = %path.display(), "generated a secret");
    Ok(SecretString::from(secret))
}

/// Every API route with its OpenAPI entry (each module's `router()` registers its
/// handlers through `utoipa_axum::routes!`, so a route cannot lack its entry).
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .merge(routes::auth::router())
        .merge(routes::reads::router())
        .merge(routes::me::router())
        .merge(routes::activities::router())
        .merge(routes::media::router())
        .merge(routes::series::router())
        .merge(routes::stream::router())
        .merge(routes::bookings::router())
        .merge(routes::chats::router())
        .merge(routes::members::router())
        .merge(routes::payments::router())
        .merge(routes::health::router())
        .merge(routes::admin::router())
        .merge(routes::audit::router())
}

/// The OpenAPI document of [`api_routes`], conventions applied.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_routes().into_openapi();
    crate::openapi::apply_conventions(&mut doc);
    doc
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    // A process without the api role serves health only (GATHER_ROLES).
    if !state.settings.runs(ProcessRole::Api) {
        let (health, _) = routes::health::router().split_for_parts();
        return health
            .fallback(|| async { crate::error::ApiError::NotFound("this process does not serve the API".into()) })
            .with_state(state);
    }
    let (api, mut doc) = api_routes().split_for_parts();
    crate::openapi::apply_conventions(&mut doc);
    api.merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", doc))
        .route_layer(axum::middleware::from_fn(crate::metrics::track))
        .fallback(|| async { crate::error::ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { crate::error::ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::idempotency::layer))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::limits::layer))
        .layer(DefaultBodyLimit::max(crate::extract::MAX_BODY))
        // Every log line of a request carries its id, which is also the correlation id
        // of the events it appends; the answer echoes it in X-Request-Id.
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(tower_http::request_id::MakeRequestUuid))
        .layer(tower::util::option_layer(crate::limits::cors(&state.settings.cors_origins)))
        .with_state(state)
}

/// Creates (or promotes) a bootstrap account with `role`.
async fn bootstrap(state: &AppState, account: &BootstrapAccount, role: Role) -> anyhow::Result<()> {
    let email = Email::parse(&account.email).map_err(|e| anyhow::anyhow!("bootstrap {}: {e}", role.as_str()))?;
    let normalized = email.normalized();
    let member_id = match email_owner(state.store.as_ref(), &state.lookup, &normalized).await? {
        Some(id) => id,
        None => {
            let member_id = Uuid::now_v7();
            let hash = state
                .passwords
                .hash(account.password.expose_secret().to_string())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let name = DisplayName::parse(role.as_str()).map_err(|e| anyhow::anyhow!("{e}"))?;
            let cmd = MemberCommand::Register { member_id, email, password_hash: hash, display_name: name };
            let meta = CommandMeta::new(Actor::system());
            let reservation = reserve_email_again(state.store.as_ref(), &state.lookup, &normalized, member_id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("bootstrap {}: the address is reserved", role.as_str()))?;
            state.commands.handle_with::<Member>(member_id, cmd, &meta, |_| vec![reservation.clone()]).await?;
            member_id
        }
    };
    crate::ops::grant_role(state.store.clone(), &state.lookup, &normalized, role).await?;
    tracing::info!(%member_id, role = role.as_str(), "bootstrap account ready");
    Ok(())
}

impl App {
    /// Connects, migrates, starts workers and binds `settings.bind` (port 0 = any).
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        App::build_with_clock(settings, None).await
    }

    /// [`App::build`] with the time every decision and timer reads replaced by `clock`
    /// (tests of timers and series: no test waits for real days). `None`: the system clock.
    pub async fn build_with_clock(
        settings: Settings,
        clock: Option<gather_commands::handler::Clock>,
    ) -> anyhow::Result<App> {
        crate::metrics::handle(); // the recorder, before anything records
        let (db, store) = open_store(&settings).await?;
        db.migrate_as(settings.migrate_database_url.as_deref()).await.context("could not migrate the database")?;
        let jwt = Jwt::with(&jwt_secret(&settings)?, &settings.jwt_issuer, settings.token_ttl);
        let broker = match &settings.amqp_url {
            Some(url) => Some(
                Broker::start(url, Duration::from_secs(10)).await.context("could not connect to GATHER_AMQP_URL")?,
            ),
            None => None,
        };
        let local_bus = LocalBus::new();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (cut_off, cut_off_rx) = watch::channel(false);
        let projections = if settings.runs(ProcessRole::Projector) {
            gather_projections::all_with(settings.audit_exchange)
        } else {
            Vec::new()
        };
        let projectors = Projectors::start(db.clone(), store.clone(), projections, shutdown_rx.clone())
            .await
            .context("could not start the projectors")?;
        if settings.runs(ProcessRole::Notifier) {
            let mailer = match &settings.smtp_url {
                Some(url) => Mailer::smtp(url).context("GATHER_SMTP_URL")?,
                None => Mailer::files(settings.data_dir.join("mail")).context("could not create the mail directory")?,
            };
            // Emails an upgraded store's legacy outbox still holds.
            tokio::spawn(run_sender(db.clone(), mailer.clone(), Duration::from_secs(5), shutdown_rx.clone()));
            let notifier = Arc::new(
                Notifier::new(db.clone(), mailer, &settings.public_base_url).with_vault(store.vault().cloned()),
            );
            match &broker {
                Some(b) => tokio::spawn(notifier.run_amqp(b.clone(), shutdown_rx.clone())),
                None => tokio::spawn(notifier.run_local(local_bus.clone(), shutdown_rx.clone())),
            };
        }
        let mut relay_stats = None;
        if settings.runs(ProcessRole::Projector) {
            // The projectors write the outbox; their process relays it.
            let sink = match &broker {
                Some(b) => Sink::Broker(b.clone()),
                None => Sink::Local(local_bus.clone()),
            };
            let relay = Relay::new(db.clone(), sink);
            relay_stats = Some(relay.stats());
            tokio::spawn(relay.run(shutdown_rx.clone()));
        }
        let push = crate::push::PushHub::new();
        if settings.runs(ProcessRole::Api) {
            match &broker {
                Some(b) => tokio::spawn(push.clone().run_amqp(b.clone(), shutdown_rx.clone())),
                None => tokio::spawn(push.clone().run_local(local_bus.clone(), shutdown_rx.clone())),
            };
        }
        let commands = match clock {
            Some(clock) => CommandHandler::new(store.clone()).with_clock(clock),
            None => CommandHandler::new(store.clone()),
        };
        if settings.runs(ProcessRole::Scheduler) {
            let scheduler = gather_commands::scheduler::Scheduler::new(db.clone(), commands.clone())
                .with_clean_ups(gather_projections::clean_ups());
            tokio::spawn(scheduler.run(Duration::from_millis(250), shutdown_rx.clone()));
        }
        let checkpoints =
            gather_projections::checkpoints::Checkpoints::start(db.clone(), &projectors, shutdown_rx.clone());
        let passwords = Passwords::with(settings.password_hashing_concurrency, settings.argon2)
            .map_err(|e| anyhow::anyhow!("GATHER_ARGON2_*: {e}"))?;
        let blobs = crate::media::Blobs::from_settings(&settings)?;
        tracing::info!(store = %blobs.describe, "media blob store");
        let state = AppState::new(crate::state::Shared {
            lookup: lookup_key(&settings)?,
            blobs,
            settings: Arc::new(settings.clone()),
            db,
            store,
            commands,
            projectors,
            checkpoints,
            jwt,
            passwords,
            broker,
            local_bus,
            push,
            relay: relay_stats,
            cut_off: cut_off_rx,
            limits: Arc::new(crate::limits::Limits::new(
                settings.rate_limit_commands,
                settings.rate_limit_guests,
                settings.rate_limit_auth,
            )),
        });
        if let Some(a) = &settings.bootstrap_moderator {
            bootstrap(&state, a, Role::Moderator).await.context("GATHER_BOOTSTRAP_MODERATOR")?;
        }
        if let Some(a) = &settings.bootstrap_auditor {
            bootstrap(&state, a, Role::Auditor).await.context("GATHER_BOOTSTRAP_AUDITOR")?;
        }
        let listener = TcpListener::bind(settings.bind)
            .await
            .with_context(|| format!("could not bind GATHER_BIND {}", settings.bind))?;
        Ok(App { listener, state, shutdown, cut_off })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The shared state (tests inspect the store through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `stop` resolves, then stops the workers.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        // A graceful shutdown waits for every open answer: the audit feed's follow ends
        // when it sees the server draining.
        let (draining, draining_rx) = watch::channel(false);
        let router = router(self.state.clone()).layer(axum::Extension(routes::audit::Draining(draining_rx)));
        tracing::info!(addr = %self.local_addr(), "gather is listening");
        let push = self.state.push.clone();
        let (stopping, mut stopping_rx) = watch::channel(false);
        let stop = async move {
            stop.await;
            tracing::info!("stopping: no new connections; finishing in-flight requests");
            let _ = draining.send(true);
            // Real-time clients are told why and let go, so the shutdown is not held up.
            push.close_all("the server is shutting down");
            let _ = stopping.send(true);
        };
        let bound = self.state.settings.shutdown_timeout;
        let serve = axum::serve(self.listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(stop)
            .into_future();
        // In-flight requests get `bound` to finish; those still running then answer 503
        // (`limits::layer` watches `cut_off`), and the server returns once they have.
        let cut_off = self.cut_off;
        let cutter = async move {
            let _ = stopping_rx.wait_for(|s| *s).await;
            tokio::time::sleep(bound).await;
            tracing::warn!(?bound, "in-flight requests did not finish in time; answering them 503");
            let _ = cut_off.send(true);
            std::future::pending::<()>().await
        };
        let result = tokio::select! {
            r = serve => r,
            _ = cutter => unreachable!("the cutter never returns"),
        };
        // Then the workers stop; projectors commit the batch they are applying.
        let _ = self.shutdown.send(true);
        if tokio::time::timeout(bound, self.state.projectors.stopped()).await.is_err() {
            tracing::warn!(?bound, "projectors did not stop in time; their open batches roll back");
        }
        tracing::info!("stopped");
        result.context("the HTTP server failed")
    }

    /// Serves until Ctrl-C or SIGTERM.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
