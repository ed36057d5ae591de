//! What is recorded of an image when its manifest is stored: its config is
//! read from the blob store once, bounded (`oci::image::MAX_CONFIG_BYTES`),
//! and summarized (platform, created time, how it runs, history) with its
//! content size, so no page ever reads blob storage. A config that cannot
//! be read never fails the push: the manifest stays pending, and the
//! background fill ([`Registry::fill_pending_summaries`], started in every
//! instance) reads it later, as it does for manifests stored before Berth
//! recorded summaries.

use futures_util::StreamExt;

use super::Registry;
use crate::metadata::{ImageFacts, MetadataResult, SummaryState};
use crate::oci::image::{IMAGE_CONFIG_TYPES, MAX_CONFIG_BYTES, descriptors, summarize_config};
use crate::oci::manifest::ManifestKind;
use crate::oci::{Digest, RepositoryName};

/// Pending manifests read per batch of the background fill.
const FILL_BATCH: u32 = 100;

impl Registry {
    /// The facts to store with a manifest of `kind` whose bytes are `payload`.
    pub(super) async fn image_facts(
        &self,
        repository: &RepositoryName,
        kind: ManifestKind,
        payload: &[u8],
    ) -> ImageFacts {
        if kind == ManifestKind::Index {
            return ImageFacts {
                state: SummaryState::Nothing,
                ..ImageFacts::default()
            };
        }
        let found = descriptors(payload);
        let content_size = Some(found.content_size());
        let nothing = ImageFacts {
            state: SummaryState::Nothing,
            summary: None,
            content_size,
        };
        let Some(config) = found.config else {
            return nothing;
        };
        if !IMAGE_CONFIG_TYPES.contains(&config.media_type.as_str())
            || config.size > MAX_CONFIG_BYTES
        {
            return nothing;
        }
        let Ok(digest) = config.digest.parse::<Digest>() else {
            return nothing;
        };
        match self.read_config(repository, &digest).await {
            Ok(Some(bytes)) => match summarize_config(&bytes) {
                Some(summary) => ImageFacts {
                    state: SummaryState::Recorded,
                    summary: Some(summary),
                    content_size,
                },
                None => nothing,
            },
            // Not linked: the push itself is refused for the missing blob.
            Ok(None) => ImageFacts {
                state: SummaryState::Pending,
                summary: None,
                content_size,
            },
            Err(error) => {
                tracing::warn!(%repository, %digest, %error, "cannot read an image config; its summary is left for later");
                ImageFacts {
                    state: SummaryState::Pending,
                    summary: None,
                    content_size,
                }
            }
        }
    }

    /// The config's bytes, at most `MAX_CONFIG_BYTES`; `None` when the
    /// repository does not hold the blob.
    async fn read_config(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<Vec<u8>>, String> {
        let Some(blob) = self
            .metadata
            .linked_blob(repository, digest)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        if blob.size > MAX_CONFIG_BYTES {
            return Err(format!("the config is {} bytes", blob.size));
        }
        let mut stream = self
            .blobs
            .get(&blob.storage_key, None)
            .await
            .map_err(|e| e.to_string())?;
        let mut bytes = Vec::with_capacity(blob.size as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            if bytes.len() + chunk.len() > MAX_CONFIG_BYTES as usize {
                return Err("the config is larger than recorded".into());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Some(bytes))
    }

    /// Records the facts of every manifest still pending, oldest first, a
    /// batch at a time, logging progress; returns how many were filled.
    /// Safe in several instances at once: a row is written only while
    /// still pending, and one that cannot be read stays so for the next start.
    pub async fn fill_pending_summaries(&self) -> MetadataResult<u64> {
        let total = self.metadata.pending_summary_count().await?;
        if total == 0 {
            return Ok(0);
        }
        tracing::info!(
            pending = total,
            "recording image summaries of stored manifests"
        );
        let (mut after, mut filled, mut seen) = (0i64, 0u64, 0u64);
        loop {
            let batch = self.metadata.pending_summaries(after, FILL_BATCH).await?;
            let Some(last) = batch.last() else { break };
            after = last.id;
            for pending in batch {
                seen += 1;
                let Ok(repository) = pending.repository.parse::<RepositoryName>() else {
                    continue;
                };
                let kind = if crate::oci::manifest::is_index_type(&pending.media_type) {
                    ManifestKind::Index
                } else {
                    ManifestKind::Image
                };
                let facts = self.image_facts(&repository, kind, &pending.payload).await;
                if facts.state != SummaryState::Pending
                    && self.metadata.record_summary(pending.id, &facts).await?
                {
                    filled += 1;
                }
            }
            tracing::info!(filled, seen, pending = total, "recording image summaries");
        }
        tracing::info!(filled, "image summaries recorded");
        Ok(filled)
    }
}
