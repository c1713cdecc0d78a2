"""An MCP client made with the official Python SDK (`mcp`), driven by the gate's tests.

Usage: client.py [--elicitation] stdio COMMAND ARGS... | client.py [--elicitation] http URL

With --elicitation it declares elicitation (form and URL modes), declines what it is asked,
and prints {"notification": {...}} for each notifications/elicitation/complete.

It connects, prints {"initialized": {...}} and then answers one JSON command per line on stdin
with one JSON line on stdout:
  {"op": "list_tools"}                              -> {"ok": ListToolsResult}
  {"op": "call", "name": N, "arguments": {...},
   "progress": true}                                -> {"progress": {...}} lines, then
                                                       {"ok": CallToolResult} or {"error": {...}}
  {"op": "list_prompts"} / {"op": "list_resources"} -> {"ok": ...}
"""

import json
import sys

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import ElicitCompleteNotification, ElicitResult


def emit(value):
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def serve(session):
    initialized = await session.initialize()
    emit({"initialized": dump(initialized)})
    stdin = anyio.wrap_file(sys.stdin)
    async for line in stdin:
        command = json.loads(line)
        op = command["op"]
        try:
            if op == "list_tools":
                emit({"ok": dump(await session.list_tools())})
            elif op == "list_prompts":
                emit({"ok": dump(await session.list_prompts())})
            elif op == "list_resources":
                emit({"ok": dump(await session.list_resources())})
            elif op == "call":

                async def progress(value, total, message):
                    emit({"progress": {"progress": value, "total": total, "message": message}})

                result = await session.call_tool(
                    command["name"],
                    command.get("arguments", {}),
                    progress_callback=progress if command.get("progress") else None,
                )
                emit({"ok": dump(result)})
            else:
                emit({"error": {"message": f"unknown op {op}"}})
        except MCPError as error:
            emit({"error": {"code": error.code, "message": error.message, "data": error.data}})


async def decline(context, params):
    return ElicitResult(action="decline")


async def notified(message):
    if isinstance(message, ElicitCompleteNotification):
        emit({"notification": dump(message)})


async def main():
    args = sys.argv[1:]
    options = {}
    if args[0] == "--elicitation":
        options["elicitation_callback"] = decline
        options["message_handler"] = notified
        args = args[1:]
    kind, *rest = args
    if kind == "stdio":
        params = StdioServerParameters(command=rest[0], args=rest[1:])
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write, **options) as session:
                await serve(session)
    else:
        async with streamable_http_client(rest[0]) as streams:
            async with ClientSession(streams[0], streams[1], **options) as session:
                await serve(session)


anyio.run(main)
