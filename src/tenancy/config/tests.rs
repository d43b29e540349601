//! Resolution of the tenancy configuration end to end: the seed's cases,
//! precedence, error messages and that no secret is ever shown.

use std::collections::HashMap;

use secrecy::ExposeSecret;

use super::*;

const SECRET_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const JWT: &str = "jwt-secret-that-is-long-enough-0123456789";
const BYPASS: &str = "postgres://bypass:hunter2-pw@db:5432/app";

fn resolve(env: &[(&str, &str)], file: &FileTenancy) -> Result<TenancyConfig> {
    let map: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    TenancyConfig::resolve(&|k| map.get(k).cloned(), file)
}

fn file(toml_text: &str) -> FileTenancy {
    toml::from_str(toml_text).unwrap()
}

fn err(env: &[(&str, &str)], f: &FileTenancy) -> String {
    format!("{:#}", resolve(env, f).unwrap_err())
}

fn ch<'a>(c: &'a TenancyConfig, name: &str) -> &'a ChannelConfig {
    c.channel(name).unwrap()
}

fn env_src(name: &str) -> Source {
    Source::Env(name.to_string())
}

#[test]
fn case1_fully_multi_tenant() {
    let f = file(
        r#"
        [app_context.admin]
        tenant_mode = "multi"
        [app_context.mobile]
        tenant_mode = "multi"
        [app_context.site]
        tenant_mode = "multi"
        [app_context.partner]
        tenant_mode = "multi"
        "#,
    );
    let c = resolve(
        &[
            ("TENANCY_ENABLED", "true"),
            ("TENANCY_ENFORCEMENT_MODE", "strict"),
        ],
        &f,
    )
    .unwrap();
    assert!(c.enabled.value);
    assert_eq!(c.enabled.source, env_src("TENANCY_ENABLED"));
    assert_eq!(
        c.enforcement_mode.source,
        env_src("TENANCY_ENFORCEMENT_MODE")
    );
    assert_eq!(c.effective_mode(), EnforcementMode::Strict);
    for name in KNOWN_CHANNELS {
        assert!(c.channel_enabled(name), "{name}");
        assert_eq!(ch(&c, name).enabled.source, Source::AppContext);
        assert_eq!(ch(&c, name).tenant_mode.as_deref(), Some("multi"));
    }
}

#[test]
fn case2_single_tenant_bypasses_everything() {
    let f = file(
        r#"
        enabled = true
        enforcement_mode = "strict"
        [channels]
        mobile = true
        [app_context.admin]
        tenant_mode = "multi"
        [app_context.reseller]
        tenant_mode = "multi"
        "#,
    );
    let c = resolve(
        &[
            ("TENANCY_ENABLED", "false"),
            ("TENANCY_ADMIN_ENABLED", "true"),
        ],
        &f,
    )
    .unwrap();
    assert!(!c.enabled.value);
    assert_eq!(c.enabled.source, env_src("TENANCY_ENABLED"));
    // The mode stays as configured; the mode in force is disabled.
    assert_eq!(c.enforcement_mode.value, EnforcementMode::Strict);
    assert_eq!(c.effective_mode(), EnforcementMode::Disabled);
    assert_eq!(c.channels.len(), 5);
    for cc in &c.channels {
        assert!(!cc.enabled.value, "{}", cc.name);
        assert_eq!(cc.enabled.source, env_src("TENANCY_ENABLED"));
        assert!(!c.channel_enabled(&cc.name));
    }
    assert!(!c.channel_enabled("never-heard-of"));
}

