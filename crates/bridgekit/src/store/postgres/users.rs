//! Matrix users, their logins, and which logins are in which portal, in PostgreSQL. Users and
//! logins are kept as JSONB next to the columns they are found by.

use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;

use super::{corrupt, row_opt, rows, run};
use crate::ids::LoginId;
use crate::store::StoreError;
use crate::store::records::PortalKey;
use crate::store::users::{LoginRecord, PortalLogin, UserRecord};

pub(super) const LINK_COLUMNS: &str = "remote_id, receiver, login_id, user_id, preferred";

fn record<T: serde::de::DeserializeOwned>(table: &'static str, row: &Row) -> Result<T, StoreError> {
    serde_json::from_value(row.get::<_, Value>(0)).map_err(|e| corrupt(table, e))
}

pub(super) fn user_from_row(row: &Row) -> Result<UserRecord, StoreError> {
    record("users", row)
}

pub(super) fn login_from_row(row: &Row) -> Result<LoginRecord, StoreError> {
    record("logins", row)
}

pub(super) fn link_from_row(row: &Row) -> Result<PortalLogin, StoreError> {
    let receiver: String = row.get(1);
    let user: &str = row.get(3);
    let mut portal = PortalKey::new(row.get(0));
    if !receiver.is_empty() {
        portal =
            portal.with_receiver(LoginId::new(receiver).map_err(|e| corrupt("portal_logins", e))?);
    }
    Ok(PortalLogin {
        portal,
        login_id: row.get(2),
        user_id: ruma::UserId::parse(user).map_err(|e| corrupt("portal_logins", e))?,
        preferred: row.get(4),
    })
}

fn json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("store records serialize")
}

pub(super) async fn get_user(
    c: &impl GenericClient,
    user_id: &ruma::UserId,
) -> Result<Option<UserRecord>, StoreError> {
    row_opt(
        c,
        "SELECT record FROM users WHERE user_id = $1",
        &[&user_id.as_str()],
    )
    .await?
    .as_ref()
    .map(user_from_row)
    .transpose()
}

pub(super) async fn put_user(c: &impl GenericClient, user: &UserRecord) -> Result<(), StoreError> {
    run(
        c,
        "INSERT INTO users (user_id, record) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET record = EXCLUDED.record",
        &[&user.user_id.as_str(), &json(user)],
    )
    .await?;
    Ok(())
}

/// Inserts or replaces a login; one held by another Matrix user is left alone and refused.
pub(super) async fn put_login(
    c: &impl GenericClient,
    login: &LoginRecord,
) -> Result<(), StoreError> {
    let written = run(
        c,
        "INSERT INTO logins (login_id, user_id, record) VALUES ($1, $2, $3)
         ON CONFLICT (login_id) DO UPDATE SET record = EXCLUDED.record
         WHERE logins.user_id = EXCLUDED.user_id",
        &[&login.id, &login.user_id.as_str(), &json(login)],
    )
    .await?;
    if written == 0 {
        return Err(StoreError::Conflict(format!(
            "login {} belongs to another Matrix user, not {}",
            login.id, login.user_id
        )));
    }
    Ok(())
}

pub(super) async fn get_login(
    c: &impl GenericClient,
    id: &LoginId,
) -> Result<Option<LoginRecord>, StoreError> {
    row_opt(c, "SELECT record FROM logins WHERE login_id = $1", &[id])
        .await?
        .as_ref()
        .map(login_from_row)
        .transpose()
}

pub(super) async fn logins_of(
    c: &impl GenericClient,
    user_id: &ruma::UserId,
) -> Result<Vec<LoginRecord>, StoreError> {
    rows(
        c,
        "SELECT record FROM logins WHERE user_id = $1 ORDER BY login_id COLLATE \"C\"",
        &[&user_id.as_str()],
    )
    .await?
    .iter()
    .map(login_from_row)
    .collect()
}

pub(super) async fn all_logins(c: &impl GenericClient) -> Result<Vec<LoginRecord>, StoreError> {
    rows(
        c,
        "SELECT record FROM logins ORDER BY login_id COLLATE \"C\"",
        &[],
    )
    .await?
    .iter()
    .map(login_from_row)
    .collect()
}

/// Deletes a login and its places in portals; run it in a transaction.
pub(super) async fn delete_login(
    c: &impl GenericClient,
    id: &LoginId,
) -> Result<Option<LoginRecord>, StoreError> {
    run(c, "DELETE FROM portal_logins WHERE login_id = $1", &[id]).await?;
    row_opt(
        c,
        "DELETE FROM logins WHERE login_id = $1 RETURNING record",
        &[id],
    )
    .await?
    .as_ref()
    .map(login_from_row)
    .transpose()
}

/// Records a login's place in a portal; a preferred one takes the preference from its user's
/// other logins there. Run it in a transaction.
pub(super) async fn put_link(c: &impl GenericClient, link: &PortalLogin) -> Result<(), StoreError> {
    let receiver = link.portal.receiver.as_deref().unwrap_or("");
    if link.preferred {
        run(
            c,
            "UPDATE portal_logins SET preferred = FALSE
             WHERE remote_id = $1 AND receiver = $2 AND user_id = $3 AND login_id <> $4",
            &[
                &link.portal.remote_id,
                &receiver,
                &link.user_id.as_str(),
                &link.login_id,
            ],
        )
        .await?;
    }
    run(
        c,
        "INSERT INTO portal_logins (remote_id, receiver, login_id, user_id, preferred)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (remote_id, receiver, login_id)
         DO UPDATE SET user_id = EXCLUDED.user_id, preferred = EXCLUDED.preferred",
        &[
            &link.portal.remote_id,
            &receiver,
            &link.login_id,
            &link.user_id.as_str(),
            &link.preferred,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn remove_link(
    c: &impl GenericClient,
    portal: &PortalKey,
    login_id: &LoginId,
) -> Result<(), StoreError> {
    run(
        c,
        "DELETE FROM portal_logins WHERE remote_id = $1 AND receiver = $2 AND login_id = $3",
        &[
            &portal.remote_id,
            &portal.receiver.as_deref().unwrap_or(""),
            login_id,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn portal_links(
    c: &impl GenericClient,
    portal: &PortalKey,
) -> Result<Vec<PortalLogin>, StoreError> {
    rows(
        c,
        &format!(
            "SELECT {LINK_COLUMNS} FROM portal_logins WHERE remote_id = $1 AND receiver = $2
             ORDER BY login_id COLLATE \"C\""
        ),
        &[&portal.remote_id, &portal.receiver.as_deref().unwrap_or("")],
    )
    .await?
    .iter()
    .map(link_from_row)
    .collect()
}

pub(super) async fn login_links(
    c: &impl GenericClient,
    login_id: &LoginId,
) -> Result<Vec<PortalLogin>, StoreError> {
    rows(
        c,
        &format!(
            "SELECT {LINK_COLUMNS} FROM portal_logins WHERE login_id = $1
             ORDER BY remote_id COLLATE \"C\", receiver COLLATE \"C\""
        ),
        &[login_id],
    )
    .await?
    .iter()
    .map(link_from_row)
    .collect()
}
