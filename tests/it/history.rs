use crate::support::{stdout_of, Project};
use predicates::prelude::*;
use serde_json::Value;

const NS: &str = "gru/BTCEUR";

fn history(p: &Project, args: &[&str]) -> Vec<Value> {
    p.json(&[&["history"], args].concat())["entries"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn history_shows_promotions_rollbacks_and_deletions_with_who_when_from_to() {
    // A fixed USER: the USER column's width follows the longest name.
    let p = Project::new().env("USER", "dev");
    p.released(NS, &["1.0.0", "1.1.0"]);
    p.cmd().args(["rollback", NS]).assert().success();
    let other = p.raw_run("ppo/ETHEUR", "20261123_121500");
    p.cmd().args(["delete", &other, "--yes"]).assert().success();

    let entries = history(&p, &[]);
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["register", "promote", "promote", "promote", "rollback", "register", "delete"]
    );
    for e in &entries {
        assert!(e["time"].is_string() && e["user"].is_string(), "{e}");
    }
    let promote = &entries[2];
    assert_eq!(
        promote["source"],
        format!("validated/{NS}/20261123_101500_epoch_70_validated")
    );
    assert_eq!(promote["target"], format!("production/{NS}/1.0.0"));
    assert_eq!(promote["version"], "1.0.0");

    // A namespace filter keeps only what touched it; --action narrows further.
    let mine = history(&p, &[NS]);
    assert_eq!(mine.len(), 5);
    let rollbacks = history(&p, &[NS, "--action", "rollback"]);
    assert_eq!(rollbacks.len(), 1);
    assert_eq!(rollbacks[0]["target"], format!("production/{NS}/1.0.0"));

    p.cmd()
        .arg("history")
        .assert()
        .success()
        .stdout(predicate::str::contains("rollback"))
        .stdout(predicate::str::contains("version=1.1.0"));
    assert_output_snapshot!(
        Some(p.root()),
        "history_table",
        stdout_of(p.cmd().arg("history"))
    );
}

#[test]
fn history_of_an_empty_store_is_empty_and_torn_lines_are_skipped() {
    let p = Project::new();
    assert!(history(&p, &[]).is_empty());
    p.raw_run(NS, "20261123_101500");
    let journal = p.store().join(".artifactctl/journal.jsonl");
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.push_str("{\"time\": \"torn");
    std::fs::write(&journal, text).unwrap();
    assert_eq!(history(&p, &[]).len(), 1);
}

/// Issue 13: without $USER (cron, containers) the journal records the
/// account name from the system, not `uid:0`.
#[test]
fn without_user_the_account_name_is_recorded() {
    let p = Project::new();
    let out = p.training_output("out");
    p.cmd()
        .args(["register"])
        .arg(&out)
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env_remove("USERNAME")
        .assert()
        .success();
    let account = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let account = String::from_utf8(account.stdout).unwrap();
    let entries = history(&p, &[]);
    assert_eq!(entries[0]["user"], account.trim());
    assert!(!entries[0]["user"].as_str().unwrap().starts_with("uid:"));
}
