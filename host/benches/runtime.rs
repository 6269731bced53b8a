//! Figures of the runtime, printed (not asserted): compiling a component
//! versus loading it from the on-disk cache, instantiating a fresh instance
//! per run, and a guest call round trip. Run with
//! `cargo bench -p weft-host --bench runtime`; the numbers are medians of
//! repeated runs on this machine, and ratios within one run are what to
//! compare.

use std::time::{Duration, Instant};
use weft::{HostConfig, Runtime, TenantGrant};
use weft_test_artifacts as artifacts;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bytes = std::fs::read(artifacts::ACME_CRM).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let config = || HostConfig {
            cache_dir: Some(cache.path().to_owned()),
            ..HostConfig::default()
        };

        // Cold: a new cache directory each time, so every load compiles.
        let mut cold = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let runtime = Runtime::new(HostConfig {
                cache_dir: Some(dir.path().to_owned()),
                ..HostConfig::default()
            })
            .unwrap();
            let t = Instant::now();
            let c = runtime.load(&bytes).await.unwrap();
            cold.push(t.elapsed());
            assert!(!c.from_cache());
        }
        // Warm: the same cache directory, as after a restart.
        Runtime::new(config()).unwrap().load(&bytes).await.unwrap();
        let mut warm = Vec::new();
        for _ in 0..5 {
            let runtime = Runtime::new(config()).unwrap();
            let t = Instant::now();
            let c = runtime.load(&bytes).await.unwrap();
            warm.push(t.elapsed());
            assert!(c.from_cache());
        }
        let (cold, warm) = (median(cold), median(warm));
        println!(
            "load acme_crm.wasm ({} KiB): compile {:.1} ms, from cache {:.1} ms, ratio {:.1}x",
            bytes.len() / 1024,
            ms(cold),
            ms(warm),
            cold.as_secs_f64() / warm.as_secs_f64()
        );

        // A fresh instance per run, and one guest call.
        let runtime = Runtime::new(config()).unwrap();
        let source = runtime
            .load_file(artifacts::TEST_SOURCE.as_ref())
            .await
            .unwrap();
        let grant = TenantGrant {
            config: serde_json::json!({ "total": 100, "page_size": 100 }),
            ..TenantGrant::new("bench")
        };
        let mut inst = Vec::new();
        let mut calls = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            let mut i = runtime.instantiate(&source, &grant).await.unwrap();
            inst.push(t.elapsed());
            let t = Instant::now();
            let page = i.fetch("numbers", None).await.unwrap();
            calls.push(t.elapsed());
            assert_eq!(page.records.len(), 100);
        }
        println!(
            "instantiate (pooling allocator): median {:.3} ms over 200",
            ms(median(inst))
        );
        println!(
            "fetch of a 100-record page (guest call + lifting): median {:.3} ms over 200",
            ms(median(calls))
        );
    });
}
