//! The puppet client against a real Synapse: every call a bridge makes, as ghosts, and the
//! error mappings of masquerading outside the namespace, of an unregistered ghost and of a
//! missing power level.

use std::collections::BTreeMap;
use std::time::Duration;

use bridgekit::ruma::api::Direction;
use bridgekit::ruma::api::client::account::whoami;
use bridgekit::ruma::events::room::message::{ReplacementMetadata, RoomMessageEventContent};
use bridgekit::ruma::events::room::name::RoomNameEventContent;
use bridgekit::ruma::events::room::topic::RoomTopicEventContent;
use bridgekit::ruma::presence::PresenceState;
use bridgekit::ruma::serde::Raw;
use bridgekit::ruma::to_device::DeviceIdOrAllDevices;
use bridgekit::ruma::{OwnedServerName, RoomId, RoomOrAliasId, UserId};
use bridgekit::{ClientError, CreateRoom, Outgoing};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Env, SERIAL, User, q};

fn raw(v: Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(&v).unwrap()
}

async fn event(alice: &User, room: &RoomId, event_id: &str) -> Value {
    let (status, ev) = alice
        .call(
            Method::GET,
            &format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                q(room.as_str()),
                q(event_id)
            ),
            None,
        )
        .await;
    assert_eq!(status, 200, "{ev}");
    ev
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_state_profile_media_and_signal_call_works_as_a_ghost() {
    crate::init();
    let _serial = SERIAL.lock().await;
    let env = Env::synapse_only().await;
    let alice = env.user("alice").await;
    let bridge = env.run_in_process().await;
    let ctx = bridge.ctx.clone();
    let room = RoomId::parse(alice.room_with_bot(&env.bot).await).unwrap();
    let ghost = ctx.ghost(&bridgekit::RemoteUserId::from_static("carol"));

    // Message events of every kind, each through the outbox.
    let text = ghost
        .send(&room, &RoomMessageEventContent::text_plain("plain"))
        .await
        .unwrap();
    let notice = ghost
        .send(&room, &RoomMessageEventContent::notice_plain("a notice"))
        .await
        .unwrap();
    let emote = ghost
        .send(&room, &RoomMessageEventContent::emote_plain("waves"))
        .await
        .unwrap();
    let html = ghost
        .send(
            &room,
            &RoomMessageEventContent::text_html("bold", "<b>bold</b>"),
        )
        .await
        .unwrap();
    let reply = json!({"msgtype": "m.text", "body": "a reply", "m.relates_to": {"m.in_reply_to": {"event_id": text}}});
    let reply = ghost
        .submit(Outgoing::raw_message(&room, "m.room.message", raw(reply)))
        .await
        .unwrap()
        .unwrap();
    let thread = json!({"msgtype": "m.text", "body": "in a thread", "m.relates_to": {"rel_type": "m.thread", "event_id": text}});
    let thread = ghost
        .submit(Outgoing::raw_message(&room, "m.room.message", raw(thread)))
        .await
        .unwrap()
        .unwrap();
    let edit = RoomMessageEventContent::text_plain("plain, edited")
        .make_replacement(ReplacementMetadata::new(text.clone(), None));
    let edit = ghost.send(&room, &edit).await.unwrap();
    let reaction = ghost.react(&room, &text, "👍").await.unwrap();
    assert!(reaction.is_some());
    assert_eq!(
        ghost.react(&room, &text, "👍").await.unwrap(),
        None,
        "M_DUPLICATE_ANNOTATION counts as success"
    );
    let old = Outgoing::message(&room, &RoomMessageEventContent::text_plain("old news"))
        .unwrap()
        .timestamp(bridgekit::ruma::MilliSecondsSinceUnixEpoch(
            bridgekit::ruma::UInt::new(1_600_000_000_000).unwrap(),
        ));
    let old = ghost.submit(old).await.unwrap().unwrap();

    let ghost_id = ghost.user_id().as_str();
    let ev = event(&alice, &room, text.as_str()).await;
    assert_eq!(
        (ev["sender"].as_str(), ev["content"]["body"].as_str()),
        (Some(ghost_id), Some("plain"))
    );
    assert_eq!(
        event(&alice, &room, notice.as_str()).await["content"]["msgtype"],
        "m.notice"
    );
    assert_eq!(
        event(&alice, &room, emote.as_str()).await["content"]["msgtype"],
        "m.emote"
    );
    assert_eq!(
        event(&alice, &room, html.as_str()).await["content"]["formatted_body"],
        "<b>bold</b>"
    );
    assert_eq!(
        event(&alice, &room, reply.as_str()).await["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        text.as_str()
    );
    assert_eq!(
        event(&alice, &room, thread.as_str()).await["content"]["m.relates_to"]["rel_type"],
        "m.thread"
    );
    assert_eq!(
        event(&alice, &room, edit.as_str()).await["content"]["m.new_content"]["body"],
        "plain, edited"
    );
    let r = event(&alice, &room, reaction.unwrap().as_str()).await;
    assert_eq!(
        (
            r["type"].as_str(),
            r["content"]["m.relates_to"]["key"].as_str()
        ),
        (Some("m.reaction"), Some("👍"))
    );
    assert_eq!(
        event(&alice, &room, old.as_str()).await["origin_server_ts"],
        1_600_000_000_000u64,
        "ts massaging"
    );

    ghost.redact(&room, &notice, Some("cleanup")).await.unwrap();
    let redacted = event(&alice, &room, notice.as_str()).await;
    assert_eq!(
        redacted["unsigned"]["redacted_because"]["content"]["reason"],
        "cleanup"
    );

    // State: a ghost without power, and a bot without power to grant it, is a clear error.
    let topic = RoomTopicEventContent::new("bridged topic".into());
    let err = ghost.send_state(&room, "", &topic).await.unwrap_err();
    assert!(
        matches!(err, ClientError::PowerLevel { needed: 50, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("give the bot a power level"),
        "{err}"
    );
    // Alice gives the bot power; now the bot raises the ghost's level by itself.
    let pl_path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.power_levels/",
        q(room.as_str())
    );
    let (_, mut pl) = alice.call(Method::GET, &pl_path, None).await;
    pl["users"][env.bot.as_str()] = 100.into();
    assert_eq!(alice.call(Method::PUT, &pl_path, Some(pl)).await.0, 200);
    ghost.send_state(&room, "", &topic).await.unwrap();
    let read: Value =
        serde_json::from_str(ghost.state(&room, "m.room.topic", "").await.unwrap().get()).unwrap();
    assert_eq!(read["topic"], "bridged topic");
    let bot = ctx.bot();
    bot.send_state(&room, "", &RoomNameEventContent::new("Bridged".into()))
        .await
        .unwrap();
    let info = json!({"bridgebot": env.bot, "protocol": {"id": "echo", "displayname": "Echo"}});
    bot.submit(Outgoing::raw_state(
        &room,
        "m.bridge",
        "echo/room",
        raw(info),
    ))
    .await
    .unwrap();
    let old_state = Outgoing::state(
        &room,
        "",
        &RoomTopicEventContent::new("from history".into()),
    )
    .unwrap()
    .timestamp(bridgekit::ruma::MilliSecondsSinceUnixEpoch(
        bridgekit::ruma::UInt::new(1_600_000_000_001).unwrap(),
    ));
    let old_state = bot.submit(old_state).await.unwrap().unwrap();
    assert_eq!(
        event(&alice, &room, old_state.as_str()).await["origin_server_ts"],
        1_600_000_000_001u64
    );
    let state = ghost.room_state(&room).await.unwrap();
    assert!(
        state
            .iter()
            .any(|e| e.get_field::<String>("type").ok().flatten().as_deref() == Some("m.bridge"))
    );
    assert!(
        ghost
            .joined_members(&room)
            .await
            .unwrap()
            .contains_key(ghost.user_id())
    );
    let page = ghost
        .messages(&room, None, Direction::Backward, 50)
        .await
        .unwrap();
    assert!(page.chunk.len() >= 10, "history: {}", page.chunk.len());

    // Profiles, global and per room, and media.
    ghost.set_displayname("Carol").await.unwrap();
    let mxc = ghost
        .upload(b"hello media".to_vec(), "text/plain", Some("a.txt"))
        .await
        .unwrap();
    let (bytes, content_type) = ghost.download(&mxc).await.unwrap();
    assert_eq!(bytes, b"hello media");
    assert!(content_type.is_some_and(|t| t.starts_with("text/plain")));
    ghost.set_avatar(&mxc).await.unwrap();
    let (_, profile) = alice
        .call(
            Method::GET,
            &format!("/_matrix/client/v3/profile/{}", q(ghost_id)),
            None,
        )
        .await;
    assert_eq!(
        (
            profile["displayname"].as_str(),
            profile["avatar_url"].as_str()
        ),
        (Some("Carol"), Some(mxc.as_str()))
    );
    ghost
        .set_room_profile(&room, Some("Carol in here"), None)
        .await
        .unwrap();
    let member_path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
        q(room.as_str()),
        q(ghost_id)
    );
    let (_, member) = alice.call(Method::GET, &member_path, None).await;
    assert_eq!(
        (
            member["displayname"].as_str(),
            member["avatar_url"].as_str()
        ),
        (Some("Carol in here"), Some(mxc.as_str()))
    );

    // Signals.
    ghost
        .typing(&room, Some(Duration::from_secs(5)))
        .await
        .unwrap();
    ghost.typing(&room, None).await.unwrap();
    ghost.read_receipt(&room, &text).await.unwrap();
    ghost
        .set_presence(PresenceState::Online, Some("bridging"))
        .await
        .unwrap();
    let alice_id = UserId::parse(&alice.user_id).unwrap();
    let content = Raw::from_json(raw(json!({"hello": "device"})));
    let messages = BTreeMap::from([(
        alice_id,
        BTreeMap::from([(DeviceIdOrAllDevices::AllDevices, content)]),
    )]);
    bot.send_to_device("org.example.bridgekit", messages)
        .await
        .unwrap();
    let (_, sync) = alice
        .call(Method::GET, "/_matrix/client/v3/sync?timeout=0", None)
        .await;
    let to_device = sync["to_device"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        to_device
            .iter()
            .any(|e| e["type"] == "org.example.bridgekit" && e["content"]["hello"] == "device"),
        "{to_device:?}"
    );

    drop(ctx);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_rooms_and_error_mapping_on_synapse() {
    crate::init();
    let _serial = SERIAL.lock().await;
    let env = Env::synapse_only().await;
    let alice = env.user("alice").await;
    let bridge = env.run_in_process().await;
    let ctx = bridge.ctx.clone();
    let alice_id = UserId::parse(&alice.user_id).unwrap();

    // Masquerading outside the namespace, and as a ghost never registered.
    let err = ctx
        .client()
        .execute(whoami::v3::Request::new(), Some(&alice_id))
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.errcode()),
        (Some(403), Some("M_FORBIDDEN")),
        "{err}"
    );
    assert!(err.to_string().contains("cannot masquerade"), "{err}");
    let never = ctx.ghost_user_id(&bridgekit::RemoteUserId::from_static("never"));
    let err = ctx
        .client()
        .execute(whoami::v3::Request::new(), Some(&never))
        .await
        .unwrap_err();
    assert!(err.is_unregistered_user(), "{err}");

    // A ghost the store wrongly believes registered is registered again, then invited by the
    // bot, and its message goes out.
    let room = RoomId::parse(alice.room_with_bot(&env.bot).await).unwrap();
    let dave = ctx.ghost(&bridgekit::RemoteUserId::from_static("dave"));
    ctx.store()
        .update_ghost(dave.user_id(), &|r| r.registered = true)
        .await
        .unwrap();
    let sent = dave
        .send(&room, &RoomMessageEventContent::text_plain("hi from dave"))
        .await
        .unwrap();
    assert_eq!(
        event(&alice, &room, sent.as_str()).await["sender"],
        dave.user_id().as_str()
    );

    // A portal: created by a ghost, with an alias in the namespace, power for another ghost.
    let erin = ctx.ghost(&bridgekit::RemoteUserId::from_static("erin"));
    let frank = ctx.ghost(&bridgekit::RemoteUserId::from_static("frank"));
    let portal = CreateRoom::new()
        .name("Portal")
        .topic("bridged chat")
        .alias("_echo_portal")
        .public()
        .invite(alice_id.clone())
        .power(frank.user_id().to_owned(), 50);
    let portal = erin.create_room(portal).await.unwrap();
    // Members by membership: alice is invited (joined_members would miss her).
    use bridgekit::ruma::events::room::member::MembershipState;
    let members = erin
        .members(&portal, &[MembershipState::Join, MembershipState::Invite])
        .await
        .unwrap();
    assert_eq!(
        members.get(&alice_id),
        Some(&MembershipState::Invite),
        "{members:?}"
    );
    assert_eq!(
        members.get(erin.user_id()),
        Some(&MembershipState::Join),
        "{members:?}"
    );
    let invited = erin
        .members(&portal, &[MembershipState::Invite])
        .await
        .unwrap();
    assert_eq!(invited.keys().collect::<Vec<_>>(), [&alice_id]);
    let (_, alias) = alice
        .call(
            Method::GET,
            &format!(
                "/_matrix/client/v3/directory/room/{}",
                q("#_echo_portal:localhost")
            ),
            None,
        )
        .await;
    assert_eq!(alias["room_id"], portal.as_str());
    let pl: Value = serde_json::from_str(
        erin.state(&portal, "m.room.power_levels", "")
            .await
            .unwrap()
            .get(),
    )
    .unwrap();
    assert_eq!(pl["users"][frank.user_id().as_str()], 50);
    let dm = erin
        .create_room(CreateRoom::new().direct().invite(alice_id.clone()))
        .await
        .unwrap();
    let invite: Value = serde_json::from_str(
        erin.state(&dm, "m.room.member", alice_id.as_str())
            .await
            .unwrap()
            .get(),
    )
    .unwrap();
    assert_eq!(
        (invite["membership"].as_str(), invite["is_direct"].as_bool()),
        (Some("invite"), Some(true))
    );

    // Join by alias with via, leave, kick, ban, unban.
    let alias = RoomOrAliasId::parse("#_echo_portal:localhost").unwrap();
    let via: Vec<OwnedServerName> = vec![ctx.server_name().to_owned()];
    assert_eq!(frank.join_via(&alias, &via).await.unwrap(), portal);
    frank
        .send_state(
            &portal,
            "",
            &RoomTopicEventContent::new("frank has power 50".into()),
        )
        .await
        .unwrap();
    let joined = |members: &BTreeMap<_, _>| members.contains_key(frank.user_id());
    frank.leave(&portal, Some("bye")).await.unwrap();
    assert!(!joined(&erin.joined_members(&portal).await.unwrap()));
    frank.join_via(&alias, &via).await.unwrap();
    erin.kick(&portal, frank.user_id(), Some("out"))
        .await
        .unwrap();
    assert!(!joined(&erin.joined_members(&portal).await.unwrap()));
    erin.ban(&portal, frank.user_id(), Some("banned"))
        .await
        .unwrap();
    let err = frank.join_via(&alias, &via).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    erin.unban(&portal, frank.user_id(), None).await.unwrap();
    frank.join_via(&alias, &via).await.unwrap();
    assert!(joined(&erin.joined_members(&portal).await.unwrap()));

    // Device masquerading: a device the appservice created, and one that does not exist.
    let device: bridgekit::ruma::OwnedDeviceId = "BRIDGEDEV".into();
    erin.create_device(device.clone(), Some("bridge device"))
        .await
        .unwrap();
    let who = ctx
        .client()
        .execute_as(
            whoami::v3::Request::new(),
            Some(erin.user_id()),
            Some(&device),
            ctx.client().retry_policy(),
        )
        .await
        .unwrap();
    assert_eq!(who.device_id.as_deref(), Some(device.as_ref()));
    let missing: bridgekit::ruma::OwnedDeviceId = "NOSUCHDEV".into();
    let err = ctx
        .client()
        .execute_as(
            whoami::v3::Request::new(),
            Some(erin.user_id()),
            Some(&missing),
            ctx.client().retry_policy(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.errcode()),
        (Some(400), Some("M_UNKNOWN_DEVICE")),
        "{err}"
    );

    // The appservice's own room directory.
    erin.set_directory_visibility("echo-net", &portal, true)
        .await
        .unwrap();
    erin.set_directory_visibility("echo-net", &portal, false)
        .await
        .unwrap();

    drop(ctx);
    bridge.stop().await;
}
