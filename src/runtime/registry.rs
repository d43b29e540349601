//! The table of job kinds a worker can run, built from `workers::register`.

use std::{collections::BTreeMap, time::Duration};

use futures::future::BoxFuture;

use crate::runtime::{Job, JobContext, JobError, ResultExt};

type RunFn =
    fn(serde_json::Value, JobContext) -> BoxFuture<'static, Result<serde_json::Value, JobError>>;
type DeadFn = fn(serde_json::Value, JobContext, String) -> BoxFuture<'static, Result<(), JobError>>;

/// Everything the runtime needs to know about one kind, with the types erased.
#[derive(Clone, Copy)]
pub struct KindSpec {
    pub kind: &'static str,
    pub queue: &'static str,
    pub needs_tenant: bool,
    /// [`Job::PER_TENANT`]: a schedule may fan it out over tenants.
    pub per_tenant: bool,
    pub tenant_exclusive: bool,
    pub max_attempts: u32,
    /// [`Job::COMPENSATES`]: its end leaves `on_dead` pending.
    pub compensates: bool,
    validate: fn(&serde_json::Value) -> Result<(), String>,
    timeout: fn(&serde_json::Value, &crate::config::Settings) -> Duration,
    run: RunFn,
    on_dead: DeadFn,
}

impl KindSpec {
    /// Parses and validates arguments; the error names the problem.
    pub fn validate(&self, args: &serde_json::Value) -> Result<(), String> {
        (self.validate)(args)
    }

    pub fn timeout(
        &self,
        args: &serde_json::Value,
        settings: &crate::config::Settings,
    ) -> Duration {
        (self.timeout)(args, settings)
    }

    pub fn run(
        &self,
        args: serde_json::Value,
        ctx: JobContext,
    ) -> BoxFuture<'static, Result<serde_json::Value, JobError>> {
        (self.run)(args, ctx)
    }

    /// The kind's compensation after the job died.
    pub fn on_dead(
        &self,
        args: serde_json::Value,
        ctx: JobContext,
        error: String,
    ) -> BoxFuture<'static, Result<(), JobError>> {
        (self.on_dead)(args, ctx, error)
    }
}

fn validate_erased<J: Job>(args: &serde_json::Value) -> Result<(), String> {
    let job: J = serde_json::from_value(args.clone())
        .map_err(|e| crate::message::limit(&format!("invalid arguments for {}: {e}", J::KIND)))?;
    job.validate()
}

fn timeout_erased<J: Job>(
    args: &serde_json::Value,
    settings: &crate::config::Settings,
) -> Duration {
    serde_json::from_value::<J>(args.clone())
        .map(|j| j.timeout(settings))
        .unwrap_or(settings.worker.job_timeout)
}

fn run_erased<J: Job>(
    args: serde_json::Value,
    ctx: JobContext,
) -> BoxFuture<'static, Result<serde_json::Value, JobError>> {
    Box::pin(async move {
        let job: J = serde_json::from_value(args).map_err(|e| {
            JobError::fatal(crate::message::limit(&format!(
                "invalid arguments for {}: {e}",
                J::KIND
            )))
        })?;
        job.run(&ctx).await
    })
}

fn on_dead_erased<J: Job>(
    args: serde_json::Value,
    ctx: JobContext,
    error: String,
) -> BoxFuture<'static, Result<(), JobError>> {
    Box::pin(async move {
        let job: J = serde_json::from_value(args)
            .fatal_ctx(format_args!("invalid arguments for {}", J::KIND))?;
        job.on_dead(&ctx, &error).await
    })
}

/// The registered kinds.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, KindSpec>,
}

impl Registry {
    pub fn register<J: Job>(&mut self) -> &mut Self {
        self.kinds.insert(
            J::KIND,
            KindSpec {
                kind: J::KIND,
                queue: J::QUEUE,
                needs_tenant: J::NEEDS_TENANT,
                per_tenant: J::PER_TENANT,
                tenant_exclusive: J::TENANT_EXCLUSIVE,
                max_attempts: J::MAX_ATTEMPTS,
                compensates: J::COMPENSATES,
                validate: validate_erased::<J>,
                timeout: timeout_erased::<J>,
                run: run_erased::<J>,
                on_dead: on_dead_erased::<J>,
            },
        );
        self
    }

    pub fn get(&self, kind: &str) -> Option<&KindSpec> {
        self.kinds.get(kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }

    /// This registry without the kinds named by `registry.without.KIND`
    /// failpoints: a worker built that way behaves like an older build that
    /// lacks those kinds (rolling-deploy tests and the chaos soak).
    pub fn without_failpoint_kinds(mut self) -> Self {
        self.kinds.retain(|kind, _| {
            let forget = crate::failpoint::listed(&format!("registry.without.{kind}"));
            if forget {
                tracing::warn!(kind, "failpoint: this worker does not know the kind");
            }
            !forget
        });
        self
    }
}
