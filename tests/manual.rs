//! `l4lb manpage` and `l4lb completions`: the page renders with groff without
//! a warning and documents every subcommand; each completion script is valid
//! for its shell (`bash -n`, `zsh -n`, `fish --no-execute`; scripts/test.sh
//! installs zsh and fish), and bash's completes a subcommand.

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_l4lb");

fn l4lb(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("run l4lb");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Runs `program args` with `input` on stdin; its exit status, stdout and stderr.
fn feed(program: &str, args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} is required ({e})"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("feed");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_man_page_renders_without_warnings_and_names_every_subcommand() {
    let page = l4lb(&["manpage"]);
    let (ok, _, warnings) = feed("groff", &["-man", "-Tutf8", "-ww", "-z"], &page);
    assert!(ok && warnings.is_empty(), "groff: {warnings}");
    let (ok, text, errors) = feed("groff", &["-man", "-Tascii", "-P", "-cbou"], &page);
    assert!(ok, "{errors}");
    for heading in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "SUBCOMMANDS",
        "FILES",
        "ENVIRONMENT",
    ] {
        assert!(
            text.contains(&format!("\n{heading}\n")),
            "no {heading}:\n{text}"
        );
    }
    for sub in [
        "run",
        "check",
        "simulate",
        "status",
        "backend",
        "completions",
        "manpage",
    ] {
        assert!(
            text.contains(&format!("L4LB {}", sub.to_uppercase())),
            "no section for {sub}:\n{text}"
        );
    }
    assert!(text.contains("--log-target"), "{text}");
    assert!(text.contains("L4LB_TOKEN"), "{text}");
}

#[test]
fn the_bash_completion_is_valid_and_completes_subcommands() {
    let script = l4lb(&["completions", "bash"]);
    let (ok, _, errors) = feed("bash", &["-n"], &script);
    assert!(ok, "bash -n: {errors}");
    let probe = format!(
        "{script}\nCOMP_WORDS=(l4lb st); COMP_CWORD=1; COMP_LINE='l4lb st'; COMP_POINT=7\n\
         _l4lb l4lb st l4lb\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n"
    );
    let (ok, words, errors) = feed("bash", &[], &probe);
    assert!(ok, "{errors}");
    assert_eq!(words.trim(), "status", "{errors}");
}

#[test]
fn the_zsh_and_fish_completions_parse() {
    for (shell, check) in [("zsh", vec!["-n"]), ("fish", vec!["--no-execute"])] {
        let script = l4lb(&["completions", shell]);
        assert!(script.contains("l4lb"), "{shell}: {script}");
        let (ok, _, errors) = feed(shell, &check, &script);
        assert!(ok, "{shell}: {errors}");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid value 'tcsh'"), "{stderr}");
    assert!(stderr.contains("bash"), "{stderr}");
}

#[test]
fn install_sh_puts_the_man_page_and_completions_in_place() {
    let root = std::env::temp_dir().join(format!("l4lb-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(BIN)
        .env("DESTDIR", &root)
        .env("PREFIX", "/opt/l4lb")
        .output()
        .expect("run install.sh");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    let page =
        std::fs::read_to_string(root.join("opt/l4lb/share/man/man1/l4lb.1")).expect("man page");
    assert_eq!(page, l4lb(&["manpage"]));
    let bash = root.join("usr/share/bash-completion/completions/l4lb");
    let (ok, _, errors) = feed(
        "bash",
        &["-n"],
        &std::fs::read_to_string(bash).expect("bash"),
    );
    assert!(ok, "{errors}");
    for installed in [
        "opt/l4lb/share/zsh/site-functions/_l4lb",
        "opt/l4lb/share/fish/vendor_completions.d/l4lb.fish",
        "opt/l4lb/bin/l4lb",
        "etc/systemd/system/l4lb.service",
        "etc/l4lb/lb.toml",
    ] {
        assert!(
            root.join(installed).is_file(),
            "{installed} missing:\n{log}"
        );
    }
    let _ = std::fs::remove_dir_all(root);
}
