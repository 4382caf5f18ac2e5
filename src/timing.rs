//! Every fixed duration of the harness, with why it has its value. The
//! maintenance timings an emulated cluster announces (grace, lead, window,
//! settle) are knobs, not constants: see `emulator::Timings`.

use std::time::Duration;

// ---- The suite's clients (README's step list quotes these) ----

/// Response timeout of a suite client outside maintenance: short, so that a
/// request the emulator holds for a switch-over beyond it shows as an error.
pub const SUITE_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Relaxed timeout of a suite client inside a maintenance window: longer than
/// any switch-over the emulator makes.
pub const SUITE_RELAXED_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a suite client keeps its timeouts relaxed without a completion:
/// longer than any scenario's maintenance, shorter than its patience.
pub const SUITE_RELAXED_WINDOW_MAX: Duration = Duration::from_secs(20);
/// How long a suite client stays relaxed after a handoff: a few hundred
/// milliseconds, so that scenarios see the tail end within seconds.
pub const SUITE_POST_HANDOFF_RELAXED: Duration = Duration::from_millis(300);
/// Longest a suite client's handoff may take before it gives up and redials.
pub const SUITE_HANDOFF_TIMEOUT: Duration = Duration::from_secs(3);
/// Response timeout of a client that must not time out (steps that give a
/// slow server time to answer).
pub const PATIENT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

// ---- The target ----

/// MOVING grace of the embedded emulator: short, so scenarios take seconds.
pub const EMULATOR_GRACE: Duration = Duration::from_secs(2);
/// MOVING grace a real cluster announces unless told otherwise.
pub const CLUSTER_GRACE: Duration = Duration::from_secs(15);
/// Beyond three graces, how long anything an action causes may take.
pub const PATIENCE_MARGIN: Duration = Duration::from_secs(10);
/// How long to wait for an action before a database is known.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(30);
/// How long a real cluster is given to replay a completion to a new
/// connection (it may not replay at all; the emulator always does).
pub const CLUSTER_REPLAY_WITHIN: Duration = Duration::from_secs(1);
/// How long creating a database may take (shards start, replicas sync).
pub const CREATE_DATABASE_WITHIN: Duration = Duration::from_secs(60);

// ---- The fault injector's HTTP API ----

/// Bound on one HTTP request to the fault injector.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an action's status is asked for while waiting for its end.
pub const ACTION_POLL: Duration = Duration::from_millis(50);
/// How often a watched action is asked for: close enough to see `running`.
pub const ACTION_WATCH_POLL: Duration = Duration::from_millis(10);
/// How long the emulator's API gives a client to send a request's headers,
/// and then its whole body, before it answers 408 and closes: a client
/// that stops halfway holds nothing for long.
pub const API_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request body the emulator's API reads: an action is a small
/// JSON object (a database spec with its ACL users is under 4 KiB).
pub const API_BODY_LIMIT: usize = 64 * 1024;

// ---- Traffic and raw connections ----

/// Pause between two requests of one traffic task: about 200 requests a
/// second per task, enough to hit every window.
pub const TRAFFIC_PACE: Duration = Duration::from_millis(5);

/// Connections a client may hold open beyond its pool, its handoff workers
/// and one per request its traffic keeps in flight (an old connection stays
/// until its requests in flight are answered), by the server's count: the
/// moment the server takes to notice a close. ST1 (pool 150, 10 workers, 16
/// requests in flight) measured peaks of 164 to 168 against a bound of 178.
pub const SOCKET_SLACK: usize = 2;

/// How long after the server sends SMIGRATED a request of a client that
/// applied it may still be answered MOVED (one sent before it was read).
pub const SMIGRATED_APPLIED_WITHIN: Duration = Duration::from_millis(300);

/// How far from the end of its grace the server's close of a connection
/// left on the old node may be recorded (the grace is timed by the same
/// clock; a busy machine delays the close a little).
pub const GRACE_END_SLACK: Duration = Duration::from_millis(500);

