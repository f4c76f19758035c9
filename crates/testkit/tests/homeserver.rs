//! The fake homeserver answers an appservice as Synapse does.

use bridgekit_testkit::TestHomeserver;
use serde_json::{Value, json};

async fn call(hs: &TestHomeserver, method: &str, path: &str, body: Value) -> (u16, Value) {
    let url = format!("{}/_matrix/client/v3{path}", hs.url());
    let request = match method {
        "PUT" => reqwest::Client::new().put(url),
        "GET" => reqwest::Client::new().get(url),
        _ => reqwest::Client::new().post(url),
    };
    let answer = request.bearer_auth("as").json(&body).send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn rooms_members_and_refusals_follow_synapse() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let hs = TestHomeserver::start();
    hs.register_appservice("http://127.0.0.1:9", "as", "hs", "bot", "_t_");
    let alice = hs.user("alice");
    let room = alice.create_room();
    // A ghost that was never registered is refused, as Synapse refuses it.
    let ghost = "%40_t_bob%3Alocalhost";
    let (status, body) = call(
        &hs,
        "POST",
        &format!("/rooms/{room}/join?user_id={ghost}"),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    let (status, _) = call(
        &hs,
        "POST",
        "/register",
        json!({"username": "_t_bob", "type": "m.login.application_service"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(&hs, "POST", "/register", json!({"username": "_t_bob"})).await;
    assert_eq!(body["errcode"], "M_USER_IN_USE", "{status} {body}");
    // Not invited to a private room: refused; invited: joins, then may send.
    let (status, _) = call(
        &hs,
        "POST",
        &format!("/rooms/{room}/join?user_id={ghost}"),
        json!({}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = call(
        &hs,
        "PUT",
        &format!("/rooms/{room}/send/m.room.message/t1?user_id={ghost}"),
        json!({"body": "early"}),
    )
    .await;
    assert!(
        status == 403 && body["error"].as_str().unwrap().contains("not in room"),
        "{body}"
    );
    alice.invite(&room, "@_t_bob:localhost");
    let (status, _) = call(
        &hs,
        "POST",
        &format!("/rooms/{room}/join?user_id={ghost}"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(hs.members(&room)["@_t_bob:localhost"], "join");
    let path = format!("/rooms/{room}/send/m.room.message/t1?user_id={ghost}");
    let (_, first) = call(
        &hs,
        "PUT",
        &path,
        json!({"msgtype": "m.text", "body": "hi"}),
    )
    .await;
    let (_, again) = call(
        &hs,
        "PUT",
        &path,
        json!({"msgtype": "m.text", "body": "hi"}),
    )
    .await;
    assert_eq!(
        first["event_id"], again["event_id"],
        "a replayed txnId is one event"
    );
    assert_eq!(hs.sent().len(), 1);
    // Power levels: a ghost at level 0 cannot set the topic.
    let (status, body) = call(
        &hs,
        "PUT",
        &format!("/rooms/{room}/state/m.room.topic?user_id={ghost}"),
        json!({"topic": "x"}),
    )
    .await;
    assert!(
        status == 403 && body["error"].as_str().unwrap().contains("user_level"),
        "{body}"
    );
    // Alice's message and the ghost's answer are in the timeline, and queued for the
    // appservice (which does not listen here).
    alice.say(&room, "hello");
    let bodies: Vec<_> = hs
        .messages(&room)
        .iter()
        .map(|e| e.body().unwrap().to_owned())
        .collect();
    assert_eq!(bodies, ["hi", "hello"]);
    assert!(
        hs.unpushed() >= 3,
        "joins and messages wait for the appservice"
    );
    let (status, body) = call(&hs, "GET", "/no/such/endpoint", Value::Null).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_UNRECOGNIZED"))
    );
}
