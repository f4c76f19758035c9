//! Config parsing: defaults, overrides, and errors that name the key and the fix.
use super::*;

const GOOD: &str = "
homeserver:
  url: http://127.0.0.1:8008/
  server_name: example.org
appservice:
  id: echo
  listen: 127.0.0.1:29333
  bot: echobot
  registration: reg.yaml
store:
  path: data/store
";

fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::parse(text, Path::new("/etc/bridge/config.yaml"), &move |k| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
}

/// The message `text` (with `env`) is refused with.
fn refusal(text: &str, env: &[(&str, &str)]) -> String {
    parse(text, env).unwrap_err().to_string()
}

#[test]
fn a_complete_config_gets_defaults_and_resolved_paths() {
    let c = parse(GOOD, &[]).unwrap();
    assert_eq!(c.homeserver.url, "http://127.0.0.1:8008");
    assert_eq!(c.appservice.url, "http://127.0.0.1:29333");
    assert_eq!(c.appservice.ghost_prefix, "_echo_");
    assert_eq!(c.appservice.registration, Path::new("/etc/bridge/reg.yaml"));
    assert_eq!(
        c.store.location,
        StoreLocation::Sled {
            path: "/etc/bridge/data/store".into(),
            cache_bytes: 16 * 1024 * 1024
        }
    );
}

#[test]
fn a_postgres_url_selects_postgres_with_the_appservice_id_as_schema() {
    let url = "postgresql://bridge:secret@db/bridges";
    let c = parse(GOOD, &[("BRIDGEKIT_STORE_POSTGRES_URL", url)]).unwrap();
    assert_eq!(
        c.store.location,
        StoreLocation::Postgres {
            url: url.into(),
            schema: "echo".into()
        }
    );
    assert!(!c.store.location.to_string().contains("secret"));
    let bad = refusal(
        GOOD,
        &[
            ("BRIDGEKIT_STORE_POSTGRES_URL", url),
            ("BRIDGEKIT_STORE_POSTGRES_SCHEMA", "Robert'); DROP"),
        ],
    );
    assert!(bad.contains("`store.postgres_schema`"), "{bad}");
}

#[test]
fn a_standby_needs_a_shared_store() {
    let url = "postgresql://bridge@db/bridges";
    assert!(!parse(GOOD, &[]).unwrap().store.standby);
    let c = parse(
        GOOD,
        &[
            ("BRIDGEKIT_STORE_POSTGRES_URL", url),
            ("BRIDGEKIT_STORE_STANDBY", "true"),
        ],
    )
    .unwrap();
    assert!(c.store.standby);
    let bad = refusal(GOOD, &[("BRIDGEKIT_STORE_STANDBY", "true")]);
    assert!(
        bad.contains("`store.standby`") && bad.contains("store.postgres_url"),
        "{bad}"
    );
}

#[test]
fn environment_overrides_every_key_even_when_absent_from_the_file() {
    let c = parse(
        GOOD,
        &[
            ("BRIDGEKIT_HOMESERVER_URL", "https://hs.example"),
            ("BRIDGEKIT_STORE_CACHE_MB", "4"),
        ],
    )
    .unwrap();
    assert_eq!(c.homeserver.url, "https://hs.example");
    assert!(matches!(
        c.store.location,
        StoreLocation::Sled {
            cache_bytes: 4194304,
            ..
        }
    ));
    let without_url = GOOD.replace("  url: http://127.0.0.1:8008/\n", "");
    assert_eq!(
        parse(&without_url, &[("BRIDGEKIT_HOMESERVER_URL", "http://x:1")])
            .unwrap()
            .homeserver
            .url,
        "http://x:1"
    );
}

#[test]
fn a_missing_key_is_named_with_its_fix() {
    let text = GOOD.replace("  server_name: example.org\n", "");
    let msg = refusal(&text, &[]);
    assert!(
        msg.contains("missing key `homeserver.server_name`"),
        "{msg}"
    );
    assert!(msg.contains("BRIDGEKIT_HOMESERVER_SERVER_NAME"), "{msg}");
}