#[test]
fn case3_hybrid() {
    let f = file(
        r#"
        enabled = true
        enforcement_mode = "soft"
        [app_context.admin]
        tenant_mode = "multi"
        [app_context.site]
        tenant_mode = "single"
        "#,
    );
    let c = resolve(&[], &f).unwrap();
    assert_eq!(c.enabled.source, Source::File);
    assert_eq!(c.effective_mode(), EnforcementMode::Soft);
    assert_eq!(c.enforcement_mode.source, Source::File);
    assert!(c.channel_enabled("admin"));
    assert_eq!(ch(&c, "admin").enabled.source, Source::AppContext);
    assert!(!c.channel_enabled("site"));
    assert_eq!(ch(&c, "site").enabled.source, Source::AppContext);
    assert_eq!(ch(&c, "site").tenant_mode.as_deref(), Some("single"));
    // No app-context, no override: enabled by default.
    assert!(c.channel_enabled("mobile"));
    assert_eq!(ch(&c, "mobile").enabled.source, Source::Default);
    assert_eq!(ch(&c, "mobile").tenant_mode, None);
    // Unknown channels are isolated while tenancy is on.
    assert!(c.channel_enabled("kiosk"));
}

#[test]
fn channel_overrides_env_then_file_then_app_context() {
    let f = file(
        r#"
        enabled = true
        [channels]
        site = true
        admin = false
        mobile = false
        [app_context.admin]
        tenant_mode = "multi"
        [app_context.site]
        tenant_mode = "single"
        "#,
    );
    let c = resolve(
        &[
            ("TENANCY_MOBILE_ENABLED", "yes"),
            ("TENANCY_PARTNER_ENABLED", "OFF"),
        ],
        &f,
    )
    .unwrap();
    // File override beats the app-context, both ways.
    assert!(c.channel_enabled("site"));
    assert_eq!(ch(&c, "site").enabled.source, Source::File);
    assert!(!c.channel_enabled("admin"));
    assert_eq!(ch(&c, "admin").enabled.source, Source::File);
    // Env beats the file.
    assert!(c.channel_enabled("mobile"));
    assert_eq!(
        ch(&c, "mobile").enabled.source,
        env_src("TENANCY_MOBILE_ENABLED")
    );
    assert!(!c.channel_enabled("partner"));
    assert_eq!(
        ch(&c, "partner").enabled.source,
        env_src("TENANCY_PARTNER_ENABLED")
    );
    // An empty or "null" override inherits.
    let c = resolve(
        &[
            ("TENANCY_ADMIN_ENABLED", ""),
            ("TENANCY_SITE_ENABLED", "null"),
        ],
        &file(
            r#"
            enabled = true
            [app_context.admin]
            tenant_mode = "multi"
            [app_context.site]
            tenant_mode = "single"
            "#,
        ),
    )
    .unwrap();
    assert_eq!(ch(&c, "admin").enabled.source, Source::AppContext);
    assert!(c.channel_enabled("admin"));
    assert_eq!(ch(&c, "site").enabled.source, Source::AppContext);
    assert!(!c.channel_enabled("site"));
}

#[test]
fn tenant_mode_from_env_wins_over_file() {
    let f = file("enabled = true\n[app_context.site]\ntenant_mode = \"multi\"\n");
    let c = resolve(&[("TENANCY_SITE_TENANT_MODE", "Single")], &f).unwrap();
    assert_eq!(ch(&c, "site").tenant_mode.as_deref(), Some("single"));
    assert!(!c.channel_enabled("site"));
    assert_eq!(ch(&c, "site").enabled.source, Source::AppContext);
}

#[test]
fn case4_auto_detect_on() {
    let f = file(
        "[app_context.admin]\ntenant_mode = \"multi\"\n[app_context.site]\ntenant_mode = \"single\"\n",
    );
    let c = resolve(&[("TENANCY_ENABLED", "")], &f).unwrap();
    assert!(c.enabled.value);
    assert_eq!(c.enabled.source, Source::AutoDetect);
    assert_eq!(c.effective_mode(), EnforcementMode::Strict);
    assert!(c.channel_enabled("admin"));
    assert!(!c.channel_enabled("site"));
    // Also from the environment's app-context.
    let c = resolve(
        &[("TENANCY_PARTNER_TENANT_MODE", "multi")],
        &FileTenancy::default(),
    )
    .unwrap();
    assert!(c.enabled.value);
    assert_eq!(c.enabled.source, Source::AutoDetect);
    assert!(c.channel_enabled("partner"));
}

