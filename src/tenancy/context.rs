//! The tenant context and the scoped executor. A [`TenantContext`] says who
//! is asking (tenant, channel, actor, superuser); [`TenantDb::begin`] opens a
//! transaction with that tenant set transaction-locally and signed, so it is
//! safe behind a transaction pooler and cannot be switched by SQL sent on the
//! connection. `for_tenant` and `without_tenant` are for superusers only and
//! each use is written to the database's audit table first, with who, what
//! and why; `without_tenant` runs on a separate BYPASSRLS role.
//!
//! A context on a channel whose tenancy is off (the seed's hybrid case: the
//! `site` channel with `tenant_mode = single`) runs unfiltered, on the
//! BYPASSRLS role too: that is the configuration, not a bypass, so it is not
//! audited (only logged at debug level). Without a bypass role it is refused.
//!
//! Never sets a session-level tenant, never lets a non-superuser bypass.

use std::{collections::HashMap, sync::Mutex};

use secrecy::{ExposeSecret, SecretSlice};
use sqlx::{PgPool, Postgres, Transaction};

use super::{EnforcementMode, SIGNATURE_SETTING, TENANT_SETTING, config::TenancyConfig, sign};

/// Who is asking, resolved from a token (see `jwt`) or built by a job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantContext {
    /// The tenant's key in the tenant column; `None` = no tenant (CLI, jobs).
    pub tenant: Option<String>,
    pub channel: String,
    pub actor: String,
    pub superuser: bool,
}

