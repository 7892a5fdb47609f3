//! Portcullis: an email security gateway. This crate holds the link format ([`token`]), the link
//! rewriter ([`rewrite`]), the click service ([`redirect`], [`reputation`], [`clicklog`]) and the
//! inbound SMTP gateway ([`smtp`], [`pipeline`] with its [`classifier`], [`delivery`], [`quarantine`], [`store`]), the hooks other
//! mail systems call ([`milter`], the HTTP [`api`], both through [`inspect`]), all run
//! by [`serve`]; the binary `portcullis` is a thin command line over them.
#![forbid(unsafe_code)]

pub mod api;
pub mod attachments;
pub mod audit;
pub mod classifier;
pub mod clicklog;
pub mod config;
pub mod console;
pub mod delivery;
pub mod digest;
pub mod dlp;
pub mod escape;
pub mod export;
pub mod filter;
pub mod follow;
pub mod i18n;
pub mod inspect;
pub mod listen;
pub mod mailbox;
pub mod metrics;
pub mod milter;
pub mod patterns;
pub mod pipeline;
pub mod quarantine;
pub mod redirect;
pub mod reports;
pub mod reputation;
pub mod rewrite;
pub mod senders;
pub mod serve;
pub mod smtp;
pub mod store;
pub mod threats;
pub mod time;
pub mod tls;
pub mod token;
pub mod tokens;
pub mod trace;
pub mod users;