#[test]
fn case4_auto_detect_off() {
    let f = file(
        "[app_context.admin]\ntenant_mode = \"single\"\n[app_context.site]\ntenant_mode = \"single\"\n",
    );
    let c = resolve(&[], &f).unwrap();
    assert!(!c.enabled.value);
    assert_eq!(c.enabled.source, Source::AutoDetect);
    assert_eq!(c.effective_mode(), EnforcementMode::Disabled);
    assert!(c.channels.iter().all(|cc| !cc.enabled.value));
    assert!(
        c.channels
            .iter()
            .all(|cc| cc.enabled.source == Source::AutoDetect)
    );
    // Nothing configured at all: off too.
    let c = resolve(&[], &FileTenancy::default()).unwrap();
    assert!(!c.enabled.value);
    assert_eq!(c.enabled.source, Source::AutoDetect);
    assert!(!c.channel_enabled("admin"));
}

#[test]
fn defaults_and_their_sources() {
    let c = resolve(&[("TENANCY_ENABLED", "1")], &FileTenancy::default()).unwrap();
    assert_eq!(c.enforcement_mode.value, EnforcementMode::Strict);
    assert_eq!(c.enforcement_mode.source, Source::Default);
    assert_eq!(c.tenant_column.value, "tenant_id");
    assert_eq!(c.tenant_column.source, Source::Default);
    assert_eq!(
        c.exempt_tables.value,
        ["countries", "states", "tenants", "error_logs"]
    );
    assert_eq!(c.exempt_tables.source, Source::Default);
    assert!(c.is_exempt("public", "error_logs") && c.is_exempt("geo", "states"));
    // Configuring the list replaces the default, as the seed's array does.
    let custom = resolve(
        &[("TENANCY_EXEMPT_TABLES", "plans")],
        &FileTenancy::default(),
    )
    .unwrap();
    assert_eq!(custom.exempt_tables.value, ["plans"]);
    assert!(!custom.is_exempt("public", "countries"));
    for r in [&c.log_bypasses, &c.alert_violations, &c.cache_context] {
        assert!(r.value);
        assert_eq!(r.source, Source::Default);
    }
    assert!(c.context_secret.is_none() && c.jwt_secret.is_none() && c.bypass_url.is_none());
    let names: Vec<&str> = c.channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, KNOWN_CHANNELS);
    assert!(
        c.channels
            .iter()
            .all(|cc| cc.enabled.value && cc.enabled.source == Source::Default)
    );
}

#[test]
fn env_over_file_for_scalars() {
    let f = file(
        r#"
        enabled = false
        enforcement_mode = "strict"
        tenant_column = "company_id"
        exempt_tables = ["countries"]
        [audit]
        log_bypasses = false
        alert_violations = false
        [performance]
        cache_context = false
        "#,
    );
    let c = resolve(&[], &f).unwrap();
    assert_eq!(c.tenant_column.value, "company_id");
    assert_eq!(c.tenant_column.source, Source::File);
    for r in [&c.log_bypasses, &c.alert_violations, &c.cache_context] {
        assert!(!r.value);
        assert_eq!(r.source, Source::File);
    }
    let c = resolve(
        &[
            ("TENANCY_ENABLED", "on"),
            ("TENANCY_ENFORCEMENT_MODE", " Soft "),
            ("TENANCY_TENANT_COLUMN", "org_id"),
            ("TENANCY_EXEMPT_TABLES", "states, public.tenants,,"),
            ("TENANCY_LOG_BYPASSES", "TRUE"),
            ("TENANCY_ALERT_VIOLATIONS", "yes"),
            ("TENANCY_CACHE_CONTEXT", "1"),
        ],
        &f,
    )
    .unwrap();
    assert!(c.enabled.value);
    assert_eq!(c.enforcement_mode.value, EnforcementMode::Soft);
    assert_eq!(c.tenant_column.value, "org_id");
    assert_eq!(c.tenant_column.source, env_src("TENANCY_TENANT_COLUMN"));
    assert_eq!(c.exempt_tables.value, ["states", "public.tenants"]);
    assert_eq!(c.exempt_tables.source, env_src("TENANCY_EXEMPT_TABLES"));
    assert_eq!(c.log_bypasses.source, env_src("TENANCY_LOG_BYPASSES"));
    assert_eq!(
        c.alert_violations.source,
        env_src("TENANCY_ALERT_VIOLATIONS")
    );
    assert_eq!(c.cache_context.source, env_src("TENANCY_CACHE_CONTEXT"));
    assert!(c.log_bypasses.value && c.alert_violations.value && c.cache_context.value);
}

