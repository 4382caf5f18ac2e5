//! What a node connection of a cluster client tells the cluster client it
//! belongs to: the slot moves it announced and the sharded channels it lost.
//! The connection knows only this trait; the cluster client implements it
//! (so neither module imports the other both ways).

use crate::notification::SlotMove;

/// The cluster client's side of its node connections' notifications.
pub(crate) trait SlotEvents: Send + Sync {
    /// SMIGRATING `seq` on connection `conn`: these slots are moving.
    fn on_smigrating(&self, conn: u64, seq: i64, slots: &str);
    /// SMIGRATED `seq` on connection `conn`: the slots moved there.
    fn on_smigrated(&self, conn: u64, seq: i64, moves: &[SlotMove]);
    /// A node told connection `conn` it no longer serves sharded `channel`.
    fn on_unsubscribed(&self, conn: u64, channel: String);
}
