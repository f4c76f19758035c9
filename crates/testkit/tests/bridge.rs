//! A bridge runs against the fake homeserver as against Synapse: invited, it joins; Matrix
//! messages reach its network in order, across an outage and a restart; what its network says
//! shows in the room from the right ghost.

use std::time::Duration;

use bridgekit::ruma::RoomId;
use bridgekit::{
    Bridge, BridgeContext, BridgeError, ChatId, MatrixMessage, MessageId, PortalKey, RemoteContent,
    RemoteEvent, RemoteMessage, RemoteUser, RemoteUserId, RetryLater, Sent, async_trait,
};
use bridgekit_testkit::{ScriptedNetwork, TestBridge, TestHomeserver};

const WAIT: Duration = Duration::from_secs(10);

/// Every room is a chat named by its room ID; every message's text goes to the network.
#[derive(Clone)]
struct Relay(ScriptedNetwork<String>);

#[async_trait]
impl Bridge for Relay {
    async fn portal_for_room(
        &self,
        _: &BridgeContext,
        room_id: &RoomId,
    ) -> Result<Option<ChatId>, BridgeError> {
        Ok(Some(ChatId::new(room_id.as_str())?))
    }

    async fn handle_message(
        &self,
        _: &BridgeContext,
        m: MatrixMessage,
    ) -> Result<Sent, BridgeError> {
        match self.0.take(m.content.body().to_owned()) {
            Ok(n) => Ok(Sent::message(MessageId::new(format!("m{n}"))?)),
            Err(down) => Err(RetryLater::new(down).into()),
        }
    }
}

#[tokio::test]
async fn messages_reach_the_network_and_the_network_answers_as_a_ghost() -> Result<(), BridgeError>
{
    let hs = TestHomeserver::start();
    let network = ScriptedNetwork::new();
    let bridge = TestBridge::start(&hs, Relay(network.clone())).await;

    let alice = hs.user("alice");
    let room = alice.create_room();
    alice.invite(&room, bridge.bot_user_id().as_str());
    alice.say(&room, "hello");
    assert_eq!(network.wait_received(1, WAIT).await, ["hello"]);
    assert!(
        hs.members(&room)
            .get(bridge.bot_user_id().as_str())
            .is_some_and(|m| m == "join"),
        "the bot joined on its invite: {:?}",
        hs.members(&room)
    );

    // The network says something: it shows in the room from bob's ghost.
    let ctx = bridge.ctx();
    let bob = RemoteUserId::new("bob")?;
    let portal = PortalKey::new(ChatId::new(room.as_str())?);
    let event = RemoteMessage::new(
        MessageId::new("r1")?,
        RemoteUser::new(bob.clone()).with_displayname("Bob"),
        RemoteContent::text("hi alice"),
    );
    ctx.remote_event(&portal, RemoteEvent::Message(event))
        .await?;
    let ghost = bridge.ghost_user_id(&bob);
    let shown = hs.wait_for_message(&room, ghost.as_str(), "hi alice").await;
    assert_eq!(shown.sender, ghost.as_str());
    assert_eq!(hs.displayname(ghost.as_str()).as_deref(), Some("Bob"));
    Ok(())
}

#[tokio::test]
async fn an_outage_and_a_restart_lose_nothing_and_keep_order() {
    let hs = TestHomeserver::start();
    let network = ScriptedNetwork::new();
    let mut bridge = TestBridge::builder(&hs)
        .set("bridge.handler_retry_secs", 600)
        .start(Relay(network.clone()))
        .await;
    let alice = hs.user("alice");
    let room = alice.create_room();
    alice.invite(&room, bridge.bot_user_id().as_str());
    alice.say(&room, "one");
    network.wait_received(1, WAIT).await;

    network.set_down(true);
    alice.say(&room, "two");
    alice.say(&room, "three");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(network.received(), ["one"], "nothing passes while down");

    // A restart while the network is down, then the network comes back.
    bridge.restart(Relay(network.clone())).await;
    network.set_down(false);
    alice.say(&room, "four");
    let received = network.wait_received(4, WAIT).await;
    assert_eq!(received, ["one", "two", "three", "four"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(network.received().len(), 4, "each message arrives once");
}