#[test]
fn empty_env_values_are_unset() {
    let f = file("enabled = true\nenforcement_mode = \"soft\"\ntenant_column = \"org_id\"");
    let c = resolve(
        &[
            ("TENANCY_ENABLED", ""),
            ("TENANCY_ENFORCEMENT_MODE", "   "),
            ("TENANCY_TENANT_COLUMN", ""),
            ("TENANCY_EXEMPT_TABLES", ""),
            ("TENANCY_LOG_BYPASSES", ""),
            ("TENANCY_CONTEXT_SECRET", ""),
            ("TENANCY_JWT_SECRET", " "),
            ("TENANCY_BYPASS_URL", ""),
        ],
        &f,
    )
    .unwrap();
    assert_eq!(c.enabled.source, Source::File);
    assert_eq!(c.enforcement_mode.value, EnforcementMode::Soft);
    assert_eq!(c.enforcement_mode.source, Source::File);
    assert_eq!(c.tenant_column.value, "org_id");
    assert_eq!(c.exempt_tables.source, Source::Default);
    assert_eq!(c.log_bypasses.source, Source::Default);
    assert!(c.context_secret.is_none() && c.jwt_secret.is_none() && c.bypass_url.is_none());
}

#[test]
fn mode_disabled_turns_channels_off() {
    let f = file(
        "enabled = true\nenforcement_mode = \"disabled\"\n[app_context.admin]\ntenant_mode = \"multi\"",
    );
    let c = resolve(&[], &f).unwrap();
    assert!(c.enabled.value);
    assert_eq!(c.effective_mode(), EnforcementMode::Disabled);
    assert!(!c.channel_enabled("admin"));
    assert_eq!(ch(&c, "admin").enabled.source, Source::File);
    assert!(!c.channel_enabled("kiosk"));
}

#[test]
fn other_channels_follow_the_known_ones() {
    let f = file(
        r#"
        enabled = true
        [channels]
        zeta = true
        [app_context.reseller-api]
        tenant_mode = "single"
        [app_context.admin]
        tenant_mode = "multi"
        "#,
    );
    let c = resolve(&[("TENANCY_RESELLER_API_ENABLED", "true")], &f).unwrap();
    let names: Vec<&str> = c.channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["admin", "mobile", "site", "partner", "reseller-api", "zeta"]
    );
    assert!(c.channel_enabled("reseller-api"));
    assert_eq!(
        ch(&c, "reseller-api").enabled.source,
        env_src("TENANCY_RESELLER_API_ENABLED")
    );
    assert_eq!(ch(&c, "zeta").enabled.source, Source::File);
    assert!(c.channel_enabled("ADMIN"));
}

