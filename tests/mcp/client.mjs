// An MCP client made with the official TypeScript SDK (@modelcontextprotocol/sdk), driven by
// the gate's tests with the same line protocol as client.py.
//
// Usage: node client.mjs stdio COMMAND ARGS... | node client.mjs http URL
import { createInterface } from 'node:readline';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const emit = (value) => process.stdout.write(JSON.stringify(value) + '\n');

const [kind, ...rest] = process.argv.slice(2);
const transport =
  kind === 'stdio'
    ? new StdioClientTransport({ command: rest[0], args: rest.slice(1), stderr: 'inherit' })
    : new StreamableHTTPClientTransport(new URL(rest[0]));
const client = new Client({ name: 'handsign-mcp-test', version: '1.0.0' });
await client.connect(transport);
emit({ initialized: { serverInfo: client.getServerVersion(), capabilities: client.getServerCapabilities() } });

for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line);
  try {
    if (command.op === 'list_tools') {
      emit({ ok: await client.listTools() });
    } else if (command.op === 'list_prompts') {
      emit({ ok: await client.listPrompts() });
    } else if (command.op === 'list_resources') {
      emit({ ok: await client.listResources() });
    } else if (command.op === 'call') {
      const options = command.progress
        ? { onprogress: (progress) => emit({ progress }), timeout: 120000 }
        : { timeout: 120000 };
      emit({ ok: await client.callTool({ name: command.name, arguments: command.arguments ?? {} }, undefined, options) });
    } else {
      emit({ error: { message: `unknown op ${command.op}` } });
    }
  } catch (error) {
    emit({ error: { code: error.code, message: error.message, data: error.data } });
  }
}
await client.close();
