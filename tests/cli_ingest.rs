//! `docent ingest DIR` run twice: the second run re-ingests only what
//! changed and removes documents whose files are gone.

mod common;

fn line_count(stdout: &str, label: &str) -> usize {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label).map(|rest| rest.trim().parse::<usize>().ok()))
        .flatten()
        .unwrap_or_else(|| panic!("no {label:?} line in {stdout}"))
}

#[test]
fn second_run_syncs_changes_and_deletions() {
    let data = tempfile::tempdir().expect("tempdir");
    let docs = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        docs.path().join("a.md"),
        "# Fees\n\nThe parking fee is four euros per day.\n",
    )
    .expect("write");
    std::fs::write(
        docs.path().join("b.txt"),
        "The library closes at nine in the evening.\n",
    )
    .expect("write");
    std::fs::write(docs.path().join("skip.bin"), [0u8, 1, 2]).expect("write");
    let dir = docs.path().to_str().expect("utf8 path");

    let out = common::docent(data.path(), &["ingest", dir]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}");
    assert_eq!(line_count(&stdout, "ingested"), 2, "{stdout}");

    let out = common::docent(data.path(), &["ingest", dir]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(line_count(&stdout, "ingested"), 0, "{stdout}");
    assert_eq!(line_count(&stdout, "unchanged"), 2, "{stdout}");

    std::fs::write(
        docs.path().join("a.md"),
        "# Fees\n\nThe parking fee is six euros per day.\n",
    )
    .expect("write");
    std::fs::remove_file(docs.path().join("b.txt")).expect("remove");
    let out = common::docent(data.path(), &["ingest", dir]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(line_count(&stdout, "ingested"), 1, "{stdout}");
    assert_eq!(line_count(&stdout, "removed"), 1, "{stdout}");

    let out = common::docent(data.path(), &["search", "parking fee euros", "--json"]);
    let hits: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let texts: Vec<&str> = hits
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|h| h["chunk"]["text"].as_str())
        .collect();
    assert!(texts.iter().any(|t| t.contains("six euros")), "{texts:?}");
    assert!(
        texts
            .iter()
            .all(|t| !t.contains("four euros") && !t.contains("library")),
        "{texts:?}"
    );

    let out = common::docent(data.path(), &["check"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["sql"], report["vectors"]);
    assert_eq!(report["sql"], report["keywords"]);
}
