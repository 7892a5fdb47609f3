//! The append-only spool: one JSON line per click the store could not take.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::store::Store;
use super::{ClickEvent, ClickLogError, Durability};

pub(super) struct Spool {
    path: PathBuf,
    file: File,
    durability: Durability,
    pending: bool,
}

impl Spool {
    pub(super) fn open(path: &Path, durability: Durability) -> Result<Self, ClickLogError> {
        let err = |source| ClickLogError::Spool {
            path: path.into(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(err)?;
        let pending = file.metadata().map_err(err)?.len() > 0;
        Ok(Self {
            path: path.into(),
            file,
            durability,
            pending,
        })
    }

    pub(super) fn has_pending(&self) -> bool {
        self.pending
    }

    /// Appends clicks and makes them durable before returning.
    pub(super) fn append(&mut self, events: &[&ClickEvent]) -> std::io::Result<()> {
        let mut buffer = Vec::with_capacity(events.len() * 256);
        for event in events {
            serde_json::to_writer(&mut buffer, event).map_err(std::io::Error::other)?;
            buffer.push(b'\n');
        }
        self.file.write_all(&buffer)?;
        // The write reaches the kernel either way (survives a process crash); FULL also survives
        // power loss.
        if self.durability == Durability::Full {
            self.file.sync_data()?;
        }
        self.pending = true;
        Ok(())
    }

    /// Moves every spooled click into the store, then empties the spool. A crash in between only
    /// replays clicks the store already has, which it ignores by id.
    pub(super) fn replay_into(&mut self, store: &mut Store) -> Result<(), ClickLogError> {
        if !self.pending {
            return Ok(());
        }
        let err = |source| ClickLogError::Spool {
            path: self.path.clone(),
            source,
        };
        let reader = BufReader::new(File::open(&self.path).map_err(err)?);
        let mut events = Vec::new();
        for line in reader.lines() {
            let line = line.map_err(err)?;
            // A torn last line (crash mid-write) was never acknowledged: skip it.
            if let Ok(event) = serde_json::from_str::<ClickEvent>(&line) {
                events.push(event);
            }
        }
        let refs: Vec<&ClickEvent> = events.iter().collect();
        store.insert(&refs).map_err(|source| ClickLogError::Store {
            path: self.path.clone(),
            source,
        })?;
        self.file.set_len(0).map_err(err)?;
        self.file.sync_all().map_err(err)?;
        self.pending = false;
        tracing::info!(clicks = events.len(), "replayed spooled clicks into the store");
        Ok(())
    }
}
