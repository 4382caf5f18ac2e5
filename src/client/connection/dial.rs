//! Dialling a connection: TCP or TLS, the handshake (`HELLO`, `AUTH`, the
//! maintenance opt-in with its replayed windows), the client's name, and
//! the subscriptions a new connection takes over.

use super::*;

impl ManagedConnection {
    /// Opens a connection to `target` and does the handshake.
    pub(super) async fn dial(&self, target: &Endpoint) -> Result<Active, ClientError> {
        let o = &self.shared.options;
        let db = &self.shared.db;
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let settings = transport::settings(o, db);
        let mut cfg = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        // Pushes are numbered as they arrive, so that those sent before the
        // handshake's reply (replays of open windows and of the last
        // completion) can be told from live ones.
        let (tx, rx) = mpsc::unbounded_channel::<(u64, PushInfo)>();
        let arrived = Arc::new(AtomicU64::new(0));
        let (setup_tx, setup_rx) = tokio::sync::watch::channel(None::<u64>);
        if o.protocol == Protocol::Resp3 {
            let arrived = arrived.clone();
            cfg = cfg.set_push_sender(move |info: PushInfo| {
                tx.send((arrived.fetch_add(1, Ordering::SeqCst), info))
            });
        }
        let context = format!("connecting to {target}");
        let setup = tokio::time::timeout(
            o.connect_timeout + o.relaxed_timeout,
            transport::open(
                target,
                &settings,
                cfg,
                o.connect_timeout,
                self.shared.tls.as_ref(),
                &self.shared.sockets,
            ),
        )
        .await
        .map_err(|e| ClientError::connection(context.clone(), e))?;
        let (mut conn, tls, driver) = setup?;
        if o.protocol == Protocol::Resp3 {
            self.listen(generation, rx, setup_rx);
        }
        let named = self.set_name(&mut conn, target).await;
        let maint = match named {
            Ok(()) => self.handshake(&mut conn, target).await,
            Err(e) => Err(e),
        };
        setup_tx.send_replace(Some(arrived.load(Ordering::SeqCst)));
        let maint = maint?;
        self.shared.emit(
            self.id,
            EventKind::Connected {
                endpoint: target.to_string(),
                maint: maint.clone(),
            },
        );
        if self.shared.options.resubscribe {
            self.resubscribe(&mut conn, target).await?;
        }
        Ok(Active {
            conn,
            driver,
            tls,
            generation,
            endpoint: target.clone(),
            maint,
        })
    }

    /// Gives the connection the client's name (`CLIENT SETNAME`), so that
    /// the server's record tells whose connection it is.
    pub(super) async fn set_name(
        &self,
        conn: &mut MultiplexedConnection,
        target: &Endpoint,
    ) -> Result<(), ClientError> {
        let o = &self.shared.options;
        let Some(name) = &o.client_name else {
            return Ok(());
        };
        let mut cmd = redis::cmd("CLIENT");
        cmd.arg("SETNAME").arg(name);
        match tokio::time::timeout(o.relaxed_timeout, conn.send_packed_command(&cmd)).await {
            Ok(Ok(Value::ServerError(e))) => Err(ClientError::handshake(format!(
                "{target} refused CLIENT SETNAME {name}: {e}"
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ClientError::connection(
                format!("{target}: naming the connection (CLIENT SETNAME)"),
                e,
            )),
            Err(_) => Err(ClientError::handshake(format!(
                "{target} did not answer CLIENT SETNAME within {:?}",
                o.relaxed_timeout
            ))),
        }
    }

    pub(super) async fn handshake(
        &self,
        conn: &mut MultiplexedConnection,
        target: &Endpoint,
    ) -> Result<MaintState, ClientError> {
        let o = &self.shared.options;
        if o.mode == Mode::Disabled || o.protocol == Protocol::Resp2 {
            return Ok(MaintState::Off);
        }
        let ty = match o.endpoint_type {
            EndpointTypeSetting::Fixed(t) => t,
            EndpointTypeSetting::Auto => {
                auto_endpoint_type(&target.host, target.port, self.shared.db.tls).await
            }
        };
        let mut cmd = redis::cmd("CLIENT");
        cmd.arg("MAINT_NOTIFICATIONS")
            .arg("ON")
            .arg("moving-endpoint-type")
            .arg(ty.as_str());
        let reply = tokio::time::timeout(o.relaxed_timeout, conn.send_packed_command(&cmd)).await;
        let refusal = match reply {
            Ok(Ok(Value::ServerError(e))) => e.to_string(),
            Ok(Ok(_)) => return Ok(MaintState::On(Some(ty))),
            Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() => {
                return Err(ClientError::connection(
                    format!("{target} closed the connection during the handshake"),
                    e,
                ))
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", o.relaxed_timeout),
        };
        match o.mode {
            Mode::Enabled => Err(ClientError::handshake(format!(
                "{target} refused CLIENT MAINT_NOTIFICATIONS ON ({refusal}); the server does not support maintenance notifications: use mode auto or disabled"
            ))),
            _ => {
                tracing::debug!(conn = self.id, "maintenance notifications off: {refusal}");
                Ok(MaintState::Refused(refusal))
            }
        }
    }

    /// Subscribes a new connection to everything the connection it replaces
    /// was subscribed to, before it is put in use: a subscriber misses no
    /// message across a handoff (it may see one twice, on both connections).
    pub(super) async fn resubscribe(
        &self,
        conn: &mut MultiplexedConnection,
        target: &Endpoint,
    ) -> Result<(), ClientError> {
        let channels = self
            .subs
            .subscribe_on(conn, target, self.shared.options.relaxed_timeout)
            .await?;
        if channels == 0 {
            return Ok(());
        }
        self.shared.emit(
            self.id,
            EventKind::Resubscribed {
                endpoint: target.to_string(),
                channels,
            },
        );
        Ok(())
    }
}
