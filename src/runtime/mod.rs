//! The job runtime: what a job is, how it is stored, published, claimed,
//! run, retried and recorded. Handlers live in `workers/`; this module never
//! knows about any particular kind of job.
//!
//! Files: `job` and `error` (what a kind implements and returns), `registry`
//! (the kinds, type-erased), `state` (job status and origin), `store` (every
//! state change of a job), `relay` (the outbox), `executor` (one attempt),
//! `worker` (the fleet role, its slots and reaper), `sync` (`--sync`),
//! `tenant_lock`, `heavy` (per-server slots), `retry` (backoff), `sessions`
//! (an attempt's database sessions and child programs, ended when it stops).
//!
//! # One job, step by step
//!
//! 1. **Enqueue** (`store::enqueue`, or `enqueue_in` inside a lifecycle
//!    transaction): kind, args, family and tenant are validated, then one
//!    transaction inserts the `jobs` row (`queued`, `run_at`) and an `outbox`
//!    row (the v1 message, due at `run_at`). A live job with the same dedupe
//!    key is returned instead and nothing is written.
//! 2. **Publish** (`relay::relay_once`: at once for the rows the CLI, the API
//!    or the client just wrote, else every worker's relay loop): `mandatory`,
//!    with a publisher confirm, then the row is stamped. Anything short of a
//!    confirm leaves it unpublished, so a relay sends it again.
//! 3. **Take** (`worker`): `basic.get`, one message per free slot, only while
//!    the catalog is known to answer.
//! 4. **Parse** (`JobMessage::parse`): a bad message is dead-lettered with
//!    the reason in a header, then acked.
//! 5. **Find or adopt**: no row means a foreign producer, so `store::adopt`
//!    validates and inserts it (`origin = adopted`); a refusal is
//!    dead-lettered. A row that is not runnable, or a live dedupe-key twin,
//!    is a duplicate: ack and drop. A catalog error requeues the message and
//!    pauses every slot until the catalog answers.
//! 6. **Tenant lock or postpone**: a `TENANT_EXCLUSIVE` kind takes the
//!    tenant's advisory lock (`tenant_lock`); if the tenant is busy,
//!    `store::postpone` moves `run_at` and writes a new outbox row, costing
//!    no attempt.
//! 7. **Claim** (`store::claim`): `queued`/`retrying` and due → `running`,
//!    `attempts + 1`, a lease and a new `claim_token`. No row means someone
//!    else claimed it or it is not due yet (its delayed copy brings it back).
//! 8. **Ack**, right after the claim commits: from here the catalog lease
//!    protects the job, not the delivery.
//! 9. **Run** (`Executor`): the handler in its own task under
//!    `Job::timeout`; a heartbeat extends the lease and checks the tenant
//!    lock. A lost lease cancels the handler and records nothing (`Lost`); a
//!    lost lock, a timeout or a panic is a retryable failure; at the shutdown
//!    deadline the attempt is handed back (`queued`, attempt refunded).
//! 10. **Record** (`Executor::persist`, retried through catalog outages for
//!     half a lease), one transaction fenced on lease owner + claim token +
//!     `running`: success with the handler's events and `job.succeeded`;
//!     `JobError::Postpone` gives the job back (attempt refunded); a failure
//!     becomes `retrying` with a backoff (`RetryPolicy`), or `dead` (fatal,
//!     attempts spent; `failed` under `--sync`), which in the same
//!     transaction leaves the kind's `Job::on_dead` compensation `pending`
//!     (`Job::COMPENSATES`); it runs at once if the attempt still holds the
//!     tenant lock, else later in the compensation loop (`compensation`),
//!     always under the tenant lock, until `done`.
//! 11. **Announce**: the relay publishes the event rows to `{prefix}.events`.
//!
//! The reaper (`worker`) re-drives expired leases as retryable failures (or
//! `dead`, its compensation pending for the loop), republishes runnable
//! jobs whose message went missing (only for families whose queue is empty)
//! and closes `--sync` rows left by a run that died before its claim.
//!
//! # Job states
//!
//! ```text
//!  enqueue / adopt ──► queued ◄──────────────────────────┐ hand_back (shutdown), give_back
//!                        │  ▲ postpone (tenant busy,     │ (JobError::Postpone): attempt refunded
//!                        │  └─┘ before the claim)        │
//!                        ▼ claim (attempts + 1, new claim_token)
//!    retrying ──claim──► running ────────────────────────┘
//!       ▲                  ├── complete ─────────────► succeeded  (+ job.succeeded)
//!       └── retryable ─────┤ (attempts left; also timeout, panic, lock lost, lease expired)
//!                          ├── fatal or attempts spent ► dead      (+ job.dead, then on_dead)
//!                          └── any failure under --sync ► failed   (+ job.failed, then on_dead)
//!
//!  jobs cancel: queued | retrying | running ──► cancelled (+ job.cancelled, audit)
//!  jobs retry:  dead | failed | cancelled   ──► queued    (attempts = 0, audit)
//! ```

pub mod compensation;
mod error;
pub mod executor;
pub mod heavy;
mod job;
mod registry;
pub mod relay;
mod retry;
pub mod sessions;
pub mod state;
pub mod store;
pub mod sync;
pub mod tenant_lock;
pub mod worker;

pub use compensation::Compensation;
pub use error::{JobError, ResultExt};
pub use executor::{Ending, Executor};
pub use job::{Job, JobContext, PendingEvent};
pub use registry::{KindSpec, Registry};
pub use retry::RetryPolicy;
pub use state::{JobStatus, Origin};
