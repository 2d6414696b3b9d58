//! `l4lb completions SHELL` and `l4lb manpage`: shell completion scripts
//! (clap_complete) and the l4lb(1) manual page (clap_mangen), both generated
//! from the very clap definitions in `cli`, so they never drift from them.
//!
//! Owns the generation only; `scripts/install.sh` and the Debian package put
//! the output where shells and `man` look.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: Shell, out: &mut dyn Write) {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "l4lb", out);
}

/// Writes l4lb(1) in roff to `out`: the top-level page, then a section per
/// subcommand with its own synopsis and options.
pub fn manpage(out: &mut dyn Write) -> std::io::Result<()> {
    let command = Cli::command();
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        render_subcommand(&command, sub, out)?;
    }
    writeln!(
        out,
        ".SH FILES\n.TP\n/etc/l4lb/lb.toml\nThe default configuration file."
    )?;
    writeln!(
        out,
        ".SH ENVIRONMENT\n.TP\nRUST_LOG\nThe log filter when --log-level is not given.\n\
         .TP\nL4LB_ADMIN\nThe admin endpoint of status and backend (default 127.0.0.1:9100).\n\
         .TP\nL4LB_TOKEN\nThe runtime API token of backend, when --token-file is not given.\n\
         .TP\nL4LB_SYSLOG_SOCKET\nWhere --log-target syslog sends (default /dev/log).\n\
         .TP\nNO_COLOR\nNo colour in logs or tables when set to a non-empty value."
    )?;
    writeln!(
        out,
        ".SH SEE ALSO\nThe README of l4lb: the full reference of the configuration, \
                   the admin endpoint, metrics and operations."
    )?;
    man.render_version_section(out)
}

/// One subcommand as a section of the page: `l4lb NAME` with its synopsis,
/// about text and options.
fn render_subcommand(
    top: &clap::Command,
    sub: &clap::Command,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let name = format!("{} {}", top.get_name(), sub.get_name());
    let page = clap_mangen::Man::new(sub.clone().bin_name(name.clone()));
    let mut body = Vec::new();
    page.render_synopsis_section(&mut body)?;
    page.render_options_section(&mut body)?;
    let body = String::from_utf8_lossy(&body)
        .replace(".SH SYNOPSIS", &format!(".SH \"{}\"", name.to_uppercase()))
        .replace(".SH OPTIONS", ".SS Options");
    out.write_all(body.as_bytes())?;
    if let Some(about) = sub.get_long_about().or(sub.get_about()) {
        writeln!(out, ".PP\n{}", roff_escape(&about.to_string()))?;
    }
    Ok(())
}

/// Text safe in a roff paragraph: backslashes doubled, a leading `.` or `'` guarded.
fn roff_escape(text: &str) -> String {
    let text = text.replace('\\', "\\\\");
    match text.starts_with(['.', '\'']) {
        true => format!("\\&{text}"),
        false => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand's section is checked on the real binary's page, as
    /// groff renders it, in tests/manual.rs.
    #[test]
    fn the_page_is_roff() {
        let mut page = Vec::new();
        manpage(&mut page).expect("render");
        let page = String::from_utf8(page).expect("utf-8");
        assert!(page.starts_with(".ie"), "{}", &page[..40.min(page.len())]);
    }

    #[test]
    fn bash_completion_names_the_subcommands() {
        let mut script = Vec::new();
        completions(Shell::Bash, &mut script);
        let script = String::from_utf8(script).expect("utf-8");
        assert!(script.contains("_l4lb()"), "{script}");
        assert!(script.contains("status") && script.contains("--log-target"));
    }
}
