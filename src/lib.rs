//! Portcullis: an email security gateway. This crate holds the link format ([`token`]), the link
//! rewriter ([`rewrite`]) and the click service ([`redirect`], [`reputation`], [`clicklog`], run by
//! [`serve`]); the binary `portcullis` is a thin command line over them.
#![forbid(unsafe_code)]

pub mod clicklog;
pub mod config;
pub mod escape;
pub mod metrics;
pub mod patterns;
pub mod redirect;
pub mod reputation;
pub mod rewrite;
pub mod serve;
pub mod tls;
pub mod token;