/// How long the server holds each request the steady traffic keeps in flight
/// on its connections (`BLPOP` on an empty list, one after another): well
/// under the suite's response timeout (1 s), so a healthy connection answers
/// it in time, long enough that some are in flight whenever a node closes
/// its connections, and short enough that the requests pipelined behind one
/// on the same connection wait little (the p99 bound of ST2 is 100 ms).
pub const HELD_REQUEST: Duration = Duration::from_millis(50);
/// At most this many held requests per client (one per connection up to
/// it): enough that a client which leaves its connections on a closing
/// node loses some, few enough that a pool of 1,000 is not a queue load.
pub const HELD_REQUESTS_MAX: usize = 8;
/// Pause between two messages of a publisher: about 100 a second, enough for
/// every moment of a switch-over to see one.
pub const PUBLISH_PACE: Duration = Duration::from_millis(10);
/// A phase of traffic shorter than this need not show a success (a request
/// takes a few milliseconds; a phase this long holds dozens).
pub const TRAFFIC_PHASE_MIN: Duration = Duration::from_millis(200);
/// How long traffic may take to show its first successes.
pub const TRAFFIC_WARM_UP: Duration = Duration::from_secs(10);
/// Bound on connecting and on one reply of a raw connection.
pub const RAW_REPLY_WITHIN: Duration = Duration::from_secs(5);
/// Bound on a pipeline of a raw connection.
pub const RAW_PIPELINE_WITHIN: Duration = Duration::from_secs(30);
/// How often a server's state (INFO) is asked for while waiting on it.
pub const SERVER_POLL: Duration = Duration::from_millis(20);
/// How long a request may take to block on the server.
pub const BLOCKED_WITHIN: Duration = Duration::from_secs(5);
/// The longest configured timeout proved on a real request (a reply delayed
/// beyond it); longer ones would slow the suite for little.
pub const PROVED_TIMEOUT_MAX: Duration = Duration::from_secs(3);
/// How soon after MOVING an idle connection must have handed off: well
/// inside the suite's 2 s grace, so that a client waiting for its next
/// command fails.
pub const PROMPT_HANDOFF: Duration = Duration::from_secs(1);
/// How soon after its last failed attempt a client must give a handoff up
/// (it has nothing left to wait for).
pub const PROMPT_GIVE_UP: Duration = Duration::from_millis(50);
/// Slack on a band that must exclude the end of a grace (CH5's half grace).
pub const TIGHT_SLACK: Duration = Duration::from_millis(200);
/// Extra time allowed on top of a band's upper bound before waiting stops:
/// the machine may be busy.
pub const BAND_SLACK: Duration = Duration::from_millis(500);
/// Extra time to wait for something a grace bounds.
pub const GRACE_MARGIN: Duration = Duration::from_secs(5);
/// How long a name may take to resolve before it counts as not resolving.
pub const RESOLVE_CAP: Duration = Duration::from_secs(2);

// ---- Outages (node_failure, proxy_failure) ----

/// How long a rebooted node stays down.
pub const NODE_REBOOT_DOWNTIME: Duration = Duration::from_secs(1);
/// How long a restarted proxy (`proxy_failure` restart) stays down.
pub const PROXY_RESTART_DOWNTIME: Duration = Duration::from_millis(200);
/// A connection the proxy drains (`dns_resolution_change`) closes at its
/// next pause, or after this long if it never pauses (a client that
/// pipelines without end, or holds a transaction open).
pub const DRAIN_WITHIN: Duration = Duration::from_secs(1);

// ---- Shard processes ----

/// How long the guard around a new `redis-server` may take to report its PID.
pub const SHARD_PID_WITHIN: Duration = Duration::from_secs(5);
/// How long a new `redis-server` may take to answer PING.
pub const SHARD_START_WITHIN: Duration = Duration::from_secs(10);
/// How often a shard's replication state is asked for.
pub const REPLICATION_POLL: Duration = Duration::from_millis(10);
/// Bound on connecting to a shard's admin connection.
pub const SHARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on one admin command to a shard.
pub const SHARD_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a shard may take to exit after SIGTERM before it is killed.
pub const SHARD_STOP_WITHIN: Duration = Duration::from_secs(5);

// ---- The cluster client ----

/// Redirects (`MOVED`, `ASK`) one request follows before it gives up.
pub const CLUSTER_MAX_REDIRECTS: usize = 16;
/// Pause before a request answered `TRYAGAIN` (keys of a slot that is
/// moving, split between two nodes) is sent again.
pub const CLUSTER_TRYAGAIN_PAUSE: Duration = Duration::from_millis(20);

// ---- The emulator's proxies ----

/// How long a switch-over waits for its subscribed connections to subscribe on
/// the new primary before it lets the traffic through anyway (a proxy
/// connection does it in a round trip).
pub const SUBSCRIPTIONS_MOVE_WITHIN: Duration = Duration::from_secs(2);

/// Bound on a TLS handshake of a proxied connection.
pub const TLS_ACCEPT_WITHIN: Duration = Duration::from_secs(5);
/// Pause after a failed accept (out of file descriptors, say).
pub const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// A driver's client is connected, or has given up, within this of
/// `create`: one that does neither (it retries a refusal without end) is
/// told as a refusal that never came.
pub const DRIVER_CREATE_WITHIN: Duration = Duration::from_secs(10);
