//! Endpoints files (the format the Go framework uses) and the environment.
//!
//! ```json
//! { "standalone": { "bdb_id": 1, "username": "default", "password": "pw", "tls": false,
//!                   "endpoints": ["redis://127.0.0.1:12000"] } }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

/// Names the endpoints file when set.
pub const ENDPOINTS_ENV: &str = "REDIS_ENDPOINTS_CONFIG_PATH";
/// Names the fault injector when set.
pub const FAULT_INJECTOR_ENV: &str = "FAULT_INJECTION_API_URL";

/// A configuration problem, naming the file, the database and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error(
        "cannot read endpoints file {file}: {source}; set {ENDPOINTS_ENV} to a readable JSON file"
    )]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("endpoints file {file} is not valid JSON: {source}")]
    Json {
        /// The file.
        file: PathBuf,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// A field is missing or has the wrong shape.
    #[error("endpoints file {file}, database {database:?}, field {field:?}: {problem}")]
    Field {
        /// The file.
        file: String,
        /// The database name.
        database: String,
        /// The field.
        field: String,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// The requested database is not in the file.
    #[error("endpoints file {file} has no database named {database:?}; it has: {available}")]
    NoDatabase {
        /// The file.
        file: String,
        /// The requested name.
        database: String,
        /// The names it has.
        available: String,
    },
    /// An environment variable has a bad value.
    #[error("environment variable {name}={value:?}: {problem}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        problem: String,
    },
}

/// An endpoint that is not a `redis://host:port` or `rediss://host:port` URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("endpoint {text:?}: {problem}; expected redis://host:port or rediss://host:port")]
pub struct BadEndpoint {
    /// What was given.
    pub text: String,
    /// What is wrong with it.
    pub problem: String,
}

/// One `redis://` or `rediss://` endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DatabaseEndpoint {
    /// `rediss://`.
    pub tls: bool,
    /// Host name or IP.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl DatabaseEndpoint {
    /// Parses a `redis://host:port` or `rediss://host:port` URL.
    pub fn parse(text: &str) -> Result<Self, BadEndpoint> {
        let bad = |problem: String| BadEndpoint {
            text: text.to_string(),
            problem,
        };
        let url = url::Url::parse(text).map_err(|e| bad(format!("it is not a URL ({e})")))?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => return Err(bad(format!("it has scheme {other:?}"))),
        };
        let host = url
            .host_str()
            .ok_or_else(|| bad("it has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port().unwrap_or(6379);
        Ok(DatabaseEndpoint { tls, host, port })
    }

    /// A `redis://` endpoint at `addr`.
    pub fn plain(addr: std::net::SocketAddr) -> Self {
        DatabaseEndpoint {
            tls: false,
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }

    /// `host:port`, with brackets around IPv6 hosts.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for DatabaseEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        write!(f, "{scheme}://{}", self.address())
    }
}

/// A TLS version, as endpoints and clients bound what they speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[default]
    V12,
    /// TLS 1.3.
    V13,
}

impl TlsVersion {
    /// Parses `1.2` or `1.3` (a `TLSv` or `TLS ` prefix is allowed).
    pub fn parse(s: &str) -> Result<TlsVersion, String> {
        let t = s.trim();
        let t = t
            .strip_prefix("TLSv")
            .or_else(|| t.strip_prefix("TLS "))
            .or_else(|| t.strip_prefix("TLS"))
            .unwrap_or(t);
        match t {
            "1.2" => Ok(TlsVersion::V12),
            "1.3" => Ok(TlsVersion::V13),
            _ => Err(format!(
                "TLS version {s:?} is not supported; use \"1.2\" or \"1.3\""
            )),
        }
    }

    /// `"1.2"` or `"1.3"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::V12 => "1.2",
            TlsVersion::V13 => "1.3",
        }
    }
}

/// One named database of an endpoints file.
#[derive(Clone, Debug, PartialEq)]
pub struct DatabaseConfig {
    /// The key it has in the file.
    pub name: String,
    /// Enterprise database id (number or numeric string in the file).
    pub bdb_id: Option<u64>,
    /// ACL user.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// TLS on.
    pub tls: bool,
    /// Folder with `ca.crt`, `client.crt`, `client.key`.
    pub certificates_location: Option<PathBuf>,
    /// At least one endpoint.
    pub endpoints: Vec<DatabaseEndpoint>,
    /// Enterprise's raw endpoint description, kept as given.
    pub raw_endpoints: Option<Value>,
    /// The discovery service (`host:port` of each node's Sentinel port).
    pub discovery_endpoints: Vec<String>,
}

