//! A login manager logs users in over the provisioning API.

use std::time::Duration;

use serde_json::json;

use bridgekit_testkit::TestBridge;

use crate::scene::*;

/// Calls the provisioning API as a login manager would.
async fn provision(
    bridge: &TestBridge,
    method: &str,
    path: &str,
    user: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let query = if user.is_empty() {
        String::new()
    } else {
        format!("?user_id={user}")
    };
    let url = format!("{}/_matrix/provision/v3{path}{query}", bridge.url());
    let http = reqwest::Client::new();
    let mut request = if method == "GET" {
        http.get(url)
    } else {
        http.post(url)
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    (
        status,
        answer.json().await.unwrap_or(serde_json::Value::Null),
    )
}

const SECRET: &str = "provisioning-secret-for-tests";

#[tokio::test]
async fn a_login_manager_logs_users_in_over_the_provisioning_api() {
    let s = Scene::with(|b| {
        b.set("provisioning.shared_secret", SECRET).set(
            "bridge.permissions",
            json!({"*": "commands", "localhost": "user", "@eve:localhost": "commands"}),
        )
    })
    .await;
    let b = &s.bridge;
    let alice = "@alice:localhost";
    // No token, a wrong token, a user without the permission.
    let (status, body) = provision(b, "GET", "/login/flows", alice, None, None).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_MISSING_TOKEN"))
    );
    let (status, body) = provision(b, "GET", "/login/flows", alice, Some("wrong"), None).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_UNKNOWN_TOKEN"))
    );
    let (status, body) = provision(
        b,
        "POST",
        "/login/start/password",
        "@eve:localhost",
        Some(SECRET),
        None,
    )
    .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );

    let (status, body) = provision(b, "GET", "/login/flows", alice, Some(SECRET), None).await;
    assert_eq!(status, 200, "{body}");
    let flows: Vec<&str> = body["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(flows, ["password", "code", "cookies"]);

    // alice and bob log in at the same time, interleaved.
    let (status, a) = provision(
        b,
        "POST",
        "/login/start/password",
        alice,
        Some(SECRET),
        None,
    )
    .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["type"], "user_input");
    let fields: Vec<(&str, &str)> = a["user_input"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap(), f["type"].as_str().unwrap()))
        .collect();
    assert_eq!(fields, [("name", "username"), ("password", "password")]);
    let bob = "@bob:localhost";
    let (_, bb) = provision(b, "POST", "/login/start/password", bob, Some(SECRET), None).await;
    let step = |v: &serde_json::Value, kind: &str| {
        format!(
            "/login/step/{}/{}/{kind}",
            v["login_id"].as_str().unwrap(),
            v["step_id"].as_str().unwrap()
        )
    };
    // A step of the wrong type, and someone else's process.
    let (status, body) = provision(
        b,
        "POST",
        &step(&a, "display_and_wait"),
        alice,
        Some(SECRET),
        None,
    )
    .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_BAD_STATE"))
    );
    let (status, _) = provision(
        b,
        "POST",
        &step(&a, "user_input"),
        bob,
        Some(SECRET),
        Some(json!({"name": "x", "password": "y"})),
    )
    .await;
    assert_eq!(status, 404);

    let (status, done) = provision(
        b,
        "POST",
        &step(&bb, "user_input"),
        bob,
        Some(SECRET),
        Some(json!({"name": "bob-r", "password": "swordfish"})),
    )
    .await;
    assert_eq!(
        (status, done["type"].as_str()),
        (200, Some("complete")),
        "{done}"
    );
    let (status, done) = provision(
        b,
        "POST",
        &step(&a, "user_input"),
        alice,
        Some(SECRET),
        Some(json!({"name": "alice-r", "password": "hunter2"})),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["complete"]["user_login_id"], "alice-r");

    // whoami shows the login, connected.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, me) = provision(b, "GET", "/whoami", alice, Some(SECRET), None).await;
        assert_eq!(status, 200, "{me}");
        assert_eq!(me["bridge_bot"], s.bridge.bot_user_id().as_str());
        assert_eq!(me["command_prefix"], "!");
        assert_eq!(me["login_flows"].as_array().unwrap().len(), 3);
        if me["logins"][0]["state"]["state_event"] == "CONNECTED" {
            assert_eq!(me["logins"][0]["id"], "alice-r");
            assert_eq!(me["logins"].as_array().unwrap().len(), 1, "only alice's");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never connected: {me}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, ids) = provision(b, "GET", "/logins", alice, Some(SECRET), None).await;
    assert_eq!(ids["login_ids"], json!(["alice-r"]));

    // A manager may also use the user's own Matrix access token (checked with the
    // homeserver): it acts for that user only.
    let token = s.alice.access_token();
    let (status, ids) = provision(b, "GET", "/logins", "", Some(&token), None).await;
    assert_eq!(
        (status, &ids["login_ids"]),
        (200, &json!(["alice-r"])),
        "{ids}"
    );
    let bobs_token = s.hs.user("bob").access_token();
    let (status, _) = provision(b, "GET", "/logins", alice, Some(&bobs_token), None).await;
    assert_eq!(status, 403, "bob's token does not act for alice");
    let eve = s.hs.user("eve");
    let revoked = eve.access_token();
    eve.revoke_access_token();
    let (status, body) = provision(b, "GET", "/logins", "", Some(&revoked), None).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_UNKNOWN_TOKEN"))
    );

    // Logging out over the API ends the login; an unknown one is not found.
    let (status, _) = provision(b, "POST", "/logout/alice-r", alice, Some(SECRET), None).await;
    assert_eq!(status, 200);
    let (_, ids) = provision(b, "GET", "/logins", alice, Some(SECRET), None).await;
    assert_eq!(ids["login_ids"], json!([]));
    let (status, _) = provision(b, "POST", "/logout/bob-r", alice, Some(SECRET), None).await;
    assert_eq!(status, 404, "alice cannot log bob out");
}

