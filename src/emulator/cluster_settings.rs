//! Settings of the whole cluster (`update_cluster_config`, `rladmin tune
//! cluster`), read by every database's proxies and actions.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// Settings of the cluster that every database's proxies read
/// (`update_cluster_config`).
#[derive(Debug)]
pub struct ClusterSettings {
    maint_notifications: std::sync::atomic::AtomicBool,
    /// `endpoint_rebind_propagation_grace_time`, once tuned.
    rebind_grace: Mutex<Option<std::time::Duration>>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            maint_notifications: std::sync::atomic::AtomicBool::new(true),
            rebind_grace: Mutex::new(None),
        }
    }
}

impl ClusterSettings {
    /// `client_maint_notifications`: whether the proxies accept
    /// `CLIENT MAINT_NOTIFICATIONS ON` and send notifications at all.
    pub fn maint_notifications(&self) -> bool {
        self.maint_notifications.load(Ordering::SeqCst)
    }

    /// Turns maintenance notifications on or off for the whole cluster.
    pub fn set_maint_notifications(&self, on: bool) {
        self.maint_notifications.store(on, Ordering::SeqCst);
    }

    /// The MOVING grace of every later rebind, as `rladmin tune cluster
    /// endpoint_rebind_propagation_grace_time` set it; `None` until tuned.
    pub fn rebind_grace(&self) -> Option<std::time::Duration> {
        *self.rebind_grace.lock().unwrap()
    }

    /// Tunes the MOVING grace of later rebinds.
    pub fn set_rebind_grace(&self, grace: std::time::Duration) {
        *self.rebind_grace.lock().unwrap() = Some(grace);
    }

    /// Every setting back to its default.
    pub fn reset(&self) {
        self.set_maint_notifications(true);
        *self.rebind_grace.lock().unwrap() = None;
    }
}
