//! docker-compose.yml cannot run here (no Docker engine), so its structure is checked.

use serde_yaml::Value;

fn compose() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml"))
        .expect("docker-compose.yml at the root");
    serde_yaml::from_str(&text).expect("docker-compose.yml is valid YAML")
}

fn service<'a>(c: &'a Value, name: &str) -> &'a Value {
    let s = &c["services"][name];
    assert!(s.is_mapping(), "service {name} is missing");
    s
}

#[test]
fn compose_has_every_service_with_health_checks() {
    let c = compose();
    assert!(service(&c, "postgres")["image"].as_str().unwrap().starts_with("postgres:16"));
    assert!(service(&c, "rabbitmq")["image"].as_str().unwrap().contains("management"));
    assert!(service(&c, "mailpit")["image"].as_str().unwrap().contains("mailpit"));
    assert!(service(&c, "kurrentdb")["image"].as_str().unwrap().contains("kurrentdb"));
    for name in ["postgres", "rabbitmq", "api", "projector", "notifier"] {
        assert!(service(&c, name)["healthcheck"]["test"].is_sequence(), "{name} has no health check");
    }
}

#[test]
fn gather_roles_wait_for_healthy_services_and_migrations() {
    let c = compose();
    let mut roles = Vec::new();
    for name in ["api", "projector", "notifier"] {
        let s = service(&c, name);
        assert_eq!(s["build"].as_str(), Some("."), "{name} builds from the Dockerfile");
        let deps = &s["depends_on"];
        // YAML merge keys (<<) are kept as a key by serde_yaml; resolve them.
        let merged = deps.get("<<").cloned().unwrap_or(Value::Null);
        for dep in ["postgres", "rabbitmq"] {
            let cond = deps[dep]["condition"].as_str().or(merged[dep]["condition"].as_str());
            assert_eq!(cond, Some("service_healthy"), "{name} must wait for {dep}");
        }
        assert_eq!(deps["migrate"]["condition"].as_str(), Some("service_completed_successfully"));
        let env = &s["environment"];
        roles.push(env["GATHER_ROLES"].as_str().unwrap_or_default().to_string());
    }
    let all = roles.join(",");
    for role in ["api", "projector", "notifier", "scheduler"] {
        assert!(all.contains(role), "no service runs {role}");
    }
}

#[test]
fn the_dockerfile_is_multi_stage() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Dockerfile")).unwrap();
    assert!(
        text.matches("\nFROM ").count() + usize::from(text.starts_with("FROM ")) >= 2
            || text.matches("FROM ").count() >= 2
    );
    assert!(text.contains("COPY --from=build"));
}

/// The log is append-only by privilege in the compose setup too: migrations run as the
/// owner, the services as a runtime role that the postgres init script creates.
#[test]
fn compose_runs_migrations_as_the_owner_and_services_as_the_runtime_role() {
    let c = compose();
    let env = &service(&c, "migrate")["environment"];
    let runtime = env["GATHER_DATABASE_URL"].as_str().unwrap();
    let owner = env["GATHER_MIGRATE_DATABASE_URL"].as_str().unwrap();
    let user = |url: &str| url.split("://").nth(1).unwrap().split(':').next().unwrap().to_owned();
    assert_ne!(user(runtime), user(owner));
    assert_eq!(user(owner), service(&c, "postgres")["environment"]["POSTGRES_USER"].as_str().unwrap());
    let mounts: Vec<&str> =
        service(&c, "postgres")["volumes"].as_sequence().unwrap().iter().filter_map(|v| v.as_str()).collect();
    let init = mounts.iter().find(|m| m.contains("docker-entrypoint-initdb.d")).expect("an init script is mounted");
    let path = init.split(':').next().unwrap().trim_start_matches("./");
    let sql = std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    assert!(sql.contains(&format!("CREATE ROLE {} LOGIN", user(runtime))), "{sql}");
}
