//! A bridge whose remote network is a line feed over TCP (`network: {feed: host:port,
//! rooms: N}`): each line `n` is remote message `m<n>` saying `e<n>` in chat `chat<n % N>`,
//! handed over with `ctx.remote_event` and acknowledged (`ack n`) once that returns. The
//! remote queue's crash test drives it; the fake homeserver counts what reaches the rooms.

use bridgekit::ruma::RoomId;
use bridgekit::{
    Bridge, BridgeContext, BridgeError, ChatId, MatrixMessage, MessageId, Portal, PortalKey,
    RemoteContent, RemoteEvent, RemoteMessage, RemoteUser, RemoteUserId, Sent, async_trait,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(serde::Deserialize)]
struct Settings {
    feed: String,
    rooms: u64,
}

struct Feed;

fn portal(n: u64, rooms: u64) -> Result<PortalKey, BridgeError> {
    Ok(PortalKey::new(ChatId::new(format!("chat{}", n % rooms))?))
}

/// Follows the feed until it ends, handing each line over and acknowledging it.
async fn follow(ctx: &BridgeContext, settings: &Settings) -> Result<(), BridgeError> {
    let stream = tokio::net::TcpStream::connect(&settings.feed).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let n: u64 = line.trim().parse()?;
        let author = RemoteUser::new(RemoteUserId::new(format!("u{}", n % 7))?);
        let message = RemoteMessage::new(
            MessageId::new(format!("m{n}"))?,
            author,
            RemoteContent::text(format!("e{n}")),
        );
        let key = portal(n, settings.rooms)?;
        ctx.remote_event(&key, RemoteEvent::Message(message))
            .await?;
        write.write_all(format!("ack {n}\n").as_bytes()).await?;
    }
    Ok(())
}

#[async_trait]
impl Bridge for Feed {
    async fn start(&self, ctx: &BridgeContext) -> Result<(), BridgeError> {
        let settings: Settings = ctx.network_config()?;
        for r in 0..settings.rooms {
            let key = portal(r, settings.rooms)?;
            if ctx.store().portal_by_key(&key).await?.is_none() {
                let room = RoomId::parse(format!("!r{r}:localhost"))?;
                ctx.store().put_portal(&Portal::new(key, room)).await?;
            }
        }
        let ctx = ctx.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = follow(&ctx, &settings).await {
                    tracing::debug!(%error, "feed interrupted; reconnecting");
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        });
        Ok(())
    }

    async fn handle_message(
        &self,
        _ctx: &BridgeContext,
        _message: MatrixMessage,
    ) -> Result<Sent, BridgeError> {
        Ok(Sent::pending())
    }
}

fn main() -> std::process::ExitCode {
    bridgekit::cli::main(Feed)
}