#[test]
fn invalid_and_unknown_keys_are_named() {
    let msg = refusal(&GOOD.replace("127.0.0.1:29333", "localhost"), &[]);
    assert!(
        msg.contains("`appservice.listen`") && msg.contains("host:port"),
        "{msg}"
    );
    let msg = refusal(&GOOD.replace("  bot: echobot", "  bot: EchoBot"), &[]);
    assert!(msg.contains("`appservice.bot`"), "{msg}");
    let msg = refusal(
        &GOOD.replace("  bot: echobot", "  bot: echobot\n  lisen: 1"),
        &[],
    );
    assert!(msg.contains("unknown key `appservice.lisen`"), "{msg}");
    let msg = refusal(
        &GOOD.replace(
            "store:\n  path: data/store",
            "store: {path: s, cache_mb: lots}",
        ),
        &[],
    );
    assert!(
        msg.contains("`store.cache_mb`") && msg.contains("whole number"),
        "{msg}"
    );
    let msg = refusal("homeserver: [1", &[]);
    assert!(msg.contains("not valid YAML"), "{msg}");
}

#[test]
fn listening_everywhere_requires_an_explicit_url() {
    let msg = refusal(&GOOD.replace("127.0.0.1:29333", "0.0.0.0:29333"), &[]);
    assert!(msg.contains("set appservice.url"), "{msg}");
}

#[test]
fn the_readme_key_table_lists_exactly_the_keys_the_config_reads() {
    let readme = include_str!("../../../../README.md");
    let documented: Vec<&str> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `")?.split_once("` |").map(|(k, _)| k))
        .collect();
    let known: Vec<&str> = super::keys().map(|k| k.name).collect();
    assert_eq!(
        documented, known,
        "README.md's config table and config::KEYS differ"
    );
}

#[test]
fn double_puppet_secrets_take_an_as_token_for_this_homeserver_only() {
    let c = parse(GOOD, &[]).unwrap();
    assert_eq!(c.bridge.double_puppet.as_token, None);
    assert!(c.bridge.double_puppet.allow_manual);
    let with = format!("{GOOD}double_puppet: {{secrets: {{example.org: 'as_token:xyz'}}}}\n");
    let c = parse(&with, &[]).unwrap();
    assert_eq!(c.bridge.double_puppet.as_token.as_deref(), Some("xyz"));
    let env = [(
        "BRIDGEKIT_DOUBLE_PUPPET_SECRETS",
        "{example.org: 'as_token:fromenv'}",
    )];
    let c = parse(&with, &env).unwrap();
    assert_eq!(c.bridge.double_puppet.as_token.as_deref(), Some("fromenv"));

    let plain = format!("{GOOD}double_puppet: {{secrets: {{example.org: xyz}}}}\n");
    let msg = refusal(&plain, &[]);
    assert!(
        msg.contains("double_puppet.secrets") && msg.contains("as_token:"),
        "{msg}"
    );
    assert!(!msg.contains("xyz"), "the secret is not echoed: {msg}");
    let other = format!("{GOOD}double_puppet: {{secrets: {{other.org: 'as_token:x'}}}}\n");
    let msg = refusal(&other, &[]);
    assert!(msg.contains("remove `other.org`"), "{msg}");
}

#[test]
fn sends_in_flight_per_room_is_one_unless_set_and_refuses_zero() {
    assert_eq!(parse(GOOD, &[]).unwrap().bridge.sends_in_flight_per_room, 1);
    let four = format!("{GOOD}bridge: {{sends_in_flight_per_room: 4}}\n");
    assert_eq!(
        parse(&four, &[]).unwrap().bridge.sends_in_flight_per_room,
        4
    );
    let env = [("BRIDGEKIT_BRIDGE_SENDS_IN_FLIGHT_PER_ROOM", "8")];
    assert_eq!(
        parse(GOOD, &env).unwrap().bridge.sends_in_flight_per_room,
        8
    );
    let zero = format!("{GOOD}bridge: {{sends_in_flight_per_room: 0}}\n");
    let msg = refusal(&zero, &[]);
    assert!(
        msg.contains("bridge.sends_in_flight_per_room") && msg.contains("1 (strict order)"),
        "{msg}"
    );
}
