"""The live socket: staff sessions only; each socket gets a snapshot at once, then one per interval."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import live
from .access import is_operator


class LiveConsumer(AsyncJsonWebsocketConsumer):
    joined = False

    async def connect(self):
        if not is_operator(self.scope.get("user")):
            await self.close(code=4403)  # before accept: the handshake is refused with HTTP 403
            return
        await self.accept()
        await self.channel_layer.group_add(live.GROUP, self.channel_name)
        self.joined = True
        live.poller().watch()
        await self.send_json(await live.live_snapshot())  # no blank page while the next tick comes

    async def disconnect(self, code):
        if self.joined:
            self.joined = False
            await self.channel_layer.group_discard(live.GROUP, self.channel_name)
            await live.poller().unwatch()

    async def receive_json(self, content, **kwargs):
        pass  # the page only listens

    async def live_snapshot(self, event):
        await self.send_json(event["snapshot"])
