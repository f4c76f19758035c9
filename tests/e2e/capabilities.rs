//! The Bridge API on a real Synapse, with a bridge run in-process: every remote event kind
//! applied through `apply_remote_event` / `remote_event`, and every Matrix capability handed
//! to the bridge with its targets resolved.

use bridgekit::ruma::OwnedUserId;
use bridgekit::ruma::{MilliSecondsSinceUnixEpoch, UInt};
use bridgekit::{
    ChatId, ChatInfo, GhostEvent, MessageId, PortalKey, RemoteContent, RemoteEvent, RemoteMessage,
    RemoteUser, RemoteUserId,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Env, SERIAL, User, q, wait_for};

fn user(id: &str) -> RemoteUser {
    RemoteUser::new(RemoteUserId::new(id).unwrap()).with_displayname(id.to_uppercase())
}

fn mid(id: &str) -> MessageId {
    MessageId::new(id).unwrap()
}

fn text(id: &str, from: &str, body: &str) -> RemoteMessage {
    RemoteMessage::new(mid(id), user(from), RemoteContent::text(body))
}

fn at(millis: u64) -> MilliSecondsSinceUnixEpoch {
    MilliSecondsSinceUnixEpoch(UInt::new(millis).unwrap())
}

pub(crate) async fn accept_invite(alice: &User) -> String {
    // Incremental syncs: Synapse answers a repeated identical sync from a cache for a while,
    // which would hide an invite that came after the first one.
    let since = std::sync::Mutex::new(None::<String>);
    let room = wait_for("an invite", || async {
        let path = match since.lock().unwrap().clone() {
            Some(token) => format!("/_matrix/client/v3/sync?timeout=0&since={}", q(&token)),
            None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
        };
        let (_, sync) = alice.call(Method::GET, &path, None).await;
        if let Some(next) = sync["next_batch"].as_str() {
            *since.lock().unwrap() = Some(next.to_owned());
        }
        sync["rooms"]["invite"]
            .as_object()
            .and_then(|rooms| rooms.keys().next().cloned())
    })
    .await;
    let path = format!("/_matrix/client/v3/join/{}", q(&room));
    let (status, body) = alice.call(Method::POST, &path, Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    room
}

fn find(timeline: &[Value], what: impl Fn(&Value) -> bool) -> Option<&Value> {
    timeline.iter().find(|e| what(e))
}

fn body_is(body: &'static str) -> impl Fn(&Value) -> bool {
    move |e: &Value| e["type"] == "m.room.message" && e["content"]["body"] == body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_events_become_matrix_events_and_matrix_events_reach_the_bridge_resolved() {
    let _serial = SERIAL.lock().await;
    crate::init();
    let env = Env::synapse_only().await;
    let running = env.run_in_process().await;
    let ctx = running.ctx.clone();
    let alice = env.user("alice").await;
    let alice_id: OwnedUserId = alice.user_id.as_str().try_into().unwrap();
    let key = PortalKey::new(ChatId::from_static("chat-1"));

    // A new chat: room, members, history with original times and a reply, then the invite.
    let mut info = ChatInfo::default();
    info.name = Some("Remote chat".into());
    info.topic = Some("about things".into());
    info.members = vec![user("carol"), user("dave")];
    info.invite = vec![alice_id.clone()];
    info.power = vec![(alice_id.clone(), 50)];
    info.history = vec![
        text("m1", "carol", "old one").at(at(1_600_000_000_000)),
        text("m2", "dave", "old two")
            .at(at(1_600_000_001_000))
            .reply_to(mid("m1")),
    ];
    ctx.apply_remote_event(&key, RemoteEvent::NewChat(info.clone()))
        .await
        .unwrap();
    let room = accept_invite(&alice).await;
    let timeline = alice.timeline(&room).await;
    let old_one = find(&timeline, body_is("old one"))
        .expect("history bridged")
        .clone();
    assert_eq!(old_one["sender"], "@_echo_carol:localhost");
    assert_eq!(old_one["origin_server_ts"], 1_600_000_000_000u64);
    let old_two = find(&timeline, body_is("old two")).unwrap();
    assert_eq!(
        old_two["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        old_one["event_id"]
    );
    let position = |pred: &dyn Fn(&Value) -> bool| timeline.iter().position(pred).unwrap();
    let invite_at = position(&|e| {
        e["type"] == "m.room.member"
            && e["state_key"] == alice.user_id.as_str()
            && e["content"]["membership"] == "invite"
    });
    assert!(
        position(&body_is("old two")) < invite_at,
        "history is in before anyone is invited"
    );
    // Applying the chat again changes nothing (idempotent), and backfill resumes.
    ctx.apply_remote_event(&key, RemoteEvent::NewChat(info))
        .await
        .unwrap();
    ctx.apply_remote_event(
        &key,
        RemoteEvent::Backfill(vec![
            text("m1", "carol", "old one"),
            text("m3", "carol", "old three"),
        ]),
    )
    .await
    .unwrap();

    // Live events.
    let apply = |event| {
        let ctx = ctx.clone();
        let key = key.clone();
        async move { ctx.apply_remote_event(&key, event).await.unwrap() }
    };
    apply(RemoteEvent::Message(text("m4", "carol", "live"))).await;
    apply(RemoteEvent::Edit {
        target_id: mid("m4"),
        edit_id: mid("e1"),
        sender: user("carol"),
        content: RemoteContent::text("live, edited"),
    })
    .await;
    apply(RemoteEvent::Reaction {
        target_id: mid("m4"),
        sender: user("dave"),
        key: "👍".into(),
    })
    .await;
    apply(RemoteEvent::Typing {
        sender: user("dave"),
        typing: true,
    })
    .await;
    apply(RemoteEvent::ReadMarker {
        sender: user("dave"),
        up_to: mid("m4"),
    })
    .await;
    apply(RemoteEvent::MemberJoined(user("erin"))).await;
    apply(RemoteEvent::MemberLeft {
        user: user("erin"),
        reason: Some("spam".into()),
        kicked_by: Some(user("carol")),
    })
    .await;
    apply(RemoteEvent::ChatInfoChanged {
        name: Some("Renamed chat".into()),
        topic: None,
        sender: Some(user("carol")),
    })
    .await;
    ctx.apply_ghost_event(GhostEvent::Renamed {
        old_id: RemoteUserId::from_static("dave"),
        user: RemoteUser::new(RemoteUserId::from_static("david")).with_displayname("David"),
    })
    .await
    .unwrap();
    let renamed_msg = RemoteMessage::new(
        mid("m5"),
        RemoteUser::new(RemoteUserId::from_static("david")),
        RemoteContent::text("renamed"),
    );
    apply(RemoteEvent::Message(renamed_msg)).await;
    // Queued events for one portal arrive in order.
    for n in 0..10 {
        ctx.remote_event(
            &key,
            RemoteEvent::Message(text(&format!("q{n}"), "carol", &format!("queued {n}"))),
        )
        .await
        .unwrap();
    }

    wait_for("the queued messages", || async {
        let t = alice.timeline(&room).await;
        find(&t, body_is("queued 9")).map(|_| ())
    })
    .await;
    let timeline = alice.timeline(&room).await;
    let count = |body: &'static str| timeline.iter().filter(|e| body_is(body)(e)).count();
    assert_eq!(count("old one"), 1, "backfill skipped what was bridged");
    assert_eq!(count("old three"), 1);
    let live = find(&timeline, body_is("live")).unwrap();
    let live_id = live["event_id"].clone();
    let edit = find(&timeline, body_is("* live, edited")).expect("the edit");
    assert_eq!(edit["content"]["m.relates_to"]["rel_type"], "m.replace");
    assert_eq!(edit["content"]["m.relates_to"]["event_id"], live_id);
    let reaction = find(&timeline, |e| e["type"] == "m.reaction").expect("the reaction");
    assert_eq!(reaction["sender"], "@_echo_dave:localhost");
    assert_eq!(reaction["content"]["m.relates_to"]["key"], "👍");
    let kick = find(&timeline, |e| {
        e["type"] == "m.room.member"
            && e["state_key"] == "@_echo_erin:localhost"
            && e["content"]["membership"] == "leave"
    })
    .expect("erin removed");
    assert!(
        kick["content"]["reason"]
            .as_str()
            .unwrap()
            .contains("kicked by CAROL: spam")
    );
    let renamed = timeline
        .iter()
        .rev()
        .find(|e| e["type"] == "m.room.name")
        .unwrap();
    assert_eq!(renamed["content"]["name"], "Renamed chat");
    assert_eq!(renamed["sender"], "@_echo_carol:localhost");
    let from_david = find(&timeline, body_is("renamed")).unwrap();
    assert_eq!(
        from_david["sender"], "@_echo_dave:localhost",
        "the same ghost after a rename"
    );
    let queued: Vec<&str> = timeline
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .filter(|b| b.starts_with("queued "))
        .collect();
    let expected: Vec<String> = (0..10).map(|n| format!("queued {n}")).collect();
    assert_eq!(queued, expected, "in order");
    let (_, profile) = alice
        .call(
            Method::GET,
            &format!("/_matrix/client/v3/profile/{}", q("@_echo_dave:localhost")),
            None,
        )
        .await;
    assert_eq!(profile["displayname"], "David");

    // Taking back the reaction and deleting the message redact them.
    apply(RemoteEvent::ReactionRemoved {
        target_id: mid("m4"),
        sender: RemoteUser::new(RemoteUserId::from_static("david")),
        key: "👍".into(),
    })
    .await;
    apply(RemoteEvent::Delete {
        target_id: mid("m4"),
        sender: Some(user("carol")),
        reason: Some("oops".into()),
    })
    .await;
    let timeline = alice.timeline(&room).await;
    let redactions: Vec<&Value> = timeline
        .iter()
        .filter(|e| e["type"] == "m.room.redaction")
        .collect();
    assert_eq!(redactions.len(), 2, "{redactions:#?}");
    let room_id = bridgekit::ruma::RoomId::parse(&room).unwrap();
    let gone = ctx
        .store()
        .message_by_remote(
            &room_id,
            &bridgekit::MessageId::from_static("m4"),
            &bridgekit::PartId::only(),
        )
        .await
        .unwrap();
    assert!(gone.is_none(), "a deleted message is forgotten");

    // Matrix → bridge: replies, threads, reactions, edits, redactions, membership and room
    // changes arrive with their targets resolved to remote IDs.
    let old_one_id = old_one["event_id"].as_str().unwrap();
    alice
        .send(
            &room,
            json!({"msgtype": "m.text", "body": "re",
            "m.relates_to": {"m.in_reply_to": {"event_id": old_one_id}}}),
        )
        .await;
    alice
        .send(&room, json!({"msgtype": "m.text", "body": "in thread",
            "m.relates_to": {"rel_type": "m.thread", "event_id": old_one_id, "is_falling_back": true,
                             "m.in_reply_to": {"event_id": old_one_id}}}))
        .await;
    let mine = alice.send_text(&room, "mine").await;
    alice
        .send(
            &room,
            json!({"msgtype": "m.text", "body": "* mine!",
            "m.new_content": {"msgtype": "m.text", "body": "mine!"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": mine}}),
        )
        .await;
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.reaction/r1", q(&room));
    let (status, _) = alice
        .call(Method::PUT, &path, Some(json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": old_one_id, "key": "🎉"}})))
        .await;
    assert_eq!(status, 200);
    let path = format!(
        "/_matrix/client/v3/rooms/{}/redact/{}/d1",
        q(&room),
        q(&mine)
    );
    let (status, _) = alice
        .call(Method::PUT, &path, Some(json!({"reason": "nah"})))
        .await;
    assert_eq!(status, 200);
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", q(&room));
    let (status, body) = alice
        .call(Method::PUT, &path, Some(json!({"topic": "new topic"})))
        .await;
    assert_eq!(status, 200, "{body}");

    let expected = [
        "message \"re\" reply_to=Some(\"m1\") thread=None portal=Some(\"chat-1\")".to_owned(),
        "message \"in thread\" reply_to=None thread=Some(\"m1\") portal=Some(\"chat-1\")"
            .to_owned(),
        "message \"mine\" reply_to=None thread=None portal=Some(\"chat-1\")".to_owned(),
        format!("edit mx:{mine} \"mine!\""),
        "reaction m1 🎉".to_owned(),
        format!("redaction message mx:{mine} reason=Some(\"nah\")"),
        "room Topic(\"new topic\")".to_owned(),
    ];
    wait_for("the bridge to be handed every event", || async {
        let seen = running.seen.lock().unwrap().clone();
        let relevant: Vec<String> = seen
            .into_iter()
            .filter(|l| !l.starts_with("membership"))
            .collect();
        (relevant == expected).then_some(())
    })
    .await;
    let seen = running.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|l| l.starts_with(&format!("membership {} join", alice.user_id))),
        "{seen:#?}"
    );
    running.stop().await;
}