/// Why a scoped transaction was refused.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error("{0} is for superusers only")]
    NotSuperuser(&'static str),
    #[error("tenancy is enabled but TENANCY_CONTEXT_SECRET is not set")]
    NoSecret,
    #[error("no bypass role configured (TENANCY_BYPASS_URL)")]
    NoBypass,
    #[error(
        "channel {0:?} is not isolated (its tenancy is off), so its queries run unfiltered on the \
         BYPASSRLS role, but no bypass role is configured (TENANCY_BYPASS_URL)"
    )]
    UnisolatedNoBypass(String),
    #[error("a reason is required for {0}")]
    NoReason(&'static str),
    #[error("tenant {0:?} is not a valid tenant key")]
    BadTenant(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Transactions scoped to a tenant on a shared database.
pub struct TenantDb {
    pool: PgPool,
    bypass: Option<PgPool>,
    secret: Option<SecretSlice<u8>>,
    mode: EnforcementMode,
    /// The configuration, for which channels are isolated.
    config: TenancyConfig,
    log_bypasses: bool,
    alert_violations: bool,
    /// Signatures by tenant (TENANCY_CACHE_CONTEXT).
    cache: Option<Mutex<HashMap<String, String>>>,
}

fn valid_key(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl TenantDb {
    /// `pool` connects as the application's role (not a superuser, no
    /// BYPASSRLS); `bypass`, if given, as a BYPASSRLS role for `without_tenant`
    /// and for the channels whose tenancy is off.
    pub fn new(
        pool: PgPool,
        bypass: Option<PgPool>,
        cfg: &TenancyConfig,
    ) -> Result<Self, TenancyError> {
        let mode = cfg.effective_mode();
        if mode != EnforcementMode::Disabled && cfg.context_secret.is_none() {
            return Err(TenancyError::NoSecret);
        }
        Ok(Self {
            pool,
            bypass,
            secret: cfg.context_secret.clone(),
            mode,
            config: cfg.clone(),
            log_bypasses: cfg.log_bypasses.value,
            alert_violations: cfg.alert_violations.value,
            cache: cfg.cache_context.value.then(|| Mutex::new(HashMap::new())),
        })
    }

    fn signature(&self, tenant: &str) -> Result<String, TenancyError> {
        let secret = self.secret.as_ref().ok_or(TenancyError::NoSecret)?;
        if let Some(cache) = &self.cache
            && let Ok(c) = cache.lock()
            && let Some(sig) = c.get(tenant)
        {
            return Ok(sig.clone());
        }
        let sig = sign(secret.expose_secret(), tenant);
        if let Some(cache) = &self.cache
            && let Ok(mut c) = cache.lock()
        {
            if c.len() > 10_000 {
                c.clear();
            }
            c.insert(tenant.to_string(), sig.clone());
        }
        Ok(sig)
    }

    async fn scoped(&self, tenant: &str) -> Result<Transaction<'static, Postgres>, TenancyError> {
        if !valid_key(tenant) {
            return Err(TenancyError::BadTenant(tenant.chars().take(80).collect()));
        }
        let mut tx = self.pool.begin().await?;
        if self.mode != EnforcementMode::Disabled {
            let sig = self.signature(tenant)?;
            sqlx::query("SELECT set_config($1, $2, true), set_config($3, $4, true)")
                .bind(TENANT_SETTING)
                .bind(tenant)
                .bind(SIGNATURE_SETTING)
                .bind(sig)
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// Whether contexts on `channel` are isolated (see
    /// [`TenancyConfig::channel_enabled`]).
    pub fn channel_isolated(&self, channel: &str) -> bool {
        self.config.channel_enabled(channel)
    }

    /// A transaction as `ctx`: its tenant set for this transaction only. A
    /// context without a tenant gets a plain transaction, which strict mode
    /// refuses at the first protected query and soft mode records. A context
    /// on a channel that is not isolated (while row-level security is
    /// enforced) runs unfiltered on the bypass role, whatever its tenant, as
    /// the seed's single-tenant channels do; without a bypass role that is
    /// [`TenancyError::UnisolatedNoBypass`].
    pub async fn begin(
        &self,
        ctx: &TenantContext,
    ) -> Result<Transaction<'static, Postgres>, TenancyError> {
        if self.mode != EnforcementMode::Disabled && !self.channel_isolated(&ctx.channel) {
            let bypass = self
                .bypass
                .as_ref()
                .ok_or_else(|| TenancyError::UnisolatedNoBypass(ctx.channel.clone()))?;
            tracing::debug!(actor = %ctx.actor, channel = %ctx.channel, "unfiltered transaction: the channel is not isolated");
            return Ok(bypass.begin().await?);
        }
        match &ctx.tenant {
            Some(t) => self.scoped(t).await,
            None => {
                if self.mode == EnforcementMode::Soft && self.alert_violations {
                    tracing::warn!(actor = %ctx.actor, channel = %ctx.channel, "transaction without a tenant context (soft mode: allowed, recorded)");
                }
                Ok(self.pool.begin().await?)
            }
        }
    }

    async fn audit(
        &self,
        ctx: &TenantContext,
        action: &str,
        tenant: Option<&str>,
        why: &str,
    ) -> Result<(), TenancyError> {
        if !self.log_bypasses || self.mode == EnforcementMode::Disabled {
            return Ok(());
        }
        // Its own statement, committed before the work: the record stays
        // even if the work rolls back.
        sqlx::query("SELECT landlord_tenancy.record_bypass($1, $2, $3, $4, $5)")
            .bind(&ctx.actor)
            .bind(&ctx.channel)
            .bind(action)
            .bind(tenant)
            .bind(why)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Superusers only: a transaction as another tenant, audited.
    pub async fn for_tenant(
        &self,
        ctx: &TenantContext,
        tenant: &str,
        why: &str,
    ) -> Result<Transaction<'static, Postgres>, TenancyError> {
        if !ctx.superuser {
            return Err(TenancyError::NotSuperuser("for_tenant"));
        }
        if why.trim().is_empty() {
            return Err(TenancyError::NoReason("for_tenant"));
        }
        if !valid_key(tenant) {
            return Err(TenancyError::BadTenant(tenant.chars().take(80).collect()));
        }
        self.audit(ctx, "for_tenant", Some(tenant), why).await?;
        self.scoped(tenant).await
    }

    /// Superusers only: a transaction that sees every tenant, on the bypass
    /// role, audited.
    pub async fn without_tenant(
        &self,
        ctx: &TenantContext,
        why: &str,
    ) -> Result<Transaction<'static, Postgres>, TenancyError> {
        if !ctx.superuser {
            return Err(TenancyError::NotSuperuser("without_tenant"));
        }
        if why.trim().is_empty() {
            return Err(TenancyError::NoReason("without_tenant"));
        }
        let bypass = self.bypass.as_ref().ok_or(TenancyError::NoBypass)?;
        self.audit(ctx, "without_tenant", None, why).await?;
        Ok(bypass.begin().await?)
    }
}
