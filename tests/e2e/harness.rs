//! `spawn_app(profile)`: a real Gather on port 0 with a fresh database.

use gather_api::{App, Settings};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use uuid::Uuid;

/// Which runtime profile a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// SQLite file in a temp dir, in-process bus.
    Sqlite,
    /// A fresh Postgres database on 127.0.0.1:5432 and RabbitMQ on 127.0.0.1:5672.
    Postgres,
}

pub const MODERATOR: (&str, &str) = ("mod@gather.test", "moderator-password");
pub const AUDITOR: (&str, &str) = ("audit@gather.test", "auditor-password");
/// The payment provider's webhook secret every test server is configured with.
pub const WEBHOOK_SECRET: &str = "whsec-test-0123456789abcdef0123456789";

/// The Postgres server tests use (override with GATHER_TEST_PG).
pub fn pg_base() -> String {
    std::env::var("GATHER_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Creates an empty database and returns its URL.
pub async fn fresh_pg_database() -> String {
    let name = format!("gather_e2e_{}", Uuid::new_v4().simple());
    let admin = format!("{}/postgres", pg_base());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .expect("Postgres must run on 127.0.0.1:5432 (see README: the test command starts it)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    format!("{}/{name}", pg_base())
}

/// A running Gather.
pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub app_state: gather_api::state::AppState,
    clock: Option<gather_commands::handler::Clock>,
    /// The RabbitMQ vhost this test owns (Postgres profile), held until the app drops.
    pub vhost: Option<std::sync::Arc<VhostLease>>,
}

/// A clock a test moves by hand (shared by every process it spawns).
#[derive(Clone)]
pub struct TestClock(std::sync::Arc<std::sync::Mutex<chrono::DateTime<chrono::Utc>>>);

impl TestClock {
    pub fn at(now: chrono::DateTime<chrono::Utc>) -> Self {
        TestClock(std::sync::Arc::new(std::sync::Mutex::new(now)))
    }

    pub fn set(&self, now: chrono::DateTime<chrono::Utc>) {
        *self.0.lock().unwrap() = now;
    }

    pub fn clock(&self) -> gather_commands::handler::Clock {
        let me = self.0.clone();
        std::sync::Arc::new(move || *me.lock().unwrap())
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Logs go to the test's output when TEST_LOG is set (quiet otherwise).
fn init_test_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
    });
}

pub async fn spawn_app(profile: Profile) -> TestApp {
    spawn_app_with_clock(profile, None).await
}

/// [`spawn_app`] whose decisions and scheduler read `clock` instead of the system clock.
pub async fn spawn_app_at(profile: Profile, clock: &TestClock) -> TestApp {
    spawn_app_with_clock(profile, Some(clock.clock())).await
}

async fn spawn_app_with_clock(profile: Profile, clock: Option<gather_commands::handler::Clock>) -> TestApp {
    let (settings, lease) = spawn_settings(profile).await;
    let mut app = start(settings, clock).await;
    app.vhost = lease.map(std::sync::Arc::new);
    app
}

/// The RabbitMQ server tests use, without a vhost (override with GATHER_TEST_AMQP_BASE).
pub fn amqp_base() -> String {
    std::env::var("GATHER_TEST_AMQP_BASE").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672".into())
}

/// Vhosts in the pool: more than tests run at once.
const VHOSTS: usize = 24;

/// One RabbitMQ vhost of a pool, owned by one test at a time (a file lock), so the
/// work queues of tests running side by side never mix. Taken empty: the queues a
/// previous owner left are deleted first.
pub struct VhostLease {
    pub name: String,
    pub url: String,
    _lock: std::fs::File,
}

impl VhostLease {
    pub async fn take() -> VhostLease {
        let dir = std::env::temp_dir().join("gather-test-vhosts");
        std::fs::create_dir_all(&dir).unwrap();
        loop {
            for i in 0..VHOSTS {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(dir.join(format!("{i}.lock")))
                    .unwrap();
                if file.try_lock().is_err() {
                    continue;
                }
                let name = format!("gather-test-{i}");
                let url = format!("{}/{name}", amqp_base());
                let lease = VhostLease { name, url, _lock: file };
                lease.reset().await;
                return lease;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Creates the vhost if missing and deletes the queues a previous test left.
    async fn reset(&self) {
        let connect = || lapin::Connection::connect(&self.url, lapin::ConnectionProperties::default());
        let connection = match connect().await {
            Ok(c) => c,
            Err(_) => {
                rabbitmqctl(&["add_vhost", &self.name]);
                rabbitmqctl(&["set_permissions", "-p", &self.name, "guest", ".*", ".*", ".*"]);
                connect().await.expect("RabbitMQ must run on 127.0.0.1:5672 (the test command starts it)")
            }
        };
        let channel = connection.create_channel().await.unwrap();
        let mut queues = vec![
            gather_projections::bus::NOTIFY_QUEUE.to_string(),
            gather_projections::bus::DEAD_QUEUE.to_string(),
            "gather.test.audit".to_string(),
        ];
        queues.extend(gather_projections::bus::RETRY_TIERS.iter().map(|(q, _)| q.to_string()));
        for q in queues {
            channel.queue_delete(q.as_str().into(), Default::default()).await.unwrap();
        }
        let _ = connection.close(200, "reset".into()).await;
    }
}

/// Runs `rabbitmqctl` and panics with its output when it fails.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = std::process::Command::new("rabbitmqctl").args(args).output().expect("rabbitmqctl runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() || text.contains("already exists"), "rabbitmqctl {args:?}: {text}");
    text
}

/// A real SMTP server (mailin-embedded) on a free port, recording what it receives.
/// It can refuse for a while (451, transient) and always refuses addresses that
/// start with `bounce` (550, permanent).
#[derive(Clone, Default)]
pub struct TestSmtp {
    pub state: std::sync::Arc<std::sync::Mutex<SmtpState>>,
    pub port: u16,
}

#[derive(Default)]
pub struct SmtpState {
    /// Received messages: (recipients, raw message).
    pub received: Vec<(Vec<String>, String)>,
    /// Answer 451 to every message while set.
    pub refusing: bool,
    /// Messages refused so far.
    pub refused: usize,
}

/// One per connection (the server clones it): the message being received is its own.
#[derive(Clone)]
struct SmtpHandler(std::sync::Arc<std::sync::Mutex<SmtpState>>, Option<(Vec<String>, Vec<u8>)>);

impl mailin_embedded::Handler for SmtpHandler {
    fn rcpt(&mut self, to: &str) -> mailin_embedded::Response {
        if to.trim_start_matches('<').starts_with("bounce") {
            return mailin_embedded::response::NO_MAILBOX;
        }
        mailin_embedded::response::OK
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> mailin_embedded::Response {
        let mut s = self.0.lock().unwrap();
        if s.refusing {
            s.refused += 1;
            return mailin_embedded::response::INTERNAL_ERROR;
        }
        self.1 = Some((to.to_vec(), Vec::new()));
        mailin_embedded::response::START_DATA
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some((_, data)) = self.1.as_mut() {
            data.extend_from_slice(buf);
        }
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        if let Some((to, data)) = self.1.take() {
            self.0.lock().unwrap().received.push((to, String::from_utf8_lossy(&data).into_owned()));
        }
        mailin_embedded::response::OK
    }
}

impl TestSmtp {
    /// Starts the server on a thread (it lives as long as the test process).
    pub fn start() -> TestSmtp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(std::sync::Mutex::new(SmtpState::default()));
        let mut server = mailin_embedded::Server::new(SmtpHandler(state.clone(), None));
        server.with_name("smtp.gather.test").with_num_threads(16).with_tcp_listener(listener);
        server.with_ssl(mailin_embedded::SslConfig::None).unwrap();
        std::thread::spawn(move || {
            let _ = server.serve().map_err(|e| e.to_string());
        });
        TestSmtp { state, port }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Messages received for `address` (raw, headers and body).
    pub fn to(&self, address: &str) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.received.iter().filter(|(to, _)| to.iter().any(|t| t.contains(address))).map(|(_, m)| unfold(m)).collect()
    }

    pub fn refuse(&self, on: bool) {
        self.state.lock().unwrap().refusing = on;
    }
}

/// A Postgres + RabbitMQ app that mails through `smtp`.
pub async fn spawn_mailing(smtp: &TestSmtp) -> TestApp {
    spawn_mailing_with(smtp, |_| {}).await
}

/// [`spawn_mailing`] with the settings adjusted by `adjust` first.
pub async fn spawn_mailing_with(smtp: &TestSmtp, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let base = spawn_settings(Profile::Postgres).await;
    let (mut settings, lease) = base;
    settings.smtp_url = Some(smtp.url());
    adjust(&mut settings);
    let mut app = start(settings, None).await;
    app.vhost = lease.map(std::sync::Arc::new);
    app
}

/// An app of `profile` with its settings adjusted by `adjust` first.
pub async fn spawn_app_with(profile: Profile, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let (mut settings, lease) = spawn_settings(profile).await;
    adjust(&mut settings);
    let mut app = start(settings, None).await;
    app.vhost = lease.map(std::sync::Arc::new);
    app
}

/// The settings a test app starts with (Postgres: a fresh database and vhost).
pub async fn spawn_settings(profile: Profile) -> (Settings, Option<VhostLease>) {
    gather_api::install_crypto();
    init_test_log();
    let data_dir = std::env::temp_dir().join(format!("gather-test-{}", Uuid::new_v4().simple()));
    let mut env: HashMap<&str, String> = HashMap::new();
    env.insert("GATHER_BIND", "127.0.0.1:0".into());
    env.insert("GATHER_DATA_DIR", data_dir.display().to_string());
    env.insert("GATHER_BOOTSTRAP_MODERATOR", format!("{}:{}", MODERATOR.0, MODERATOR.1));
    env.insert("GATHER_BOOTSTRAP_AUDITOR", format!("{}:{}", AUDITOR.0, AUDITOR.1));
    env.insert("GATHER_PAYMENT_WEBHOOK_SECRET", WEBHOOK_SECRET.into());
    // Tests drive many requests from one address; the limits test turns them on.
    for limit in ["GATHER_RATE_LIMIT_COMMANDS", "GATHER_RATE_LIMIT_GUESTS", "GATHER_RATE_LIMIT_AUTH"] {
        env.insert(limit, "0".into());
    }
    let mut lease = None;
    if profile == Profile::Postgres {
        env.insert("GATHER_DATABASE_URL", fresh_pg_database().await);
        env.insert("GATHER_JWT_SECRET", "test-secret-test-secret-test-secret-0123".into());
        env.insert("GATHER_LOOKUP_KEY", "test-lookup-key-test-lookup-key-0123456".into());
        env.insert("GATHER_KEK", "7e57".repeat(16));
        let l = VhostLease::take().await;
        env.insert("GATHER_AMQP_URL", l.url.clone());
        lease = Some(l);
    }
    (Settings::from_lookup(|k| env.get(k).cloned()).expect("test settings"), lease)
}

/// A second Gather process on the same database (and data dir) as `app`.
pub async fn spawn_beside(app: &TestApp) -> TestApp {
    let mut beside = start(app.app_state.settings.as_ref().clone(), app.clock.clone()).await;
    beside.vhost = app.vhost.clone();
    beside
}

/// A second Gather process on the same database as `app`, running only `roles`.
pub async fn spawn_with_roles(app: &TestApp, roles: &[gather_api::settings::ProcessRole]) -> TestApp {
    let mut settings = app.app_state.settings.as_ref().clone();
    settings.roles = roles.to_vec();
    let mut beside = start(settings, app.clock.clone()).await;
    beside.vhost = app.vhost.clone();
    beside
}

async fn start(settings: Settings, clock: Option<gather_commands::handler::Clock>) -> TestApp {
    let app = App::build_with_clock(settings, clock.clone()).await.expect("gather starts");
    let addr = app.local_addr();
    let app_state = app.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp { addr, http: reqwest::Client::new(), stop: Some(stop), app_state, clock, vhost: None }
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn position(&self) -> i64 {
        self.header("gather-position").and_then(|v| v.parse().ok()).expect("Gather-Position header")
    }

    /// Asserts a problem+json answer with this status (and code, if given).
    pub fn assert_problem(&self, status: u16, code: Option<&str>) {
        assert_eq!(self.status, status, "unexpected answer: {:?}", self.body);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{:?}", self.body);
        assert_eq!(self.body["status"], json!(status));
        assert!(self.body["title"].is_string() && self.body["detail"].is_string(), "{:?}", self.body);
        if let Some(code) = code {
            assert_eq!(self.body["code"], json!(code), "{:?}", self.body);
        }
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let res = req.send().await.expect("request sent");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.expect("body read");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Answer { status, headers, body }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>, min_position: Option<i64>) -> Answer {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(p) = min_position {
            req = req.header("Gather-Min-Position", p.to_string());
        }
        self.send(req).await
    }

    /// Registers a member with a display name and returns (member_id, token).
    pub async fn register_as(&self, email: &str, name: &str) -> (String, String) {
        let a = self
            .post(
                "/v1/auth/register",
                None,
                json!({"email": email, "password": "correct horse battery", "display_name": name}),
            )
            .await;
        assert_eq!(a.status, 201, "{:?}", a.body);
        (a.body["member_id"].as_str().unwrap().to_string(), a.body["token"].as_str().unwrap().to_string())
    }

    /// Registers a member and returns (member_id, token).
    pub async fn register(&self, email: &str) -> (String, String) {
        let a = self
            .post(
                "/v1/auth/register",
                None,
                json!({"email": email, "password": "correct horse battery", "display_name": "Ada"}),
            )
            .await;
        assert_eq!(a.status, 201, "{:?}", a.body);
        (a.body["member_id"].as_str().unwrap().to_string(), a.body["token"].as_str().unwrap().to_string())
    }

    pub async fn login(&self, email: &str, password: &str) -> Answer {
        self.post("/v1/auth/login", None, json!({"email": email, "password": password})).await
    }

    /// Registers, becomes organiser, logs in again: returns the organiser's token.
    pub async fn organiser(&self, email: &str) -> String {
        let (_, token) = self.register(email).await;
        let a = self.post("/v1/me/organiser", Some(&token), json!({"organisation_name": "Clay Club"})).await;
        assert_eq!(a.status, 202, "{:?}", a.body);
        let a = self.login(email, "correct horse battery").await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        a.body["token"].as_str().unwrap().to_string()
    }

    /// The number of events in the store (to prove bad input changed nothing). Counted
    /// directly: a log reader's view may lag behind other tests' open transactions.
    pub async fn event_count(&self) -> i64 {
        gather_commands::on_db_read!(&self.app_state.db, p =>
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events").fetch_one(p).await)
        .expect("count events")
    }
}

/// A valid activity body.
pub fn activity_body() -> Value {
    json!({
        "title": "Kids pottery",
        "description": "Hands in clay for an afternoon.",
        "category": "workshop",
        "tags": ["kids", "clay"],
        "starts_at": "2030-05-01T14:00:00Z",
        "ends_at": "2030-05-01T16:00:00Z",
        "capacity": 10,
        "price": {"amount": 0, "currency": "EUR"},
        "visibility": "public",
        "location": {"kind": "venue", "name": "Studio", "address": "1 Clay St", "lat": 52.37, "lng": 4.89},
        "age_min": 6,
        "age_max": 12,
        "waitlist": false
    })
}

/// Generates one test per profile for an async scenario `fn(TestApp)`.
macro_rules! both_profiles {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_sqlite() {
                    super::$name(crate::harness::spawn_app(crate::harness::Profile::Sqlite).await).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_postgres() {
                    super::$name(crate::harness::spawn_app(crate::harness::Profile::Postgres).await).await;
                }
            }
        )*
    };
}

/// `both_profiles!` with the settings adjusted by `$adjust` (`fn(&mut Settings)`).
macro_rules! with_profiles {
    ($name:ident, $adjust:expr) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$name(crate::harness::spawn_app_with(crate::harness::Profile::Sqlite, $adjust).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                super::$name(crate::harness::spawn_app_with(crate::harness::Profile::Postgres, $adjust).await).await;
            }
        }
    };
}

