//! The behaviour every metadata store keeps, run against the stores
//! directly (not through HTTP), once per engine: SQLite in a temporary
//! directory and a fresh PostgreSQL database. Each contract is one async
//! function taking a freshly migrated [`Metadata`].

use bytes::Bytes;
use serde_json::json;

use berth::metadata::{
    AccessTokenRecord, BlobCommit, Claimant, Created, DeleteOutcome, MemberOutcome, Metadata,
    MetadataError, Mounted, NewBlob, NewManifest, PushedTag, PutManifestOutcome,
    RefreshTokenRecord, RetentionPolicy, SigningKeyRecord, UploadSession,
};
use berth::oci::pattern::TagRule;
use berth::oci::{Digest, RepositoryName, Tag};

use crate::harness::PostgresDatabase;
use crate::support::{OCI_INDEX, OCI_MANIFEST, descriptor, sha256};

fn name(text: &str) -> RepositoryName {
    text.parse().unwrap()
}

fn digest_of(bytes: &[u8]) -> Digest {
    sha256(bytes).parse().unwrap()
}

fn tag(text: &str) -> Tag {
    text.parse().unwrap()
}

fn session(id: &str, received: u64) -> UploadSession {
    UploadSession {
        id: id.into(),
        received,
        hash_state: vec![1, 2, 3],
        storage_state: format!("state of {id}"),
    }
}

/// Records `content` as a blob of `repository` through an upload session,
/// as a push does; returns the key recorded.
async fn record_blob(metadata: &Metadata, repository: &str, content: &[u8]) -> BlobCommit {
    let id = uuid::Uuid::new_v4().to_string();
    metadata
        .registry
        .create_upload(&name(repository), &session(&id, 0))
        .await
        .unwrap();
    metadata
        .registry
        .commit_blob(NewBlob {
            repository: name(repository),
            upload_id: id.clone(),
            expected_received: 0,
            digest: digest_of(content),
            size: content.len() as u64,
            storage_key: format!("key-{id}"),
        })
        .await
        .unwrap()
}

/// An image manifest naming `config` and `layer`.
fn image(config: &[u8], layer: &[u8]) -> NewManifest {
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
    })
    .to_string();
    manifest(body.into_bytes(), OCI_MANIFEST)
}

fn manifest(body: Vec<u8>, media_type: &str) -> NewManifest {
    NewManifest {
        digest: digest_of(&body),
        parsed: berth::oci::manifest::parse(&body, Some(media_type)).unwrap(),
        payload: Bytes::from(body),
        facts: Default::default(),
    }
}

/// Pushes the blobs and the manifest of an image tagged `tags`.
async fn push_image(metadata: &Metadata, repository: &str, seed: &str, tags: &[&str]) -> Digest {
    let (config, layer) = (format!("config {seed}"), format!("layer {seed}"));
    record_blob(metadata, repository, config.as_bytes()).await;
    record_blob(metadata, repository, layer.as_bytes()).await;
    let new = image(config.as_bytes(), layer.as_bytes());
    let digest = new.digest.clone();
    let tags: Vec<Tag> = tags.iter().map(|t| tag(t)).collect();
    let outcome = metadata
        .registry
        .put_manifest(
            &berth::metadata::Origin::system(),
            &name(repository),
            new,
            &tags,
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutManifestOutcome::Stored);
    digest
}

async fn upload_sessions_advance_by_compare_and_set(metadata: Metadata) {
    let store = &metadata.registry;
    let repo = name("team/app");
    store.create_upload(&repo, &session("u1", 0)).await.unwrap();
    // A second session in the repository the first one created.
    store.create_upload(&repo, &session("u2", 0)).await.unwrap();
    assert_eq!(store.upload_count().await.unwrap(), 2);
    assert!(
        store
            .upload(&name("team/other"), "u1")
            .await
            .unwrap()
            .is_none()
    );

    assert!(store.advance_upload(&session("u1", 10), 0).await.unwrap());
    // A replayed chunk that read the old offset changes nothing.
    assert!(!store.advance_upload(&session("u1", 20), 0).await.unwrap());
    let stored = store.upload(&repo, "u1").await.unwrap().unwrap();
    assert_eq!(
        (stored.received, stored.hash_state, stored.storage_state),
        (10, vec![1, 2, 3], "state of u1".to_string())
    );
    assert!(!store.advance_upload(&session("gone", 5), 0).await.unwrap());

    assert!(store.delete_upload(&repo, "u2").await.unwrap());
    assert!(!store.delete_upload(&repo, "u2").await.unwrap());
    assert_eq!(store.upload_count().await.unwrap(), 1);
}

