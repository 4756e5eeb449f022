//! Writing output: a full stdout is an error, never a panic; a closed pipe
//! ends the command quietly, as other Unix tools do (issue 10, item 15).

use std::process::Stdio;

use crate::support::Project;

#[test]
fn a_full_stdout_is_an_error_with_a_message_not_a_panic() {
    let p = Project::new();
    let out = p.training_output("out");
    let id = p.register(&out, &[]);
    for args in [
        vec!["list"],
        vec!["list", "--json"],
        vec!["show", id.as_str()],
        vec!["path", "latest"],
        vec!["history"],
        vec!["register", "out"],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let result = std::process::Command::new(env!("CARGO_BIN_EXE_artifactctl"))
            .current_dir(p.root())
            .args(&args)
            .stdout(full)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            stderr.contains("No space left on device"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let p = Project::new();
    let out = p.training_output("out");
    for _ in 0..3 {
        p.register(&out, &[]);
    }
    // A reader that is gone before anything is written, as `| head -0` is.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_artifactctl"))
        .current_dir(p.root())
        .args(["list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        result.status.signal() == Some(libc::SIGPIPE) || result.status.success(),
        "{:?}: {stderr}",
        result.status
    );
}

/// Under `--json` a failure is one JSON object on stdout, and the message
/// still goes to stderr (docs/json.md).
#[test]
fn errors_under_json_are_one_json_object_on_stdout() {
    let p = crate::support::Project::new();
    let cases: [(&[&str], &str, i32); 3] = [
        (&["show", "20990101_000000", "--json"], "not_found", 2),
        (&["list", "--json", "--where", "bogus=1"], "usage", 2),
        (&["cleanup", "--json", "--yes"], "usage", 2),
    ];
    p.write("artifacts/raw/.keep", "");
    for (args, kind, code) in cases {
        let out = p.cmd().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(doc["schema_version"], 1, "{doc}");
        assert_eq!(doc["error"]["kind"], kind, "{args:?}: {doc}");
        assert_eq!(doc["exit_code"], code, "{doc}");
        let message = doc["error"]["message"].as_str().unwrap();
        assert!(
            !message.is_empty() && !message.starts_with("error:"),
            "{doc}"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("error:"), "{args:?}: {stderr}");
    }
    // Without --json, stdout stays empty.
    let out = p.cmd().args(["show", "20990101_000000"]).output().unwrap();
    assert!(out.stdout.is_empty());
}
