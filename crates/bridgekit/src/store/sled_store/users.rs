//! Matrix users, their logins, and which logins are in which portal; each index written in
//! the same transaction as the record it points at.

use ruma::UserId;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::keys::{key, parts};
use super::portals::portal_key;
use super::{SledStore, corrupt, json, to_json, tx_result};
use crate::ids::LoginId;
use crate::store::StoreError;
use crate::store::records::PortalKey;
use crate::store::users::{LoginRecord, PortalLogin, UserRecord};

fn abort(e: impl std::fmt::Display) -> ConflictableTransactionError<String> {
    ConflictableTransactionError::Abort(e.to_string())
}

/// The key of a login's place in a portal: the portal's key parts, then the login.
fn link_key(portal: &PortalKey, login: &str) -> Vec<u8> {
    let mut k = portal_key(portal);
    k.extend(key(&[login]));
    k
}

/// The key of the reverse index: the login, then the portal's key parts.
fn reverse_link_key(login: &str, portal: &PortalKey) -> Vec<u8> {
    let mut k = key(&[login]);
    k.extend(portal_key(portal));
    k
}

impl SledStore {
    pub(super) fn user_sync(&self, user_id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        self.trees
            .users
            .get(user_id.as_str())?
            .map(|bytes| json("users", &bytes))
            .transpose()
    }

    pub(super) fn put_user_sync(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.trees
            .users
            .insert(user.user_id.as_str(), to_json(user))?;
        Ok(())
    }

    pub(super) fn put_login_sync(&self, login: &LoginRecord) -> Result<(), StoreError> {
        let id = login.id.as_str();
        let value = to_json(login);
        let by_user_key = key(&[login.user_id.as_str(), id]);
        let trees = (&self.trees.logins, &self.trees.logins_by_user);
        tx_result(trees.transaction(|(logins, by_user)| {
            if let Some(old) = logins.get(id)? {
                let old: LoginRecord = serde_json::from_slice(&old).map_err(abort)?;
                if old.user_id != login.user_id {
                    return Err(abort(format!(
                        "login {id} belongs to {}, not {}",
                        old.user_id, login.user_id
                    )));
                }
            }
            logins.insert(id, value.as_slice())?;
            by_user.insert(by_user_key.as_slice(), &[])?;
            Ok(())
        }))
    }

    pub(super) fn login_sync(&self, id: &LoginId) -> Result<Option<LoginRecord>, StoreError> {
        self.trees
            .logins
            .get(id.as_str())?
            .map(|bytes| json("logins", &bytes))
            .transpose()
    }

