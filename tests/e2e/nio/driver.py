"""A real encrypting Matrix client (matrix-nio with vodozemac) for the end-to-end tests.

It logs in as one user on a new device, syncs in the background, and answers one JSON
command per stdin line with one JSON line on stdout:

  {"cmd": "create_room", "invite": [...], "encrypted": true}   -> {"room_id"}
  {"cmd": "join", "room": id}                                  -> {}
  {"cmd": "wait_joined", "room": id, "user": id}               -> {}
  {"cmd": "send", "room": id, "body": text}                    -> {"event_id"}
  {"cmd": "edit", "room": id, "event_id": id, "body": text}    -> {"event_id"}
  {"cmd": "wait_message", "room": id, "sender": id, "body": t} -> {"event_id", "encrypted", "content"}
      (an edit matches by its new content's body)
  {"cmd": "wait_message_containing", "room", "sender", "text"} -> {"event_id", "encrypted", "body"}
  {"cmd": "messages", "room": id}                              -> {"messages": [...]}

Every message it sees is recorded as decrypted by nio: `encrypted` says whether it came as
m.room.encrypted on the wire. Errors answer {"error": "..."}.
"""

import asyncio
import json
import sys

from nio import (AsyncClient, AsyncClientConfig, MegolmEvent, RoomMessage,
                 RoomMessageText, LoginResponse)

TIMEOUT = 60


class Driver:
    def __init__(self, hs, user, password, store):
        config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
        self.client = AsyncClient(hs, user, store_path=store, config=config)
        self.password = password
        self.seen = []  # (room_id, event)
        self.undecrypted = []
        self.changed = asyncio.Event()

    async def start(self):
        resp = await self.client.login(self.password, device_name="nio test device")
        if not isinstance(resp, LoginResponse):
            raise RuntimeError(f"login failed: {resp}")
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        self.client.add_event_callback(self.on_message, RoomMessage)
        self.client.add_event_callback(self.on_undecrypted, MegolmEvent)
        await self.client.sync(timeout=0, full_state=True)
        self.task = asyncio.create_task(self.sync_loop())
        return {"device_id": self.client.device_id}

    async def sync_loop(self):
        while True:
            try:
                await self.client.sync(timeout=1000)
                if self.client.should_upload_keys:
                    await self.client.keys_upload()
                if self.client.should_query_keys:
                    await self.client.keys_query()
                if self.client.should_claim_keys:
                    await self.client.keys_claim(self.client.get_users_for_key_claiming())
                await self.client.send_to_device_messages()
            except Exception as e:  # keep syncing through a homeserver restart
                print(f"[nio] sync error: {e}", file=sys.stderr)
                await asyncio.sleep(0.5)
            self.changed.set()

    def on_message(self, room, event):
        self.seen.append((room.room_id, event))
        self.changed.set()

    def on_undecrypted(self, room, event):
        self.undecrypted.append((room.room_id, event))
        self.changed.set()

    async def wait(self, check):
        deadline = asyncio.get_event_loop().time() + TIMEOUT
        while True:
            found = check()
            if found is not None:
                return found
            left = deadline - asyncio.get_event_loop().time()
            if left <= 0:
                raise TimeoutError("timed out")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=min(left, 1.0))
            except asyncio.TimeoutError:
                pass

    async def run(self, cmd):
        c = self.client
        kind = cmd["cmd"]
        if kind == "create_room":
            initial = []
            if cmd.get("encrypted", True):
                initial.append({"type": "m.room.encryption", "state_key": "",
                                "content": {"algorithm": "m.megolm.v1.aes-sha2"}})
            resp = await c.room_create(invite=cmd.get("invite", []), initial_state=initial)
            if not hasattr(resp, "room_id"):
                raise RuntimeError(f"create_room: {resp}")
            return {"room_id": resp.room_id}
        if kind == "join":
            resp = await c.join(cmd["room"])
            if not hasattr(resp, "room_id"):
                raise RuntimeError(f"join: {resp}")
            await self.wait(lambda: True if cmd["room"] in c.rooms else None)
            return {}
        if kind == "invite":
            resp = await c.room_invite(cmd["room"], cmd["user"])
            return {}
        if kind == "wait_joined":
            room, user = cmd["room"], cmd["user"]
            # `users` holds invited users too: joined means present and no longer invited.
            await self.wait(lambda: True if room in c.rooms and user in c.rooms[room].users
                            and user not in c.rooms[room].invited_users else None)
            return {}
        if kind in ("send", "edit"):
            content = {"msgtype": "m.text", "body": cmd["body"]}
            if kind == "edit":
                content = {"msgtype": "m.text", "body": "* " + cmd["body"],
                           "m.new_content": {"msgtype": "m.text", "body": cmd["body"]},
                           "m.relates_to": {"rel_type": "m.replace", "event_id": cmd["event_id"]}}
            await self.wait(lambda: True if cmd["room"] in c.rooms else None)
            resp = await c.room_send(cmd["room"], "m.room.message", content,
                                     ignore_unverified_devices=True)
            if not hasattr(resp, "event_id"):
                raise RuntimeError(f"send: {resp}")
            return {"event_id": resp.event_id}
        if kind == "wait_message":
            room, sender, body = cmd["room"], cmd["sender"], cmd["body"]

            def find():
                for r, e in self.seen:
                    new = e.source.get("content", {}).get("m.new_content", {}).get("body")
                    if r == room and e.sender == sender and body in (getattr(e, "body", None), new):
                        return {"event_id": e.event_id, "encrypted": bool(e.decrypted),
                                "content": e.source.get("content", {})}
                return None
            try:
                return await self.wait(find)
            except TimeoutError:
                raise RuntimeError(
                    f"no message {body!r} from {sender}; saw "
                    f"{[(e.sender, getattr(e, 'body', None)) for r, e in self.seen if r == room]}, "
                    f"undecrypted {[(e.sender, e.session_id) for r, e in self.undecrypted if r == room]}")
        if kind == "wait_message_containing":
            room, sender, text = cmd["room"], cmd["sender"], cmd["text"]

            def find():
                for r, e in self.seen:
                    if r == room and e.sender == sender and text in (getattr(e, "body", "") or ""):
                        return {"event_id": e.event_id, "encrypted": bool(e.decrypted),
                                "body": e.body}
                return None
            return await self.wait(find)
        if kind == "messages":
            room = cmd["room"]
            return {"messages": [{"sender": e.sender, "body": getattr(e, "body", None),
                                  "encrypted": bool(e.decrypted)}
                                 for r, e in self.seen if r == room]}
        raise RuntimeError(f"unknown command {kind}")


async def main():
    hs, user, password, store = sys.argv[1:5]
    driver = Driver(hs, user, password, store)
    loop = asyncio.get_event_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    try:
        answer(await driver.start())
    except Exception as e:
        answer({"error": str(e)})
        return
    while True:
        line = await reader.readline()
        if not line:
            break
        try:
            answer(await driver.run(json.loads(line)))
        except Exception as e:
            answer({"error": f"{type(e).__name__}: {e}"})
    await driver.client.close()


asyncio.run(main())
