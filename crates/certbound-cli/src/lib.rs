//! The library half of the `certbound` command: the protected API's settings, shared by the
//! example API and `certbound serve` (one definition of every flag, not a copy).
//!
//! ```
//! use certbound_cli::config::ApiConfig;
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     api: ApiConfig,
//! }
//!
//! let cli = Cli::try_parse_from(["api", "--dpop"]).unwrap();
//! assert!(cli.api.dpop_on());
//! assert_eq!(cli.api.listen.port(), 8443);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod config;