impl DatabaseConfig {
    /// A database named `name` at `endpoint`, with no id, user or password.
    pub fn at(name: &str, endpoint: DatabaseEndpoint) -> Self {
        DatabaseConfig {
            name: name.to_string(),
            bdb_id: None,
            username: None,
            password: None,
            tls: endpoint.tls,
            certificates_location: None,
            endpoints: vec![endpoint],
            raw_endpoints: None,
            discovery_endpoints: Vec::new(),
        }
    }

    /// The first endpoint, which clients dial.
    pub fn primary_endpoint(&self) -> &DatabaseEndpoint {
        &self.endpoints[0]
    }

    /// The database as endpoints-file JSON.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(id) = self.bdb_id {
            m.insert("bdb_id".into(), id.into());
        }
        if let Some(u) = &self.username {
            m.insert("username".into(), u.clone().into());
        }
        if let Some(p) = &self.password {
            m.insert("password".into(), p.clone().into());
        }
        m.insert("tls".into(), self.tls.into());
        if let Some(c) = &self.certificates_location {
            m.insert(
                "certificatesLocation".into(),
                c.display().to_string().into(),
            );
        }
        m.insert(
            "endpoints".into(),
            self.endpoints
                .iter()
                .map(|e| Value::from(e.to_string()))
                .collect(),
        );
        if let Some(r) = &self.raw_endpoints {
            m.insert("raw_endpoints".into(), r.clone());
        }
        if !self.discovery_endpoints.is_empty() {
            m.insert(
                "discovery_endpoints".into(),
                self.discovery_endpoints.clone().into(),
            );
        }
        Value::Object(m)
    }
}

/// A parsed endpoints file.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointsFile {
    /// Where it came from (for error messages).
    pub source: String,
    /// Databases by name.
    pub databases: BTreeMap<String, DatabaseConfig>,
}