async fn a_blob_is_recorded_once_and_read_only_where_linked(metadata: Metadata) {
    let store = &metadata.registry;
    let first = record_blob(&metadata, "team/app", b"layer").await;
    let BlobCommit::Recorded(first_key) = first else {
        panic!("{first:?}")
    };
    // The same content through another session (and repository) keeps the
    // key recorded first, so the caller deletes its own copy.
    assert_eq!(
        record_blob(&metadata, "team/db", b"layer").await,
        BlobCommit::Recorded(first_key.clone())
    );
    let linked = store
        .linked_blob(&name("team/app"), &digest_of(b"layer"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((linked.size, linked.storage_key), (5, first_key));
    assert!(
        store
            .linked_blob(&name("other/app"), &digest_of(b"layer"))
            .await
            .unwrap()
            .is_none()
    );
    // Every session ended with its blob.
    assert_eq!(store.upload_count().await.unwrap(), 0);
}

async fn a_moved_session_records_nothing(metadata: Metadata) {
    let store = &metadata.registry;
    store
        .create_upload(&name("team/app"), &session("u1", 0))
        .await
        .unwrap();
    assert!(store.advance_upload(&session("u1", 4), 0).await.unwrap());
    let commit = store
        .commit_blob(NewBlob {
            repository: name("team/app"),
            upload_id: "u1".into(),
            // What the committing request read before another chunk was saved.
            expected_received: 0,
            digest: digest_of(b"data"),
            size: 4,
            storage_key: "key".into(),
        })
        .await
        .unwrap();
    assert_eq!(commit, BlobCommit::SessionMoved);
    assert!(
        store
            .linked_blob(&name("team/app"), &digest_of(b"data"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .upload(&name("team/app"), "u1")
            .await
            .unwrap()
            .unwrap()
            .received,
        4
    );
}

async fn quotas_count_each_blob_once_and_refuse_what_would_exceed_them(metadata: Metadata) {
    metadata.policy.set_quota("team", Some(10)).await.unwrap();
    assert!(matches!(
        record_blob(&metadata, "team/app", b"123456").await,
        BlobCommit::Recorded(_)
    ));
    // Already in the namespace: counted once, so it fits again.
    assert!(matches!(
        record_blob(&metadata, "team/db", b"123456").await,
        BlobCommit::Recorded(_)
    ));
    let refused = record_blob(&metadata, "team/app", b"seven77").await;
    let BlobCommit::QuotaExceeded(exceeded) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(
        (
            exceeded.namespace.as_str(),
            exceeded.limit,
            exceeded.used,
            exceeded.size
        ),
        ("team", 10, 6, 7)
    );
    // Nothing of the refused blob was recorded, and its session is still there.
    assert!(
        metadata
            .registry
            .linked_blob(&name("team/app"), &digest_of(b"seven77"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(metadata.registry.upload_count().await.unwrap(), 1);
    let usage = metadata.policy.quota_usage("team").await.unwrap();
    assert_eq!((usage.limit, usage.used), (Some(10), 6));
    // Other namespaces are not limited.
    assert!(matches!(
        record_blob(&metadata, "other/app", b"seven77").await,
        BlobCommit::Recorded(_)
    ));
    // A mount is a link too: within the quota or not at all.
    let mounted = metadata
        .registry
        .mount_blob(
            &berth::metadata::Origin::system(),
            &name("team/app"),
            &name("other/app"),
            &digest_of(b"seven77"),
        )
        .await
        .unwrap();
    assert!(matches!(mounted, Mounted::QuotaExceeded(_)), "{mounted:?}");
    metadata.policy.set_quota("team", None).await.unwrap();
    assert_eq!(
        metadata
            .registry
            .mount_blob(
                &berth::metadata::Origin::system(),
                &name("team/app"),
                &name("other/app"),
                &digest_of(b"seven77")
            )
            .await
            .unwrap(),
        Mounted::Linked(7)
    );
    assert_eq!(
        metadata
            .registry
            .mount_blob(
                &berth::metadata::Origin::system(),
                &name("team/app"),
                &name("nowhere/app"),
                &digest_of(b"seven77")
            )
            .await
            .unwrap(),
        Mounted::NotInSource
    );
}

async fn a_manifest_is_stored_only_when_everything_it_names_is_there(metadata: Metadata) {
    let store = &metadata.registry;
    record_blob(&metadata, "team/app", b"config").await;
    let missing = store
        .put_manifest(
            &berth::metadata::Origin::system(),
            &name("team/app"),
            image(b"config", b"absent layer"),
            &[tag("v1")],
        )
        .await
        .unwrap();
    assert_eq!(
        missing,
        PutManifestOutcome::MissingReference(digest_of(b"absent layer"))
    );
    // Nothing of it was written, not even its tag.
    assert!(
        store
            .manifest_by_tag(&name("team/app"), &tag("v1"))
            .await
            .unwrap()
            .is_none()
    );

    let child = push_image(&metadata, "team/app", "amd64", &["v1"]).await;
    let stored = store
        .manifest_by_tag(&name("team/app"), &tag("v1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.digest.clone(), stored.media_type.as_str()),
        (child.clone(), OCI_MANIFEST)
    );
    let by_digest = store
        .manifest_by_digest(&name("team/app"), &child)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_digest.payload, stored.payload);

    let index = |children: &[&Digest]| {
        let manifests: Vec<_> = children
            .iter()
            .map(|d| json!({"mediaType": OCI_MANIFEST, "digest": d.as_str(), "size": 1}))
            .collect();
        manifest(
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
                .to_string()
                .into_bytes(),
            OCI_INDEX,
        )
    };
    let absent = digest_of(b"no such manifest");
    assert_eq!(
        store
            .put_manifest(
                &berth::metadata::Origin::system(),
                &name("team/app"),
                index(&[&child, &absent]),
                &[]
            )
            .await
            .unwrap(),
        PutManifestOutcome::MissingReference(absent)
    );
    let parent = index(&[&child]);
    let parent_digest = parent.digest.clone();
    assert_eq!(
        store
            .put_manifest(
                &berth::metadata::Origin::system(),
                &name("team/app"),
                parent,
                &[tag("multi")]
            )
            .await
            .unwrap(),
        PutManifestOutcome::Stored
    );
    // A child an index lists cannot go; the index can, and then the child.
    assert_eq!(
        store
            .delete_manifest(
                &berth::metadata::Origin::system(),
                &name("team/app"),
                &child
            )
            .await
            .unwrap(),
        DeleteOutcome::ReferencedBy(vec![parent_digest.clone()])
    );
    assert_eq!(
        store
            .delete_manifest(
                &berth::metadata::Origin::system(),
                &name("team/app"),
                &parent_digest
            )
            .await
            .unwrap(),
        DeleteOutcome::Deleted
    );
    assert!(
        store
            .manifest_by_tag(&name("team/app"), &tag("multi"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .delete_manifest(
                &berth::metadata::Origin::system(),
                &name("team/app"),
                &child
            )
            .await
            .unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        store
            .delete_manifest(
                &berth::metadata::Origin::system(),
                &name("team/app"),
                &child
            )
            .await
            .unwrap(),
        DeleteOutcome::NotFound
    );
}

async fn tags_move_and_immutable_ones_never_do(metadata: Metadata) {
    let store = &metadata.registry;
    let repo = name("team/app");
    let first = push_image(&metadata, "team/app", "one", &["latest", "v1"]).await;
    let version = store.tags_version(&repo).await.unwrap().unwrap();
    assert_eq!(store.all_tags(version).await.unwrap(), ["latest", "v1"]);
    let second = push_image(&metadata, "team/app", "two", &["latest"]).await;
    let moved = store.tags_version(&repo).await.unwrap().unwrap();
    // Moving a tag changes no name: the list stays current.
    assert_eq!(moved, version);
    assert_eq!(
        store
            .manifest_by_tag(&repo, &tag("latest"))
            .await
            .unwrap()
            .unwrap()
            .digest,
        second
    );

    let rule = TagRule {
        path: "team".into(),
        pattern: "v*".into(),
    };
    metadata
        .policy
        .set_immutable_tags(&rule, true)
        .await
        .unwrap();
    let protected = || DeleteOutcome::Immutable {
        tag: "v1".into(),
        rule: rule.clone(),
    };
    // Pushing `latest` and `v1` onto the second image: `v1` would move.
    let again = image(b"config two", b"layer two");
    assert_eq!(
        store
            .put_manifest(
                &berth::metadata::Origin::system(),
                &repo,
                again,
                &[tag("latest"), tag("v1")]
            )
            .await
            .unwrap(),
        PutManifestOutcome::ImmutableTag {
            tag: "v1".into(),
            rule: rule.clone()
        }
    );
    assert_eq!(
        store
            .manifest_by_tag(&repo, &tag("v1"))
            .await
            .unwrap()
            .unwrap()
            .digest,
        first
    );
    // The same content again is not a move.
    assert_eq!(
        store
            .put_manifest(
                &berth::metadata::Origin::system(),
                &repo,
                image(b"config one", b"layer one"),
                &[tag("v1")]
            )
            .await
            .unwrap(),
        PutManifestOutcome::Stored
    );
    assert_eq!(
        store
            .delete_tag(&berth::metadata::Origin::system(), &repo, &tag("v1"))
            .await
            .unwrap(),
        protected()
    );
    assert_eq!(
        store
            .delete_manifest(&berth::metadata::Origin::system(), &repo, &first)
            .await
            .unwrap(),
        protected()
    );
    assert_eq!(
        store
            .delete_tag(&berth::metadata::Origin::system(), &repo, &tag("latest"))
            .await
            .unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        store
            .delete_tag(&berth::metadata::Origin::system(), &repo, &tag("latest"))
            .await
            .unwrap(),
        DeleteOutcome::NotFound
    );
    let removed = store.tags_version(&repo).await.unwrap().unwrap();
    assert_ne!(removed, version);
    assert_eq!(store.all_tags(removed).await.unwrap(), ["v1"]);
    assert!(
        store
            .tags_version(&name("team/none"))
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_blob_a_manifest_uses_cannot_be_unlinked(metadata: Metadata) {
    let store = &metadata.registry;
    let repo = name("team/app");
    let image_digest = push_image(&metadata, "team/app", "one", &["v1"]).await;
    assert_eq!(
        store
            .unlink_blob(&repo, &digest_of(b"layer one"))
            .await
            .unwrap(),
        DeleteOutcome::ReferencedBy(vec![image_digest])
    );
    record_blob(&metadata, "team/app", b"loose").await;
    assert_eq!(
        store
            .unlink_blob(&repo, &digest_of(b"loose"))
            .await
            .unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        store
            .unlink_blob(&repo, &digest_of(b"loose"))
            .await
            .unwrap(),
        DeleteOutcome::NotFound
    );
    assert_eq!(
        store
            .unlink_blob(&name("none/app"), &digest_of(b"loose"))
            .await
            .unwrap(),
        DeleteOutcome::NotFound
    );
}

async fn the_catalog_and_referrers_list_in_order(metadata: Metadata) {
    let store = &metadata.registry;
    for repository in ["c/app", "a/app", "b/app"] {
        push_image(&metadata, repository, repository, &["v1"]).await;
    }
    // A repository with only an upload is not in the catalog.
    record_blob(&metadata, "d/app", b"no manifest").await;
    let first = store.list_repositories(None, 2).await.unwrap();
    assert_eq!(
        (first.names.as_slice(), first.more),
        (&["a/app".to_string(), "b/app".into()][..], true)
    );
    let rest = store.list_repositories(Some("b/app"), 2).await.unwrap();
    assert_eq!(
        (rest.names.as_slice(), rest.more),
        (&["c/app".to_string()][..], false)
    );

    let subject = push_image(&metadata, "a/app", "subject", &["s"]).await;
    let mut referrers = Vec::new();
    for (artifact, seed) in [("application/x.sbom", "sbom"), ("application/x.sig", "sig")] {
        record_blob(&metadata, "a/app", seed.as_bytes()).await;
        let body = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact,
            "config": descriptor("application/vnd.oci.empty.v1+json", seed.as_bytes()),
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject.as_str(), "size": 1},
            "annotations": {"note": seed},
        })
        .to_string();
        let new = manifest(body.into_bytes(), OCI_MANIFEST);
        referrers.push(new.digest.clone());
        store
            .put_manifest(&berth::metadata::Origin::system(), &name("a/app"), new, &[])
            .await
            .unwrap();
    }
    referrers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let all = store
        .referrers(&name("a/app"), &subject, None)
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|r| r.digest.clone()).collect::<Vec<_>>(),
        referrers
    );
    let signatures = store
        .referrers(&name("a/app"), &subject, Some("application/x.sig"))
        .await
        .unwrap();
    assert_eq!(signatures.len(), 1);
    assert_eq!(
        signatures[0].artifact_type.as_deref(),
        Some("application/x.sig")
    );
    assert!(
        signatures[0]
            .annotations
            .as_deref()
            .unwrap()
            .contains("sig")
    );
    assert!(signatures[0].size > 0);
}

async fn users_and_organizations_share_one_namespace(metadata: Metadata) {
    let accounts = &metadata.accounts;
    assert_eq!(
        accounts
            .create_user("alice", "hash", false, Claimant::Administrator)
            .await
            .unwrap(),
        Created::Created
    );
    assert_eq!(
        accounts
            .create_user("alice", "other", true, Claimant::Administrator)
            .await
            .unwrap(),
        Created::NameTaken
    );
    assert_eq!(
        accounts
            .create_organization("alice", Claimant::Administrator)
            .await
            .unwrap(),
        Created::NameTaken
    );
    assert_eq!(
        accounts
            .create_organization("team", Claimant::Administrator)
            .await
            .unwrap(),
        Created::Created
    );
    assert_eq!(
        accounts
            .create_user("team", "hash", false, Claimant::Administrator)
            .await
            .unwrap(),
        Created::NameTaken
    );
    assert_eq!(accounts.user_count().await.unwrap(), 1);
    assert_eq!(accounts.organizations().await.unwrap(), ["team"]);

    // A namespace a rule names is claimed only by an administrator; a
    // taken one is taken whoever asks.
    metadata.policy.set_public("shown/app", true).await.unwrap();
    metadata.policy.set_quota("quoted", Some(10)).await.unwrap();
    for used in ["shown", "quoted"] {
        assert_eq!(
            accounts
                .create_organization(used, Claimant::User)
                .await
                .unwrap(),
            Created::InUse
        );
        assert_eq!(
            accounts
                .create_user(used, "hash", false, Claimant::User)
                .await
                .unwrap(),
            Created::InUse
        );
    }
    assert_eq!(
        accounts
            .create_organization("show", Claimant::User)
            .await
            .unwrap(),
        Created::Created
    );
    assert_eq!(
        accounts
            .create_organization("team", Claimant::User)
            .await
            .unwrap(),
        Created::NameTaken
    );
    assert_eq!(
        accounts
            .create_organization("shown", Claimant::Administrator)
            .await
            .unwrap(),
        Created::Created
    );
    assert_eq!(
        accounts.organizations().await.unwrap(),
        ["show", "shown", "team"]
    );

    assert_eq!(
        accounts.set_member("team", "alice", "write").await.unwrap(),
        MemberOutcome::Set
    );
    assert_eq!(
        accounts.set_member("team", "alice", "admin").await.unwrap(),
        MemberOutcome::Set
    );
    assert_eq!(
        accounts.set_member("none", "alice", "read").await.unwrap(),
        MemberOutcome::UnknownOrganization
    );
    assert_eq!(
        accounts.set_member("team", "nobody", "read").await.unwrap(),
        MemberOutcome::UnknownUser
    );
    let members = accounts.members(None, Some("alice")).await.unwrap();
    assert_eq!(
        members
            .iter()
            .map(|m| (m.organization.as_str(), m.role.as_str()))
            .collect::<Vec<_>>(),
        [("team", "admin")]
    );

    // A password change ends the user's stored logins, not their tokens'.
    let token = AccessTokenRecord {
        id: "tok_1".into(),
        user_name: "alice".into(),
        description: "CI".into(),
        secret_hash: "secret-hash".into(),
        scopes: "repository:alice/*:pull".into(),
        created_at: 1,
        expires_at: Some(2),
        revoked_at: None,
    };
    accounts.create_access_token(&token).await.unwrap();
    let login = RefreshTokenRecord {
        user_name: "alice".into(),
        access_token_id: None,
    };
    let machine = RefreshTokenRecord {
        user_name: "alice".into(),
        access_token_id: Some("tok_1".into()),
    };
    accounts.store_refresh_token("login", &login).await.unwrap();
    accounts
        .store_refresh_token("machine", &machine)
        .await
        .unwrap();
    assert!(accounts.set_password("alice", "new hash").await.unwrap());
    assert!(!accounts.set_password("nobody", "hash").await.unwrap());
    assert_eq!(
        accounts.user("alice").await.unwrap().unwrap().password_hash,
        "new hash"
    );
    assert!(accounts.refresh_token("login").await.unwrap().is_none());
    assert!(accounts.refresh_token("machine").await.unwrap().is_some());

    let found = accounts
        .access_token_by_secret("secret-hash")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.id.as_str(), found.expires_at), ("tok_1", Some(2)));
    assert!(accounts.revoke_access_token("tok_1").await.unwrap());
    assert!(!accounts.revoke_access_token("tok_1").await.unwrap());
    assert!(
        accounts
            .access_token("tok_1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(accounts.refresh_token("machine").await.unwrap().is_none());
    assert_eq!(
        accounts.access_tokens(Some("alice")).await.unwrap().len(),
        1
    );
    assert!(
        accounts
            .access_tokens(Some("bob"))
            .await
            .unwrap()
            .is_empty()
    );

    assert!(accounts.remove_member("team", "alice").await.unwrap());
    assert!(!accounts.remove_member("team", "alice").await.unwrap());
    assert!(accounts.remove_user("alice").await.unwrap());
    assert!(!accounts.remove_user("alice").await.unwrap());
    // The name is free again, and the user's tokens went with them.
    assert!(accounts.access_tokens(None).await.unwrap().is_empty());
    assert_eq!(
        accounts
            .create_organization("alice", Claimant::Administrator)
            .await
            .unwrap(),
        Created::Created
    );
}

async fn one_signing_key_per_generation(metadata: Metadata) {
    let accounts = &metadata.accounts;
    let key = |generation, kid: &str| SigningKeyRecord {
        generation,
        kid: kid.into(),
        private_key_pem: format!("pem {kid}"),
    };
    assert!(accounts.insert_signing_key(&key(1, "a")).await.unwrap());
    // Another instance racing for generation 1 loses.
    assert!(!accounts.insert_signing_key(&key(1, "b")).await.unwrap());
    assert!(accounts.insert_signing_key(&key(2, "c")).await.unwrap());
    let keys = accounts.signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
}

async fn policies_are_stored_and_replaced(metadata: Metadata) {
    let policy = &metadata.policy;
    policy.set_public("team/site", true).await.unwrap();
    policy.set_public("team/site", true).await.unwrap();
    policy.set_public("alice", true).await.unwrap();
    assert_eq!(policy.public_paths().await.unwrap(), ["alice", "team/site"]);
    policy.set_public("alice", false).await.unwrap();
    assert_eq!(policy.public_paths().await.unwrap(), ["team/site"]);

    let rule = TagRule {
        path: "team".into(),
        pattern: "v*".into(),
    };
    policy.set_immutable_tags(&rule, true).await.unwrap();
    policy.set_immutable_tags(&rule, true).await.unwrap();
    assert_eq!(
        policy.immutable_tags().await.unwrap(),
        std::slice::from_ref(&rule)
    );
    policy.set_immutable_tags(&rule, false).await.unwrap();
    assert!(policy.immutable_tags().await.unwrap().is_empty());

    policy.set_quota("team", Some(100)).await.unwrap();
    policy.set_quota("team", Some(200)).await.unwrap();
    assert_eq!(policy.quotas().await.unwrap(), [("team".to_string(), 200)]);
    let unlimited = policy.quota_usage("other").await.unwrap();
    assert_eq!((unlimited.limit, unlimited.used), (None, 0));

    let retention = RetentionPolicy {
        path: "team".into(),
        keep_last: Some(3),
        keep_days: None,
        exclude: vec!["v*".into(), "latest".into()],
    };
    policy.set_retention_policy(&retention).await.unwrap();
    let replaced = RetentionPolicy {
        keep_days: Some(30),
        ..retention
    };
    policy.set_retention_policy(&replaced).await.unwrap();
    assert_eq!(policy.retention_policies().await.unwrap(), [replaced]);
    assert!(policy.remove_retention_policy("team").await.unwrap());
    assert!(!policy.remove_retention_policy("team").await.unwrap());
}

async fn the_collector_removes_only_what_nothing_references(metadata: Metadata) {
    let collector = &metadata.collector;
    let kept = push_image(&metadata, "team/app", "kept", &["v1"]).await;
    let untagged = push_image(&metadata, "team/app", "untagged", &[]).await;
    record_blob(&metadata, "team/app", b"loose blob").await;

    // A dry run reports and removes nothing.
    let would = collector.collect(0, 3600, u32::MAX, true).await.unwrap();
    assert_eq!((would.manifests, would.blobs), (1, 3));
    assert!(
        metadata
            .registry
            .manifest_by_digest(&name("team/app"), &untagged)
            .await
            .unwrap()
            .is_some()
    );

    let mut collected = berth::metadata::Collected::default();
    loop {
        let round = collector.collect(0, 3600, 100, false).await.unwrap();
        collected += round;
        if round.reviewed == 0 {
            break;
        }
    }
    // The untagged image's config and layer, and the loose blob.
    assert_eq!((collected.manifests, collected.blobs), (1, 3));
    assert!(
        metadata
            .registry
            .manifest_by_digest(&name("team/app"), &untagged)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        metadata
            .registry
            .manifest_by_digest(&name("team/app"), &kept)
            .await
            .unwrap()
            .is_some()
    );
    let garbage = collector.garbage(100).await.unwrap();
    assert_eq!(garbage.len(), 3);
    let ids: Vec<String> = garbage
        .into_iter()
        .map(|g| match g {
            berth::metadata::Garbage::Blob { id, .. }
            | berth::metadata::Garbage::Upload { id, .. } => id,
        })
        .collect();
    collector.forget_garbage(&ids).await.unwrap();
    assert!(collector.garbage(100).await.unwrap().is_empty());
}

async fn retention_untags_only_what_did_not_move(metadata: Metadata) {
    let collector = &metadata.collector;
    push_image(&metadata, "team/app", "one", &["a", "v1"]).await;
    let tags = collector.tags_under("team").await.unwrap();
    assert_eq!(
        tags.iter().map(|t| t.tag.as_str()).collect::<Vec<_>>(),
        ["a", "v1"]
    );
    assert!(collector.tags_under("teamx").await.unwrap().is_empty());
    let a = tags[0].clone();
    let stale = PushedTag {
        pushed_at: a.pushed_at - 1,
        ..a.clone()
    };
    assert!(!collector.untag_if_unchanged(&stale).await.unwrap());
    metadata
        .policy
        .set_immutable_tags(
            &TagRule {
                path: "team/app".into(),
                pattern: "v*".into(),
            },
            true,
        )
        .await
        .unwrap();
    assert!(!collector.untag_if_unchanged(&tags[1]).await.unwrap());
    assert!(collector.untag_if_unchanged(&a).await.unwrap());
    let left = collector.tags_under("team/app").await.unwrap();
    assert_eq!(
        left.iter().map(|t| t.tag.as_str()).collect::<Vec<_>>(),
        ["v1"]
    );
}

async fn a_closed_store_is_unavailable(metadata: Metadata) {
    metadata.registry.ping().await.unwrap();
    metadata.close().await;
    let error = metadata.registry.ping().await.unwrap_err();
    assert!(matches!(error, MetadataError::Unavailable(_)), "{error:?}");
    assert!(error.is_retryable());
}

/// PostgreSQL cannot store a NUL in text; both engines refuse it before it
/// is sent, as the caller's mistake (not retryable), and carry on.
async fn text_with_a_nul_is_refused_not_sent(metadata: Metadata) {
    let read = metadata.accounts.user("al\0ice").await.unwrap_err();
    assert!(matches!(read, MetadataError::Unstorable(_)), "{read:?}");
    assert!(!read.is_retryable());
    let write = metadata
        .accounts
        .create_user("al\0ice", "hash", false, Claimant::Administrator)
        .await
        .unwrap_err();
    assert!(matches!(write, MetadataError::Unstorable(_)), "{write:?}");
    assert_eq!(
        metadata
            .accounts
            .create_user("alice", "hash", false, Claimant::Administrator)
            .await
            .unwrap(),
        Created::Created
    );
    assert!(metadata.accounts.user("alice").await.unwrap().is_some());
}

/// A freshly migrated store of `engine`; the guard keeps its database alive.
async fn open(engine: &str) -> (Metadata, Box<dyn std::any::Any>) {
    match engine {
        "sqlite" => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite:{}", dir.path().join("berth.db").display());
            (
                berth::metadata::connect(&url, 4).await.unwrap(),
                Box::new(dir),
            )
        }
        _ => {
            let database = PostgresDatabase::create().await;
            let metadata = berth::metadata::connect(&database.url, 4).await.unwrap();
            (metadata, Box::new(database))
        }
    }
}

/// Each contract above, once per engine.
macro_rules! every_engine {
    ($($contract:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $contract() {
                    let (metadata, _guard) = super::open("sqlite").await;
                    super::$contract(metadata).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $contract() {
                    let (metadata, _guard) = super::open("postgres").await;
                    super::$contract(metadata).await;
                }
            )*
        }
    };
}

every_engine!(
    upload_sessions_advance_by_compare_and_set,
    a_blob_is_recorded_once_and_read_only_where_linked,
    a_moved_session_records_nothing,
    quotas_count_each_blob_once_and_refuse_what_would_exceed_them,
    a_manifest_is_stored_only_when_everything_it_names_is_there,
    tags_move_and_immutable_ones_never_do,
    a_blob_a_manifest_uses_cannot_be_unlinked,
    the_catalog_and_referrers_list_in_order,
    users_and_organizations_share_one_namespace,
    one_signing_key_per_generation,
    policies_are_stored_and_replaced,
    the_collector_removes_only_what_nothing_references,
    retention_untags_only_what_did_not_move,
    a_closed_store_is_unavailable,
    text_with_a_nul_is_refused_not_sent,
);
