//! The deployment files (issue 14): `Dockerfile`, `docker-compose.yml` and the
//! Kubernetes manifests under `ops/deploy/k8s/`, checked against the code so
//! that a drift on either side fails here: the settings they set are ones the
//! code reads (and `ops/services env` names), the probes hit the code's health
//! routes on its default ports (and answer there on the real processes), the
//! grace periods exceed the code's drain graces, the KEDA triggers name the
//! queues the code declares and count the catalog's jobs the way its schema
//! says, and the image ships every program the code runs. `ops/deploy/check`
//! runs the real validators (hadolint, Docker Compose's loader,
//! kubernetes-validate, KEDA's schema); the last test runs it, and shows each
//! validator failing on a broken copy. Compose's Garage setup runs against a
//! real Garage.
//!
//! Values the code owns are read from the code, never copied: defaults from
//! `landlord config show` run with an empty environment, the effective
//! settings of a container from the same command run with its environment.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Component, Path, PathBuf},
    process::{Command, Output},
};

use landlord::{broker::Topology, config::QUEUES};
use lapin::{ConnectionProperties, options::QueueDeclareOptions, types::FieldTable};
use serde::Deserialize as _;
use serde_yaml::Value as Yaml;

use crate::common::{TestEnv, free_port, ms, poll, secs, stderr, stdout};

type Env = BTreeMap<String, String>;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

// ------------------------------------------------------------ the code's side

/// Every `.rs` file under `dir` (relative to the repository).
fn rust_files(dir: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo(dir), &mut out);
    out.sort();
    out
}

/// The `LANDLORD_*` variables the code reads: every whole string literal
/// `"LANDLORD_…"` in `src/` and `workers/` (`env("…")`, `env_parse("…")`,
/// `std::env::var("…")`, the constants naming them). A name ending in `__`
/// is a prefix (`LANDLORD_SERVER__<NAME>`).
fn code_settings() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for f in rust_files("src").into_iter().chain(rust_files("workers")) {
        let text = std::fs::read_to_string(&f).expect("source");
        for (i, _) in text.match_indices("\"LANDLORD_") {
            let rest = &text[i + 1..];
            let end = rest
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(rest.len());
            if rest[end..].starts_with('"') {
                names.insert(rest[..end].to_string());
            }
        }
    }
    assert!(
        names.contains("LANDLORD_DATABASE_URL") && names.contains("LANDLORD_SERVER__"),
        "the scan of the sources found too little: {names:?}"
    );
    names
}

fn is_code_setting(settings: &BTreeSet<String>, name: &str) -> bool {
    settings.contains(name)
        || settings
            .iter()
            .any(|p| p.ends_with("__") && name.starts_with(p.as_str()) && name.len() > p.len())
}

/// The variables the README's configuration tables document (first cell).
fn readme_settings() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in read("README.md").lines().filter(|l| l.starts_with("| `")) {
        let cell = line.split('|').nth(1).unwrap_or_default();
        for part in cell.split('`').skip(1).step_by(2) {
            if part.starts_with("LANDLORD_") || part.starts_with("AWS_") {
                names.insert(part.trim_end_matches("<NAME>").to_string());
            }
        }
    }
    names
}

fn documented(readme: &BTreeSet<String>, name: &str) -> bool {
    readme.contains(name)
        || readme
            .iter()
            .any(|p| p.ends_with("__") && name.starts_with(p.as_str()))
}

