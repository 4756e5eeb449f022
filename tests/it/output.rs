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
