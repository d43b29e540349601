//! The job runtime: what a job is, how it is stored, published, claimed,
//! run, retried and recorded. Handlers live in `workers/`; this module never
//! knows about any particular kind of job.

mod error;
pub mod executor;
pub mod heavy;
mod job;
mod registry;
pub mod relay;
mod retry;
pub mod store;
pub mod sync;
pub mod tenant_lock;
pub mod worker;

pub use error::JobError;
pub use executor::{Ending, Executor};
pub use job::{Job, JobContext, PendingEvent};
pub use registry::{KindSpec, Registry};
pub use retry::RetryPolicy;
