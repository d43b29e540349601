//! Job handlers, one module per job kind, and the one list that registers them.

pub mod analyze;
pub mod backup;
pub mod drop_pre_restore;
pub mod drop_tenant;
pub mod maintenance;
pub mod migrate;
pub mod ping;
pub mod provision;
pub mod restore;
pub mod verify_backup;
pub mod welcome_mail;

use crate::runtime::Registry;

/// Every job kind this build can run.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    r.register::<ping::Ping>()
        .register::<analyze::Analyze>()
        .register::<provision::Provision>()
        .register::<welcome_mail::WelcomeMail>()
        .register::<drop_tenant::DropTenant>()
        .register::<migrate::Migrate>()
        .register::<maintenance::Maintenance>()
        .register::<backup::Backup>()
        .register::<restore::Restore>()
        .register::<verify_backup::VerifyBackup>()
        .register::<drop_pre_restore::DropPreRestore>();
    r
}
