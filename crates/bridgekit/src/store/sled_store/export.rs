//! Export and import of every record (for `migrate-store`), and the bridge's own values.

use ruma::{RoomId, UserId};
use sled::{IVec, Tree};

use super::keys::{decode_u64, key, parts};
use super::{SledStore, corrupt, json, to_json};
use crate::store::export::{EXPORT_BATCH, Record, RecordSink};
use crate::store::queues::InboxItem;
use crate::store::{StoreError, records::RoomProfile};

/// Up to `n` entries of `tree` after `after`, read without holding an iterator across an
/// await.
fn page(tree: &Tree, after: Option<&IVec>, n: usize) -> Result<Vec<(IVec, IVec)>, StoreError> {
    let iter = match after {
        None => tree.iter(),
        Some(after) => tree.range::<&[u8], _>((
            std::ops::Bound::Excluded(after.as_ref()),
            std::ops::Bound::Unbounded,
        )),
    };
    Ok(iter.take(n).collect::<Result<_, _>>()?)
}

fn two_parts(tree: &'static str, k: &[u8]) -> Result<(String, String), StoreError> {
    match parts(k).as_deref() {
        Some([a, b]) => Ok((a.clone(), b.clone())),
        _ => Err(corrupt(tree, "malformed key")),
    }
}

fn user(tree: &'static str, s: &str) -> Result<ruma::OwnedUserId, StoreError> {
    UserId::parse(s).map_err(|e| corrupt(tree, e))
}

fn room(tree: &'static str, s: &str) -> Result<ruma::OwnedRoomId, StoreError> {
    RoomId::parse(s).map_err(|e| corrupt(tree, e))
}

impl SledStore {
    /// Turns one entry of `tree` (named `name`) into a record.
    fn to_record(&self, name: &'static str, k: &[u8], v: &[u8]) -> Result<Record, StoreError> {
        Ok(match name {
            "reactions" => Record::Reaction(json(name, v)?),
            "portals" => Record::Portal(json(name, v)?),
            "ghosts" => Record::Ghost {
                user_id: user(name, std::str::from_utf8(k).map_err(|e| corrupt(name, e))?)?,
                record: json(name, v)?,
            },
            "ghost_joined" => {
                let (u, r) = two_parts(name, k)?;
                Record::Joined {
                    user_id: user(name, &u)?,
                    room_id: room(name, &r)?,
                }
            }
            "ghost_room_profiles" => {
                let (u, r) = two_parts(name, k)?;
                let (displayname, avatar_url): RoomProfile = json(name, v)?;
                Record::RoomProfile {
                    user_id: user(name, &u)?,
                    room_id: room(name, &r)?,
                    displayname,
                    avatar_url,
                }
            }
            "values" => {
                let (namespace, key) = two_parts(name, k)?;
                Record::Value {
                    namespace,
                    key,
                    value: json(name, v)?,
                }
            }
            "users" => Record::User(json(name, v)?),
            "logins" => Record::Login(json(name, v)?),
            "portal_logins" => Record::PortalLogin(json(name, v)?),
            // The order tree maps sequence → key, so records come out oldest first.
            "txn_order" => Record::Transaction { key: v.to_vec() },
            "inbox" => Record::Inbox(InboxItem::decode(v)?),
            "outbox" => Record::Outbox(json(name, v)?),
            "remote_queue" => Record::Remote(json(name, v)?),
            "crypto" => Record::Crypto {
                key: String::from_utf8(k.to_vec()).map_err(|e| corrupt(name, e))?,
                value: v.to_vec(),
            },
            other => return Err(corrupt(other, "not exported")),
        })
    }

