"""Drive the echo bridge like a Matrix user would (stdlib only).

    python3 scripts/demo_client.py HOMESERVER_URL BOT_USER_ID

Registers (or logs in) @alice with password "alice-password", creates a room, invites the
bot, waits until it joins, sends a message, waits for the echo from a ghost and prints it.
Exits non-zero if any step fails.
"""
import json, sys, time, urllib.error, urllib.parse, urllib.request

HS, BOT = sys.argv[1].rstrip("/"), sys.argv[2]
USER, PASSWORD = "alice", "alice-password"


def call(method, path, token=None, body=None):
    req = urllib.request.Request(HS + path, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def q(s):
    return urllib.parse.quote(s, safe="")


def main():
    status, body = call("POST", "/_matrix/client/v3/register",
                        body={"username": USER, "password": PASSWORD, "auth": {"type": "m.login.dummy"}})
    if status != 200:
        status, body = call("POST", "/_matrix/client/v3/login", body={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": USER}, "password": PASSWORD})
    if status != 200:
        sys.exit(f"could not register or log in {USER}: {status} {body}")
    token, me = body["access_token"], body["user_id"]
    status, body = call("POST", "/_matrix/client/v3/createRoom", token, {"name": "Echo demo", "invite": [BOT]})
    if status != 200:
        sys.exit(f"could not create a room: {status} {body}")
    room = body["room_id"]
    print(f"created room {room} and invited {BOT}")
    for _ in range(100):
        _, members = call("GET", f"/_matrix/client/v3/rooms/{q(room)}/joined_members", token)
        if BOT in members.get("joined", {}):
            break
        time.sleep(0.1)
    else:
        sys.exit(f"{BOT} did not join the room: is the bridge running?")
    print(f"{BOT} joined")
    text = f"hello bridge, it is {time.strftime('%H:%M:%S')}"
    status, body = call("PUT", f"/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/demo{time.time_ns()}", token,
                        {"msgtype": "m.text", "body": text})
    if status != 200:
        sys.exit(f"could not send: {status} {body}")
    print(f"{me} said: {text}")
    for _ in range(100):
        _, page = call("GET", f"/_matrix/client/v3/rooms/{q(room)}/messages?dir=b&limit=20", token)
        for ev in page.get("chunk", []):
            if ev.get("type") == "m.room.message" and ev["sender"] not in (me, BOT) and ev["content"].get("body") == text:
                _, profile = call("GET", f"/_matrix/client/v3/profile/{q(ev['sender'])}", token)
                print(f"{ev['sender']} ({profile.get('displayname')}) echoed: {ev['content']['body']}")
                return
        time.sleep(0.1)
    sys.exit("no echo arrived within 10 s; see the bridge's log")


main()