    pub(super) fn logins_of_sync(&self, user_id: &UserId) -> Result<Vec<LoginRecord>, StoreError> {
        let mut out = Vec::new();
        for entry in self
            .trees
            .logins_by_user
            .scan_prefix(key(&[user_id.as_str()]))
        {
            let (k, _) = entry?;
            let id = match parts(&k).as_deref() {
                Some([_, login]) => {
                    LoginId::new(login.as_str()).map_err(|e| corrupt("logins_by_user", e))?
                }
                _ => return Err(corrupt("logins_by_user", "malformed key")),
            };
            if let Some(login) = self.login_sync(&id)? {
                out.push(login);
            }
        }
        // Keys order by length first; callers get login ID order.
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    pub(super) fn all_logins_sync(&self) -> Result<Vec<LoginRecord>, StoreError> {
        self.trees
            .logins
            .iter()
            .map(|entry| json("logins", &entry?.1))
            .collect()
    }

    pub(super) fn delete_login_sync(
        &self,
        id: &LoginId,
    ) -> Result<Option<LoginRecord>, StoreError> {
        let links: Vec<PortalLogin> = self.login_portals_sync(id)?;
        let t = &self.trees;
        let trees = (
            &t.logins,
            &t.logins_by_user,
            &t.portal_logins,
            &t.login_portals,
        );
        tx_result(
            trees.transaction(|(logins, by_user, portal_logins, login_portals)| {
                let Some(bytes) = logins.remove(id.as_str())? else {
                    return Ok(None);
                };
                let login: LoginRecord = serde_json::from_slice(&bytes).map_err(abort)?;
                by_user.remove(key(&[login.user_id.as_str(), id.as_str()]))?;
                for link in &links {
                    portal_logins.remove(link_key(&link.portal, id.as_str()))?;
                    login_portals.remove(reverse_link_key(id.as_str(), &link.portal))?;
                }
                Ok(Some(login))
            }),
        )
    }

    pub(super) fn put_portal_login_sync(&self, link: &PortalLogin) -> Result<(), StoreError> {
        let login = link.login_id.as_str();
        // The user's other logins in the portal, whose preference this one may take over.
        let others: Vec<PortalLogin> = if link.preferred {
            self.portal_logins_sync(&link.portal)?
                .into_iter()
                .filter(|l| l.user_id == link.user_id && l.login_id != link.login_id && l.preferred)
                .collect()
        } else {
            Vec::new()
        };
        let trees = (&self.trees.portal_logins, &self.trees.login_portals);
        tx_result(trees.transaction(|(portal_logins, login_portals)| {
            for other in &others {
                let mut other = other.clone();
                other.preferred = false;
                put_link(portal_logins, &other)?;
            }
            put_link(portal_logins, link)?;
            login_portals.insert(reverse_link_key(login, &link.portal), &[])?;
            Ok(())
        }))
    }

    pub(super) fn remove_portal_login_sync(
        &self,
        portal: &PortalKey,
        login_id: &LoginId,
    ) -> Result<(), StoreError> {
        let login = login_id.as_str();
        let trees = (&self.trees.portal_logins, &self.trees.login_portals);
        tx_result(trees.transaction(|(portal_logins, login_portals)| {
            portal_logins.remove(link_key(portal, login))?;
            login_portals.remove(reverse_link_key(login, portal))?;
            Ok(())
        }))
    }

    pub(super) fn portal_logins_sync(
        &self,
        portal: &PortalKey,
    ) -> Result<Vec<PortalLogin>, StoreError> {
        let mut links: Vec<PortalLogin> = self
            .trees
            .portal_logins
            .scan_prefix(portal_key(portal))
            .map(|entry| json("portal_logins", &entry?.1))
            .collect::<Result<_, _>>()?;
        links.sort_by(|a, b| a.login_id.cmp(&b.login_id));
        Ok(links)
    }

    pub(super) fn login_portals_sync(
        &self,
        login_id: &LoginId,
    ) -> Result<Vec<PortalLogin>, StoreError> {
        let mut out = Vec::new();
        let prefix = key(&[login_id.as_str()]);
        for entry in self.trees.login_portals.scan_prefix(&prefix) {
            let (k, _) = entry?;
            let portal = match parts(&k[prefix.len()..]).as_deref() {
                Some([chat, receiver]) => portal_from_parts(chat, receiver)?,
                _ => return Err(corrupt("login_portals", "malformed key")),
            };
            if let Some(bytes) = self
                .trees
                .portal_logins
                .get(link_key(&portal, login_id.as_str()))?
            {
                out.push(json("portal_logins", &bytes)?);
            }
        }
        out.sort_by(|a: &PortalLogin, b| a.portal.cmp(&b.portal));
        Ok(out)
    }
}

fn put_link(
    portal_logins: &TransactionalTree,
    link: &PortalLogin,
) -> Result<(), ConflictableTransactionError<String>> {
    portal_logins.insert(
        link_key(&link.portal, link.login_id.as_str()),
        to_json(link),
    )?;
    Ok(())
}

fn portal_from_parts(chat: &str, receiver: &str) -> Result<PortalKey, StoreError> {
    let chat = crate::ids::ChatId::new(chat).map_err(|e| corrupt("login_portals", e))?;
    let mut portal = PortalKey::new(chat);
    if !receiver.is_empty() {
        portal =
            portal.with_receiver(LoginId::new(receiver).map_err(|e| corrupt("login_portals", e))?);
    }
    Ok(portal)
}
