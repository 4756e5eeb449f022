use crate::support::Project;
use predicates::prelude::*;

#[test]
fn init_writes_the_template_once() {
    let p = Project::new();
    p.cmd()
        .arg("init")
        .assert()
        .success()
        .stderr(predicate::str::contains("wrote"));
    let text = std::fs::read_to_string(p.path("artifactctl.toml")).unwrap();
    assert!(text.contains("[store]") && text.contains("dir = \"artifacts\""));
    std::fs::write(p.path("artifactctl.toml"), "[store]\ndir = \"mine\"\n").unwrap();
    p.cmd()
        .arg("init")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
    assert!(std::fs::read_to_string(p.path("artifactctl.toml"))
        .unwrap()
        .contains("mine"));
}

#[test]
fn the_root_is_found_from_a_subfolder_and_config_is_honoured() {
    let p = Project::new();
    p.write("artifactctl.toml", "[store]\ndir = \"runs\"\n");
    let out = p.training_output("out");
    p.write("src/deep/keep.txt", "x");
    let reference = p.register(&out, &[]);
    assert!(p.path("runs/raw").join(&reference).is_dir());
    let printed = p
        .cmd()
        .current_dir(p.path("src/deep"))
        .args(["path", "latest"])
        .output()
        .unwrap();
    assert!(String::from_utf8(printed.stdout)
        .unwrap()
        .contains("/runs/raw/"));
}

#[test]
fn env_overrides_file_and_flag_overrides_env() {
    let p = Project::new();
    p.write("artifactctl.toml", "[store]\ndir = \"runs\"\n");
    let out = p.training_output("out");
    let reference = p.register(&out, &[]);
    p.cmd()
        .env("ARTIFACTCTL_STORE_DIR", "elsewhere")
        .args(["path", &reference])
        .assert()
        .code(2);
    p.cmd()
        .env("ARTIFACTCTL_STORE_DIR", "elsewhere")
        .args(["--store", "runs", "path", &reference])
        .assert()
        .success();
    p.cmd()
        .env("ARTIFACTCTL_ROOT", p.root())
        .current_dir("/")
        .args(["path", &reference])
        .assert()
        .success();
}

#[test]
fn a_broken_config_is_a_usage_error_naming_the_file() {
    let p = Project::new();
    p.write("artifactctl.toml", "[store\n");
    p.cmd()
        .arg("list")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("artifactctl.toml"));
    p.write("artifactctl.toml", "[list]\nmetric_goal = \"best\"\n");
    p.cmd().arg("list").assert().code(2);
    p.write("artifactctl.toml", "[stroe]\ndir = \"x\"\n");
    p.cmd()
        .arg("list")
        .assert()
        .success()
        .stderr(predicate::str::contains("unknown section [stroe]"));
}

/// A config file that is not UTF-8 is bad input (exit 2) naming the file.
#[test]
fn a_config_that_is_not_utf8_is_bad_input() {
    let p = crate::support::Project::new();
    p.write("artifactctl.toml", b"[store]\ndir = \"\xff\"\n");
    p.cmd()
        .arg("list")
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "artifactctl.toml: invalid config: not UTF-8",
        ));
}
