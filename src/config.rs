//! Configuration: a serde struct read from TOML, overridden by CLI flags, checked by
//! [`Config::validate`] separately from loading.
//!
//! Owns: every key, its default, its flag and its validation. May call: `auth` (key
//! checks).
//!
//! Every key is declared once, in the `config_keys!` table below (field, default, flag), and
//! documented there, in `config/ssegate.toml` and in the README table.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

pub use crate::auth::JwtAlgorithm;

/// Declares every key once: `key: Type = default, flag { … }` makes the [`Config`] field
/// (the leading doc comment and serde attributes go on it), its value in `Default`, the
/// [`Cli`] flag (the attributes in `flag { … }`, with the flag's help) and the line of
/// [`Cli::load`] that lays the flag over the file. The flag's type follows the key's: a
/// `T` key gets an `Option<T>` flag, set when given; an `Option<T>` key gets an `Option<T>`
/// flag that sets `Some`; a `Vec<T>` key gets a repeatable flag that replaces the list when
/// given at least once.
macro_rules! config_keys {
    // Normalises each key to `{ [key attrs] key: Type = default; [flag attrs] [flag type] how }`.
    (@keys [$($done:tt)*] $(#[$attr:meta])* $key:ident: Option<$ty:ty> = $default:expr,
        flag { $(#[$flag:meta])* } $($rest:tt)*) => {
        config_keys!(@keys [$($done)* { [$(#[$attr])*] $key: Option<$ty> = $default;
            [$(#[$flag])*] [Option<$ty>] set_some }] $($rest)*);
    };
    (@keys [$($done:tt)*] $(#[$attr:meta])* $key:ident: Vec<$ty:ty> = $default:expr,
        flag { $(#[$flag:meta])* } $($rest:tt)*) => {
        config_keys!(@keys [$($done)* { [$(#[$attr])*] $key: Vec<$ty> = $default;
            [$(#[$flag])*] [Vec<$ty>] replace }] $($rest)*);
    };
    (@keys [$($done:tt)*] $(#[$attr:meta])* $key:ident: $ty:ty = $default:expr,
        flag { $(#[$flag:meta])* } $($rest:tt)*) => {
        config_keys!(@keys [$($done)* { [$(#[$attr])*] $key: $ty = $default;
            [$(#[$flag])*] [Option<$ty>] set }] $($rest)*);
    };
    (@keys [$({ [$(#[$attr:meta])*] $key:ident: $ty:ty = $default:expr;
        [$(#[$flag:meta])*] [$($flag_ty:tt)*] $how:ident })*]) => {
        /// The gateway's configuration. Every field has a default, so an empty file (or none)
        /// serves on `127.0.0.1:8080` at once.
        #[derive(Debug, Clone, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $($(#[$attr])* pub $key: $ty,)*
        }

        impl Default for Config {
            fn default() -> Self {
                Config {
                    $($key: $default,)*
                }
            }
        }

        /// Command-line flags. Each flag overrides the key of the same name in the file.
        #[derive(Debug, Parser)]
        #[command(
            name = "ssegate",
            version,
            about = "Thread-per-core SSE push gateway (Mercure protocol)"
        )]
        pub struct Cli {
            /// TOML configuration file; without it the embedded defaults apply.
            #[arg(long, short = 'c')]
            pub config: Option<PathBuf>,
            /// Print the effective configuration and exit.
            #[arg(long)]
            pub check_config: bool,
            $($(#[$flag])* pub $key: $($flag_ty)*,)*
        }

        impl Cli {
            /// Lays every flag given over `c`.
            fn lay_over(&self, c: &mut Config) {
                $($how(&self.$key, &mut c.$key);)*
            }
        }
    };
    ($($keys:tt)*) => {
        config_keys!(@keys [] $($keys)*);
    };
}

/// A flag given replaces its key.
fn set<T: Clone>(flag: &Option<T>, key: &mut T) {
    if let Some(v) = flag {
        *key = v.clone();
    }
}

/// A flag given replaces its optional key.
fn set_some<T: Clone>(flag: &Option<T>, key: &mut Option<T>) {
    if let Some(v) = flag {
        *key = Some(v.clone());
    }
}

/// A repeatable flag given at least once replaces its list.
fn replace<T: Clone>(flag: &[T], key: &mut Vec<T>) {
    if !flag.is_empty() {
        *key = flag.to_vec();
    }
}

config_keys! {
    /// Address every core's listener binds (SO_REUSEPORT). Port 0 picks a free port, shared
    /// by all cores.
    listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)),
    flag {
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long)]
    }
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`), loopback by default; `"off"`
    /// disables it.
    admin_addr: String = "127.0.0.1:9090".into(),
    flag {
        /// Admin listener address (/metrics, /healthz, /readyz), or "off".
        #[arg(long)]
    }
    /// PEM certificate chain: with `tls_key`, the client listener speaks TLS (reloaded on
    /// SIGHUP).
    tls_cert: Option<PathBuf> = None,
    flag {
        /// PEM certificate chain (TLS on with --tls-key).
        #[arg(long)]
    }
    /// PEM private key for `tls_cert`.
    tls_key: Option<PathBuf> = None,
    flag {
        /// PEM private key.
        #[arg(long)]
    }
    /// Offer HTTP/2 (ALPN `h2`, beside `http/1.1`) on the TLS listener: a browser then
    /// multiplexes every `EventSource` of an origin on one connection.
    http2: bool = true,
    flag {
        /// Offer HTTP/2 over TLS (true/false).
        #[arg(long)]
    }
    /// Accept HTTP/2 with prior knowledge (h2c) on a plaintext listener, beside HTTP/1.1:
    /// for proxies and load balancers that speak h2c upstream.
    http2_cleartext: bool = false,
    flag {
        /// Accept h2c (HTTP/2 with prior knowledge) on a plaintext listener (true/false).
        #[arg(long)]
    }
    /// Streams one HTTP/2 connection may have open at once (subscriptions and requests);
    /// one more is refused with `REFUSED_STREAM`.
    http2_max_concurrent_streams: u32 = 256,
    flag {
        /// Open streams per HTTP/2 connection.
        #[arg(long)]
    }
    /// Period of an HTTP/2 connection's PINGs; one whose PING is not answered by the next
    /// is closed (a peer that vanished without a FIN).
    #[serde(with = "humantime_serde")]
    http2_keepalive: Duration = Duration::from_secs(30),
    flag {
        /// HTTP/2 PING interval, e.g. "30s".
        #[arg(long, value_parser = humantime::parse_duration)]
    }
    /// Number of executors, one pinned per CPU. 0 means one per online CPU.
    workers: usize = 0,
    flag {
        /// Executors (one pinned per CPU); 0 = one per online CPU.
        #[arg(long)]
    }
    /// Key that publisher JWTs are verified with: the HS256 secret, or for RS256/ES256 a PEM
    /// public key (inline, or the path of a PEM file). When absent, a random HS256 secret is
    /// made at start and a ready-to-use token is printed: there is no well-known default.
    publisher_jwt_key: Option<String> = None,
    flag {
        /// HS256 secret for publisher JWTs.
        #[arg(long, env = "SSEGATE_PUBLISHER_JWT_KEY", hide_env_values = true)]
    }
    /// Algorithm of publisher JWTs.
    publisher_jwt_algorithm: JwtAlgorithm = JwtAlgorithm::HS256,
    flag {
        /// Publisher JWT algorithm.
        #[arg(long, value_enum)]
    }
    /// Key that subscriber JWTs are verified with (same forms as `publisher_jwt_key`). When
    /// absent, the publisher key and algorithm are used for subscribers too.
    subscriber_jwt_key: Option<String> = None,
    flag {
        /// Subscriber JWT key (defaults to the publisher key).
        #[arg(long, env = "SSEGATE_SUBSCRIBER_JWT_KEY", hide_env_values = true)]
    }
    /// Algorithm of subscriber JWTs.
    subscriber_jwt_algorithm: JwtAlgorithm = JwtAlgorithm::HS256,
    flag {
        /// Subscriber JWT algorithm.
        #[arg(long, value_enum)]
    }
    /// Whether subscribers without a token may subscribe (they receive public updates only).
    /// An invalid or expired token is refused either way.
    anonymous: bool = true,
    flag {
        /// Allow subscribers without a token (true/false).
        #[arg(long)]
    }
    /// Origins allowed to subscribe and publish from a browser (CORS). An origin listed here
    /// may send credentials (cookies); `"*"` allows any origin, without credentials.
    cors_origins: Vec<String> = Vec::new(),
    flag {
        /// Origin allowed for CORS (repeatable); replaces the file's list.
        // Keeps `--help` listing it after `--ui`, where it has always been: clap numbers the
        // flags in declaration order from 0 (`--config`), and the tie with `--history-size`
        // sorts by name.
        #[arg(long = "cors-origin", display_order = 15)]
    }
    /// Publish subscription events and serve the subscriptions API
    /// (`/.well-known/mercure/subscriptions`).
    subscriptions: bool = false,
    flag {
        /// Publish subscription events and serve the subscriptions API (true/false).
        #[arg(long)]
    }
    /// Serve the debug page at `/` (subscribe and publish from a browser). Off by default;
    /// keep it off in production.
    ui: bool = false,
    flag {
        /// Serve the debug page at / (true/false).
        #[arg(long)]
    }
    /// Events kept in memory for `Last-Event-ID` resume.
    history_size: usize = 10_000,
    flag {
        /// Events kept for resume.
        #[arg(long)]
    }
    /// Events older than this are dropped from history (none when absent).
    #[serde(with = "humantime_serde")]
    history_max_age: Option<Duration> = None,
    flag {
        /// Maximum age of history events, e.g. "10m".
        #[arg(long, value_parser = humantime::parse_duration)]
    }
    /// A subscriber that has not been written to for this long gets a `:` comment line.
    #[serde(with = "humantime_serde")]
    heartbeat_interval: Duration = Duration::from_secs(15),
    flag {
        /// Heartbeat period, e.g. "15s".
        #[arg(long, value_parser = humantime::parse_duration)]
    }
    /// Longest a subscriber stream stays open (jittered down by up to 20%, so reconnects
    /// spread out); the stream then ends cleanly and the client reconnects and resumes,
    /// which rebalances connections over cores and processes. None: unlimited.
    #[serde(with = "humantime_serde")]
    max_stream_duration: Option<Duration> = None,
    flag {
        /// Longest a subscriber stream stays open, e.g. "1h".
        #[arg(long, value_parser = humantime::parse_duration)]
    }
    /// A subscriber whose writes make no progress for this long is disconnected.
    #[serde(with = "humantime_serde")]
    write_timeout: Duration = Duration::from_secs(30),
    flag {
        /// Write stall before a subscriber is dropped, e.g. "30s".
        #[arg(long, value_parser = humantime::parse_duration)]
    }
    /// A subscriber with more than this many bytes queued and not yet taken by the kernel is
    /// disconnected (it reconnects and resumes from history).
    max_queued_bytes: usize = 1 << 20,
    flag {
        /// Queued bytes before a slow subscriber is dropped.
        #[arg(long)]
    }
    /// Kernel send buffer of each subscriber socket (`SO_SNDBUF`), in bytes; 0 leaves the
    /// kernel's autotuning on (up to 4 MiB a socket with Linux defaults). With
    /// `max_queued_bytes` it bounds what one subscriber can hold: its queue in the gateway
    /// plus about twice this in the kernel.
    send_buffer: usize = 64 * 1024,
    flag {
        /// Kernel send buffer per subscriber socket in bytes (0: kernel autotuning).
        #[arg(long)]
    }
    /// How each core's flusher hands subscriber writes to the kernel: one `send(2)` per
    /// subscriber, or one io_uring submission carrying the sends of many subscribers.
    write_path: WritePath = WritePath::IoUring,
    flag {
        /// How subscriber writes reach the kernel: send or io_uring.
        #[arg(long, value_enum)]
    }
    /// Open connections (subscribers and publishers, all cores) before new ones get 503.
    max_connections: usize = 100_000,
    flag {
        /// Open connections before 503.
        #[arg(long)]
    }
    /// At shutdown, subscribers are closed spread over this period (each with a `retry:`
    /// hint), so their reconnections do not arrive all at once. Must be shorter than
    /// `shutdown_timeout`.
    #[serde(with = "humantime_serde")]
    drain_period: Duration = Duration::from_secs(2),
    flag {
        /// Period over which subscribers are closed at shutdown, e.g. "2s".
        #[arg(long, value_parser = humantime::parse_duration)]
    }
    /// How long SIGTERM/SIGINT may take before the process exits regardless.
    #[serde(with = "humantime_serde")]
    shutdown_timeout: Duration = Duration::from_secs(10),
    flag {
        /// Grace period for SIGTERM, e.g. "10s".
        #[arg(long, value_parser = humantime::parse_duration)]
    }
    /// Largest request head (request line and headers) accepted; larger gets 431.
    max_header_bytes: usize = 8 * 1024,
    flag {
        /// Largest request head in bytes.
        #[arg(long)]
    }
    /// Time a client has to send a complete request head; a slower one is disconnected.
    #[serde(with = "humantime_serde")]
    header_timeout: Duration = Duration::from_secs(10),
    flag {
        /// Time allowed to send a request head.
        #[arg(long, value_parser = humantime::parse_duration)]
    }
    /// Idle time allowed between two requests on a keep-alive publisher connection.
    #[serde(with = "humantime_serde")]
    keepalive_timeout: Duration = Duration::from_secs(60),
    flag {
        /// Idle time allowed between requests on a keep-alive connection.
        #[arg(long, value_parser = humantime::parse_duration)]
    }
    /// Largest publish body accepted; larger gets 413.
    max_body_bytes: usize = 1 << 20,
    flag {
        /// Largest publish body in bytes.
        #[arg(long)]
    }
    /// Most `topic` parameters in one subscription or publication; more gets 400.
    max_topics: usize = 64,
    flag {
        /// Most topics per subscription or publication.
        #[arg(long)]
    }
    /// Longest topic selector in a subscription, in bytes after percent-decoding; longer
    /// gets 400.
    max_selector_bytes: usize = 1024,
    flag {
        /// Longest topic selector in a subscription, in bytes.
        #[arg(long)]
    }
    /// Budget for compiled URI-template selectors on each core, in bytes (distinct
    /// templates are compiled once per core and shared): each counts its memory plus 64 B
    /// per matching thread it may need, so the budget bounds both the memory and the work
    /// of testing every event against them. A subscription that needs a new template past
    /// this gets 503 with `Retry-After`.
    max_template_bytes: usize = 256 << 10,
    flag {
        /// Memory for compiled template selectors per core, in bytes.
        #[arg(long)]
    }
    /// Listen backlog of each core's listener.
    backlog: u32 = 4096,
    flag {
        /// Listen backlog per core.
        #[arg(long)]
    }
    /// Log format: `text` (human) or `json`.
    log_format: LogFormat = LogFormat::Text,
    flag {
        /// Log format.
        #[arg(long, value_enum)]
    }
    /// Log filter in `tracing` `EnvFilter` syntax, e.g. `info` or `ssegate=debug`.
    log_level: String = "info".to_string(),
    flag {
        /// Log filter, e.g. "info" or "ssegate=debug".
        #[arg(long)]
    }
    /// Where the one order of events lives: `"memory"` (this process only, the default) or
    /// `"redis"` (a Redis stream shared by every node, see `redis_url`).
    engine: Engine = Engine::Memory,
    flag {
        /// Event engine: memory (one process) or redis (a stream shared by many nodes).
        #[arg(long, value_enum)]
    }
    /// Redis server of the `redis` engine: `redis://[user:password@]host:port[/db]`, or
    /// `rediss://…` for TLS (see `redis_tls_ca`).
    redis_url: String = "redis://127.0.0.1:6379".to_string(),
    flag {
        /// Redis URL of the redis engine, e.g. "redis://127.0.0.1:6379".
        #[arg(long, env = "SSEGATE_REDIS_URL", hide_env_values = true)]
    }
    /// With `rediss://`: a PEM file of the CA certificates that Redis's certificate must chain
    /// to (default: the system's roots).
    redis_tls_ca: Option<PathBuf> = None,
    flag {
        /// CA certificates (PEM) for rediss://; default: the system's.
        #[arg(long)]
    }
    /// Key of the Redis stream that holds the order.
    redis_stream: String = "ssegate:events".to_string(),
    flag {
        /// Redis stream key.
        #[arg(long)]
    }
    /// Entries the stream keeps (`XADD … MAXLEN ~`): the cluster's history.
    redis_history_size: usize = 100_000,
    flag {
        /// Entries kept in the Redis stream.
        #[arg(long)]
    }
    /// Longest wait for Redis: connecting, and each answer to a publish. A publish Redis does
    /// not confirm in time gets `503` with `Retry-After`.
    #[serde(with = "humantime_serde")]
    redis_timeout: Duration = Duration::from_secs(2),
    flag {
        /// Timeout of Redis calls, e.g. "2s".
        #[arg(long, value_parser = humantime::parse_duration)]
    }
    /// Access log, one line per request: `"off"`, `"stderr"`, `"stdout"`, or a file path
    /// (appended to). See [`crate::access_log`].
    access_log: String = "off".to_string(),
    flag {
        /// Access log: "off", "stderr", "stdout" or a file path.
        #[arg(long)]
    }
}

/// How the flusher writes to plain subscriber sockets (TLS subscribers are written by their
/// own task either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum WritePath {
    /// A non-blocking `send(2)` per subscriber.
    Send,
    /// One io_uring submission (on a small ring of the core's own) per slice of subscribers:
    /// the default, measured faster in the broadcast benchmarks (bench-results/).
    #[default]
    #[value(name = "io_uring")]
    IoUring,
}

/// Where the order of events lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// In this process's memory: one node.
    #[default]
    Memory,
    /// A Redis stream: every node reads the same order.
    Redis,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A configuration that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file named by `--config`.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this struct (unknown key, wrong type, bad duration).
    #[error("{path}: {source}")]
    Parse {
        /// The file named by `--config`.
        path: PathBuf,
        /// The parser's message, with line and column.
        source: toml::de::Error,
    },
    /// A value is out of its range.
    #[error("invalid `{key}`: {reason}")]
    Invalid {
        /// The key at fault.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

impl Config {
    /// Reads a TOML file; keys absent from it keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks ranges and relations between keys. Loading never does this, so a caller can
    /// build a config from parts and validate once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.workers > 1024 {
            return Err(invalid("workers", "at most 1024"));
        }
        if self.admin_addr != "off" && self.admin_addr.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "admin_addr",
                "must be an address like \"127.0.0.1:9090\", or \"off\"",
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(invalid("tls_cert", "tls_cert and tls_key go together"));
        }
        if self.http2_max_concurrent_streams == 0 {
            return Err(invalid(
                "http2_max_concurrent_streams",
                "must be at least 1",
            ));
        }
        if self.http2_keepalive < Duration::from_millis(100) {
            return Err(invalid("http2_keepalive", "must be at least 100ms"));
        }
        if self.history_size == 0 {
            return Err(invalid("history_size", "must be at least 1"));
        }
        if self.heartbeat_interval < Duration::from_millis(10) {
            return Err(invalid("heartbeat_interval", "must be at least 10ms"));
        }
        if self.write_timeout.is_zero() {
            return Err(invalid("write_timeout", "must be more than 0"));
        }
        if self.max_queued_bytes < 1024 {
            return Err(invalid("max_queued_bytes", "must be at least 1024"));
        }
        if self.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        if self.max_header_bytes < 256 || self.max_header_bytes > 1 << 20 {
            return Err(invalid(
                "max_header_bytes",
                "must be between 256 and 1048576",
            ));
        }
        if self.header_timeout.is_zero() || self.keepalive_timeout.is_zero() {
            return Err(invalid(
                "header_timeout",
                "header_timeout and keepalive_timeout must be more than 0",
            ));
        }
        if self.drain_period >= self.shutdown_timeout {
            return Err(invalid(
                "drain_period",
                "must be shorter than shutdown_timeout",
            ));
        }
        if self.max_topics == 0 {
            return Err(invalid("max_topics", "must be at least 1"));
        }
        if self.max_selector_bytes == 0 {
            return Err(invalid("max_selector_bytes", "must be at least 1"));
        }
        if self.send_buffer != 0 && !(4096..=1 << 30).contains(&self.send_buffer) {
            return Err(invalid(
                "send_buffer",
                "must be 0 (kernel autotuning) or between 4096 and 1 GiB",
            ));
        }
        if self.backlog == 0 {
            return Err(invalid("backlog", "must be at least 1"));
        }
        if let Some(key) = &self.publisher_jwt_key {
            crate::auth::Verifier::new(self.publisher_jwt_algorithm, key)
                .map_err(|e| invalid("publisher_jwt_key", e.to_string()))?;
        }
        if let Some(key) = &self.subscriber_jwt_key {
            crate::auth::Verifier::new(self.subscriber_jwt_algorithm, key)
                .map_err(|e| invalid("subscriber_jwt_key", e.to_string()))?;
        }
        if self.publisher_jwt_key.is_none() && self.publisher_jwt_algorithm != JwtAlgorithm::HS256 {
            return Err(invalid(
                "publisher_jwt_algorithm",
                "RS256/ES256 need publisher_jwt_key (a PEM public key)",
            ));
        }
        for origin in &self.cors_origins {
            let ok = origin == "*"
                || ((origin.starts_with("http://") || origin.starts_with("https://"))
                    && !origin.ends_with('/')
                    && !origin.contains(char::is_whitespace));
            if !ok {
                return Err(invalid(
                    "cors_origins",
                    format!(
                        "{origin:?} is not an origin like \"https://app.example.com\" or \"*\""
                    ),
                ));
            }
        }
        if let crate::access_log::Target::File(path) =
            crate::access_log::Target::parse(&self.access_log)
        {
            if path.is_dir() {
                return Err(invalid(
                    "access_log",
                    "must be \"off\", \"stderr\", \"stdout\" or a file path, not a directory",
                ));
            }
        }
        if self.engine == Engine::Redis {
            let url = crate::engine::redis::Url::parse(&self.redis_url)
                .map_err(|e| invalid("redis_url", e.to_string()))?;
            if self.redis_tls_ca.is_some() && !url.tls {
                return Err(invalid(
                    "redis_tls_ca",
                    "is for TLS to Redis: the redis_url must start with rediss://",
                ));
            }
            if self.redis_stream.is_empty() {
                return Err(invalid("redis_stream", "must not be empty"));
            }
            if self.redis_history_size == 0 {
                return Err(invalid("redis_history_size", "must be at least 1"));
            }
            if self.redis_timeout < Duration::from_millis(10) {
                return Err(invalid("redis_timeout", "must be at least 10ms"));
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return Err(invalid("log_level", e.to_string()));
        }
        Ok(())
    }

    /// The admin listener's address, unless it is `"off"`.
    pub fn admin(&self) -> Option<SocketAddr> {
        self.admin_addr.parse().ok()
    }

    /// The number of executors to start: `workers`, or one per online CPU when 0.
    pub fn effective_workers(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

impl Cli {
    /// Loads the file (if any), then lays the flags over it. Does not validate.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        self.lay_over(&mut c);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.listen, Config::default().listen);
        c.validate().unwrap();
    }

    #[test]
    fn durations_are_humantime() {
        let c =
            Config::from_toml("heartbeat_interval = \"500ms\"\nhistory_max_age = \"2m\"").unwrap();
        assert_eq!(c.heartbeat_interval, Duration::from_millis(500));
        assert_eq!(c.history_max_age, Some(Duration::from_secs(120)));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = Config::from_toml("listne = \"127.0.0.1:1\"").unwrap_err();
        assert!(e.to_string().contains("listne"), "{e}");
    }

    #[test]
    fn the_example_file_parses_and_validates() {
        let text = include_str!("../config/ssegate.toml");
        let c = Config::from_toml(text).unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn validate_catches_out_of_range_values() {
        let c = Config {
            max_topics: 0,
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "max_topics",
                ..
            })
        ));
    }
}