/// Test set-up without HTTP or argon2: registers a member straight through the command
/// handler (with a fixed, valid-looking hash) and mints its token.
pub async fn quick_member(app: &TestApp) -> (uuid::Uuid, String) {
    use gather_domain::member::{Member, MemberCommand};
    use gather_domain::values::{DisplayName, Email};
    let id = uuid::Uuid::now_v7();
    let email = Email::parse(&format!("m{}@example.com", id.simple())).unwrap();
    let norm = email.normalized();
    let cmd = MemberCommand::Register {
        member_id: id,
        email,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
        display_name: DisplayName::parse("Quick").unwrap(),
    };
    let meta = gather_commands::CommandMeta::new(gather_domain::Actor::new(id, [gather_domain::Role::Member]));
    app.app_state
        .commands
        .handle_with::<Member>(id, cmd, &meta, |_| {
            vec![gather_commands::uniqueness::reserve_email(&app.app_state.lookup, &norm, id)]
        })
        .await
        .unwrap();
    let token = app.app_state.jwt.issue(id, &[gather_domain::Role::Member]).unwrap();
    (id, token)
}

/// A published public activity (created, submitted, approved); returns its id.
pub async fn published_activity(app: &TestApp, organiser: &str, capacity: i64, waitlist: bool) -> String {
    let mut body = activity_body();
    body["capacity"] = json!(capacity);
    body["waitlist"] = json!(waitlist);
    body.as_object_mut().unwrap().remove("age_min");
    body.as_object_mut().unwrap().remove("age_max");
    let a = app.post("/v1/activities", Some(organiser), body).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let id = a.body["id"].as_str().unwrap().to_string();
    let a = app.post(&format!("/v1/activities/{id}/submit"), Some(organiser), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let m = app.login(MODERATOR.0, MODERATOR.1).await;
    let a = app.post(&format!("/v1/activities/{id}/approve"), m.body["token"].as_str(), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    id
}

/// Polls `check` until it holds (bounded): the scheduler and projectors run in the background.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{what} did not happen within 10 s");
}

/// The emails a process mailing to files (no `GATHER_SMTP_URL`) wrote for `address`.
pub fn mail_files_to(app: &TestApp, address: &str) -> Vec<String> {
    let dir = app.app_state.settings.data_dir.join("mail");
    let header = format!("To: {address}");
    std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| std::fs::read_to_string(e.path()).unwrap_or_default()).collect())
        .unwrap_or_else(|_| Vec::new())
        .into_iter()
        .filter(|m: &String| m.lines().any(|l| l.trim() == header))
        .map(|m| unfold(&m))
        .collect()
}

/// Joins quoted-printable soft line breaks, so a test can look for a whole long line.
pub fn unfold(mail: &str) -> String {
    mail.replace("=\r\n", "").replace("=\n", "")
}

/// Every projection as `GET /v1/admin/projections` lists it.
pub async fn projections(app: &TestApp, token: &str) -> Vec<Value> {
    let a = app.get("/v1/admin/projections", Some(token), None).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.body["items"].as_array().unwrap().clone()
}

/// One projection as `GET /v1/admin/projections` lists it.
pub async fn projection(app: &TestApp, token: &str, name: &str) -> Value {
    projections(app, token).await.into_iter().find(|p| p["name"] == name).expect("the projection is listed")
}

/// Waits until a rebuild of `name` has swapped in (failing if it failed).
pub async fn rebuilt(app: &TestApp, token: &str, name: &str) {
    eventually(&format!("the rebuild of {name} swapped in"), || async {
        let p = projection(app, token, name).await;
        assert!(p["rebuilding"].is_null() || p["rebuilding"]["error"].is_null(), "rebuild failed: {p}");
        p["rebuilding"].is_null()
    })
    .await;
}
