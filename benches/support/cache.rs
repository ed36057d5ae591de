//! `BERTH_BENCH_PROFILE=cache`: the pull-through cache against the reference
//! registry as its upstream, on this machine.
//!
//! - **Cold pull**: a blob the cache has never seen, pulled through Berth's
//!   proxy namespace (fetched, hashed and stored while streamed on),
//!   against the same client pulling a blob of the same size straight from
//!   the upstream. Each round pushes two fresh blobs upstream (which leaves
//!   them in its page cache, so both pulls read the upstream from memory)
//!   and takes the two pulls in alternating order.
//! - **Warm pull**: the cached blob pulled again, against a blob pushed to
//!   Berth itself, both from Berth's own store.
//!
//! Medians of `BERTH_BENCH_ROUNDS` rounds (3); the size is
//! `BERTH_BENCH_LARGE_MIB` (512). Berth's CPU time per cold pull and per
//! direct pull of the upstream's is printed too.

use std::sync::Arc;

use bytes::Bytes;

use super::{
    env_usize, large_blob, median, pull, pull_once, push_monolithic, settle, sha256,
    start_berth_with, start_reference, variant,
};

pub async fn profile() {
    let rounds = env_usize("BERTH_BENCH_ROUNDS", 3).max(1);
    let Some(upstream) = start_reference().await else {
        panic!("the cache profile needs the reference registry: apt-get install docker-registry");
    };
    let upstream = Arc::new(upstream);
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[[proxy]]\nnamespace = \"hub\"\nupstream = \"{}\"\n",
            upstream.base
        ),
    )
    .unwrap();
    let env = [(
        "BERTH_CONFIG".to_string(),
        config.to_str().unwrap().to_string(),
    )];
    let berth = Arc::new(start_berth_with(true, &env, "berth").await);
    let http = reqwest::Client::new();
    let large = large_blob();
    let mib = large.len() / 1048576;
    let local_digest = sha256(&large);
    push_monolithic(&berth, &http, "bench/large", &large).await;

    let (mut cold, mut direct, mut cold_cpu, mut direct_cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut cached = None;
    for round in 0..rounds {
        let through: Bytes = variant(&large, 0x40 | round as u8);
        let straight: Bytes = variant(&large, 0x60 | round as u8);
        let (through_digest, straight_digest) = (sha256(&through), sha256(&straight));
        push_monolithic(&upstream, &http, "library/large", &through).await;
        push_monolithic(&upstream, &http, "library/large", &straight).await;
        settle().await;
        let mut measure_cold = async || {
            let before = berth.cpu_and_switches().0;
            cold.push(pull_once(&berth, "hub/library/large", &through_digest).await);
            cold_cpu.push((berth.cpu_and_switches().0 - before).as_secs_f64() * 1000.0);
        };
        if round % 2 == 0 {
            measure_cold().await;
        }
        let before = upstream.cpu_and_switches().0;
        direct.push(pull_once(&upstream, "library/large", &straight_digest).await);
        direct_cpu.push((upstream.cpu_and_switches().0 - before).as_secs_f64() * 1000.0);
        if round % 2 == 1 {
            measure_cold().await;
        }
        cached = Some(through_digest);
    }
    let cached = cached.expect("one round at least");
    // The fill's commit ends after the last byte was served.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (mut warm, mut local) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        settle().await;
        if round % 2 == 0 {
            warm.push(pull(&berth, "hub/library/large", &cached).await);
            local.push(pull(&berth, "bench/large", &local_digest).await);
        } else {
            local.push(pull(&berth, "bench/large", &local_digest).await);
            warm.push(pull(&berth, "hub/library/large", &cached).await);
        }
    }
    let row = |name: &str, ours: &[f64], theirs: &[f64], versus: &str, goal: &str| {
        let (a, b) = (median(ours), median(theirs));
        println!(
            "| {name} | {a:.0} MiB/s | {versus} {b:.0} MiB/s | {:.2} | {goal} |",
            a / b
        );
        println!("|   rounds | {} | {} | | |", list(ours), list(theirs));
    };
    println!(
        "\nPull-through cache, {mib} MiB blobs, medians of {rounds} rounds (upstream: the reference registry)\n"
    );
    println!("| row | through the cache | against | ratio | goal |");
    println!("| --- | ---: | ---: | ---: | --- |");
    row(
        "cold pull (fetched from upstream while streamed)",
        &cold,
        &direct,
        "direct from the upstream",
        "at least 0.9",
    );
    row(
        "warm pull (cached)",
        &warm,
        &local,
        "a blob pushed to Berth",
        "at least 0.95",
    );
    println!(
        "\nCPU per cold pull: Berth {:.0} ms (receive, hash, store, send); the upstream per direct pull {:.0} ms",
        median(&cold_cpu),
        median(&direct_cpu)
    );
    let _files = (berth.stop(), upstream.stop());
}

fn list(samples: &[f64]) -> String {
    samples
        .iter()
        .map(|s| format!("{s:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}
