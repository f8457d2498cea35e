//! Configuration: a serde struct read from TOML, overridden by CLI flags, checked by
//! [`Config::validate`] separately from loading.
//!
//! Every key is documented here, in `config/ssegate.toml` and in the README table.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// The gateway's configuration. Every field has a default, so an empty file (or none) serves
/// on `127.0.0.1:8080` at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address every core's listener binds (SO_REUSEPORT). Port 0 picks a free port, shared
    /// by all cores.
    pub listen: SocketAddr,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`), loopback by default; `"off"`
    /// disables it.
    pub admin_addr: String,
    /// PEM certificate chain: with `tls_key`, the client listener speaks TLS (reloaded on
    /// SIGHUP).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Number of executors, one pinned per CPU. 0 means one per online CPU.
    pub workers: usize,
    /// Key that publisher JWTs are verified with: the HS256 secret, or for RS256/ES256 a PEM
    /// public key (inline, or the path of a PEM file). When absent, a random HS256 secret is
    /// made at start and a ready-to-use token is printed: there is no well-known default.
    pub publisher_jwt_key: Option<String>,
    /// Algorithm of publisher JWTs.
    pub publisher_jwt_algorithm: JwtAlgorithm,
    /// Key that subscriber JWTs are verified with (same forms as `publisher_jwt_key`). When
    /// absent, the publisher key and algorithm are used for subscribers too.
    pub subscriber_jwt_key: Option<String>,
    /// Algorithm of subscriber JWTs.
    pub subscriber_jwt_algorithm: JwtAlgorithm,
    /// Whether subscribers without a token may subscribe (they receive public updates only).
    /// An invalid or expired token is refused either way.
    pub anonymous: bool,
    /// Origins allowed to subscribe and publish from a browser (CORS). An origin listed here
    /// may send credentials (cookies); `"*"` allows any origin, without credentials.
    pub cors_origins: Vec<String>,
    /// Publish subscription events and serve the subscriptions API
    /// (`/.well-known/mercure/subscriptions`).
    pub subscriptions: bool,
    /// Serve the debug page at `/` (subscribe and publish from a browser). Off by default;
    /// keep it off in production.
    pub ui: bool,
    /// Events kept in memory for `Last-Event-ID` resume.
    pub history_size: usize,
    /// Events older than this are dropped from history (none when absent).
    #[serde(with = "humantime_serde")]
    pub history_max_age: Option<Duration>,
    /// A subscriber that has not been written to for this long gets a `:` comment line.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Longest a subscriber stream stays open (jittered down by up to 20%, so reconnects
    /// spread out); the stream then ends cleanly and the client reconnects and resumes,
    /// which rebalances connections over cores and processes. None: unlimited.
    #[serde(with = "humantime_serde")]
    pub max_stream_duration: Option<Duration>,
    /// A subscriber whose writes make no progress for this long is disconnected.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// A subscriber with more than this many bytes queued and not yet taken by the kernel is
    /// disconnected (it reconnects and resumes from history).
    pub max_queued_bytes: usize,
    /// Kernel send buffer of each subscriber socket (`SO_SNDBUF`), in bytes; 0 leaves the
    /// kernel's autotuning on (up to 4 MiB a socket with Linux defaults). With
    /// `max_queued_bytes` it bounds what one subscriber can hold: its queue in the gateway
    /// plus about twice this in the kernel.
    pub send_buffer: usize,
    /// How each core's flusher hands subscriber writes to the kernel: one `send(2)` per
    /// subscriber, or one io_uring submission carrying the sends of many subscribers.
    pub write_path: WritePath,
    /// Open connections (subscribers and publishers, all cores) before new ones get 503.
    pub max_connections: usize,
    /// At shutdown, subscribers are closed spread over this period (each with a `retry:`
    /// hint), so their reconnections do not arrive all at once. Must be shorter than
    /// `shutdown_timeout`.
    #[serde(with = "humantime_serde")]
    pub drain_period: Duration,
    /// How long SIGTERM/SIGINT may take before the process exits regardless.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Largest request head (request line and headers) accepted; larger gets 431.
    pub max_header_bytes: usize,
    /// Time a client has to send a complete request head; a slower one is disconnected.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Idle time allowed between two requests on a keep-alive publisher connection.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Largest publish body accepted; larger gets 413.
    pub max_body_bytes: usize,
    /// Most `topic` parameters in one subscription or publication; more gets 400.
    pub max_topics: usize,
    /// Longest topic selector in a subscription, in bytes after percent-decoding; longer
    /// gets 400.
    pub max_selector_bytes: usize,
    /// Budget for compiled URI-template selectors on each core, in bytes (distinct
    /// templates are compiled once per core and shared): each counts its memory plus 64 B
    /// per matching thread it may need, so the budget bounds both the memory and the work
    /// of testing every event against them. A subscription that needs a new template past
    /// this gets 503 with `Retry-After`.
    pub max_template_bytes: usize,
    /// Listen backlog of each core's listener.
    pub backlog: u32,
    /// Log format: `text` (human) or `json`.
    pub log_format: LogFormat,
    /// Log filter in `tracing` `EnvFilter` syntax, e.g. `info` or `ssegate=debug`.
    pub log_level: String,
    /// Access log, one line per request: `"off"`, `"stderr"`, `"stdout"`, or a file path
    /// (appended to). See [`crate::access_log`].
    pub access_log: String,
}

/// JWT signature algorithms accepted for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256: the key is a shared secret.
    #[default]
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256: the key is a PEM public key.
    RS256,
    /// ECDSA P-256 with SHA-256: the key is a PEM public key.
    ES256,
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

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_addr: "127.0.0.1:9090".into(),
            tls_cert: None,
            tls_key: None,
            workers: 0,
            publisher_jwt_key: None,
            publisher_jwt_algorithm: JwtAlgorithm::HS256,
            subscriber_jwt_key: None,
            subscriber_jwt_algorithm: JwtAlgorithm::HS256,
            anonymous: true,
            cors_origins: Vec::new(),
            subscriptions: false,
            ui: false,
            history_size: 10_000,
            history_max_age: None,
            heartbeat_interval: Duration::from_secs(15),
            max_stream_duration: None,
            write_timeout: Duration::from_secs(30),
            max_queued_bytes: 1 << 20,
            send_buffer: 64 * 1024,
            write_path: WritePath::IoUring,
            max_connections: 100_000,
            drain_period: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(10),
            max_header_bytes: 8 * 1024,
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            max_body_bytes: 1 << 20,
            max_topics: 64,
            max_selector_bytes: 1024,
            max_template_bytes: 256 << 10,
            backlog: 4096,
            log_format: LogFormat::Text,
            log_level: "info".to_string(),
            access_log: "off".to_string(),
        }
    }
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
                .map_err(|e| invalid("publisher_jwt_key", e))?;
        }
        if let Some(key) = &self.subscriber_jwt_key {
            crate::auth::Verifier::new(self.subscriber_jwt_algorithm, key)
                .map_err(|e| invalid("subscriber_jwt_key", e))?;
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
    #[arg(long)]
    /// Address to listen on, e.g. 127.0.0.1:8080.
    pub listen: Option<SocketAddr>,
    /// Admin listener address (/metrics, /healthz, /readyz), or "off".
    #[arg(long)]
    pub admin_addr: Option<String>,
    /// PEM certificate chain (TLS on with --tls-key).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Executors (one pinned per CPU); 0 = one per online CPU.
    #[arg(long)]
    pub workers: Option<usize>,
    /// HS256 secret for publisher JWTs.
    #[arg(long, env = "SSEGATE_PUBLISHER_JWT_KEY", hide_env_values = true)]
    pub publisher_jwt_key: Option<String>,
    /// Publisher JWT algorithm.
    #[arg(long, value_enum)]
    pub publisher_jwt_algorithm: Option<JwtAlgorithm>,
    /// Subscriber JWT key (defaults to the publisher key).
    #[arg(long, env = "SSEGATE_SUBSCRIBER_JWT_KEY", hide_env_values = true)]
    pub subscriber_jwt_key: Option<String>,
    /// Subscriber JWT algorithm.
    #[arg(long, value_enum)]
    pub subscriber_jwt_algorithm: Option<JwtAlgorithm>,
    /// Allow subscribers without a token (true/false).
    #[arg(long)]
    pub anonymous: Option<bool>,
    /// Publish subscription events and serve the subscriptions API (true/false).
    #[arg(long)]
    pub subscriptions: Option<bool>,
    /// Serve the debug page at / (true/false).
    #[arg(long)]
    pub ui: Option<bool>,
    /// Origin allowed for CORS (repeatable); replaces the file's list.
    #[arg(long = "cors-origin")]
    pub cors_origins: Vec<String>,
    /// Events kept for resume.
    #[arg(long)]
    pub history_size: Option<usize>,
    /// Maximum age of history events, e.g. "10m".
    #[arg(long, value_parser = humantime::parse_duration)]
    pub history_max_age: Option<Duration>,
    /// Heartbeat period, e.g. "15s".
    #[arg(long, value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Option<Duration>,
    /// Longest a subscriber stream stays open, e.g. "1h".
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_stream_duration: Option<Duration>,
    /// Write stall before a subscriber is dropped, e.g. "30s".
    #[arg(long, value_parser = humantime::parse_duration)]
    pub write_timeout: Option<Duration>,
    /// Queued bytes before a slow subscriber is dropped.
    #[arg(long)]
    pub max_queued_bytes: Option<usize>,
    /// Kernel send buffer per subscriber socket in bytes (0: kernel autotuning).
    #[arg(long)]
    pub send_buffer: Option<usize>,
    /// How subscriber writes reach the kernel: send or io_uring.
    #[arg(long, value_enum)]
    pub write_path: Option<WritePath>,
    /// Open connections before 503.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Period over which subscribers are closed at shutdown, e.g. "2s".
    #[arg(long, value_parser = humantime::parse_duration)]
    pub drain_period: Option<Duration>,
    /// Grace period for SIGTERM, e.g. "10s".
    #[arg(long, value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Option<Duration>,
    /// Largest request head in bytes.
    #[arg(long)]
    pub max_header_bytes: Option<usize>,
    /// Time allowed to send a request head.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub header_timeout: Option<Duration>,
    /// Idle time allowed between requests on a keep-alive connection.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub keepalive_timeout: Option<Duration>,
    /// Largest publish body in bytes.
    #[arg(long)]
    pub max_body_bytes: Option<usize>,
    /// Most topics per subscription or publication.
    #[arg(long)]
    pub max_topics: Option<usize>,
    /// Longest topic selector in a subscription, in bytes.
    #[arg(long)]
    pub max_selector_bytes: Option<usize>,
    /// Memory for compiled template selectors per core, in bytes.
    #[arg(long)]
    pub max_template_bytes: Option<usize>,
    /// Listen backlog per core.
    #[arg(long)]
    pub backlog: Option<u32>,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. "info" or "ssegate=debug".
    #[arg(long)]
    pub log_level: Option<String>,
    /// Access log: "off", "stderr", "stdout" or a file path.
    #[arg(long)]
    pub access_log: Option<String>,
}

impl Cli {
    /// Loads the file (if any), then lays the flags over it. Does not validate.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        macro_rules! over {
            ($($field:ident),*) => {$(
                if let Some(v) = &self.$field { c.$field = v.clone(); }
            )*};
        }
        over!(
            listen,
            admin_addr,
            workers,
            publisher_jwt_algorithm,
            subscriber_jwt_algorithm,
            anonymous,
            subscriptions,
            ui,
            history_size,
            heartbeat_interval,
            write_timeout,
            max_queued_bytes,
            send_buffer,
            write_path,
            max_connections,
            shutdown_timeout,
            drain_period,
            max_header_bytes,
            header_timeout,
            keepalive_timeout,
            max_body_bytes,
            max_topics,
            max_selector_bytes,
            max_template_bytes,
            backlog,
            log_format,
            log_level,
            access_log
        );
        if let Some(v) = &self.publisher_jwt_key {
            c.publisher_jwt_key = Some(v.clone());
        }
        if let Some(v) = &self.subscriber_jwt_key {
            c.subscriber_jwt_key = Some(v.clone());
        }
        if !self.cors_origins.is_empty() {
            c.cors_origins = self.cors_origins.clone();
        }
        if let Some(v) = self.history_max_age {
            c.history_max_age = Some(v);
        }
        if let Some(v) = &self.tls_cert {
            c.tls_cert = Some(v.clone());
        }
        if let Some(v) = &self.tls_key {
            c.tls_key = Some(v.clone());
        }
        if let Some(v) = self.max_stream_duration {
            c.max_stream_duration = Some(v);
        }
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
