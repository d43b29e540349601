//! A tenant's states as the catalog records them: its status, where its data
//! lives (isolation) and how far provisioning got (`provision_step`).
//!
//! Each enum lists exactly the values of its column's CHECK constraint
//! (`migrations/catalog/0001_catalog.sql`, `0003_lifecycle.sql`;
//! `text_enum::check_lists` tests it against the migrated catalog). Questions
//! asked of these states in more than one place are answered here, once.
//! Never compare these states as strings outside SQL.

use super::Tenant;
use crate::text_enum::text_enum;

text_enum! {
    /// `tenants.status`.
    pub enum TenantStatus("status") {
        /// The provisioning saga is running (or will be retried).
        Provisioning = "provisioning",
        Active = "active",
        /// Its role has no LOGIN; its data is kept.
        Inactive = "inactive",
        /// Like inactive, set by an operator with a reason.
        Suspended = "suspended",
        /// Provisioning died; what it created was dropped.
        Failed = "failed",
        /// Waiting for `drop_tenant` (the grace period).
        Deleting = "deleting",
        Deleted = "deleted",
    }
}

impl TenantStatus {
    /// Active, inactive or suspended: provisioned, not being deleted, and
    /// free to move between these three.
    pub fn is_in_service(self) -> bool {
        match self {
            Self::Active | Self::Inactive | Self::Suspended => true,
            Self::Provisioning | Self::Failed | Self::Deleting | Self::Deleted => false,
        }
    }

    /// In service or failed: what `tenants delete` accepts.
    pub fn is_deletable(self) -> bool {
        self.is_in_service() || self == Self::Failed
    }
}

text_enum! {
    /// `tenants.isolation`: where a tenant's data lives.
    pub enum Isolation("isolation") {
        /// A database of its own.
        Database = "database",
        /// Its rows in the shared database, isolated by row-level security.
        Shared = "shared",
    }
}

text_enum! {
    /// `tenants.provision_step`, the provisioning saga's persisted state:
    /// pending → database → migrated → role → done.
    pub enum ProvisionStep("provisioning step") {
        Pending = "pending",
        /// The database exists.
        Database = "database",
        /// Its migrations are applied.
        Migrated = "migrated",
        /// Its login role exists and its credentials are stored.
        Role = "role",
        Done = "done",
    }
}

impl ProvisionStep {
    /// Steps completed (0 to 4), for progress reports.
    pub fn index(self) -> u64 {
        match self {
            Self::Pending => 0,
            Self::Database => 1,
            Self::Migrated => 2,
            Self::Role => 3,
            Self::Done => 4,
        }
    }
}

impl Tenant {
    /// The provisioning saga finished (`provision_step = done`).
    pub fn is_provisioned(&self) -> bool {
        self.provision_step == ProvisionStep::Done
    }

    /// Provisioned and not deleted: its data exists, in a database of its
    /// own or as its rows in the shared one (what a backup needs).
    pub fn has_data(&self) -> bool {
        self.is_provisioned() && self.status != TenantStatus::Deleted
    }

    /// Has its own provisioned database that still exists.
    pub fn has_own_database(&self) -> bool {
        self.isolation == Isolation::Database && self.has_data()
    }

    /// A shared tenant whose rows exist in the shared database.
    pub fn has_shared_rows(&self) -> bool {
        self.isolation == Isolation::Shared && self.has_data()
    }

    /// In service and provisioned: what tenant migrations apply to.
    pub fn is_migratable(&self) -> bool {
        self.status.is_in_service() && self.is_provisioned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_service_is_active_inactive_or_suspended() {
        let in_service: Vec<_> = TenantStatus::ALL
            .iter()
            .filter(|s| s.is_in_service())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(in_service, ["active", "inactive", "suspended"]);
        assert!(TenantStatus::Failed.is_deletable());
        assert!(!TenantStatus::Deleting.is_deletable());
    }
}