#[tokio::test]
async fn without_a_secret_the_provisioning_api_is_off() {
    let s = Scene::new().await;
    let (status, body) = provision(
        &s.bridge,
        "GET",
        "/whoami",
        "@alice:localhost",
        Some("anything"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_UNRECOGNIZED"))
    );
}

#[tokio::test]
async fn a_manager_finds_contacts_and_opens_a_direct_chat_through_a_login() {
    let s = Scene::with(|b| b.set("provisioning.shared_secret", SECRET)).await;
    let b = &s.bridge;
    let alice = "@alice:localhost";
    // No login yet: nothing to act through.
    let (status, body) = provision(b, "GET", "/contacts", alice, Some(SECRET), None).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{body}"
    );
    s.log_in().await;

    let (status, body) = provision(b, "GET", "/contacts", alice, Some(SECRET), None).await;
    assert_eq!(status, 200, "{body}");
    let ghost = b.ghost_user_id(&bridgekit::RemoteUserId::new("bob-r").unwrap());
    assert_eq!(
        body["contacts"],
        json!([{"id": "bob-r", "name": "BOB-R", "mxid": ghost.as_str(), "identifiers": ["group:bob-r"]}])
    );
    let (status, body) = provision(
        b,
        "GET",
        "/resolve_identifier/bob-r",
        alice,
        Some(SECRET),
        None,
    )
    .await;
    assert_eq!(
        (status, body["id"].as_str()),
        (200, Some("bob-r")),
        "{body}"
    );
    assert!(
        body.get("dm_room_mxid").is_none(),
        "no direct chat yet: {body}"
    );
    let (status, body) = provision(
        b,
        "GET",
        "/resolve_identifier/nobody",
        alice,
        Some(SECRET),
        None,
    )
    .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{body}"
    );
    // A capability the network lacks is 501, in bridgev2's shape.
    let query = Some(json!({"query": "bo"}));
    let (status, body) = provision(b, "POST", "/search_users", alice, Some(SECRET), query).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (501, Some("M_UNRECOGNIZED")),
        "{body}"
    );

    // Opening the direct chat makes its portal, with bob's ghost in it and alice invited.
    let (status, body) = provision(b, "POST", "/create_dm/bob-r", alice, Some(SECRET), None).await;
    assert_eq!(status, 200, "{body}");
    let room = body["dm_room_mxid"].as_str().unwrap().to_owned();
    assert_eq!(body["mxid"], ghost.as_str());
    let members = s.hs.members(&room);
    assert_eq!(
        members.get(ghost.as_str()).map(String::as_str),
        Some("join"),
        "{members:?}"
    );
    assert_eq!(
        members.get(alice).map(String::as_str),
        Some("invite"),
        "{members:?}"
    );
    // Asked again, the same chat: resolve now names it too.
    let (_, again) = provision(b, "POST", "/create_dm/bob-r", alice, Some(SECRET), None).await;
    assert_eq!(again["dm_room_mxid"], room.as_str());
    let (_, resolved) = provision(
        b,
        "GET",
        "/resolve_identifier/bob-r",
        alice,
        Some(SECRET),
        None,
    )
    .await;
    assert_eq!(resolved["dm_room_mxid"], room.as_str());
    // A group the network cannot create.
    let (status, _) = provision(
        b,
        "POST",
        "/create_group",
        alice,
        Some(SECRET),
        Some(json!({"name": "g"})),
    )
    .await;
    assert_eq!(status, 501);
}

