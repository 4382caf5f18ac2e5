//! Negative controls, written as plain claims: `Then the claim fails that
//! <any Then step>, saying "<words>"`. The claim is run as its own step
//! would run it; the control passes only when it fails, and for the stated
//! reason (its failure says those words). A control whose claim holds, or
//! fails for another reason, fails the scenario: a claim that cannot fail
//! proves nothing, and one that fails for the wrong reason proves the
//! wrong thing.

use futures::FutureExt as _;

use cucumber::gherkin::{Step, StepType};
use cucumber::then;

use super::{MaintWorld, StepResult};

/// Runs the `Then` step `claim` and requires it to fail saying `words`.
#[then(regex = r#"^the claim fails that (.+), saying "((?:[^"\\]|\\.)*)"$"#)]
async fn then_claim_fails(
    w: &mut MaintWorld,
    step: &Step,
    claim: String,
    words: String,
) -> StepResult {
    let mut inner = step.clone();
    inner.ty = StepType::Then;
    inner.value = claim.clone();
    let steps = <MaintWorld as cucumber::World>::collection();
    let found = steps
        .find(&inner)
        .map_err(|e| anyhow::anyhow!("the claim {claim:?} matches several steps: {e}"))?;
    let Some((run, _, _, context)) = found else {
        fail!("no step reads {claim:?}; the claim must be one of the Then steps README lists");
    };
    let outcome = std::panic::AssertUnwindSafe(run(w, context))
        .catch_unwind()
        .await;
    let failure = match outcome {
        Ok(()) => fail!(
            "the claim held: {claim}; this control's client was meant to fail it (saying {words:?}), so the claim cannot tell the two apart"
        ),
        Err(payload) => panic_text(payload),
    };
    if !failure.contains(&words) {
        fail!(
            "the claim failed, but not saying {words:?} (for another reason than the control states): {claim}:\n{failure}"
        );
    }
    tracing::info!("control: {claim} failed as expected, saying {words:?}");
    Ok(())
}

/// The text a failed step panicked with.
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => match p.downcast::<&'static str>() {
            Ok(s) => (*s).to_string(),
            Err(_) => "a failure without words".into(),
        },
    }
}
