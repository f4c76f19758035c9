//! Logging in with one's own nick (puppet mode): the flow asks for a nick (and the server
//! password when the network needs one), tries it on the server, and asks again when the
//! nick is taken.

use std::time::Duration;

use bridgekit::logins::{FieldKind, LoginField, LoginInput, LoginProcess, LoginStep, NewLogin};
use bridgekit::{BridgeError, LoginId, RemoteUserId, async_trait};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::connection::{self, Options, Status};
use crate::settings::Settings;

/// How long the server may take to accept or refuse a nick.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// What a login keeps to reconnect: the nick and the server password.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    /// The nick, as the user chose it.
    pub nick: String,
    /// The server password, when the network needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// One user's login in progress.
pub struct NickLogin {
    settings: Settings,
    /// The password given with an earlier attempt (asked once).
    password: Option<String>,
}

impl NickLogin {
    /// A login on the network `settings` names.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            password: None,
        }
    }

    fn nick_field() -> LoginField {
        LoginField::new("nick", "IRC nick", FieldKind::Username)
    }
}

#[async_trait]
impl LoginProcess for NickLogin {
    async fn start(&mut self) -> Result<LoginStep, BridgeError> {
        let mut fields = vec![Self::nick_field()];
        if self.settings.ask_password {
            fields.push(LoginField::new(
                "password",
                "IRC server password",
                FieldKind::Password,
            ));
        }
        Ok(LoginStep::Input {
            instructions: format!("Connect to {} as yourself.", self.settings.server),
            fields,
        })
    }

    async fn submit(&mut self, input: LoginInput) -> Result<LoginStep, BridgeError> {
        if let Some(password) = input.get("password") {
            self.password = Some(password.clone());
        }
        let nick = input.get("nick").map(|n| n.trim()).unwrap_or_default();
        if nick.is_empty() || nick.contains([' ', ',', '*', '?', '!', '@']) || nick.starts_with('#')
        {
            return Ok(LoginStep::Input {
                instructions: format!("{nick:?} cannot be an IRC nick."),
                fields: vec![Self::nick_field()],
            });
        }
        match probe(&self.settings.server, nick, self.password.clone()).await? {
            Status::Connected(_) => {
                let session = Session {
                    nick: nick.to_owned(),
                    password: self.password.clone(),
                };
                let id = nick.to_lowercase();
                let login = NewLogin::new(LoginId::new(id.as_str())?, RemoteUserId::new(id)?)
                    .with_remote_name(nick)
                    .with_metadata(&session)?;
                Ok(LoginStep::Complete(login))
            }
            Status::NickTaken(_) => Ok(LoginStep::Input {
                instructions: format!("The nick {nick} is taken on IRC."),
                fields: vec![Self::nick_field()],
            }),
            Status::Refused(why) => Err(format!("the IRC server refused the login: {why}").into()),
            Status::Lost(why) => Err(format!("could not reach the IRC server: {why}").into()),
        }
    }
}

/// Registers `nick` on `server` once and says how it went; the probe connection then quits.
async fn probe(server: &str, nick: &str, password: Option<String>) -> Result<Status, BridgeError> {
    let (incoming, _lines) = mpsc::unbounded_channel();
    let (status_tx, mut status) = mpsc::unbounded_channel();
    let options = Options {
        server: server.to_owned(),
        nick: nick.to_owned(),
        password,
        nick_taken: connection::NickTaken::Fail,
        reconnect_delay: connection::relay_delay,
    };
    let handle = connection::start(options, incoming, status_tx);
    let outcome = tokio::time::timeout(PROBE_TIMEOUT, status.recv()).await;
    handle.quit();
    // The probe's connection is gone (its nick free again) once its task drops the channel.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while status.recv().await.is_some() {}
    })
    .await;
    match outcome {
        Ok(Some(status)) => Ok(status),
        Ok(None) => Err("the IRC connection ended".into()),
        Err(_) => Err("the IRC server did not answer in time".into()),
    }
}
