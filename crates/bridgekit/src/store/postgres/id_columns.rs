//! Remote IDs as `text` columns: written as their string, checked again when read.

use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use crate::ids::{ChatId, LoginId, MessageId, PartId, RemoteTxnId, RemoteUserId};

type BoxError = Box<dyn std::error::Error + Sync + Send>;

macro_rules! text_column {
    ($($name:ident),*) => {$(
        impl ToSql for $name {
            fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
                self.as_str().to_sql(ty, out)
            }

            fn accepts(ty: &Type) -> bool {
                <&str as ToSql>::accepts(ty)
            }

            to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $name {
            fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
                Ok($name::new(<&str as FromSql>::from_sql(ty, raw)?)?)
            }

            fn accepts(ty: &Type) -> bool {
                <&str as FromSql>::accepts(ty)
            }
        }
    )*};
}

text_column!(
    ChatId,
    LoginId,
    MessageId,
    PartId,
    RemoteTxnId,
    RemoteUserId
);
