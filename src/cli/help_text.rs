//! Guards the promise that every flag is documented in `--help`: walks the
//! whole command tree and fails naming each argument or subcommand that has
//! no help text. Test-only; it must never change the command line itself.

use clap::CommandFactory;

use super::Cli;

/// The arguments and subcommands under `cmd` (path `path`) without help text.
fn undocumented(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        if arg.get_help().is_none() && arg.get_long_help().is_none() {
            missing.push(format!("{path} <{id}>"));
        }
    }
    for sub in cmd.get_subcommands() {
        let name = sub.get_name();
        if name == "help" {
            continue;
        }
        let sub_path = format!("{path} {name}");
        if sub.get_about().is_none() && sub.get_long_about().is_none() {
            missing.push(sub_path.clone());
        }
        undocumented(sub, &sub_path, missing);
    }
}

#[test]
fn every_argument_and_subcommand_has_help_text() {
    let mut cmd = Cli::command();
    cmd.build();
    let mut missing = Vec::new();
    undocumented(&cmd, "landlord", &mut missing);
    assert!(
        missing.is_empty(),
        "without help text:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_command_tree_is_consistent() {
    Cli::command().debug_assert();
}

/// Commands that print no result a script reads: the long-running roles,
/// documents of the command line, and `config show` (a masked listing).
const WITHOUT_JSON: &[&str] = &[
    "landlord api",
    "landlord completions",
    "landlord config show",
    "landlord man",
    "landlord migrate",
    "landlord scheduler",
    "landlord serve",
    "landlord worker",
];

fn leaves_without_json(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
    let subs: Vec<&clap::Command> = cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .collect();
    if subs.is_empty() {
        let has_json = cmd.get_arguments().any(|a| a.get_long() == Some("json"));
        if !has_json && !WITHOUT_JSON.contains(&path) {
            missing.push(path.to_string());
        }
    }
    for sub in subs {
        leaves_without_json(sub, &format!("{path} {}", sub.get_name()), missing);
    }
}

#[test]
fn every_command_that_reports_a_result_has_json() {
    let mut cmd = Cli::command();
    cmd.build();
    let mut missing = Vec::new();
    leaves_without_json(&cmd, "landlord", &mut missing);
    assert!(
        missing.is_empty(),
        "without --json:\n  {}",
        missing.join("\n  ")
    );
}
