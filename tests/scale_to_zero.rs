//! `scaleToZero` in model-config.yaml, through the real server: a version registered
//! cold (no worker, no weights) answers its first request by loading, gives the same
//! answer as the same archive always loaded, unloads after `scaleToZeroIdleSeconds`
//! without a request and wakes again; a burst on a cold version is served whole; the
//! settings are checked where the archive is made and a broken model at registration;
//! `/ping`, KServe's readiness and `describe`
//! say what a cold version is.

mod common;

use std::time::{Duration, Instant};

use common::*;

const COLD: &str = "scaleToZero: true\nscaleToZeroIdleSeconds: 2\n";

fn workers(d: &serde_json::Value) -> usize {
    d["workers"].as_array().unwrap().len()
}

fn classify(server: &Server, model: &str) -> serde_json::Value {
    let (status, body) = json(server.post(&format!("/predictions/{model}"), kitten_jpg()));
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until `model`'s describe satisfies `f`, up to `limit`.
fn wait_for(
    server: &Server,
    model: &str,
    limit: Duration,
    f: impl Fn(&serde_json::Value) -> bool,
) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f(&server.describe(model)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// MobileNetV2 with the built-in image_classifier as `NAME.mar` (model name NAME).
fn mobilenet_as(store: &ModelStore, name: &str, yaml: Option<&str>) {
    store.archive_with_config(
        name,
        &asset("models/mobilenet_v2_quantized.pt"),
        "image_classifier",
        &[&asset("images/index_to_name.json")],
        yaml,
    );
}

fn two_mobilenets(store: &ModelStore) {
    mobilenet_as(store, "mobilenet", None);
    mobilenet_as(store, "cold", Some(COLD));
}

#[test]
fn a_cold_version_loads_on_its_first_request_and_unloads_when_idle() {
    let store = ModelStore::new();
    two_mobilenets(&store);
    let server = Server::start(
        store.path(),
        &["warm=mobilenet.mar", "cold=cold.mar"],
        "default_workers_per_model=1",
    );

    // Registered cold: no worker, ready all the same.
    let d = server.describe("cold");
    assert_eq!(workers(&d), 0, "{d}");
    assert_eq!(d["scaleToZero"]["loaded"], false, "{d}");
    assert_eq!(d["scaleToZero"]["idleSeconds"], 2, "{d}");
    assert!(server.describe("warm").get("scaleToZero").is_none());
    assert_eq!(
        client().get(server.url("/ping")).send().unwrap().status(),
        200
    );
    assert_eq!(
        client()
            .get(server.url("/v2/models/cold/ready"))
            .send()
            .unwrap()
            .status(),
        200
    );

    // The first request loads it; its answer is the always-loaded version's.
    let expected = classify(&server, "warm");
    let first = classify(&server, "cold");
    assert_eq!(first, expected);
    assert!(
        server.log().contains("woke model cold version 1.0"),
        "{}",
        server.log()
    );
    let d = server.describe("cold");
    assert_eq!(workers(&d), 1, "{d}");
    assert_eq!(d["scaleToZero"]["loaded"], true, "{d}");

    // Requests keep it loaded; idle, it unloads within its idle time and the reaper's
    // second.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(classify(&server, "cold"), expected);
        assert_eq!(workers(&server.describe("cold")), 1);
    }
    assert!(
        wait_for(&server, "cold", Duration::from_secs(6), |d| workers(d) == 0
            && d["scaleToZero"]["loaded"] == false),
        "{}",
        server.describe("cold")
    );
    assert!(
        server
            .log()
            .contains("model cold version 1.0 scaled to zero")
    );
    assert_eq!(
        workers(&server.describe("warm")),
        1,
        "the other model stays"
    );

    // And wakes again.
    assert_eq!(classify(&server, "cold"), expected);
    assert_eq!(workers(&server.describe("cold")), 1);
}

#[test]
fn a_burst_on_a_cold_version_is_served_whole() {
    let store = ModelStore::new();
    two_mobilenets(&store);
    let server = Server::start(store.path(), &["warm=mobilenet.mar", "cold=cold.mar"], "");
    let expected = classify(&server, "warm");
    let urls: Vec<String> = (0..12).map(|_| server.url("/predictions/cold")).collect();
    let answers: Vec<(u16, serde_json::Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = urls
            .iter()
            .map(|url| s.spawn(move || json(client().post(url).body(kitten_jpg()).send().unwrap())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, body) in answers {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, expected);
    }
    assert_eq!(
        server.log().matches("woke model cold").count(),
        1,
        "one wake-up for the burst: {}",
        server.log()
    );
}

#[test]
fn scaling_to_zero_workers_unloads_and_the_next_request_wakes_it() {
    let store = ModelStore::new();
    two_mobilenets(&store);
    let server = Server::start(
        store.path(),
        &["cold=cold.mar"],
        "enable_model_api=true\ndefault_workers_per_model=1",
    );
    classify(&server, "cold");
    assert_eq!(workers(&server.describe("cold")), 1);
    let resp = client()
        .put(server.mgmt("/models/cold?min_worker=0&synchronous=true"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let d = server.describe("cold");
    assert_eq!(
        (workers(&d), &d["scaleToZero"]["loaded"]),
        (0, &false.into()),
        "{d}"
    );
    // min_worker=2 while cold: recorded, both started by the next wake-up.
    let resp = client()
        .put(server.mgmt("/models/cold?min_worker=2&synchronous=true"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(workers(&server.describe("cold")), 0);
    classify(&server, "cold");
    assert_eq!(workers(&server.describe("cold")), 2);
    // Unregistering a loaded one and a cold one.
    let resp = client().delete(server.mgmt("/models/cold")).send().unwrap();
    assert_eq!(resp.status(), 200);
}

#[test]
fn its_settings_are_checked_at_registration() {
    let store = ModelStore::new();
    let server = Server::start(store.path(), &[], "enable_model_api=true");
    let register = |name: &str| {
        json(
            client()
                .post(server.mgmt(&format!("/models?url={name}.mar&synchronous=true")))
                .send()
                .unwrap(),
        )
    };
    // Checked where the archive is made (the same reader as at registration).
    let refused = [
        (
            "scaleToZeroIdleSeconds: 10\n",
            "has no effect without scaleToZero",
        ),
        ("scaleToZero: yes please\n", "must be true or false"),
        (
            "scaleToZero: true\nscaleToZeroIdleSeconds: 0\n",
            "must be at least 1",
        ),
    ];
    for (yaml, why) in refused {
        let out = store.try_archive(
            "m",
            &asset("models/mobilenet_v2_quantized.pt"),
            "image_classifier",
            &[],
            Some(yaml),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(why), "{yaml}: {err}");
    }

    // A broken model is refused now, not at its first request.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("broken.pt");
    std::fs::write(&junk, b"not a TorchScript file").unwrap();
    store.archive_with_config(
        "broken",
        &junk,
        "image_classifier",
        &[],
        Some("scaleToZero: true\n"),
    );
    let (status, body) = register("broken");
    assert!(status >= 400, "{body}");
    let (status, _) = json(client().get(server.mgmt("/models/broken")).send().unwrap());
    assert_eq!(status, 404);

    // A good one registers cold, and quickly.
    mobilenet_as(&store, "lazy", Some("scaleToZero: true\n"));
    let (status, body) = register("lazy");
    assert_eq!(status, 200, "{body}");
    let d = server.describe("lazy");
    assert_eq!(workers(&d), 0, "{d}");
    assert_eq!(
        d["scaleToZero"]["idleSeconds"], 300,
        "the documented default: {d}"
    );
}
