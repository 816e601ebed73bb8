//! A login flood against a real Gather (embedded profile, in this process): 50 clients
//! sending wrong passwords as fast as they are answered, with the resident memory of the
//! process sampled throughout, before and after (issue 11: each argon2 hash takes
//! ~19 MiB; unbounded, 50 concurrent logins drove a server to 12.9 GB and kept it).

use crate::app;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The process's resident set in MiB (Linux), 0 elsewhere.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

pub(crate) async fn run(secs: f64, clients: usize) -> anyhow::Result<()> {
    gather_api::passwords::tune_allocator();
    let app = Arc::new(app::start(None, &[], false).await?);
    let email = "flood@example.com";
    let res = app
        .http
        .post(app.url("/v1/auth/register"))
        .json(&json!({"email": email, "password": "the-right-password", "display_name": "Flood"}))
        .send()
        .await?;
    anyhow::ensure!(res.status().as_u16() == 201, "register answered {}", res.status());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_mib();

    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut peak: f64 = 0.0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(rss_mib());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    let (unauthorized, busy, other) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (app, unauthorized, busy, other) = (app.clone(), unauthorized.clone(), busy.clone(), other.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    let res = app
                        .http
                        .post(app.url("/v1/auth/login"))
                        .json(&json!({"email": email, "password": "a-wrong-password"}))
                        .send()
                        .await;
                    let counter = match res.map(|r| r.status().as_u16()) {
                        Ok(401) => &unauthorized,
                        Ok(503) | Ok(429) => &busy,
                        _ => &other,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    done.store(true, Ordering::Relaxed);
    let peak = sampler.await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_mib();
    let passwords = &app.state.passwords;
    let (limit, high_water) = (passwords.limit(), passwords.high_water());
    app.stop().await;
    let _ = std::fs::remove_dir_all(&app.data_dir);

    println!("\n## Login flood (embedded profile), {clients} clients, wrong password, {secs} s\n");
    println!(
        "| 401 answers | 503 busy | other | argon2 bound | most running at once | RSS before | peak RSS | RSS 2 s after |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {limit} | {high_water} | {before:.0} MiB | {peak:.0} MiB | {after:.0} MiB |",
        unauthorized.load(Ordering::Relaxed),
        busy.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed)
    );
    Ok(())
}
