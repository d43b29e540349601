//! `landlord tenants …`: adopt an existing database as a tenant, list, show.

use std::{process::ExitCode, sync::Arc};

use anyhow::Result;
use clap::Subcommand;
use sqlx::PgPool;

use crate::{
    cli::{BadInput, JobFailed, RunOpts, actor, catalog, enqueue, wait},
    config::Settings,
    lifecycle::{self, FleetMigration, LifecycleError, MigrationTargets, NewTenant, TargetStatus},
    runtime::Registry,
    tenants::{self, Registration, TenantError, TenantStatus},
};

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Create a tenant: checks the plan limit, then provisions its database
    /// (from the server's template), migrations, role; welcome mail follows.
    Create {
        /// Tenant slug: 3-40 of a-z, 0-9 and inner hyphens, starting with a letter.
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Plan: free, pro, business or enterprise.
        #[arg(long)]
        plan: String,
        /// Owner's email address (created if new).
        #[arg(long)]
        owner: String,
        /// Setting as key=value (timezone, language, display_name); repeatable.
        #[arg(long = "setting")]
        settings: Vec<String>,
        /// Database server (default: the configured server with the fewest tenants).
        #[arg(long)]
        server: Option<String>,
        /// Share this existing database (row-level isolation, see `landlord tenancy`) instead of getting one.
        #[arg(long, value_name = "DATABASE")]
        shared: Option<String>,
        /// With --shared: the tenant's value in the tenant column (default: its id).
        #[arg(long, requires = "shared")]
        key: Option<String>,
        #[command(flatten)]
        run: RunOpts,
    },
    /// Whether OWNER may create another tenant on PLAN (exit 1 if not).
    CanProvision {
        /// Owner's email address.
        owner: String,
        /// Plan: free, pro, business or enterprise.
        plan: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Reactivate a tenant: its role may log in again.
    Activate {
        /// The tenant's slug.
        slug: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Deactivate a tenant: its role may not log in; its sessions end.
    Deactivate {
        /// The tenant's slug.
        slug: String,
        /// Why (recorded as the tenant's status reason; at most 1000 characters).
        #[arg(long)]
        reason: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Suspend a tenant (a reason is required): its role may not log in.
    Suspend {
        /// The tenant's slug.
        slug: String,
        /// Why (recorded as the tenant's status reason; at most 1000 characters).
        #[arg(long)]
        reason: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show or change a tenant's settings.
    Settings {
        /// The tenant's slug.
        slug: String,
        /// key=value to set (timezone, language, display_name); repeatable.
        #[arg(long = "set")]
        set: Vec<String>,
        /// Key to remove; repeatable.
        #[arg(long = "unset")]
        unset: Vec<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the tenant role's connection credentials (secret).
    Credentials {
        /// The tenant's slug.
        slug: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Give the tenant role a new password.
    RotateCredentials {
        /// The tenant's slug.
        slug: String,
        /// Print JSON (tenant and role, never the password) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a tenant: it stops at once; a final backup (held, never pruned)
    /// is taken, and its database is dropped after the grace period
    /// (LANDLORD_DELETE_GRACE_DAYS, default 7) or with --now, never before the
    /// final backup succeeded.
    Delete {
        /// The tenant's slug.
        slug: String,
        /// Delete without a final backup.
        #[arg(long)]
        no_final_backup: bool,
        /// Drop the database now instead of after the grace period.
        #[arg(long)]
        now: bool,
        #[command(flatten)]
        run: RunOpts,
    },
    /// Bring tenant databases (and every server's template) up to the current tenant schema.
    Migrate {
        /// Tenant slug(s); repeat or separate with commas.
        #[arg(
            long,
            value_delimiter = ',',
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        tenant: Vec<String>,
        /// Every provisioned tenant.
        #[arg(long)]
        all: bool,
        /// At most this many tenant migrations at once across the fleet, 1-256.
        #[arg(long, default_value_t = 4, allow_negative_numbers = true)]
        concurrency: u32,
        #[command(flatten)]
        run: RunOpts,
    },
    /// Adopt an existing database as an active tenant (migrating in from the seed's system).
    Register {
        /// Tenant slug: 3-40 of a-z, 0-9 and inner hyphens, starting with a letter.
        slug: String,
        /// The existing database to adopt.
        #[arg(long)]
        database: String,
        /// Configured database server it lives on.
        #[arg(long, default_value = "default")]
        server: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Plan: free, pro, business or enterprise.
        #[arg(long, default_value = "free")]
        plan: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// All tenants.
    List {
        /// Only tenants with this status: provisioning, active, inactive, suspended, failed, deleting or deleted.
        #[arg(long)]
        status: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One tenant.
    Show {
        /// The tenant's slug.
        slug: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn life_err(e: LifecycleError) -> anyhow::Error {
    match e {
        LifecycleError::Other(e) => e,
        other => BadInput(format!("{} ({})", other, other.code())).into(),
    }
}

fn print_tenant(t: &tenants::Tenant, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(t)?);
    } else {
        let v = serde_json::to_value(t)?;
        if let Some(obj) = v.as_object() {
            for (k, v) in obj {
                println!("{k:<15} {v}");
            }
        }
    }
    Ok(())
}

fn tenant_err(e: TenantError) -> anyhow::Error {
    match e {
        TenantError::Other(e) => e,
        other => BadInput(other.to_string()).into(),
    }
}

/// What every subcommand works with.
struct Cx {
    pool: PgPool,
    settings: Arc<Settings>,
    registry: Arc<Registry>,
}

pub async fn run(
    cmd: TenantsCommand,
    settings: Arc<Settings>,
    registry: Arc<Registry>,
) -> Result<ExitCode> {
    let cx = Cx {
        pool: catalog(&settings).await?,
        settings,
        registry,
    };
    match cmd {
        TenantsCommand::Create {
            slug,
            name,
            plan,
            owner,
            settings: pairs,
            server,
            shared,
            key,
            run,
        } => {
            let new = NewTenant {
                slug,
                name,
                plan,
                owner_email: owner,
                settings: lifecycle::settings::parse_pairs(&pairs).map_err(BadInput)?,
                server,
                shared: shared.map(|database| lifecycle::SharedPlacement { database, key }),
            };
            create(&cx, &new, &run).await
        }
        TenantsCommand::CanProvision { owner, plan, json } => {
            can_provision(&cx, &owner, &plan, json).await
        }
        TenantsCommand::Activate { slug, json } => {
            set_status(&cx, &slug, TargetStatus::Active, None, json).await
        }
        TenantsCommand::Deactivate { slug, reason, json } => {
            set_status(&cx, &slug, TargetStatus::Inactive, reason.as_deref(), json).await
        }
        TenantsCommand::Suspend { slug, reason, json } => {
            set_status(&cx, &slug, TargetStatus::Suspended, Some(&reason), json).await
        }
        TenantsCommand::Settings {
            slug,
            set,
            unset,
            json,
        } => tenant_settings(&cx, &slug, &set, &unset, json).await,
        TenantsCommand::Credentials { slug, json } => credentials(&cx, &slug, json).await,
        TenantsCommand::Delete {
            slug,
            no_final_backup,
            now,
            run,
        } => delete(&cx, &slug, no_final_backup, now, &run).await,
        TenantsCommand::Migrate {
            tenant,
            all,
            concurrency,
            run,
        } => {
            let targets = if all {
                MigrationTargets::All
            } else {
                MigrationTargets::Named(tenant)
            };
            migrate(&cx, targets, concurrency, &run).await
        }
        TenantsCommand::RotateCredentials { slug, json } => {
            rotate_credentials(&cx, &slug, json).await
        }
        TenantsCommand::Register {
            slug,
            database,
            server,
            name,
            plan,
            json,
        } => {
            let r = Registration {
                slug,
                name,
                plan,
                server,
                database,
            };
            register(&cx, &r, json).await
        }
        TenantsCommand::List { status, json } => {
            let status = status
                .map(|s| s.parse::<TenantStatus>())
                .transpose()
                .map_err(|e| BadInput(e.to_string()))?;
            list(&cx, status, json).await
        }
        TenantsCommand::Show { slug, json } => {
            let t = tenants::get(&cx.pool, &slug).await.map_err(tenant_err)?;
            print_tenant(&t, json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `tenants create`: enqueue the provisioning saga, then follow or run it.
async fn create(cx: &Cx, new: &NewTenant, run: &RunOpts) -> Result<ExitCode> {
    let created = lifecycle::create(&cx.pool, &cx.settings, new, &actor())
        .await
        .map_err(life_err)?;
    let job = created.job.id;
    if run.sync {
        let row = crate::runtime::sync::run_existing(
            &cx.pool,
            cx.settings.clone(),
            cx.registry.clone(),
            job,
        )
        .await?;
        enqueue::report(&[row], run.json)?;
    } else {
        enqueue::publish_now(&cx.pool, &cx.settings, created.job.outbox_id.as_slice()).await;
        if run.json {
            println!(
                "{}",
                serde_json::json!({"tenant": created.tenant.slug, "job_id": job, "status": created.tenant.status})
            );
        } else {
            println!("{job}\tprovision\t{}\tqueued", created.tenant.slug);
        }
        if !run.wait {
            return Ok(ExitCode::SUCCESS);
        }
        let rows = wait::follow(&cx.pool, &[job], run.json).await?;
        enqueue::report(&rows, run.json)?;
    }
    let t = tenants::get(&cx.pool, &created.tenant.slug)
        .await
        .map_err(tenant_err)?;
    if !run.json {
        println!(
            "tenant {} is {} (database {} on {})",
            t.slug, t.status, t.db_name, t.db_server
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `tenants can-provision`: exit 1 when the plan's limit is reached.
async fn can_provision(cx: &Cx, owner: &str, plan: &str, json: bool) -> Result<ExitCode> {
    let a = lifecycle::can_provision(&cx.pool, owner, plan)
        .await
        .map_err(life_err)?;
    if json {
        println!("{}", serde_json::to_string(&a)?);
    } else {
        let limit = a
            .limit
            .map(|l| l.to_string())
            .unwrap_or_else(|| "unlimited".into());
        println!(
            "{}: {} has {} of {} tenant(s) on plan {}",
            if a.allowed { "yes" } else { "no" },
            a.owner,
            a.used,
            limit,
            a.plan
        );
    }
    if a.allowed {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(JobFailed(format!(
            "{} may not create another tenant on plan {}",
            a.owner, a.plan
        ))
        .into())
    }
}

/// `tenants activate|deactivate|suspend`.
async fn set_status(
    cx: &Cx,
    slug: &str,
    to: TargetStatus,
    reason: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let t = lifecycle::change_status(&cx.pool, &cx.settings, slug, to, reason, &actor())
        .await
        .map_err(life_err)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&t)?);
    } else {
        println!("tenant {} is {}", t.slug, t.status);
    }
    Ok(ExitCode::SUCCESS)
}

/// `tenants settings`: show, or change then show.
async fn tenant_settings(
    cx: &Cx,
    slug: &str,
    set: &[String],
    unset: &[String],
    json: bool,
) -> Result<ExitCode> {
    let changes = lifecycle::settings::parse_pairs(set).map_err(BadInput)?;
    // As the API: one change per key, never both.
    if let Some(k) = unset.iter().find(|k| changes.contains_key(k.as_str())) {
        return Err(BadInput(format!(
            "setting {:?} is both set and unset; give one",
            crate::message::truncate(k)
        ))
        .into());
    }
    let t = if changes.is_empty() && unset.is_empty() {
        tenants::get(&cx.pool, slug).await.map_err(tenant_err)?
    } else {
        lifecycle::update_settings(&cx.pool, slug, &changes, unset, &actor())
            .await
            .map_err(life_err)?
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&t.settings)?);
    } else if let Some(obj) = t.settings.as_object() {
        for (k, v) in obj {
            println!("{k} = {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tenants credentials`.
async fn credentials(cx: &Cx, slug: &str, json: bool) -> Result<ExitCode> {
    let c = lifecycle::credentials::fetch(&cx.pool, &cx.settings, slug)
        .await
        .map_err(life_err)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        println!(
            "server   {}\ndatabase {}\nrole     {}\npassword {}",
            c.server, c.database, c.role, c.password
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `tenants delete`: schedule the drop; `--sync --now` runs it here.
async fn delete(
    cx: &Cx,
    slug: &str,
    no_final_backup: bool,
    now: bool,
    run: &RunOpts,
) -> Result<ExitCode> {
    let grace = if now {
        std::time::Duration::ZERO
    } else {
        std::time::Duration::from_secs(cx.settings.provisioning.delete_grace_days * 86_400)
    };
    let job = lifecycle::delete(
        &cx.pool,
        &cx.settings,
        slug,
        &lifecycle::DeleteOptions {
            no_final_backup,
            grace,
        },
        &actor(),
    )
    .await
    .map_err(life_err)?;
    enqueue::publish_now(&cx.pool, &cx.settings, job.outbox_id.as_slice()).await;
    println!("{}\tdrop_tenant\t{slug}\tscheduled", job.id);
    if run.sync && now {
        let row = crate::runtime::sync::run_existing(
            &cx.pool,
            cx.settings.clone(),
            cx.registry.clone(),
            job.id,
        )
        .await?;
        return enqueue::report(&[row], run.json);
    }
    if run.wait {
        let rows = wait::follow(&cx.pool, &[job.id], run.json).await?;
        return enqueue::report(&rows, run.json);
    }
    Ok(ExitCode::SUCCESS)
}

/// `tenants migrate`: templates first (reported on stderr as each is ready),
/// then one `migrate` job per tenant, enqueued or run with `--sync`.
async fn migrate(
    cx: &Cx,
    targets: MigrationTargets,
    concurrency: u32,
    run: &RunOpts,
) -> Result<ExitCode> {
    if !lifecycle::migrate::CONCURRENCY.contains(&concurrency) {
        return Err(BadInput("--concurrency must be between 1 and 256".into()).into());
    }
    let opts = FleetMigration {
        targets,
        concurrency,
    };
    let plan = lifecycle::migrate::plan(&cx.pool, &cx.settings, &opts, |t| {
        eprintln!("template on {}: {}", t.server, t.template)
    })
    .await
    .map_err(|e| match e {
        LifecycleError::Other(e) => e,
        other => BadInput(other.to_string()).into(),
    })?;
    if plan.jobs.is_empty() {
        eprintln!("no provisioned tenants to migrate");
        return Ok(ExitCode::SUCCESS);
    }
    enqueue::submit(
        &cx.pool,
        cx.settings.clone(),
        cx.registry.clone(),
        plan.jobs,
        run,
    )
    .await
}

/// `tenants rotate-credentials`.
async fn rotate_credentials(cx: &Cx, slug: &str, json: bool) -> Result<ExitCode> {
    let c = lifecycle::credentials::rotate(&cx.pool, &cx.settings, slug, &actor())
        .await
        .map_err(life_err)?;
    if json {
        let v = serde_json::json!({"tenant": c.tenant, "role": c.role, "rotated": true});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "rotated the password of role {} (tenant {})",
            c.role, c.tenant
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `tenants register`: adopt an existing database.
async fn register(cx: &Cx, r: &Registration, json: bool) -> Result<ExitCode> {
    let t = tenants::register(&cx.pool, &cx.settings, r, &actor())
        .await
        .map_err(tenant_err)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&t)?);
    } else {
        println!(
            "registered tenant {} (database {} on {})",
            t.slug, t.db_name, t.db_server
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `tenants list`.
async fn list(cx: &Cx, status: Option<TenantStatus>, json: bool) -> Result<ExitCode> {
    let rows = tenants::list(&cx.pool, status).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let mut table =
            super::table::TextTable::new(&["slug", "plan", "status", "server", "database"]);
        for t in rows {
            table.row([t.slug, t.plan, t.status.to_string(), t.db_server, t.db_name]);
        }
        table.print();
    }
    Ok(ExitCode::SUCCESS)
}
