//! The target: `Given a standalone database`.

use cucumber::given;

use super::{MaintWorld, StepResult};

/// Sets up the database under test (a fresh emulator, or the external one).
#[given("a standalone database")]
async fn given_a_standalone_database(w: &mut MaintWorld) -> StepResult {
    w.setup_database().await?;
    Ok(())
}

/// The scenario's database is a TLS one whose certificates come from the
/// cluster's CA (the emulator's own, or the one the endpoints file names).
#[given("the database uses TLS with certificates from the cluster's CA")]
async fn given_tls_database(w: &mut MaintWorld) -> StepResult {
    w.use_tls_database().await?;
    Ok(())
}

/// The scenario's database has several primary shards behind one endpoint;
/// the proxy routes each key to its shard by hash slot.
#[given(expr = "a database of {int} shards behind one endpoint")]
async fn given_sharded_database(w: &mut MaintWorld, shards: u32) -> StepResult {
    w.use_sharded_database(shards).await?;
    Ok(())
}