/// `ops/services env` as NAME → value (its own test-only lines left out).
fn ops_services_env() -> Env {
    let out = Command::new(repo("ops/services"))
        .arg("env")
        .output()
        .expect("ops/services env");
    assert!(out.status.success(), "ops/services env: {}", stderr(&out));
    stdout(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.starts_with("LANDLORD_TEST_"))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

/// `landlord config show` with exactly `env` (plus PATH and HOME), in an
/// empty directory (no `landlord.toml`): the settings the code resolves from
/// it, as key → value with string quotes removed. Panics, naming `what`, if
/// the code refuses the environment.
fn config_show(what: &str, env: &Env) -> Env {
    let dir = std::env::temp_dir().join(format!("landlord-deploy-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut c = Command::new(env!("CARGO_BIN_EXE_landlord"));
    c.args(["config", "show"]).env_clear().current_dir(&dir);
    for k in ["PATH", "HOME"] {
        if let Ok(v) = std::env::var(k) {
            c.env(k, v);
        }
    }
    c.envs(env);
    let out = c.output().expect("landlord config show");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{what}: landlord refuses this environment: {}\n{env:#?}",
        stderr(&out)
    );
    stdout(&out)
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| {
            let v = v.split(" # ").next().unwrap_or(v).trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The code's own defaults: `config show` with an empty environment.
fn defaults() -> Env {
    config_show("the defaults", &Env::new())
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

fn secs_of(settings: &Env, key: &str) -> u64 {
    settings[key]
        .parse()
        .unwrap_or_else(|e| panic!("{key} = {:?}: {e}", settings[key]))
}

/// `worker.queues` of `config show` (`["backup", "mail"]`).
fn queues_of(settings: &Env) -> Vec<String> {
    serde_json::from_str(&settings["worker.queues"]).expect("worker.queues")
}

/// Programs the code starts: `Command::new("…")` literals, and the client
/// programs it runs through `backup::pgtool` (`command(…, "pg_dump")`, `offline(…, "pg_restore")`).
fn programs_the_code_runs() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for f in rust_files("src").into_iter().chain(rust_files("workers")) {
        let text = std::fs::read_to_string(&f).expect("source");
        for pat in ["Command::new(\"", "pgtool::command(", "pgtool::offline("] {
            for (i, _) in text.match_indices(pat) {
                let call = &text[i + pat.len()..];
                let call = &call[..call.find(')').unwrap_or(call.len())];
                let literal = if pat.ends_with('"') {
                    call.split('"').next()
                } else {
                    call.rsplit('"').nth(1)
                };
                if let Some(p) = literal.filter(|p| !p.is_empty()) {
                    found.insert(p.to_string());
                }
            }
        }
    }
    assert!(
        found.contains("pg_dump") && found.contains("kill"),
        "{found:?}"
    );
    found
}

/// The repository entries the crate compiles from: the Cargo files, the
/// target paths of Cargo.toml, and whatever the sources pull in at compile
/// time (`include_str!`, `include_bytes!`, `sqlx::migrate!`, `#[path]`).
fn build_inputs() -> BTreeSet<String> {
    let mut top = BTreeSet::from([
        "Cargo.toml".to_string(),
        "Cargo.lock".to_string(),
        ".sqlx".to_string(),
    ]);
    let cargo: toml::Value = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml");
    let mut paths: Vec<PathBuf> = Vec::new();
    if let Some(p) = cargo["lib"]["path"].as_str() {
        paths.push(PathBuf::from(p));
    }
    for b in cargo["bin"].as_array().into_iter().flatten() {
        if let Some(p) = b["path"].as_str() {
            paths.push(PathBuf::from(p));
        }
    }
    let root = repo("");
    for f in rust_files("src").into_iter().chain(rust_files("workers")) {
        let text = std::fs::read_to_string(&f).expect("source");
        let dir = f.parent().expect("parent").to_path_buf();
        for (pat, base) in [
            ("include_str!(\"", &dir),
            ("include_bytes!(\"", &dir),
            ("#[path = \"", &dir),
            ("sqlx::migrate!(\"", &root),
        ] {
            for (i, _) in text.match_indices(pat) {
                let lit = text[i + pat.len()..].split('"').next().unwrap_or_default();
                let full = base.join(lit);
                let rel = normalize(full.strip_prefix(&root).unwrap_or(&full));
                paths.push(rel);
            }
        }
    }
    for p in paths {
        let first = p.components().next().expect("component");
        top.insert(first.as_os_str().to_string_lossy().into_owned());
    }
    assert!(top.contains("src") && top.contains("migrations"), "{top:?}");
    top
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

// ------------------------------------------------------------- the Dockerfile

struct Instr {
    cmd: String,
    args: String,
}

struct Stage {
    base: String,
    name: String,
    instrs: Vec<Instr>,
}

/// The Dockerfile's stages, `${ARG}`s resolved from their defaults.
fn dockerfile() -> (Vec<Stage>, BTreeMap<String, String>) {
    let mut logical: Vec<String> = Vec::new();
    let mut cur = String::new();
    for line in read("Dockerfile").lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(t);
            logical.push(std::mem::take(&mut cur));
        }
    }
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for l in logical.into_iter().filter(|l| !l.trim().is_empty()) {
        let (cmd, rest) = l.split_once(' ').unwrap_or((&l, ""));
        let cmd = cmd.to_ascii_uppercase();
        let rest = subst(rest.trim(), &args);
        if cmd == "ARG"
            && let Some((k, v)) = rest.split_once('=')
        {
            args.insert(k.to_string(), v.trim_matches('"').to_string());
        }
        if cmd == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                _ => String::new(),
            };
            stages.push(Stage {
                base: words[0].to_string(),
                name,
                instrs: Vec::new(),
            });
        } else if let Some(s) = stages.last_mut() {
            s.instrs.push(Instr { cmd, args: rest });
        }
    }
    (stages, args)
}

fn subst(s: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = s.to_string();
    for (k, v) in args {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    out
}

impl Stage {
    fn all(&self, cmd: &str) -> Vec<&str> {
        self.instrs
            .iter()
            .filter(|i| i.cmd == cmd)
            .map(|i| i.args.as_str())
            .collect()
    }
    fn last(&self, cmd: &str) -> &str {
        self.all(cmd)
            .last()
            .copied()
            .unwrap_or_else(|| panic!("stage {} has no {cmd}", self.name))
    }
    /// `ENV K=V K2=V2` pairs of the stage.
    fn env(&self) -> Env {
        let mut env = Env::new();
        for e in self.all("ENV") {
            for pair in e.split_whitespace() {
                if let Some((k, v)) = pair.split_once('=') {
                    env.insert(k.to_string(), v.trim_matches('"').to_string());
                }
            }
        }
        env
    }
}

/// The uid the image runs as (its final `USER`).
fn image_uid() -> u32 {
    let (stages, _) = dockerfile();
    let user = stages.last().expect("a stage").last("USER");
    let uid = user.split(':').next().unwrap_or(user);
    uid.parse().unwrap_or_else(|_| {
        panic!("USER {user:?} must be numeric (Kubernetes runAsNonRoot checks it)")
    })
}

#[test]
fn the_dockerfile_builds_offline_and_ships_what_the_code_runs_as_a_non_root_user() {
    let (stages, args) = dockerfile();
    let defaults = defaults();
    assert!(stages.len() >= 2, "a multi-stage build");
    let build = stages
        .iter()
        .find(|s| s.base.starts_with("rust:"))
        .expect("a rust builder stage");
    let runtime = stages.last().expect("final stage");
    assert!(
        runtime.base.starts_with("debian:") && runtime.base.ends_with("-slim"),
        "small runtime base: {}",
        runtime.base
    );

    // The builder: the toolchain is new enough, SQLX_OFFLINE with the
    // committed .sqlx, a locked release build of the binary Cargo.toml names.
    let cargo: toml::Value = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml");
    let need: Vec<u32> = cargo["package"]["rust-version"]
        .as_str()
        .expect("rust-version")
        .split('.')
        .map(|n| n.parse().expect("number"))
        .collect();
    let have: Vec<u32> = build
        .base
        .trim_start_matches("rust:")
        .split('-')
        .next()
        .expect("tag")
        .split('.')
        .map(|n| n.parse().expect("rust image tag is a version"))
        .collect();
    assert!(
        have >= need,
        "rust:{have:?} is older than rust-version {need:?}"
    );
    assert_eq!(
        build.env().get("SQLX_OFFLINE").map(String::as_str),
        Some("true")
    );
    let bin = cargo["bin"][0]["name"].as_str().expect("bin name");
    let cargo_build = build
        .all("RUN")
        .into_iter()
        .find(|r| r.contains("cargo build"))
        .expect("cargo build");
    for flag in ["--release", "--locked", &format!("--bin {bin}")] {
        assert!(cargo_build.contains(flag), "{flag} in: {cargo_build}");
    }
    // Everything the crate compiles from is copied in, and not ignored.
    let copied: BTreeSet<String> = build
        .all("COPY")
        .iter()
        .flat_map(|c| {
            let words: Vec<&str> = c.split_whitespace().collect();
            words[..words.len() - 1]
                .iter()
                .map(|w| w.trim_end_matches('/').to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_matches('/').to_string())
        .collect();
    for input in build_inputs() {
        assert!(
            copied.contains(&input),
            "the build needs {input}: COPY it (copied: {copied:?})"
        );
        assert!(
            !ignored.contains(&input),
            ".dockerignore excludes {input}, which the build needs"
        );
    }
    for junk in ["target", ".git"] {
        assert!(
            ignored.iter().any(|i| i == junk),
            ".dockerignore keeps {junk} out"
        );
    }

    // The runtime: the binary, non-root, `landlord` as the entrypoint.
    assert!(
        runtime
            .all("COPY")
            .iter()
            .any(|c| c.starts_with(&format!("--from={}", build.name))
                && c.ends_with(&format!("/usr/local/bin/{bin}"))),
        "the binary is copied from the builder onto the PATH"
    );
    assert_ne!(image_uid(), 0, "the image must not run as root");
    let entry: Vec<String> =
        serde_json::from_str(runtime.last("ENTRYPOINT")).expect("ENTRYPOINT in JSON form");
    assert_eq!(entry, [bin]);
    let env = runtime.env();
    let settings = code_settings();
    for k in env.keys().filter(|k| k.starts_with("LANDLORD_")) {
        assert!(
            is_code_setting(&settings, k),
            "the image sets {k}, which the code never reads"
        );
    }

    // The health check: /healthz of the metrics listener, on the port the
    // image listens on, which is the code's default port.
    let listen = &env["LANDLORD_LISTEN"];
    assert_eq!(port_of(listen), port_of(&defaults["observability.listen"]));
    assert!(
        listen.starts_with("0.0.0.0:"),
        "reachable from outside the container: {listen}"
    );
    assert_eq!(
        port_of(&env["LANDLORD_API_LISTEN"]),
        port_of(landlord::api::settings::DEFAULT_LISTEN)
    );
    let health = runtime.last("HEALTHCHECK");
    assert!(
        health.contains("/healthz") && health.contains("${LANDLORD_LISTEN##*:}"),
        "HEALTHCHECK on /healthz at LANDLORD_LISTEN's port: {health}"
    );

    // The client programs: every PostgreSQL major shipped, the newest the
    // default LANDLORD_PG_BIN_DIR; and a package for every program the code runs.
    let majors: Vec<u32> = args["PG_MAJORS"]
        .split_whitespace()
        .map(|m| m.parse().expect("major"))
        .collect();
    let default: u32 = args["PG_DEFAULT"].parse().expect("PG_DEFAULT");
    assert_eq!(
        majors.iter().max(),
        Some(&default),
        "the newest client is the default"
    );
    assert_eq!(
        env["LANDLORD_PG_BIN_DIR"],
        format!("/usr/lib/postgresql/{default}/bin")
    );
    let installs = runtime.all("RUN").join("\n");
    assert!(
        installs.contains("postgresql-client-") && installs.contains("apt.postgresql.org"),
        "the clients come from PGDG: {installs}"
    );
    for program in programs_the_code_runs() {
        let package = match program.as_str() {
            "pg_dump" | "pg_restore" | "psql" => "postgresql-client-",
            "kill" => "procps",
            other => panic!(
                "the code runs {other:?}: install its package in the Dockerfile and name it here"
            ),
        };
        assert!(
            installs.contains(package),
            "{program} needs {package} in the image"
        );
    }
    assert!(
        installs.contains("ca-certificates"),
        "TLS needs the system roots"
    );
}

// ------------------------------------------------------------ the compose file

fn yaml_file(rel: &str) -> Vec<Yaml> {
    let text = read(rel);
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let mut v = Yaml::deserialize(d).unwrap_or_else(|e| panic!("{rel}: {e}"));
            v.apply_merge().unwrap_or_else(|e| panic!("{rel}: {e}"));
            v
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn s(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn strings(v: &Yaml) -> Vec<String> {
    v.as_sequence()
        .map(|q| q.iter().map(s).collect())
        .unwrap_or_default()
}

fn map_env(v: &Yaml) -> Env {
    v.as_mapping()
        .map(|m| m.iter().map(|(k, v)| (s(k), s(v))).collect())
        .unwrap_or_default()
}

/// `45s`, `1m30s`.
fn duration_secs(d: &str) -> u64 {
    let mut total = 0;
    let mut n = String::new();
    for c in d.chars() {
        match c {
            '0'..='9' => n.push(c),
            's' | 'm' | 'h' => {
                let v: u64 = n.parse().expect("number");
                total += v * match c {
                    's' => 1,
                    'm' => 60,
                    _ => 3600,
                };
                n.clear();
            }
            other => panic!("unexpected {other:?} in duration {d:?}"),
        }
    }
    assert!(n.is_empty(), "duration {d:?} needs a unit");
    total
}

#[test]
fn compose_runs_the_whole_stack_with_the_variables_of_ops_services() {
    let compose = yaml_file("docker-compose.yml").remove(0);
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<String> = services.keys().map(s).collect();
    assert_eq!(
        names,
        [
            "postgres",
            "rabbitmq",
            "garage",
            "garage-init",
            "maildev",
            "keygen",
            "migrate",
            "api",
            "scheduler",
            "worker"
        ]
        .map(String::from)
        .into(),
    );
    let svc = |n: &str| &compose["services"][n];
    let command = |n: &str| strings(&svc(n)["command"]);
    assert_eq!(command("worker"), ["worker"]);
    assert_eq!(command("scheduler"), ["scheduler"]);
    assert_eq!(command("api"), ["api"]);
    assert_eq!(command("migrate"), ["migrate"]);
    // `--scale worker=N` needs no fixed name and no host port.
    assert!(svc("worker").get("container_name").is_none());
    assert!(svc("worker").get("ports").is_none());
    assert_eq!(svc("scheduler")["deploy"]["replicas"].as_u64(), Some(2));

    let settings = code_settings();
    let ops = ops_services_env();
    let api_grace = landlord::api::SHUTDOWN_GRACE.as_secs();
    let landlord_services: Vec<&str> = ["migrate", "api", "scheduler", "worker"].to_vec();
    for name in &landlord_services {
        let service = svc(name);
        assert_eq!(s(&service["image"]), "landlord:dev", "{name}");
        let env = map_env(&service["environment"]);
        for k in env.keys() {
            if k.starts_with("LANDLORD_") {
                assert!(
                    is_code_setting(&settings, k),
                    "{name} sets {k}, which the code never reads"
                );
            }
        }
        // The variables of `ops/services env` the code reads (and the AWS
        // SDK's), each one set; its others (read by tests and ops/demo only) not.
        for k in ops.keys() {
            let read_by_landlord = is_code_setting(&settings, k) || k.starts_with("AWS_");
            assert_eq!(
                env.contains_key(k),
                read_by_landlord,
                "{name}: {k} {} by landlord, so compose must {}set it",
                if read_by_landlord {
                    "is read"
                } else {
                    "is not read"
                },
                if read_by_landlord { "" } else { "not " },
            );
        }
        // The same dev bucket and S3 key as ops/services.
        for k in [
            "LANDLORD_BACKUP_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
        ] {
            assert_eq!(env[k], ops[k], "{name}: {k}");
        }
        let effective = config_show(&format!("compose service {name}"), &env);
        let stop = duration_secs(&s(&service["stop_grace_period"]));
        let grace = secs_of(&effective, "worker.shutdown_grace_seconds");
        assert!(
            stop > grace && stop > api_grace,
            "{name}: stop_grace_period {stop}s must exceed the worker's drain grace ({grace}s) and the API's ({api_grace}s)"
        );
        assert_eq!(effective["prefix"], env["LANDLORD_PREFIX"]);
        // The catalog key is the file the keygen service writes, on its volume.
        let key = &env["LANDLORD_SECRETS_KEY_FILE"];
        let dir = Path::new(key)
            .parent()
            .expect("dir")
            .to_string_lossy()
            .into_owned();
        let mounts = strings(&service["volumes"]);
        assert!(
            mounts
                .iter()
                .any(|m| m.starts_with("catalog-key:") && m.contains(&format!(":{dir}"))),
            "{name} mounts the catalog-key volume at {dir}: {mounts:?}"
        );
        assert!(
            command("keygen").join(" ").contains(key.as_str()),
            "keygen writes {key}"
        );
        if *name != "migrate" {
            assert_eq!(
                s(&service["depends_on"]["migrate"]["condition"]),
                "service_completed_successfully",
                "{name} starts after the migration"
            );
        }
    }
    // The API's health check: its public /healthz on its listen port.
    let api_env = map_env(&svc("api")["environment"]);
    let api_port = port_of(
        api_env
            .get("LANDLORD_API_LISTEN")
            .map(String::as_str)
            .unwrap_or(dockerfile().0.last().expect("stage").env()["LANDLORD_API_LISTEN"].as_str()),
    );
    let test = strings(&svc("api")["healthcheck"]["test"]).join(" ");
    let url = test
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("a URL");
    let path = &url[url[7..].find('/').expect("path") + 7..];
    assert!(
        landlord::api::PUBLIC_ROUTES.contains(&path),
        "{path} is not a public API route"
    );
    assert!(
        url.contains(&format!(":{api_port}/")),
        "{url} is not the API's port {api_port}"
    );
    assert!(
        strings(&svc("api")["ports"])
            .iter()
            .any(|p| p.ends_with(&format!(":{api_port}"))),
        "the API's port is published"
    );

    // Garage: the version ops/services runs, set up with the same bucket and key.
    let garage_version = read("ops/services")
        .lines()
        .find_map(|l| l.strip_prefix("GARAGE_VERSION="))
        .expect("GARAGE_VERSION")
        .to_string();
    assert_eq!(
        s(&svc("garage")["image"]),
        format!("dxflrs/garage:v{garage_version}")
    );
    let init = map_env(&svc("garage-init")["environment"]);
    let bucket = ops["LANDLORD_BACKUP_URL"]
        .trim_start_matches("s3://")
        .split('/')
        .next()
        .expect("bucket")
        .to_string();
    assert_eq!(init["GARAGE_BUCKET"], bucket);
    assert_eq!(init["AWS_ACCESS_KEY_ID"], ops["AWS_ACCESS_KEY_ID"]);
    assert_eq!(init["AWS_SECRET_ACCESS_KEY"], ops["AWS_SECRET_ACCESS_KEY"]);
    assert_eq!(
        init["GARAGE_ADMIN_TOKEN"],
        map_env(&svc("garage")["environment"])["GARAGE_ADMIN_TOKEN"]
    );
}

/// The Garage binary `ops/services` installs (on the PATH or cargo's bin).
fn garage_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("garage"))
        .find(|p| p.is_file());
    let cargo = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/garage"));
    on_path
        .or(cargo.filter(|p| p.is_file()))
        .expect("garage is not installed: run ops/services up")
}

/// Kills the process a test started and removes its folder, even when the test fails.
struct Cleanup(Option<std::process::Child>, PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// Compose's Garage setup (its garage.toml, its environment and
/// garage-init.py) on a real Garage of the version ops/services runs, on
/// ports of its own: twice (the second run changes nothing), then the S3 key
/// lists the bucket landlord's backups go to.
#[test]
fn the_compose_garage_setup_works_on_a_real_garage() {
    let compose = yaml_file("docker-compose.yml").remove(0);
    let garage_env = map_env(&compose["services"]["garage"]["environment"]);
    let mut init_env = map_env(&compose["services"]["garage-init"]["environment"]);
    let dir = std::env::temp_dir().join(format!("landlord-garage-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut garage = Cleanup(None, dir.clone());
    let (s3, rpc, admin) = (free_port(), free_port(), free_port());
    let mut conf = read("ops/deploy/compose/garage.toml");
    for (from, to) in [
        ("/var/lib/garage", dir.display().to_string()),
        ("[::]:3901", format!("127.0.0.1:{rpc}")),
        ("127.0.0.1:3901", format!("127.0.0.1:{rpc}")),
        ("[::]:3900", format!("127.0.0.1:{s3}")),
        ("[::]:3903", format!("127.0.0.1:{admin}")),
    ] {
        assert!(conf.contains(from), "garage.toml has {from}");
        conf = conf.replace(from, &to);
    }
    let conf_file = dir.join("garage.toml");
    std::fs::write(&conf_file, conf).expect("write");
    let log = std::fs::File::create(dir.join("garage.log")).expect("log");
    garage.0 = Some(
        Command::new(garage_binary())
            .arg("-c")
            .arg(&conf_file)
            .arg("server")
            .envs(&garage_env)
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("start garage"),
    );
    init_env.insert(
        "GARAGE_ADMIN_URL".into(),
        format!("http://127.0.0.1:{admin}"),
    );
    init_env.insert("GARAGE_WAIT_SECONDS".into(), "60".into());
    let init = || {
        let out = Command::new("python3")
            .arg(repo("ops/deploy/compose/garage-init.py"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&init_env)
            .output()
            .expect("python3");
        let log = std::fs::read_to_string(dir.join("garage.log")).unwrap_or_default();
        assert!(
            out.status.success(),
            "garage-init.py: {}\ngarage:\n{log}",
            stderr(&out)
        );
        stderr(&out)
    };
    let first = init();
    assert!(first.contains("created bucket"), "{first}");
    let second = init();
    for quiet in ["already assigned", "exists", "done"] {
        assert!(
            second.contains(quiet),
            "the second run changes nothing: {second}"
        );
    }
    let bucket = &init_env["GARAGE_BUCKET"];
    let out = Command::new("curl")
        .args(["-sf", "--aws-sigv4", "aws:amz:garage:s3", "--user"])
        .arg(format!(
            "{}:{}",
            init_env["AWS_ACCESS_KEY_ID"], init_env["AWS_SECRET_ACCESS_KEY"]
        ))
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .arg(format!(
            "http://127.0.0.1:{s3}/{bucket}?list-type=2&max-keys=1"
        ))
        .output()
        .expect("curl");
    assert!(
        out.status.success() && stdout(&out).contains(&format!("<Name>{bucket}</Name>")),
        "the key lists {bucket}: {} {}",
        stdout(&out),
        stderr(&out)
    );
    drop(garage);
}

// ------------------------------------------------------- the Kubernetes manifests

struct Manifests {
    docs: Vec<(String, Yaml)>,
}

impl Manifests {
    fn load() -> Self {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(d).expect("read_dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(&repo("ops/deploy/k8s"), &mut files);
        files.sort();
        let root = repo("");
        let docs = files
            .iter()
            .flat_map(|f| {
                let rel = f
                    .strip_prefix(&root)
                    .expect("in repo")
                    .to_string_lossy()
                    .into_owned();
                yaml_file(&rel).into_iter().map(move |d| (rel.clone(), d))
            })
            .collect();
        Self { docs }
    }

    fn of(&self, kind: &str) -> Vec<&Yaml> {
        self.docs
            .iter()
            .filter(|(_, d)| d["kind"].as_str() == Some(kind))
            .map(|(_, d)| d)
            .collect()
    }

    fn named(&self, kind: &str, name: &str) -> &Yaml {
        self.of(kind)
            .into_iter()
            .find(|d| d["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    /// The environment a pod template's landlord container gets: its
    /// envFrom ConfigMaps and Secrets (the example Secrets' values), then its env.
    fn env_of(&self, pod: &Yaml) -> Env {
        let c = &pod["spec"]["containers"][0];
        let mut env = Env::new();
        for from in c["envFrom"].as_sequence().into_iter().flatten() {
            if let Some(name) = from["configMapRef"]["name"].as_str() {
                env.extend(map_env(&self.named("ConfigMap", name)["data"]));
            }
            if let Some(name) = from["secretRef"]["name"].as_str() {
                env.extend(map_env(&self.named("Secret", name)["stringData"]));
            }
        }
        for e in c["env"].as_sequence().into_iter().flatten() {
            env.insert(s(&e["name"]), s(&e["value"]));
        }
        env
    }
}

/// A probe's path and the port number it hits (a named port resolved).
fn probe(container: &Yaml, which: &str) -> (String, u16) {
    let get = &container[which]["httpGet"];
    let path = s(&get["path"]);
    let port = match &get["port"] {
        Yaml::Number(n) => n.as_u64().expect("port") as u16,
        Yaml::String(name) => container["ports"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no port named {name}")) as u16,
        other => panic!("probe port {other:?}"),
    };
    (path, port)
}

fn labels_match(selector: &Yaml, labels: &Yaml) -> bool {
    selector["matchLabels"]
        .as_mapping()
        .is_some_and(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// What the role of a Deployment is: worker, scheduler or api.
fn role_of(pod: &Yaml) -> String {
    strings(&pod["spec"]["containers"][0]["args"])
        .first()
        .cloned()
        .expect("args")
}

/// What a ScaledObject's PostgreSQL trigger counts, on a catalog.
async fn count_with(catalog: &sqlx::PgPool, query: &str) -> i64 {
    sqlx::query_scalar(query)
        .fetch_one(catalog)
        .await
        .unwrap_or_else(|e| panic!("the KEDA query does not run on the catalog: {e}\n{query}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kubernetes_manifests_match_the_code() {
    let m = Manifests::load();
    let settings = code_settings();
    let readme = readme_settings();
    let defaults = defaults();
    let version = toml::from_str::<toml::Value>(&read("Cargo.toml")).expect("Cargo.toml")["package"]
        ["version"]
        .as_str()
        .expect("version")
        .to_string();
    let uid = image_uid();
    for (file, d) in &m.docs {
        assert!(
            d["metadata"].get("namespace").is_none(),
            "{file}: manifests are namespace-agnostic"
        );
    }

    // The Secret/ConfigMap split: anything with a credential is in the Secret.
    let config = map_env(&m.named("ConfigMap", "landlord-config")["data"]);
    let secret = map_env(&m.named("Secret", "landlord-secrets")["stringData"]);
    let credential = |k: &str, v: &str| {
        let url_password = url::Url::parse(v).is_ok_and(|u| u.password().is_some());
        url_password
            || [
                "TOKEN",
                "PASSWORD",
                "SECRET_ACCESS_KEY",
                "ACCESS_KEY_ID",
                "WEBHOOK",
            ]
            .iter()
            .any(|w| k.contains(w))
    };
    for (k, v) in &config {
        assert!(
            !credential(k, v),
            "ConfigMap holds {k}, a credential: move it to the Secret"
        );
    }
    for (k, v) in &secret {
        assert!(
            credential(k, v) || k.ends_with("_URL"),
            "Secret holds {k}, which is no credential"
        );
    }
    for k in [
        "LANDLORD_DATABASE_URL",
        "LANDLORD_AMQP_URL",
        "LANDLORD_SMTP_URL",
        "LANDLORD_API_TOKENS",
    ] {
        assert!(secret.contains_key(k), "the Secret holds {k}");
    }
    for k in config.keys().chain(secret.keys()) {
        if k.starts_with("LANDLORD_") {
            assert!(
                is_code_setting(&settings, k),
                "{k} is set but the code never reads it"
            );
        }
        assert!(
            documented(&readme, k),
            "{k} is not in README's configuration tables"
        );
    }

    // Each Deployment: settings the code accepts, probes on its routes and
    // default ports, a grace period above its drain grace, a PDB.
    let deployments = m.of("Deployment");
    let pdbs = m.of("PodDisruptionBudget");
    let mut by_role: BTreeMap<String, Vec<&Yaml>> = BTreeMap::new();
    let mut effective_of: BTreeMap<String, Env> = BTreeMap::new();
    for d in &deployments {
        let name = s(&d["metadata"]["name"]);
        let pod = &d["spec"]["template"];
        assert!(
            labels_match(&d["spec"]["selector"], &pod["metadata"]["labels"]),
            "{name}"
        );
        let c = &pod["spec"]["containers"][0];
        let image = s(&c["image"]);
        assert!(
            image.ends_with(&format!("landlord:{version}")),
            "{name}: image {image} is not version {version}"
        );
        assert_eq!(
            pod["spec"]["securityContext"]["runAsUser"].as_u64(),
            Some(u64::from(uid)),
            "{name}: the image's user"
        );
        assert_eq!(
            pod["spec"]["securityContext"]["runAsNonRoot"].as_bool(),
            Some(true)
        );
        let env = m.env_of(pod);
        for k in env.keys().filter(|k| k.starts_with("LANDLORD_")) {
            assert!(
                is_code_setting(&settings, k),
                "{name} sets {k}, which the code never reads"
            );
        }
        let effective = config_show(&format!("Deployment {name}"), &env);
        // The catalog key file is on a mounted Secret that has that key.
        let key = Path::new(&env["LANDLORD_SECRETS_KEY_FILE"]);
        let mount = c["volumeMounts"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|v| Path::new(&s(&v["mountPath"])) == key.parent().expect("dir"))
            .unwrap_or_else(|| panic!("{name}: nothing mounted at {}", key.display()));
        let volume = pod["spec"]["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == mount["name"])
            .expect("volume");
        let key_secret = m.named("Secret", &s(&volume["secret"]["secretName"]));
        let file = key
            .file_name()
            .expect("file")
            .to_string_lossy()
            .into_owned();
        assert!(
            key_secret["stringData"].get(file.as_str()).is_some(),
            "{name}: the Secret has {file}"
        );

        let role = role_of(pod);
        let tgp = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("terminationGracePeriodSeconds");
        let (live, live_port) = probe(c, "livenessProbe");
        let (ready, ready_port) = probe(c, "readinessProbe");
        match role.as_str() {
            "worker" | "scheduler" => {
                let listen = &effective["observability.listen"];
                assert_eq!(
                    (live.as_str(), ready.as_str()),
                    ("/healthz", "/readyz"),
                    "{name}"
                );
                assert_eq!(
                    live_port,
                    port_of(listen),
                    "{name}: probes on LANDLORD_LISTEN"
                );
                assert_eq!(ready_port, live_port);
                assert_eq!(
                    live_port,
                    port_of(&defaults["observability.listen"]),
                    "{name}: the default port"
                );
                let grace = secs_of(&effective, "worker.shutdown_grace_seconds");
                let default_grace = secs_of(&defaults, "worker.shutdown_grace_seconds");
                if role == "worker" {
                    assert!(
                        tgp > grace && tgp > default_grace,
                        "{name}: terminationGracePeriodSeconds {tgp} must exceed the drain grace {grace}s (default {default_grace}s)"
                    );
                }
            }
            "api" => {
                let listen = env.get("LANDLORD_API_LISTEN").expect("LANDLORD_API_LISTEN");
                for p in [&live, &ready] {
                    assert!(
                        landlord::api::PUBLIC_ROUTES.contains(&p.as_str()),
                        "{name}: {p} is no public API route"
                    );
                }
                assert_eq!(live_port, port_of(listen));
                assert_eq!(ready_port, live_port);
                assert_eq!(live_port, port_of(landlord::api::settings::DEFAULT_LISTEN));
                let grace = landlord::api::SHUTDOWN_GRACE.as_secs();
                assert!(
                    tgp > grace,
                    "{name}: terminationGracePeriodSeconds {tgp} must exceed the API's {grace}s"
                );
            }
            other => panic!("{name}: unexpected role {other}"),
        }
        let covered = pdbs
            .iter()
            .filter(|p| labels_match(&p["spec"]["selector"], &pod["metadata"]["labels"]))
            .count();
        assert_eq!(covered, 1, "{name}: one PodDisruptionBudget");
        by_role.entry(role).or_default().push(d);
        effective_of.insert(name, effective);
    }
    assert_eq!(by_role["scheduler"].len(), 1);
    assert_eq!(
        by_role["scheduler"][0]["spec"]["replicas"].as_u64(),
        Some(2),
        "two schedulers"
    );
    assert!(by_role.contains_key("api"));
    let workers = &by_role["worker"];
    for w in workers {
        assert!(
            w["spec"].get("replicas").is_none(),
            "KEDA's HPA owns a worker's replicas"
        );
    }

    // KEDA: one ScaledObject per worker Deployment, on that family's queue
    // (named as the code names it for the prefix in force) and its jobs.
    let scaled = m.of("ScaledObject");
    let auths: BTreeSet<String> = m
        .of("TriggerAuthentication")
        .iter()
        .map(|a| {
            for r in a["spec"]["secretTargetRef"]
                .as_sequence()
                .into_iter()
                .flatten()
            {
                let sec = map_env(&m.named("Secret", &s(&r["name"]))["stringData"]);
                assert!(
                    sec.contains_key(&s(&r["key"])),
                    "TriggerAuthentication key {:?}",
                    r["key"]
                );
            }
            s(&a["metadata"]["name"])
        })
        .collect();
    let mut families = BTreeSet::new();
    let mut queries: Vec<(String, String)> = Vec::new();
    let mut queue_names: Vec<(String, String)> = Vec::new();
    for w in workers {
        let name = s(&w["metadata"]["name"]);
        let so: Vec<&&Yaml> = scaled
            .iter()
            .filter(|o| o["spec"]["scaleTargetRef"]["name"].as_str() == Some(name.as_str()))
            .collect();
        assert_eq!(so.len(), 1, "{name}: one ScaledObject");
        let spec = &so[0]["spec"];
        let effective = &effective_of[&name];
        let queues = queues_of(effective);
        assert_eq!(
            queues.len(),
            1,
            "{name}: one family per Deployment, got {queues:?}"
        );
        let family = queues[0].clone();
        assert!(
            families.insert(family.clone()),
            "two Deployments for {family}"
        );
        let topology = Topology {
            prefix: effective["prefix"].clone(),
            delivery_limit: 20,
        };
        let concurrency = &effective["worker.concurrency"];
        let triggers = spec["triggers"].as_sequence().expect("triggers");
        for t in triggers {
            assert!(
                auths.contains(&s(&t["authenticationRef"]["name"])),
                "{name}: authenticationRef"
            );
        }
        let rabbit = triggers
            .iter()
            .find(|t| t["type"] == "rabbitmq")
            .expect("rabbitmq trigger");
        assert_eq!(
            s(&rabbit["metadata"]["queueName"]),
            topology.queue(&family),
            "{name}"
        );
        assert_eq!(s(&rabbit["metadata"]["mode"]), "QueueLength");
        assert_eq!(
            &s(&rabbit["metadata"]["value"]),
            concurrency,
            "{name}: one pod per LANDLORD_WORKER_CONCURRENCY waiting jobs"
        );
        let pg = triggers
            .iter()
            .find(|t| t["type"] == "postgresql")
            .expect("postgresql trigger");
        assert_eq!(
            &s(&pg["metadata"]["targetQueryValue"]),
            concurrency,
            "{name}"
        );
        queries.push((family.clone(), s(&pg["metadata"]["query"])));
        queue_names.push((family.clone(), s(&rabbit["metadata"]["queueName"])));
        let min = spec["minReplicaCount"].as_u64().expect("minReplicaCount");
        assert!(
            min > 0 || family == "mail",
            "{name}: only mail scales to zero (README.md beside the manifests)"
        );
        assert!(spec["maxReplicaCount"].as_u64().expect("max") >= min.max(1));
    }
    assert_eq!(
        families,
        QUEUES.iter().map(|q| q.to_string()).collect(),
        "a Deployment per job family"
    );

    // The backups monitor.
    let cron = &m.of("CronJob")[0];
    let job_pod = &cron["spec"]["jobTemplate"]["spec"]["template"];
    let args = strings(&job_pod["spec"]["containers"][0]["args"]);
    assert_eq!(args[..2], ["backups", "monitor"]);
    config_show("the backups monitor CronJob", &m.env_of(job_pod));

    // On the real services: the queries count what they say on a migrated
    // catalog, the roles answer their probes, the queues exist, the monitor runs.
    let mut env = TestEnv::new().await;
    let manifest_prefix = effective_of.values().next().expect("a deployment")["prefix"].clone();
    // A different number of due jobs per family (1, 2, 3, 4), so a query that
    // counts another family's jobs is caught.
    let mut jobs: BTreeMap<&str, Vec<uuid::Uuid>> = BTreeMap::new();
    for (n, family) in QUEUES.iter().enumerate() {
        for _ in 0..=n {
            let id = env.enqueue(&["jobs", "ping", "--queue", family]);
            jobs.entry(family).or_default().push(id);
        }
    }
    for (family, q) in &queries {
        let due = jobs[family.as_str()].len() as i64;
        assert_eq!(
            count_with(&env.catalog, q).await,
            due,
            "{family}: its {due} due jobs\n{q}"
        );
    }
    // Running counts, waiting for a retry later or finished does not.
    for (family, q) in &queries {
        let ids = &jobs[family.as_str()];
        let due = ids.len() as i64;
        for (set, expected) in [
            (
                "status = 'retrying', run_at = now() + interval '1 hour'",
                due - 1,
            ),
            (
                "status = 'running', lease_owner = 'deploy-test', lease_expires_at = now() + interval '1 hour'",
                due,
            ),
            (
                "status = 'succeeded', finished_at = now(), lease_owner = NULL, lease_expires_at = NULL",
                due - 1,
            ),
        ] {
            sqlx::query(&format!("UPDATE jobs SET {set} WHERE id = $1"))
                .bind(ids[0])
                .execute(&env.catalog)
                .await
                .expect("update");
            assert_eq!(
                count_with(&env.catalog, q).await,
                expected,
                "{family} after {set}"
            );
        }
    }

    let out = env.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));

    for (role, ds) in &by_role {
        let d = ds[0];
        let pod = &d["spec"]["template"];
        let c = &pod["spec"]["containers"][0];
        let manifest_env = m.env_of(pod);
        let mut extra: Vec<(&str, String)> = Vec::new();
        if let Some(q) = manifest_env.get("LANDLORD_WORKER_QUEUES") {
            extra.push(("LANDLORD_WORKER_QUEUES", q.clone()));
        }
        let (live, _) = probe(c, "livenessProbe");
        let (ready, _) = probe(c, "readinessProbe");
        let base = if role == "api" {
            let listen = format!("127.0.0.1:{}", free_port());
            extra.push(("LANDLORD_API_LISTEN", listen.clone()));
            extra.push((
                "LANDLORD_API_TOKENS",
                manifest_env["LANDLORD_API_TOKENS"].clone(),
            ));
            format!("http://{listen}")
        } else {
            String::new()
        };
        let refs: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let p = env.spawn(
            &strings(&c["args"])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            &refs,
        );
        let base = if role == "api" {
            base
        } else {
            p.metrics.clone()
        };
        for path in [&live, &ready] {
            let url = format!("{base}{path}");
            poll(secs(30), ms(200), || async {
                match reqwest::get(&url).await {
                    Ok(r) if r.status() == 200 => Ok(()),
                    Ok(r) => Err(format!("{url}: {}", r.status())),
                    Err(e) => Err(format!("{url}: {e}")),
                }
            })
            .await;
        }
    }
    // The worker declared its topology: each trigger's queue exists, under this
    // test's prefix in place of the manifests'.
    for (family, name) in &queue_names {
        let rest = name
            .strip_prefix(&format!("{manifest_prefix}."))
            .unwrap_or_else(|| panic!("{name} does not start with the prefix {manifest_prefix}"));
        let ours = format!("{}.{rest}", env.prefix);
        // A channel of our own: `TestEnv::channel` would declare the topology itself.
        let conn = landlord::broker::connect_url(&env.amqp(), ConnectionProperties::default())
            .await
            .expect("amqp");
        let ch = conn.create_channel().await.expect("channel");
        ch.queue_declare(
            ours.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{family}: queue {ours} is not declared by landlord: {e}"));
        let _ = conn.close(200, "bye".into()).await;
    }
}

// --------------------------------------------------------------- the validators

fn check(args: &[&str]) -> Output {
    Command::new(repo("ops/deploy/check"))
        .args(args)
        .output()
        .expect("ops/deploy/check")
}

#[test]
fn the_validators_pass_on_the_files_and_fail_on_broken_copies() {
    let out = check(&[]);
    assert!(
        out.status.success(),
        "ops/deploy/check failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let log = stderr(&out);
    for step in [
        "hadolint",
        "docker compose config",
        "kubernetes-validate",
        "KEDA schema",
    ] {
        assert!(log.contains(&format!("ok: {step}")), "{step} ran: {log}");
    }

    // One defect at a time, in copies: each validator says no.
    let dir = std::env::temp_dir().join(format!("landlord-deploy-{}", uuid::Uuid::new_v4()));
    let k8s = dir.join("k8s");
    std::fs::create_dir_all(&k8s).expect("dir");
    let _cleanup = Cleanup(None, dir.clone());
    let reset = || {
        std::fs::copy(repo("Dockerfile"), dir.join("Dockerfile")).expect("copy");
        std::fs::copy(repo("docker-compose.yml"), dir.join("docker-compose.yml")).expect("copy");
        for e in std::fs::read_dir(repo("ops/deploy/k8s"))
            .expect("k8s")
            .flatten()
        {
            if e.path().is_file() {
                std::fs::copy(e.path(), k8s.join(e.file_name())).expect("copy");
            }
        }
    };
    let edit = |file: &Path, from: &str, to: &str| {
        let text = std::fs::read_to_string(file).expect("read");
        assert!(text.contains(from), "{from:?} in {}", file.display());
        std::fs::write(file, text.replacen(from, to, 1)).expect("write");
    };
    let paths = [
        dir.join("Dockerfile"),
        dir.join("docker-compose.yml"),
        k8s.clone(),
    ];
    let owned: Vec<String> = ["--dockerfile", "--compose", "--k8s"]
        .iter()
        .zip(&paths)
        .flat_map(|(flag, p)| [flag.to_string(), p.display().to_string()])
        .collect();
    let args: Vec<&str> = owned.iter().map(String::as_str).collect();
    reset();
    let out = check(&args);
    assert!(
        out.status.success(),
        "the copies validate: {}",
        stderr(&out)
    );
    let cases: [(PathBuf, &str, &str, &str); 4] = [
        (
            dir.join("Dockerfile"),
            "FROM debian:${DEBIAN_RELEASE}-slim AS runtime",
            "FROM debian AS runtime",
            "hadolint",
        ),
        (
            dir.join("docker-compose.yml"),
            "    restart: \"no\"\n",
            "    restart: \"no\"\n    restart_policy: always\n",
            "docker compose config",
        ),
        (
            k8s.join("workers.yaml"),
            "containerPort: 9464",
            "containerPort: metrics-port",
            "kubernetes-validate",
        ),
        (
            k8s.join("keda.yaml"),
            "minReplicaCount: 0",
            "minReplicaCount: none",
            "KEDA schema",
        ),
    ];
    for (file, from, to, step) in cases {
        reset();
        edit(&file, from, to);
        let out = check(&args);
        let log = stderr(&out);
        assert!(
            !out.status.success(),
            "{step} let a broken {} through:\n{log}",
            file.display()
        );
        assert!(
            log.contains(&format!("FAILED: {step}")),
            "{step} is the one that failed:\n{log}"
        );
    }
}
