//! The OpenAPI document: generated from the code, every entry has its route and every
//! route its entry, the Swagger UI renders from vendored files, and schemathesis finds
//! no server error and no answer outside the document in either profile.

use crate::harness::*;
use gather_api::settings::Settings;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn document(app: &TestApp) -> Value {
    let a = app.get("/openapi.json", None, None).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.body
}

/// `(method, path template)` of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                ops.insert((m.to_string(), path.clone()));
            }
        }
    }
    ops
}

/// The template with every `{param}` filled in (a fresh UUID, or a name).
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed parameter") + start;
        let name = &rest[start + 1..end];
        out.push_str(&if name == "name" { "members".to_string() } else { uuid::Uuid::now_v7().to_string() });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

async fn call(app: &TestApp, method: &str, path: &str) -> Answer {
    let url = app.url(path);
    let req = match method {
        "get" => app.http.get(url),
        "post" => app.http.post(url).json(&json!({})),
        "put" => app.http.put(url).json(&json!({})),
        "patch" => app.http.patch(url).json(&json!({})),
        "delete" => app.http.delete(url),
        other => panic!("no method {other}"),
    };
    app.send(req).await
}

/// The fallback's answers: no route at all (404 "no such route") or not this method (405).
fn unrouted(a: &Answer) -> bool {
    a.status == 405 || (a.status == 404 && a.body["detail"] == json!("no such route"))
}

both_profiles!(every_entry_has_its_route_and_every_route_its_entry);

async fn every_entry_has_its_route_and_every_route_its_entry(app: TestApp) {
    let doc = document(&app).await;
    let ops = operations(&doc);
    assert!(ops.len() >= 60, "every operation of API.md is documented: {}", ops.len());
    let paths: BTreeSet<&String> = ops.iter().map(|(_, p)| p).collect();
    for path in paths {
        let concrete = concrete(path);
        for m in METHODS {
            let documented = ops.contains(&(m.to_string(), path.clone()));
            let a = call(&app, m, &concrete).await;
            if documented {
                assert!(!unrouted(&a), "{m} {path} is documented but has no route: {} {:?}", a.status, a.body);
            } else {
                assert_eq!(a.status, 405, "{m} {path} answers but has no entry: {:?}", a.body);
                a.assert_problem(405, None);
            }
        }
    }
    // A path that is in no entry has no route either.
    let a = call(&app, "get", "/v1/no-such-thing").await;
    assert!(unrouted(&a), "{:?}", a.body);
}

/// Every route is registered from its handler's `#[utoipa::path]` through
/// `utoipa_axum::routes!`, which adds the entry with the route: no plain axum route
/// (which could exist without an entry) is registered anywhere in the api crate.
#[test]
fn routes_are_registered_only_with_their_entries() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/src");
    let mut files = vec![dir.join("app.rs"), dir.join("metrics.rs")];
    for e in std::fs::read_dir(dir.join("routes")).unwrap() {
        files.push(e.unwrap().path());
    }
    let mut registered = 0;
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        for (n, line) in src.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            assert!(
                !code.contains(".route(") && !code.contains(".route_service(") && !code.contains(".nest("),
                "{}:{}: a plain axum route has no OpenAPI entry; register it with routes!(handler): {line}",
                f.display(),
                n + 1
            );
            registered += code.matches("routes!(").count();
        }
    }
    assert!(registered >= 50, "the handlers are registered through routes!: {registered}");
}

both_profiles!(the_document_is_openapi_3_1_with_the_conventions_of_api_md);