#[test]
fn bad_values_are_rejected_with_the_variable_named() {
    let none = FileTenancy::default();
    let e = err(&[("TENANCY_ENFORCEMENT_MODE", "paranoid")], &none);
    assert!(
        e.contains("TENANCY_ENFORCEMENT_MODE") && e.contains("paranoid"),
        "{e}"
    );
    let e = err(&[("TENANCY_ADMIN_ENABLED", "maybe")], &none);
    assert!(
        e.contains("TENANCY_ADMIN_ENABLED") && e.contains("maybe"),
        "{e}"
    );
    let e = err(&[("TENANCY_ENABLED", "perhaps")], &none);
    assert!(
        e.contains("TENANCY_ENABLED") && e.contains("perhaps"),
        "{e}"
    );
    let e = err(&[("TENANCY_CACHE_CONTEXT", "2")], &none);
    assert!(e.contains("TENANCY_CACHE_CONTEXT"), "{e}");
    let e = err(&[("TENANCY_SITE_TENANT_MODE", "shared")], &none);
    assert!(
        e.contains("TENANCY_SITE_TENANT_MODE") && e.contains("shared"),
        "{e}"
    );
    let e = err(&[("TENANCY_TENANT_COLUMN", "Tenant")], &none);
    assert!(e.contains("TENANCY_TENANT_COLUMN"), "{e}");
    let e = err(&[("TENANCY_EXEMPT_TABLES", "countries;drop")], &none);
    assert!(e.contains("TENANCY_EXEMPT_TABLES"), "{e}");

    let e = err(&[], &file("tenant_column = \"drop table\""));
    assert!(
        e.contains("tenant_column") && e.contains("drop table"),
        "{e}"
    );
    let e = err(
        &[],
        &file(&format!("tenant_column = \"{}\"", "a".repeat(64))),
    );
    assert!(e.contains("tenant_column"), "{e}");
    let e = err(&[], &file("enforcement_mode = \"lax\""));
    assert!(e.contains("enforcement_mode") && e.contains("lax"), "{e}");
    let e = err(&[], &file("[app_context.admin]\ntenant_mode = \"many\""));
    assert!(e.contains("[tenancy.app_context.admin] tenant_mode"), "{e}");
    let e = err(&[], &file("exempt_tables = [\"a.b.c\"]"));
    assert!(e.contains("exempt_tables") && e.contains("a.b.c"), "{e}");
    let e = err(&[], &file("[channels]\nAdmin = true"));
    assert!(
        e.contains("[tenancy.channels]") && e.contains("Admin"),
        "{e}"
    );

    assert!(toml::from_str::<FileTenancy>("enabeld = true").is_err());
    assert!(toml::from_str::<FileTenancy>("[audit]\nlog = true").is_err());
    assert!(toml::from_str::<FileTenancy>("[app_context.admin]\nmode = \"multi\"").is_err());
}

#[test]
fn secrets_are_checked_and_never_quoted() {
    let none = FileTenancy::default();
    let e = err(&[("TENANCY_CONTEXT_SECRET", "xyz")], &none);
    assert!(
        e.contains("TENANCY_CONTEXT_SECRET") && e.contains("64"),
        "{e}"
    );
    assert!(!e.contains("xyz"), "{e}");
    let not_hex = "zz".repeat(32);
    let e = err(&[("TENANCY_CONTEXT_SECRET", &not_hex)], &none);
    assert!(
        e.contains("TENANCY_CONTEXT_SECRET") && !e.contains(&not_hex),
        "{e}"
    );
    let e = err(&[("TENANCY_JWT_SECRET", "short-secret")], &none);
    assert!(
        e.contains("TENANCY_JWT_SECRET") && !e.contains("short-secret"),
        "{e}"
    );
    let e = err(&[("TENANCY_BYPASS_URL", "mysql://u:hunter2@h/db")], &none);
    assert!(
        e.contains("TENANCY_BYPASS_URL") && !e.contains("hunter2"),
        "{e}"
    );

    let c = resolve(
        &[
            ("TENANCY_CONTEXT_SECRET", &SECRET_HEX.to_uppercase()),
            ("TENANCY_JWT_SECRET", JWT),
            ("TENANCY_BYPASS_URL", BYPASS),
        ],
        &none,
    )
    .unwrap();
    let key = c.context_secret.as_ref().unwrap().expose_secret();
    assert_eq!(key.len(), 32);
    assert_eq!(key[..4], [0x00, 0x11, 0x22, 0x33]);
    assert_eq!(key[31], 0xff);
    assert_eq!(c.jwt_secret.as_ref().unwrap().expose_secret(), JWT);
    assert_eq!(c.bypass_url.as_ref().unwrap().expose_secret(), BYPASS);
}

