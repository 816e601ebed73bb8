//! A real Gather process inside the benchmark (as `tests/e2e/harness.rs` starts one):
//! `App::build` on port 0 over a given database, served until [`Running::stop`].

use gather_api::state::AppState;
use gather_api::{App, Settings};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use uuid::Uuid;

/// The bootstrap moderator's credentials.
pub const MODERATOR: (&str, &str) = ("mod@gather.bench", "moderator-password");

/// A running Gather.
pub struct Running {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub state: AppState,
    pub data_dir: PathBuf,
    stop: tokio::sync::Mutex<Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops serving and the workers, and waits for them.
    pub async fn stop(&self) {
        if let Some((stop, join)) = self.stop.lock().await.take() {
            let _ = stop.send(());
            let _ = join.await;
        }
    }
}

/// Starts Gather over `database_url` (None: SQLite in the data dir) running `roles`
/// (empty: every role), with the bootstrap moderator if `moderator`.
pub async fn start(database_url: Option<&str>, roles: &[&str], moderator: bool) -> anyhow::Result<Running> {
    start_with(database_url, roles, moderator, None).await
}

/// [`start`], with RabbitMQ at `amqp_url` (None: the in-process bus).
pub async fn start_with(
    database_url: Option<&str>,
    roles: &[&str],
    moderator: bool,
    amqp_url: Option<&str>,
) -> anyhow::Result<Running> {
    let data_dir = std::env::temp_dir().join(format!("gather-bench-{}", Uuid::new_v4().simple()));
    let mut env: HashMap<&str, String> = HashMap::new();
    env.insert("GATHER_BIND", "127.0.0.1:0".into());
    env.insert("GATHER_DATA_DIR", data_dir.display().to_string());
    // Throughput and latency of the server, not of its rate limiter.
    for limit in ["GATHER_RATE_LIMIT_COMMANDS", "GATHER_RATE_LIMIT_GUESTS", "GATHER_RATE_LIMIT_AUTH"] {
        env.insert(limit, "0".into());
    }
    if let Some(url) = database_url {
        env.insert("GATHER_DATABASE_URL", url.into());
        env.insert("GATHER_JWT_SECRET", "bench-secret-bench-secret-bench-secret-0123".into());
        env.insert("GATHER_LOOKUP_KEY", "bench-lookup-key-bench-lookup-key-0123".into());
        env.insert("GATHER_KEK", "be4c".repeat(16));
    }
    if let Some(url) = amqp_url {
        env.insert("GATHER_AMQP_URL", url.into());
    }
    if moderator {
        env.insert("GATHER_BOOTSTRAP_MODERATOR", format!("{}:{}", MODERATOR.0, MODERATOR.1));
    }
    if !roles.is_empty() {
        env.insert("GATHER_ROLES", roles.join(","));
    }
    let settings = Settings::from_lookup(|k| env.get(k).cloned())?;
    let app = App::build(settings).await?;
    let addr = app.local_addr();
    let state = app.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let join = tokio::spawn(async move {
        let _ = app
            .run_until(async move {
                let _ = stopped.await;
            })
            .await;
    });
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    Ok(Running { addr, http, state, data_dir, stop: tokio::sync::Mutex::new(Some((stop, join))) })
}

/// Logs the bootstrap moderator in over HTTP; returns its token.
pub async fn login_moderator(app: &Running) -> anyhow::Result<String> {
    let res = app
        .http
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": MODERATOR.0, "password": MODERATOR.1}))
        .send()
        .await?;
    anyhow::ensure!(res.status().is_success(), "moderator login answered {}", res.status());
    let body: serde_json::Value = res.json().await?;
    body["token"].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("no token in {body}"))
}