impl EndpointsFile {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|source| ConfigError::Json {
            file: path.to_path_buf(),
            source,
        })?;
        Self::from_value(&path.display().to_string(), &value)
    }

    /// Validates already-parsed JSON; `source` names it in errors.
    pub fn from_value(source: &str, value: &Value) -> Result<Self, ConfigError> {
        let field = |database: &str, field: &str, problem: String| ConfigError::Field {
            file: source.to_string(),
            database: database.to_string(),
            field: field.to_string(),
            problem,
        };
        let Value::Object(top) = value else {
            return Err(field(
                "",
                "",
                format!(
                    "the file must be a JSON object of named databases, found {}",
                    kind_of(value)
                ),
            ));
        };
        let mut databases = BTreeMap::new();
        for (name, db) in top {
            let Value::Object(db) = db else {
                return Err(field(
                    name,
                    "",
                    format!("expected an object, found {}", kind_of(db)),
                ));
            };
            let bdb_id = match db.get("bdb_id") {
                None | Some(Value::Null) => None,
                Some(v) => Some(crate::fault_injector::id_from(v, "").ok_or_else(|| {
                    field(
                        name,
                        "bdb_id",
                        format!("expected a positive integer or a numeric string, found {v}"),
                    )
                })?),
            };
            let string = |key: &str| -> Result<Option<String>, ConfigError> {
                match db.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(other) => Err(field(
                        name,
                        key,
                        format!("expected a string, found {}", kind_of(other)),
                    )),
                }
            };
            let tls = match db.get("tls") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    return Err(field(
                        name,
                        "tls",
                        format!("expected true or false, found {}", kind_of(other)),
                    ))
                }
            };
            let endpoints = match db.get("endpoints") {
                Some(Value::Array(list)) if !list.is_empty() => list
                    .iter()
                    .enumerate()
                    .map(|(i, e)| match e {
                        Value::String(s) => DatabaseEndpoint::parse(s)
                            .map_err(|p| field(name, &format!("endpoints[{i}]"), p.to_string())),
                        other => Err(field(
                            name,
                            &format!("endpoints[{i}]"),
                            format!("expected a redis:// URL string, found {}", kind_of(other)),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Some(Value::Array(_)) => {
                    return Err(field(
                        name,
                        "endpoints",
                        "is empty; expected at least one redis://host:port".into(),
                    ))
                }
                None => {
                    return Err(field(
                        name,
                        "endpoints",
                        "is missing; expected a list of redis://host:port URLs".into(),
                    ))
                }
                Some(other) => {
                    return Err(field(
                        name,
                        "endpoints",
                        format!("expected a list of redis:// URLs, found {}", kind_of(other)),
                    ))
                }
            };
            databases.insert(
                name.clone(),
                DatabaseConfig {
                    name: name.clone(),
                    bdb_id,
                    username: string("username")?,
                    password: string("password")?,
                    tls,
                    certificates_location: string("certificatesLocation")?.map(PathBuf::from),
                    endpoints,
                    raw_endpoints: db.get("raw_endpoints").cloned(),
                    discovery_endpoints: match db.get("discovery_endpoints") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::Array(list)) => list
                            .iter()
                            .enumerate()
                            .map(|(i, e)| match e {
                                Value::String(s) => Ok(s.clone()),
                                other => Err(field(
                                    name,
                                    &format!("discovery_endpoints[{i}]"),
                                    format!(
                                        "expected a host:port string, found {}",
                                        kind_of(other)
                                    ),
                                )),
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                        Some(other) => {
                            return Err(field(
                                name,
                                "discovery_endpoints",
                                format!(
                                    "expected a list of host:port strings, found {}",
                                    kind_of(other)
                                ),
                            ))
                        }
                    },
                },
            );
        }
        Ok(EndpointsFile {
            source: source.to_string(),
            databases,
        })
    }

    /// The database named `name`.
    pub fn database(&self, name: &str) -> Result<&DatabaseConfig, ConfigError> {
        self.databases
            .get(name)
            .ok_or_else(|| ConfigError::NoDatabase {
                file: self.source.clone(),
                database: name.to_string(),
                available: self
                    .databases
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The file as text, its databases in `bdb_id` order (the order a
    /// cluster created them, the standard standalone database first): clients'
    /// suites that take the file's first database (node-redis's) get a
    /// standalone one, as on a real cluster's file, not the first by name.
    pub fn to_text(&self) -> String {
        let mut dbs: Vec<(&String, &DatabaseConfig)> = self.databases.iter().collect();
        dbs.sort_by_key(|(name, d)| (d.bdb_id.unwrap_or(u64::MAX), (*name).clone()));
        let body: Vec<String> = dbs
            .iter()
            .map(|(name, d)| {
                let value = serde_json::to_string_pretty(&d.to_json())
                    .expect("JSON values render")
                    .replace('\n', "\n  ");
                format!("  {}: {value}", Value::from(name.as_str()))
            })
            .collect();
        format!("{{\n{}\n}}\n", body.join(",\n"))
    }

    /// The file as JSON.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.databases
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Where the suite runs: the embedded emulator, or what the environment names.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Start an emulator per scenario.
    Emulator,
    /// A real (or external) cluster.
    External {
        /// The endpoints file.
        endpoints: PathBuf,
        /// The fault injector's base URL.
        fault_injector: String,
    },
}

impl Target {
    /// Reads [`ENDPOINTS_ENV`] and [`FAULT_INJECTOR_ENV`]: both set means external,
    /// neither means the emulator, one alone is an error.
    pub fn from_env() -> Result<Self, ConfigError> {
        let get = |k| {
            std::env::var(k)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        match (get(ENDPOINTS_ENV), get(FAULT_INJECTOR_ENV)) {
            (None, None) => Ok(Target::Emulator),
            (Some(endpoints), Some(url)) => {
                let parsed = url::Url::parse(&url).map_err(|e| ConfigError::Env {
                    name: FAULT_INJECTOR_ENV,
                    value: url.clone(),
                    problem: format!("not a URL ({e}); expected http://host:port"),
                })?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(ConfigError::Env {
                        name: FAULT_INJECTOR_ENV,
                        value: url,
                        problem: "expected an http:// or https:// URL".into(),
                    });
                }
                Ok(Target::External {
                    endpoints: PathBuf::from(endpoints),
                    fault_injector: url.trim_end_matches('/').to_string(),
                })
            }
            (Some(_), None) => Err(ConfigError::Env {
                name: FAULT_INJECTOR_ENV,
                value: String::new(),
                problem: format!(
                    "{ENDPOINTS_ENV} is set but {FAULT_INJECTOR_ENV} is not; set both to run against an external cluster, or neither to use the embedded emulator"
                ),
            }),
            (None, Some(_)) => Err(ConfigError::Env {
                name: ENDPOINTS_ENV,
                value: String::new(),
                problem: format!(
                    "{FAULT_INJECTOR_ENV} is set but {ENDPOINTS_ENV} is not; set both to run against an external cluster, or neither to use the embedded emulator"
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
