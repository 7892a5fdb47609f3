//! The link format: signed, readable click links, the key ring that signs them, and decoders for
//! the foreign wrappers (Proofpoint, Safe Links) we meet in inbound mail.
//!
//! The exact bytes are documented in `docs/link-format.md`; this module is the reference.

mod foreign;
mod format;
mod keyring;

pub use foreign::{ForeignLink, ForeignVendor, MAX_FOREIGN_DEPTH, unwrap_foreign};
pub use format::{
    ContextError, LINK_VERSION, LinkContext, LinkError, MAX_MESSAGE_REF, MAX_RECIPIENT_REF, VerifiedLink, is_own_link,
    policy,
};
pub use keyring::{Key, KeyRing, KeyRingError, KeyState, LiveKeyRing, create_private_dir};