#[tokio::test]
async fn a_cookie_step_takes_what_a_webview_extracted() {
    let s = Scene::with(|b| b.set("provisioning.shared_secret", SECRET)).await;
    let b = &s.bridge;
    let alice = "@alice:localhost";
    let (status, step) =
        provision(b, "POST", "/login/start/cookies", alice, Some(SECRET), None).await;
    assert_eq!(
        (status, step["type"].as_str()),
        (200, Some("cookies")),
        "{step}"
    );
    assert_eq!(step["cookies"]["url"], "https://group.example/login");
    assert_eq!(
        step["cookies"]["fields"],
        json!([{"type": "cookie", "name": "session", "cookie_domain": "group.example"}])
    );
    let path = |kind: &str| {
        format!(
            "/login/step/{}/{}/{kind}",
            step["login_id"].as_str().unwrap(),
            step["step_id"].as_str().unwrap()
        )
    };
    // The step's own endpoint only.
    let cookies = Some(json!({"session": "hunter2"}));
    let (status, body) = provision(
        b,
        "POST",
        &path("user_input"),
        alice,
        Some(SECRET),
        cookies.clone(),
    )
    .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_BAD_STATE")),
        "{body}"
    );
    let (status, done) = provision(b, "POST", &path("cookies"), alice, Some(SECRET), cookies).await;
    assert_eq!(
        (status, done["type"].as_str()),
        (200, Some("complete")),
        "{done}"
    );
    assert_eq!(done["complete"]["user_login_id"], "alice-r");
}

#[tokio::test]
async fn a_generated_secret_is_written_beside_the_config_once_and_kept() {
    let mut s = Scene::with(|b| b.set("provisioning.shared_secret", "generate")).await;
    let path = s
        .bridge
        .config()
        .path
        .parent()
        .unwrap()
        .join("provisioning.secret");
    let secret = std::fs::read_to_string(&path).unwrap().trim().to_owned();
    assert_eq!(secret.len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the bridge's user reads it");
    }
    let alice = "@alice:localhost";
    let (status, _) = provision(&s.bridge, "GET", "/login/flows", alice, Some(&secret), None).await;
    assert_eq!(status, 200);
    let (status, _) = provision(
        &s.bridge,
        "GET",
        "/login/flows",
        alice,
        Some("generate"),
        None,
    )
    .await;
    assert_eq!(status, 401, "the word itself is no secret");
    // A restart reads the same secret back.
    let again = s.bridge_again();
    s.bridge.restart(again).await;
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), secret);
    let (status, _) = provision(&s.bridge, "GET", "/login/flows", alice, Some(&secret), None).await;
    assert_eq!(status, 200);
}
