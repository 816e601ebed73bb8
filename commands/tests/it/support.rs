//! Fresh databases per test.

use gather_commands::store::postgres::PostgresStore;
use gather_commands::store::sqlite::SqliteStore;
use gather_commands::{Db, EventStore};
use std::sync::Arc;
use uuid::Uuid;

pub fn pg_base() -> String {
    std::env::var("GATHER_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A migrated, empty Postgres database.
pub async fn fresh_postgres() -> (Db, Arc<dyn EventStore>, String) {
    let name = format!("gather_it_{}", Uuid::new_v4().simple());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{}/postgres", pg_base()))
        .await
        .expect("Postgres must run on 127.0.0.1:5432 (scripts/test starts it)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
    let url = format!("{}/{name}", pg_base());
    let db = Db::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    let Db::Postgres(pool) = &db else { unreachable!() };
    let store: Arc<dyn EventStore> = Arc::new(PostgresStore::new(pool.clone()));
    (db, store, url)
}

/// A migrated, empty SQLite file.
pub async fn fresh_sqlite() -> (Db, Arc<dyn EventStore>) {
    let path = std::env::temp_dir().join(format!("gather-it-{}.db", Uuid::new_v4().simple()));
    let db = Db::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    db.migrate().await.unwrap();
    let Db::Sqlite { writer, reader } = &db else { unreachable!() };
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::new(writer.clone(), reader.clone()));
    (db, store)
}

/// Runs a contract scenario `fn(Db, Arc<dyn EventStore>)` on every backend.
macro_rules! every_backend {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_sqlite() {
                    let (db, store) = crate::support::fresh_sqlite().await;
                    super::$name(db, store).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_postgres() {
                    let (db, store, _) = crate::support::fresh_postgres().await;
                    super::$name(db, store).await;
                }
            }
        )*
    };
}
pub(crate) use every_backend;
