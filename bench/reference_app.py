"""The reference the gateway API is measured against: Starlette + one JetStream-acked publish.

Nothing else: no auth, no validation, no report rendering. `/sendsms` here publishes the
query string and answers a fixed JSON body. Run it with the same uvicorn settings as the API.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
from nats.js import JetStreamContext
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

NATS_URL = os.environ.get("SMSGATE_NATS_URL", "nats://127.0.0.1:4222")
SUBJECT = "bench.reference"

state: dict[str, JetStreamContext] = {}


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    await js.add_stream(name="BENCH_REFERENCE", subjects=[SUBJECT])
    state["js"] = js
    yield
    await nc.close()


async def sendsms(request: Request) -> Response:
    await state["js"].publish(
        SUBJECT, request.url.query.encode(), headers={"Nats-Msg-Id": uuid.uuid4().hex}
    )
    return Response(b'{"message":"ok"}', media_type="application/json")


app = Starlette(routes=[Route("/sendsms", sendsms)], lifespan=lifespan)
