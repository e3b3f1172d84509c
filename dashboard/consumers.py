"""The live socket: staff sessions only; each socket gets a snapshot at once, then one per interval."""

from __future__ import annotations

import time
from importlib import import_module

from channels.auth import get_user
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from . import live
from .access import is_operator


SESSION_RECHECK_S = 60.0  # a signed-out or demoted operator stops receiving within this long


class LiveConsumer(AsyncJsonWebsocketConsumer):
    joined = False

    async def connect(self):
        if not is_operator(self.scope.get("user")):
            await self.close(code=4403)  # before accept: the handshake is refused with HTTP 403
            return
        await self.accept()
        await self.channel_layer.group_add(live.GROUP, self.channel_name)
        self.joined = True
        self.checked_at = time.monotonic()
        live.poller().watch()
        await self.send_json(await live.live_snapshot())  # no blank page while the next tick comes

    async def disconnect(self, code):
        if self.joined:
            self.joined = False
            await self.channel_layer.group_discard(live.GROUP, self.channel_name)
            await live.poller().unwatch()

    async def _still_operator(self) -> bool:
        """The session as stored now (a fresh store: the scope's caches what it read at connect)."""
        session = self.scope.get("session")
        if session is None or not session.session_key:
            return False
        fresh = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session.session_key)
        return is_operator(await get_user({**self.scope, "session": fresh}))

    async def receive_json(self, content, **kwargs):
        pass  # the page only listens

    async def live_snapshot(self, event):
        if time.monotonic() - self.checked_at > SESSION_RECHECK_S:
            self.checked_at = time.monotonic()
            if not await self._still_operator():
                await self.close(code=4403)
                return
        await self.send_json(event["snapshot"])
