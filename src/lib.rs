//! Portcullis: an email security gateway. This crate holds the link format ([`token`]) and the
//! link rewriter ([`rewrite`]); the binary `portcullis` is a thin command line over them.
#![forbid(unsafe_code)]

pub mod clicklog;
pub mod config;
pub mod metrics;
pub mod patterns;
pub mod reputation;
pub mod rewrite;
pub mod token;