    pub(super) async fn export_all(&self, sink: &mut dyn RecordSink) -> Result<(), StoreError> {
        let t = &self.trees;
        let boot = t.meta.get("boot")?.map(|v| decode_u64(&v)).unwrap_or(0);
        sink.accept(vec![Record::Boot(boot)]).await?;
        let before_messages: [(&'static str, &Tree); 7] = [
            ("portals", &t.portals),
            ("users", &t.users),
            ("logins", &t.logins),
            ("portal_logins", &t.portal_logins),
            ("ghosts", &t.ghosts),
            ("ghost_joined", &t.ghost_joined),
            ("ghost_room_profiles", &t.ghost_room_profiles),
        ];
        for (name, tree) in before_messages {
            self.export_tree(name, tree, sink).await?;
        }
        let mut mappings = self.messages.export();
        loop {
            let page = mappings.next_page(EXPORT_BATCH)?;
            if page.is_empty() {
                break;
            }
            sink.accept(page.into_iter().map(Record::Message).collect())
                .await?;
        }
        let after_messages: [(&'static str, &Tree); 7] = [
            ("reactions", &t.reactions),
            ("values", &t.values),
            ("txn_order", &t.txn_order),
            ("inbox", &t.inbox),
            ("outbox", &t.outbox),
            ("remote_queue", &t.remote_queue),
            ("crypto", &t.crypto),
        ];
        for (name, tree) in after_messages {
            self.export_tree(name, tree, sink).await?;
        }
        // Inbox items kept per transaction (bounded by the intake's backpressure).
        let batched: Vec<Record> = self
            .pending_items_sync()?
            .into_iter()
            .filter(|(seq, _)| seq & super::inbox::BATCHED != 0)
            .map(|(_, item)| Record::Inbox(item))
            .collect();
        for chunk in batched.chunks(EXPORT_BATCH) {
            sink.accept(chunk.to_vec()).await?;
        }
        Ok(())
    }

    /// Every entry of `tree` (named `name`) as records, a page at a time.
    async fn export_tree(
        &self,
        name: &'static str,
        tree: &Tree,
        sink: &mut dyn RecordSink,
    ) -> Result<(), StoreError> {
        let mut after = None;
        loop {
            let entries = page(tree, after.as_ref(), EXPORT_BATCH)?;
            let Some((last, _)) = entries.last() else {
                return Ok(());
            };
            after = Some(last.clone());
            let batch = entries
                .iter()
                .map(|(k, v)| self.to_record(name, k, v))
                .collect::<Result<Vec<_>, _>>()?;
            sink.accept(batch).await?;
        }
    }

    pub(super) fn import_sync(&self, records: &[Record]) -> Result<(), StoreError> {
        let t = &self.trees;
        for record in records {
            match record {
                Record::Message(m) => self.messages.insert(m)?,
                Record::Reaction(r) => self.insert_reaction_sync(r)?,
                Record::Portal(p) => self.put_portal_sync(p)?,
                Record::Ghost { user_id, record } => {
                    let record = record.clone();
                    self.update_ghost_sync(user_id, &move |r| *r = record.clone())?;
                }
                Record::Joined { user_id, room_id } => {
                    self.set_joined_sync(user_id, room_id, true)?
                }
                Record::RoomProfile {
                    user_id,
                    room_id,
                    displayname,
                    avatar_url,
                } => self.set_room_profile_sync(
                    user_id,
                    room_id,
                    &(displayname.clone(), avatar_url.clone()),
                )?,
                Record::Value {
                    namespace,
                    key: k,
                    value,
                } => self.set_value_sync(namespace, k, Some(value))?,
                Record::User(user) => self.put_user_sync(user)?,
                Record::Login(login) => self.put_login_sync(login)?,
                Record::PortalLogin(link) => self.put_portal_login_sync(link)?,
                Record::Transaction { key: k } => {
                    let seq = self.db.generate_id()?;
                    t.txns.insert(k.as_slice(), &seq.to_be_bytes())?;
                    t.txn_order.insert(seq.to_be_bytes(), k.as_slice())?;
                }
                Record::Inbox(item) => {
                    let seq = self.db.generate_id()?;
                    t.inbox.insert(seq.to_be_bytes(), item.encode())?;
                    self.depths.inbox_items.add(1);
                }
                Record::Outbox(entry) => {
                    self.outbox_append(entry)?;
                }
                Record::Remote(item) => {
                    self.remote_append(item)?;
                }
                Record::Crypto { key: k, value } => {
                    t.crypto.insert(k.as_bytes(), value.as_slice())?;
                }
                Record::Boot(n) => {
                    let n = *n;
                    t.meta.update_and_fetch("boot", |old| {
                        let old = old.map(decode_u64).unwrap_or(0);
                        Some(old.max(n).to_be_bytes().to_vec())
                    })?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn is_empty_sync(&self) -> bool {
        self.trees.records().iter().all(|tree| tree.is_empty()) && self.messages.is_empty()
    }

    pub(super) fn value_sync(
        &self,
        namespace: &str,
        k: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        self.trees
            .values
            .get(key(&[namespace, k]))?
            .map(|bytes| json("values", &bytes))
            .transpose()
    }

    pub(super) fn set_value_sync(
        &self,
        namespace: &str,
        k: &str,
        value: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        let k = key(&[namespace, k]);
        match value {
            Some(value) => self.trees.values.insert(k, to_json(value))?,
            None => self.trees.values.remove(k)?,
        };
        Ok(())
    }
}
