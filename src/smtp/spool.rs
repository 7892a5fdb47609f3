//! The durable spool: a message the gateway is about to answer 250 for is first written here and
//! fsynced (file and directory). It stays until the pipeline has filed it in the store; a spool
//! file found at start is a message whose filtering a crash interrupted, and is run again.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::pipeline::Envelope;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("spool file {path} is damaged: {message}")]
    Damaged { path: PathBuf, message: String },
}

#[derive(Clone)]
pub struct Spool {
    directory: PathBuf,
    incoming: PathBuf,
}

impl Spool {
    pub fn open(data_dir: &Path) -> Result<Spool, SpoolError> {
        let directory = data_dir.join("spool");
        let incoming = directory.join("incoming");
        for dir in [&directory, &incoming] {
            crate::token::create_private_dir(dir).map_err(|source| SpoolError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(Spool { directory, incoming })
    }

    fn path_of(&self, message_ref: &str) -> PathBuf {
        self.directory.join(format!("{message_ref}.msg"))
    }

    /// Writes envelope and message durably: a temporary file, fsync, rename, fsync of the
    /// directory. Only after this returns may the gateway answer 250.
    pub fn write(&self, envelope: &Envelope, message: &[u8]) -> Result<(), SpoolError> {
        let temporary = self.incoming.join(format!("{}.tmp", envelope.message_ref));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SpoolError::Io { path, source }
        };
        let mut header = serde_json::to_vec(envelope).map_err(|e| SpoolError::Damaged {
            path: temporary.clone(),
            message: e.to_string(),
        })?;
        header.push(b'\n');
        let written = File::create(&temporary).and_then(|mut file| {
            file.write_all(&header)?;
            file.write_all(message)?;
            file.sync_all()
        });
        let path = self.path_of(&envelope.message_ref);
        if let Err(source) = written.and_then(|()| fs::rename(&temporary, &path)) {
            // A disk that filled up must not leave half-written (or 0-byte) files behind.
            let _ = fs::remove_file(&temporary);
            return Err(SpoolError::Io { path, source });
        }
        File::open(&self.directory)
            .and_then(|dir| dir.sync_all())
            .map_err(io(&self.directory))?;
        Ok(())
    }

    /// Removes a message once the store holds it. Not synced: a removal lost to a crash leaves a
    /// file the recovery finds already indexed and removes again.
    pub fn remove(&self, message_ref: &str) {
        let _ = fs::remove_file(self.path_of(message_ref));
    }

    /// Every spooled message, oldest first. Damaged files are moved aside (`*.damaged`) and reported,
    /// never deleted.
    pub fn pending(&self) -> Result<Vec<(Envelope, Vec<u8>)>, SpoolError> {
        let entries = fs::read_dir(&self.directory).map_err(|source| SpoolError::Io {
            path: self.directory.clone(),
            source,
        })?;
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("msg") {
                continue;
            }
            match read(&path) {
                Ok(item) => found.push(item),
                Err(error) => {
                    tracing::error!(%error, "damaged spool file moved aside");
                    let _ = fs::rename(&path, path.with_extension("damaged"));
                }
            }
        }
        found.sort_by_key(|(envelope, _)| envelope.received_at);
        Ok(found)
    }

    /// Removes half-written files. Only at start: they were never answered with 250, so the
    /// sender still owns those messages.
    pub fn clear_incoming(&self) {
        if let Ok(entries) = fs::read_dir(&self.incoming) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn read(path: &Path) -> Result<(Envelope, Vec<u8>), SpoolError> {
    let bytes = fs::read(path).map_err(|source| SpoolError::Io {
        path: path.into(),
        source,
    })?;
    let damaged = |message: String| SpoolError::Damaged {
        path: path.into(),
        message,
    };
    let newline = memchr::memchr(b'\n', &bytes).ok_or_else(|| damaged("no envelope line".into()))?;
    let envelope: Envelope = serde_json::from_slice(&bytes[..newline]).map_err(|e| damaged(e.to_string()))?;
    Ok((envelope, bytes[newline + 1..].to_vec()))
}
