// The maint-e2e driver for node-redis: protocol 1 of docs/DRIVERS.md.
//
// One JSON object per line on standard input (a request), one per line on
// standard output (a response, or an event). Requests run concurrently; a
// response carries its request's id. node-redis is configured only through
// its public options, and observed only through the diagnostics channel its
// maintainers document for maintenance notifications ("redis.maintenance",
// published when REDIS_EMIT_DIAGNOSTICS is set). One process serves one
// client under test, so every event of the channel is that client's.

import diagnostics from "node:diagnostics_channel";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";
import readline from "node:readline";

process.env.REDIS_EMIT_DIAGNOSTICS = "1";
const { createClient, createClientPool } = await import("redis");
const version = createRequire(import.meta.url)("redis/package.json").version;

const PROTOCOL = 1;

// The settings of `create` this driver maps onto node-redis; any other is
// refused as not applicable, with its name.
const SETTINGS = [
  "host", "port", "name", "maint", "endpoint_type", "response_timeout",
  "connect_timeout", "relaxed_timeout", "pool_size", "protocol", "username",
  "password", "retries", "tls",
];

// The driver's monotonic clock, in seconds.
const now = () => performance.now() / 1000;

const emit = (message) => process.stdout.write(JSON.stringify(message) + "\n");

class NotApplicable extends Error {}

const clients = new Map();

// What the client's maintenance handling publishes: the notifications it
// acted on, as it saw them.
diagnostics.subscribe("redis.maintenance", (event) => {
  for (const name of clients.keys()) {
    const push = event?.data?.push ?? [];
    emit({
      event: "handled",
      client: name,
      at: now(),
      connection: null,
      notification: { kind: String(event?.type ?? push[0]), seq: push[1] !== undefined ? Number(push[1]) : null },
    });
  }
});

const ms = (seconds) => (seconds === null || seconds === undefined ? undefined : Math.round(seconds * 1000));

async function create(req) {
  const name = req.client;
  const s = req.settings ?? {};
  const unknown = Object.keys(s).filter((k) => !SETTINGS.includes(k)).sort();
  if (unknown.length) throw new NotApplicable(`node-redis's driver has no setting ${unknown.join(", ")}`);
  if (s.retries !== undefined && s.retries !== 0) {
    throw new NotApplicable("node-redis does not retry a failed command; only retries 0 is expressible");
  }
  const options = {
    socket: { host: s.host, port: s.port, connectTimeout: ms(s.connect_timeout) },
    RESP: s.protocol ?? 3,
    name: s.name ?? name,
    maintNotifications: s.maint ?? "auto",
    username: s.username,
    password: s.password,
  };
  if (s.tls) {
    // No CA file: Node's own roots.
    options.socket.tls = true;
    if (s.tls.ca_file) options.socket.ca = readFileSync(s.tls.ca_file);
    if (s.tls.cert_file) options.socket.cert = readFileSync(s.tls.cert_file);
    if (s.tls.key_file) options.socket.key = readFileSync(s.tls.key_file);
    options.socket.rejectUnauthorized = s.tls.verify !== false;
  }
  if (s.endpoint_type) options.maintEndpointType = s.endpoint_type;
  if (s.relaxed_timeout !== undefined) {
    options.maintRelaxedCommandTimeout = ms(s.relaxed_timeout);
    options.maintRelaxedSocketTimeout = ms(s.relaxed_timeout);
  }
  if (s.response_timeout !== undefined && s.response_timeout !== null) {
    // A reply that does not come in time fails the command, sent or not.
    options.commandOptions = { timeout: ms(s.response_timeout), rejectInFlight: true };
  }
  const size = s.pool_size ?? 1;
  const client = size > 1
    ? createClientPool(options, { minimum: size, maximum: size })
    : createClient(options);
  // Errors reach the requests that meet them; the client's own stream of
  // them is only logged.
  client.on("error", (e) => process.stderr.write(`${name}: ${e?.name}: ${e?.message}\n`));
  try {
    await client.connect();
  } catch (e) {
    // Refused: nothing of it may go on trying in the background.
    client.destroy();
    throw e;
  }
  clients.set(name, client);
  return {};
}

function client(req) {
  const c = clients.get(req.client);
  if (!c) throw new Error(`no client ${JSON.stringify(req.client)}; create it first`);
  return c;
}

function plain(reply) {
  if (reply === null || reply === undefined) return null;
  if (Buffer.isBuffer(reply)) return reply.toString("utf8");
  if (Array.isArray(reply) || reply instanceof Set) return [...reply].map(plain);
  if (reply instanceof Map) return [...reply.entries()].map(([k, v]) => [plain(k), plain(v)]);
  if (typeof reply === "number") return Number.isInteger(reply) ? reply : String(reply);
  if (typeof reply === "object") return Object.entries(reply).map(([k, v]) => [k, plain(v)]);
  return reply;
}

function outcomeOf(e) {
  const name = e?.constructor?.name ?? e?.name ?? "Error";
  if (/Timeout/i.test(name)) return "timeout";
  if (["SimpleError", "BlobError", "ErrorReply"].includes(name)) return "server";
  return "connection";
}

async function command(req) {
  const c = client(req);
  const started = now();
  try {
    const reply = await c.sendCommand(req.args);
    return { outcome: "ok", reply: plain(reply), started, ended: now() };
  } catch (e) {
    const outcome = outcomeOf(e);
    return {
      outcome,
      error: outcome === "server" ? String(e?.message ?? e) : `${e?.constructor?.name ?? "Error"}: ${e?.message ?? e}`,
      started,
      ended: now(),
    };
  }
}

async function close(req) {
  const c = clients.get(req.client);
  clients.delete(req.client);
  if (c) await c.close().catch(() => c.destroy());
  return {};
}

const OPS = {
  hello: async () => ({ protocol: PROTOCOL, client: "node-redis", version, settings: SETTINGS }),
  clock: async () => ({ now: now() }),
  create,
  command,
  close,
};

async function serve(req) {
  const id = req.id ?? null;
  const op = OPS[req.op];
  try {
    if (!op) throw new Error(`unknown op '${req.op}'; protocol ${PROTOCOL} has ${Object.keys(OPS).sort().join(", ")}`);
    emit({ id, ok: true, ...(await op(req)) });
  } catch (e) {
    if (e instanceof NotApplicable) emit({ id, ok: false, not_applicable: true, error: e.message });
    else emit({ id, ok: false, error: `${e?.constructor?.name ?? "Error"}: ${e?.message ?? e}` });
  }
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    emit({ id: null, ok: false, error: `not JSON (${e.message}): ${line.slice(0, 200)}` });
    continue;
  }
  if (req.op === "bye") break;
  serve(req);
}
for (const name of [...clients.keys()]) await close({ client: name });
emit({ event: "bye", at: now() });
process.exit(0);