#[test]
fn debug_and_serialize_never_show_secrets() {
    let c = resolve(
        &[
            ("TENANCY_CONTEXT_SECRET", SECRET_HEX),
            ("TENANCY_JWT_SECRET", JWT),
            ("TENANCY_BYPASS_URL", BYPASS),
        ],
        &file("enabled = true"),
    )
    .unwrap();
    let debug = format!("{c:?} {c:#?} {:?}", c.clone());
    let json = serde_json::to_string(&c).unwrap();
    for out in [&debug, &json] {
        for secret in [SECRET_HEX, "00112233", JWT, BYPASS, "hunter2"] {
            assert!(!out.contains(secret), "{secret} leaked");
        }
    }
    assert!(debug.contains("REDACTED"));
    // The secret bytes as Debug would print a Vec<u8>.
    assert!(!debug.contains("[0, 17, 34"));
}

#[test]
fn exempt_tables_bare_and_qualified() {
    let c = resolve(
        &[],
        &file("exempt_tables = [\"countries\", \"billing.plans\", \"countries\"]"),
    )
    .unwrap();
    assert_eq!(c.exempt_tables.value, ["countries", "billing.plans"]);
    assert!(c.is_exempt("public", "countries"));
    assert!(c.is_exempt("other", "countries"));
    assert!(c.is_exempt("billing", "plans"));
    assert!(!c.is_exempt("public", "plans"));
    assert!(!c.is_exempt("public", "users"));
    assert!(!c.is_exempt("billing", "countries_x"));
    let c = resolve(
        &[("TENANCY_EXEMPT_TABLES", "public.countries")],
        &FileTenancy::default(),
    )
    .unwrap();
    assert!(c.is_exempt("public", "countries"));
    assert!(!c.is_exempt("archive", "countries"));
}

#[test]
fn source_display_and_serialization() {
    assert_eq!(
        env_src("TENANCY_ENABLED").to_string(),
        "env TENANCY_ENABLED"
    );
    assert_eq!(Source::File.to_string(), "file");
    assert_eq!(Source::AppContext.to_string(), "app-context");
    assert_eq!(Source::AutoDetect.to_string(), "auto-detect");
    assert_eq!(Source::Default.to_string(), "default");
    let r = Resolved::new(true, env_src("TENANCY_ENABLED"));
    assert_eq!(r.to_string(), "true (env TENANCY_ENABLED)");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"value": true, "source": {"env": "TENANCY_ENABLED"}})
    );
    let json =
        serde_json::to_value(Resolved::new(EnforcementMode::Soft, Source::AutoDetect)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"value": "soft", "source": "auto-detect"})
    );
}

#[test]
fn the_documented_example_parses() {
    #[derive(Deserialize)]
    struct Doc {
        tenancy: FileTenancy,
    }
    let doc: Doc = toml::from_str(
        r#"
        [tenancy]
        enabled = true
        enforcement_mode = "soft"
        tenant_column = "tenant_id"
        exempt_tables = ["countries", "states", "tenants", "error_logs"]
        [tenancy.channels]
        admin = true
        [tenancy.app_context.admin]
        tenant_mode = "multi"
        [tenancy.app_context.site]
        tenant_mode = "single"
        [tenancy.audit]
        log_bypasses = true
        alert_violations = true
        [tenancy.performance]
        cache_context = true
        "#,
    )
    .unwrap();
    let c = resolve(&[], &doc.tenancy).unwrap();
    assert_eq!(c.effective_mode(), EnforcementMode::Soft);
    assert!(c.channel_enabled("admin"));
    assert_eq!(ch(&c, "admin").enabled.source, Source::File);
    assert!(!c.channel_enabled("site"));
    assert!(c.is_exempt("public", "error_logs"));
    assert_eq!(c.log_bypasses.source, Source::File);
}