async fn the_document_is_openapi_3_1_with_the_conventions_of_api_md(app: TestApp) {
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], json!("3.1.0"));
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], json!("bearer"));
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][&method];
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2') || s == "101"),
            "{method} {path} documents its success: {responses:?}"
        );
        for problem in ["400", "401", "403", "404", "429", "503"] {
            assert!(responses.contains_key(problem), "{method} {path} documents {problem}");
        }
        let params: Vec<&str> = op["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        if method == "get" {
            assert!(params.contains(&"Gather-Min-Position"), "{method} {path}: {params:?}");
        } else if path != "/v1/payments/webhook" {
            assert!(params.contains(&"Idempotency-Key") && params.contains(&"If-Match"), "{method} {path}: {params:?}");
            for problem in ["409", "412", "413", "415", "422"] {
                assert!(responses.contains_key(problem), "{method} {path} documents {problem}");
            }
        }
        for p in path.split('/').filter(|s| s.starts_with('{')) {
            let name = p.trim_matches(|c| c == '{' || c == '}');
            assert!(params.contains(&name), "{method} {path} documents its path parameter {name}");
        }
        if let Some(body) = op.get("requestBody") {
            let content = body["content"].as_object().expect("content");
            assert!(!content.is_empty(), "{method} {path} says what its body is");
            for (media_type, c) in content {
                assert!(c["schema"].is_object(), "{method} {path} names its {media_type} body's schema");
            }
        }
    }
    // Bodies carry examples where API.md gives one.
    let create = &doc["paths"]["/v1/activities"]["post"]["requestBody"]["content"]["application/json"];
    assert_eq!(create["example"]["location"]["kind"], json!("venue"), "{create}");
    // Answer shapes are named components.
    for schema in ["Problem", "FieldError", "CommandAnswer", "ActivityView", "SearchPage", "BookingView", "ChatView"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "component {schema}");
    }
    let problem = &doc["components"]["responses"]["Problem409"]["content"]["application/problem+json"];
    assert!(problem["schema"]["$ref"].as_str().is_some_and(|r| r.ends_with("/Problem")), "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_render_from_vendored_files_only() {
    let app = spawn_app(Profile::Sqlite).await;
    let res = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(!html.contains("://"), "no script or style from another host: {html}");
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css", "swagger-initializer.js"] {
        assert!(html.contains(asset), "{asset} in {html}");
        let res = app.http.get(app.url(&format!("/docs/{asset}"))).send().await.unwrap();
        assert_eq!(res.status(), 200, "{asset} is served from the binary");
        assert!(res.bytes().await.unwrap().len() > 100, "{asset} has content");
    }
    let init = app.http.get(app.url("/docs/swagger-initializer.js")).send().await.unwrap().text().await.unwrap();
    assert!(init.contains("/openapi.json"), "the UI loads this server's document: {init}");
}

fn for_fuzzing(s: &mut Settings) {
    // The webhook verifies signatures (without a secret it is a 503 by design).
    s.payment_webhook_secret = Some(secrecy::SecretString::from("fuzzing-webhook-secret-0123456789"));
}

with_profiles!(schemathesis_finds_no_server_error_and_no_answer_outside_the_document, super::for_fuzzing);

/// The schemathesis CLI: `GATHER_SCHEMATHESIS`, else the one `scripts/test` installs.
fn schemathesis() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("GATHER_SCHEMATHESIS") {
        return p.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    let venv = std::env::var_os("GATHER_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(&home).join(".cache/gather-venv"));
    let p = venv.join("bin/schemathesis");
    assert!(
        p.exists(),
        "schemathesis is not installed at {}: run scripts/test (it installs it from PyPI), or set GATHER_SCHEMATHESIS",
        p.display()
    );
    p
}

/// A fuzzed contract: schemathesis generates requests for every operation (examples,
/// boundary values, random data; a bounded number per operation) as a member who is
/// also organiser, moderator and auditor, and checks every answer: no 5xx, a status the
/// document lists, its content type, its headers, its schema. `/v1/stream` is left out:
/// it answers a WebSocket upgrade or an endless event stream (tests/e2e/distribution.rs).
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document(app: TestApp) {
    let bin = schemathesis();
    let (_, _) = app.register("fuzz@example.com").await;
    let token = app.organiser("fuzz-org@example.com").await;
    for role in [gather_domain::Role::Moderator, gather_domain::Role::Auditor] {
        let store = app.app_state.store.clone();
        gather_api::ops::grant_role(store, &app.app_state.lookup, "fuzz-org@example.com", role).await.unwrap();
    }
    let login = app.login("fuzz-org@example.com", "correct horse battery").await;
    let token = login.body["token"].as_str().map(str::to_owned).unwrap_or(token);
    let out = tokio::process::Command::new(&bin)
        .args([
            "run",
            &app.url("/openapi.json"),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "10",
            "--workers",
            "2",
            "--request-timeout",
            "20",
            "--exclude-path",
            "/v1/stream",
            "--seed",
            "20261129",
            "--no-color",
            "-H",
            &format!("Authorization: Bearer {token}"),
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .unwrap_or_else(|e| panic!("could not run {}: {e}", bin.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schemathesis found failures ({}):\n{stdout}\n{stderr}", out.status);
    let operations = operations(&document(&app).await).len();
    assert!(
        stdout.contains(&format!("Tested: {}", operations - 1)),
        "every one of the {operations} operations but the stream was tested:\n{stdout}"
    );
    assert!(!stdout.contains("Server error"), "{stdout}");
}
