//! The target: `Given a standalone database`.

use cucumber::given;

use super::{MaintWorld, StepResult};

/// Sets up the database under test (a fresh emulator, or the external one).
#[given("a standalone database")]
async fn given_a_standalone_database(w: &mut MaintWorld) -> StepResult {
    w.setup_database().await?;
    Ok(())
}
