//! The command line a person and a script read (issue 15): shell completions
//! and manual pages made from the clap definitions (bash really completes
//! with the script, `man` renders the pages, neither needs a configuration),
//! and `--json` on the commands that change something.

use std::process::Command;

use crate::common::{TestEnv, stderr, stdout};

/// What bash's completion function offers for the words typed so far.
fn bash_completes(script: &str, words: &[&str]) -> Vec<String> {
    let dir = tempfile_dir("bash");
    let path = dir.join("landlord.bash");
    std::fs::write(&path, script).unwrap();
    let line = words.join(" ");
    let words_quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let probe = format!(
        "source '{}' || exit 3\n\
         complete -p landlord >/dev/null || exit 4\n\
         COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT={}\n\
         _landlord landlord '{}' '{}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display(),
        words_quoted.join(" "),
        words.len() - 1,
        line.len(),
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &probe])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash: {}{}",
        stdout(&out),
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).ok();
    stdout(&out).lines().map(str::to_string).collect()
}

fn tempfile_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "landlord-cli-docs-{what}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `man` renders a page as text.
fn render(page: &std::path::Path) -> String {
    let out = Command::new("man")
        .args(["-P", "cat", "-l"])
        .arg(page)
        .env("MANWIDTH", "120")
        .output()
        .expect("man (man-db) is installed");
    assert!(out.status.success(), "man: {}", stderr(&out));
    stdout(&out)
}

#[tokio::test(flavor = "multi_thread")]
async fn bash_completes_commands_and_options_with_the_generated_script() {
    let env = TestEnv::new().await;
    // No configuration is needed: even a broken one does not stop it.
    let out = env
        .command(&["completions", "bash"])
        .env("LANDLORD_LOG_FORMAT", "bogus")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let script = stdout(&out);
    let top = bash_completes(&script, &["landlord", "ten"]);
    assert_eq!(top, ["tenants", "tenancy"], "{top:?}");
    let sub = bash_completes(&script, &["landlord", "tenants", "cr"]);
    assert_eq!(sub, ["create", "credentials"], "{sub:?}");
    let opts = bash_completes(&script, &["landlord", "tenants", "create", "--pl"]);
    assert_eq!(opts, ["--plan"], "{opts:?}");

    for shell in ["zsh", "fish"] {
        let text = env.ok(&["completions", shell]);
        assert!(
            text.contains("tenants") && text.contains("restore"),
            "{shell}: {text}"
        );
    }
    env.refused(&["completions", "tcsh"], "invalid value 'tcsh'");
}

#[tokio::test(flavor = "multi_thread")]
async fn man_renders_the_pages_of_every_command() {
    let env = TestEnv::new().await;
    let dir = tempfile_dir("man");
    let top = dir.join("top.1");
    std::fs::write(&top, env.ok(&["man"])).unwrap();
    let text = render(&top);
    for needle in [
        "landlord",
        "SUBCOMMANDS",
        "tenants",
        "backups",
        "completions",
    ] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }

    let pages = dir.join("pages");
    let out = env.run(&["man", "--dir", pages.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let create = pages.join("landlord-tenants-create.1");
    let text = render(&create);
    assert!(text.contains("landlord-tenants-create"), "{text}");
    assert!(
        text.contains("--plan") && text.contains("--owner"),
        "{text}"
    );
    // Every subcommand at every depth has its page.
    for name in [
        "landlord.1",
        "landlord-backups-verify.1",
        "landlord-jobs-retry.1",
        "landlord-tenancy-status.1",
    ] {
        assert!(pages.join(name).is_file(), "{name} written");
    }
    assert!(
        stderr(&out).contains("manual pages written"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn state_changing_commands_answer_in_json() {
    let mut env = TestEnv::new().await;
    env.tenant("acme").await;
    let v = env.ok_json(&["tenants", "suspend", "acme", "--reason", "unpaid", "--json"]);
    assert_eq!(v["status"], "suspended", "{v:#}");
    assert_eq!(v["status_reason"], "unpaid", "{v:#}");
    let v = env.ok_json(&["tenants", "activate", "acme", "--json"]);
    assert_eq!(v["status"], "active", "{v:#}");
    let v = env.ok_json(&["tenants", "deactivate", "acme", "--json"]);
    assert_eq!(v["status"], "inactive", "{v:#}");
    env.ok(&["tenants", "activate", "acme"]);
    // A tenant landlord provisioned has a role of its own to rotate.
    let own = format!("rot-{}", &env.id[..8]);
    let owner = format!("ana-{}@example.test", env.id);
    let create = [
        "tenants", "create", &own, "--name", "Rot", "--plan", "pro", "--owner", &owner, "--sync",
    ];
    env.ok(&create);
    let v = env.ok_json(&["tenants", "rotate-credentials", &own, "--json"]);
    assert_eq!(v["tenant"], own.as_str(), "{v:#}");
    assert_eq!(v["rotated"], true, "{v:#}");
    assert!(v.get("password").is_none(), "never the password: {v:#}");

    let out = env.ok(&["backup", "--tenant", "acme", "--sync", "--json"]);
    assert!(out.contains("succeeded"), "{out}");
    let list = env.ok_json(&["backups", "list", "acme", "--json"]);
    let id = list[0]["id"].as_str().expect("a backup id").to_string();
    let v = env.ok_json(&["backups", "hold", &id, "--reason", "audit", "--json"]);
    assert_eq!(v["held"], true, "{v:#}");
    let v = env.ok_json(&["backups", "hold", &id, "--release", "--json"]);
    assert_eq!(v["held"], false, "{v:#}");
    let v = env.ok_json(&["backups", "delete", &id, "--json"]);
    assert_eq!(v["id"], id.as_str(), "{v:#}");

    let job = env.enqueue(&["jobs", "ping"]);
    let v = env.ok_json(&["jobs", "cancel", &job.to_string(), "--json"]);
    assert_eq!(v["status"], "cancelled", "{v:#}");
    assert_eq!(v["job_id"], job.to_string());

    let v = env.ok_json(&["schedule", "run", "daily-backup", "--json"]);
    assert_eq!(v["schedule"], "daily-backup", "{v:#}");
    assert_eq!(v["jobs"], 2, "acme and the provisioned one: {v:#}");
}
