//! `landlord tenants …`: adopt an existing database as a tenant, list, show.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::{
    cli::{BadInput, actor, catalog},
    config::Settings,
    tenants::{self, Registration, TenantError},
};

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
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
        #[arg(long)]
        json: bool,
    },
    /// All tenants.
    List {
        /// Only tenants with this status.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One tenant.
    Show {
        slug: String,
        #[arg(long)]
        json: bool,
    },
}

fn tenant_err(e: TenantError) -> anyhow::Error {
    match e {
        TenantError::Other(e) => e,
        other => BadInput(other.to_string()).into(),
    }
}

pub async fn run(cmd: TenantsCommand, settings: &Settings) -> Result<ExitCode> {
    let pool = catalog(settings).await?;
    match cmd {
        TenantsCommand::Register {
            slug,
            database,
            server,
            name,
            plan,
            json,
        } => {
            let t = tenants::register(
                &pool,
                settings,
                &Registration {
                    slug,
                    name,
                    plan,
                    server,
                    database,
                },
                &actor(),
            )
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
        TenantsCommand::List { status, json } => {
            let rows = tenants::list(&pool, status.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<24} {:<12} {:<11} {:<10} database",
                    "slug", "plan", "status", "server"
                );
                for t in rows {
                    println!(
                        "{:<24} {:<12} {:<11} {:<10} {}",
                        t.slug, t.plan, t.status, t.db_server, t.db_name
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TenantsCommand::Show { slug, json } => {
            let t = tenants::get(&pool, &slug).await.map_err(tenant_err)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                let v = serde_json::to_value(&t)?;
                if let Some(obj) = v.as_object() {
                    for (k, v) in obj {
                        println!("{k:<15} {v}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
