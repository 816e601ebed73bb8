//! The email outbox's sender: rows are claimed with a lease, so several senders over
//! one database deliver each email once.

use crate::harness::{TestApp, eventually};
use gather_commands::{on_db, on_db_read};
use gather_projections::mail::{Mailer, deliver_pending};
use uuid::Uuid;

both_profiles!(two_senders_deliver_each_email_once);

/// The legacy outbox's emails in `dir` (the notifier writes welcome emails there too).
fn eml_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|m| m.contains("Subject: Hello")))
                .count()
        })
        .unwrap_or(0)
}

async fn two_senders_deliver_each_email_once(app: TestApp) {
    let db = &app.app_state.db;
    // Two more senders beside the app's own, each with its own directory.
    let dirs: Vec<_> = (0..2).map(|_| std::env::temp_dir().join(format!("gather-mail-{}", Uuid::new_v4()))).collect();
    let mailers: Vec<_> = dirs.iter().map(|d| Mailer::files(d.clone()).unwrap()).collect();
    let pending = || async {
        on_db_read!(db, p => sqlx::query_scalar::<_, i64>("SELECT count(*) FROM email_outbox WHERE sent_at IS NULL")
            .fetch_one(p).await)
        .unwrap()
    };
    let mut claimed_here = 0;
    // Both senders at once, then the second starting while the first is half-way
    // through the rows it claimed.
    for staggered in [false, true] {
        for i in 0..60 {
            on_db!(db, p => sqlx::query(
                "INSERT INTO email_outbox (id, recipient, subject, body, created_at) VALUES ($1, $2, 'Hello', 'Hi', $3)",
            ).bind(Uuid::now_v7()).bind(format!("r{i}@example.com")).bind(chrono::Utc::now())
             .execute(p).await.map(|r| r.rows_affected())).unwrap();
        }
        let second = async {
            if staggered {
                eventually("the first sender is under way", || async { pending().await < 55 }).await;
            }
            deliver_pending(db, &mailers[1]).await
        };
        let (a, b) = tokio::join!(deliver_pending(db, &mailers[0]), second);
        claimed_here += a.unwrap() + b.unwrap();
        eventually("every email is delivered", || async { pending().await == 0 }).await;
    }
    assert!(claimed_here > 0, "the extra senders delivered something");
    let rows: i64 =
        on_db_read!(db, p => sqlx::query_scalar("SELECT count(*) FROM email_outbox").fetch_one(p).await).unwrap();
    let own = app.app_state.settings.data_dir.join("mail");
    let files = eml_files(&dirs[0]) + eml_files(&dirs[1]) + eml_files(&own);
    assert_eq!(files as i64, rows, "each email delivered exactly once across three senders");
    assert_eq!(eml_files(&dirs[0]) + eml_files(&dirs[1]), claimed_here);
}
