//! The documentation that describes the code stays true to it: the module
//! list in `src/lib.rs`, the source layout in the README, the shipped
//! `lb.toml`, and `--help`.

use std::path::Path;
use std::process::Command;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_layout_in_lib_rs_names_every_module() {
    let lib = read("src/lib.rs");
    let layout: String = lib
        .lines()
        .filter(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .collect();
    assert!(modules.len() > 10, "{modules:?}");
    for module in modules {
        assert!(
            layout.contains(&format!("- [`{module}`]")),
            "src/lib.rs's # Layout does not name module `{module}`"
        );
    }
}

#[test]
fn every_path_in_the_readme_source_layout_exists() {
    let readme = read("README.md");
    let section = readme
        .split("## Source layout")
        .nth(1)
        .expect("a Source layout section");
    let block = section.split("```").nth(1).expect("a code block");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    // Each entry starts in the first column; indented lines continue the one above.
    for line in block.lines().filter(|l| !l.starts_with(' ')) {
        let Some(path) = line.split_whitespace().next() else {
            continue;
        };
        if !path.contains('/') {
            continue;
        }
        let on_disk = root.join(path);
        let exists = if path.ends_with('/') {
            on_disk.is_dir()
        } else {
            on_disk.is_file()
        };
        assert!(
            exists,
            "README's source layout names {path}, which does not exist"
        );
        checked += 1;
    }
    assert!(checked > 10, "only {checked} paths found");
}

#[test]
fn the_shipped_lb_toml_does_not_call_the_default_process_cap_unlimited() {
    let shipped = read("lb.toml");
    let global = shipped
        .split("[global]")
        .nth(1)
        .and_then(|rest| rest.split("[[service]]").next())
        .expect("a [global] table");
    let cap = global
        .lines()
        .skip_while(|l| !l.starts_with("max_connections"))
        .take_while(|l| l.starts_with("max_connections") || l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(cap.contains("open-file limit"), "{cap}");
    assert!(!cap.contains("unlimited"), "{cap}");
}

#[test]
fn help_says_tcp_and_udp() {
    let out = Command::new(env!("CARGO_BIN_EXE_l4lb"))
        .arg("--help")
        .output()
        .expect("run l4lb --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("a Layer-4 (TCP and UDP) load balancer"),
        "{help}"
    );
}
