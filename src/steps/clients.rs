//! Clients under test: `Given a client "app" with ...`.

use anyhow::anyhow;
use cucumber::given;

use super::params::{EndpointTypeParam, ModeParam};
use super::{MaintWorld, StepResult};
use crate::client::{ClientOptions, EndpointTypeSetting, Protocol};

impl MaintWorld {
    /// Creates a client named `name` with the suite's options changed by `tweak`.
    pub async fn create_client(
        &mut self,
        name: &str,
        tweak: impl FnOnce(&mut ClientOptions),
    ) -> anyhow::Result<()> {
        if self.clients.contains_key(name) {
            return Err(anyhow!(
                "a client named {name:?} exists already in this scenario"
            ));
        }
        let mut options = self.suite_options();
        tweak(&mut options);
        let client = self
            .env()?
            .factory
            .create(name, options)
            .await
            .map_err(|e| anyhow!("creating client {name:?}: {e}"))?;
        self.clients.insert(name.to_string(), client);
        Ok(())
    }
}

/// One connection, the given mode, the endpoint type picked automatically.
#[given(expr = "a client {string} with maintenance notifications {mode}")]
async fn given_client(w: &mut MaintWorld, name: String, mode: ModeParam) -> StepResult {
    w.create_client(&name, |o| o.mode = mode.0).await?;
    Ok(())
}

/// Several connections in the pool.
#[given(expr = "a client {string} with {int} connections and maintenance notifications {mode}")]
async fn given_client_pool(
    w: &mut MaintWorld,
    name: String,
    n: usize,
    mode: ModeParam,
) -> StepResult {
    w.create_client(&name, |o| {
        o.mode = mode.0;
        o.pool_size = n;
    })
    .await?;
    Ok(())
}

/// A fixed MOVING endpoint type.
#[given(
    expr = "a client {string} with maintenance notifications {mode} and endpoint type {endpoint_type}"
)]
async fn given_client_endpoint_type(
    w: &mut MaintWorld,
    name: String,
    mode: ModeParam,
    ty: EndpointTypeParam,
) -> StepResult {
    w.create_client(&name, |o| {
        o.mode = mode.0;
        o.endpoint_type = EndpointTypeSetting::Fixed(ty.0);
    })
    .await?;
    Ok(())
}

/// A RESP2 client.
#[given(expr = "a client {string} using RESP2 with maintenance notifications {mode}")]
async fn given_resp2_client(w: &mut MaintWorld, name: String, mode: ModeParam) -> StepResult {
    w.create_client(&name, |o| {
        o.mode = mode.0;
        o.protocol = Protocol::Resp2;
    })
    .await?;
    Ok(())
}
