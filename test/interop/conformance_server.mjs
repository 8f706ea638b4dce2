#!/usr/bin/env node
// A stdio MCP server, on the official TypeScript SDK, with every tool, resource,
// resource template, prompt, completion and logging behaviour that the server
// scenarios of the MCP conformance suite (@modelcontextprotocol/conformance,
// pinned in package.json) call.  The suite speaks Streamable HTTP; this server
// speaks stdio, so it is run behind an HTTP front end (mcpmux serve --http, or
// supergateway as the comparison peer) and the suite judges the pair.
//
// The names, arguments and results follow the suite's own reference server
// (examples/servers/typescript/everything-server.ts at the suite's tag) and the
// descriptions in its scenarios (src/scenarios/server/*.ts).  What differs:
//  - test_reconnection cannot close an SSE stream (a stdio server has none); it
//    answers after a short pause, and the suite records that as information.
//  - tools/list is answered from one table, so json_schema_2020_12_tool keeps
//    its raw JSON Schema 2020-12 ($schema, $defs, additionalProperties) without
//    the override the reference server needs.
//  - log messages honour logging/setLevel (the suite only asks that it is accepted).
//
// Usage: node conformance_server.mjs       (MCP over stdin/stdout; nothing else)

import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import {
  CallToolRequestSchema,
  CompleteRequestSchema,
  CreateMessageResultSchema,
  ElicitResultSchema,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ErrorCode,
  ReadResourceRequestSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';

// A 1x1 red PNG and a minimal WAV, as in the suite's reference server.
const TEST_IMAGE_BASE64 =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
const TEST_AUDIO_BASE64 = 'UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=';

const LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];
let minLevel = 'debug';
const subscriptions = new Set();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const text = (t) => ({ content: [{ type: 'text', text: t }] });
const noArgs = { type: 'object', properties: {} };

const server = new Server(
  { name: 'mcpmux-conformance-server', version: '1.0.0' },
  {
    capabilities: {
      tools: { listChanged: true },
      resources: { subscribe: true, listChanged: true },
      prompts: { listChanged: true },
      logging: {},
      completions: {},
    },
  },
);

function log(send, level, data) {
  if (LEVELS.indexOf(level) < LEVELS.indexOf(minLevel)) return Promise.resolve();
  return send({ method: 'notifications/message', params: { level, logger: 'conformance-server', data } });
}

// ---------------------------------------------------------------------------
// Tools: name -> {description, inputSchema, run(args, extra)}

const elicitText = (r) => `action=${r.action}, content=${JSON.stringify(r.content || {})}`;

const TOOLS = {
  test_simple_text: {
    description: 'Tests simple text content response',
    run: async () => text('This is a simple text response for testing.'),
  },
  test_image_content: {
    description: 'Tests image content response',
    run: async () => ({ content: [{ type: 'image', data: TEST_IMAGE_BASE64, mimeType: 'image/png' }] }),
  },
  test_audio_content: {
    description: 'Tests audio content response',
    run: async () => ({ content: [{ type: 'audio', data: TEST_AUDIO_BASE64, mimeType: 'audio/wav' }] }),
  },
  test_embedded_resource: {
    description: 'Tests embedded resource content response',
    run: async () => ({
      content: [{
        type: 'resource',
        resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' },
      }],
    }),
  },
  test_multiple_content_types: {
    description: 'Tests response with multiple content types (text, image, resource)',
    run: async () => ({
      content: [
        { type: 'text', text: 'Multiple content types test:' },
        { type: 'image', data: TEST_IMAGE_BASE64, mimeType: 'image/png' },
        {
          type: 'resource',
          resource: {
            uri: 'test://mixed-content-resource',
            mimeType: 'application/json',
            text: JSON.stringify({ test: 'data', value: 123 }),
          },
        },
      ],
    }),
  },
  test_tool_with_logging: {
    description: 'Tests tool that emits log messages during execution',
    run: async (_args, extra) => {
      await log(extra.sendNotification, 'info', 'Tool execution started');
      await sleep(50);
      await log(extra.sendNotification, 'info', 'Tool processing data');
      await sleep(50);
      await log(extra.sendNotification, 'info', 'Tool execution completed');
      return text('Tool with logging executed successfully');
    },
  },
  test_tool_with_progress: {
    description: 'Tests tool that reports progress notifications',
    run: async (_args, extra) => {
      const progressToken = extra._meta?.progressToken;
      for (const progress of [0, 50, 100]) {
        if (progressToken !== undefined) {
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken, progress, total: 100, message: `Completed step ${progress} of 100` },
          });
        }
        if (progress < 100) await sleep(50);
      }
      return text(String(progressToken ?? 'no progress token'));
    },
  },
  test_error_handling: {
    description: 'Tests error response handling',
    run: async () => ({
      isError: true,
      content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }],
    }),
  },
  test_reconnection: {
    description: 'Tests SSE stream disconnection and client reconnection (SEP-1699); over stdio it answers after 100 ms',
    run: async () => {
      await sleep(100);
      return text('Reconnection test completed successfully. If you received this, the client properly reconnected after stream closure.');
    },
  },
  test_sampling: {
    description: 'Tests server-initiated sampling (LLM completion request)',
    inputSchema: {
      type: 'object',
      properties: { prompt: { type: 'string', description: 'The prompt to send to the LLM' } },
      required: ['prompt'],
    },
    run: async (args, extra) => {
      try {
        const r = await extra.sendRequest({
          method: 'sampling/createMessage',
          params: { messages: [{ role: 'user', content: { type: 'text', text: String(args.prompt) } }], maxTokens: 100 },
        }, CreateMessageResultSchema);
        return text(`LLM response: ${r.content?.text ?? 'No response'}`);
      } catch (e) {
        return text(`Sampling not supported or error: ${e.message}`);
      }
    },
  },
  test_elicitation: {
    description: 'Tests server-initiated elicitation (user input request)',
    inputSchema: {
      type: 'object',
      properties: { message: { type: 'string', description: 'The message to show the user' } },
      required: ['message'],
    },
    run: async (args, extra) => {
      try {
        const r = await extra.sendRequest({
          method: 'elicitation/create',
          params: {
            message: String(args.message),
            requestedSchema: {
              type: 'object',
              properties: { response: { type: 'string', description: "User's response" } },
              required: ['response'],
            },
          },
        }, ElicitResultSchema);
        return text(`User response: ${elicitText(r)}`);
      } catch (e) {
        return text(`Elicitation not supported or error: ${e.message}`);
      }
    },
  },
  test_elicitation_sep1034_defaults: {
    description: 'Tests elicitation with default values per SEP-1034',
    run: async (_args, extra) => {
      try {
        const r = await extra.sendRequest({
          method: 'elicitation/create',
          params: {
            message: 'Please review and update the form fields with defaults',
            requestedSchema: {
              type: 'object',
              properties: {
                name: { type: 'string', description: 'User name', default: 'John Doe' },
                age: { type: 'integer', description: 'User age', default: 30 },
                score: { type: 'number', description: 'User score', default: 95.5 },
                status: {
                  type: 'string', description: 'User status', enum: ['active', 'inactive', 'pending'], default: 'active',
                },
                verified: { type: 'boolean', description: 'Verification status', default: true },
              },
              required: [],
            },
          },
        }, ElicitResultSchema);
        return text(`Elicitation completed: ${elicitText(r)}`);
      } catch (e) {
        return text(`Elicitation not supported or error: ${e.message}`);
      }
    },
  },
  test_elicitation_sep1330_enums: {
    description: 'Tests elicitation with enum schema improvements per SEP-1330',
    run: async (_args, extra) => {
      try {
        const r = await extra.sendRequest({
          method: 'elicitation/create',
          params: {
            message: 'Please select options from the enum fields',
            requestedSchema: {
              type: 'object',
              properties: {
                untitledSingle: { type: 'string', description: 'Select one option', enum: ['option1', 'option2', 'option3'] },
                titledSingle: {
                  type: 'string',
                  description: 'Select one option with titles',
                  oneOf: [
                    { const: 'value1', title: 'First Option' },
                    { const: 'value2', title: 'Second Option' },
                    { const: 'value3', title: 'Third Option' },
                  ],
                },
                legacyEnum: {
                  type: 'string',
                  description: 'Select one option (legacy)',
                  enum: ['opt1', 'opt2', 'opt3'],
                  enumNames: ['Option One', 'Option Two', 'Option Three'],
                },
                untitledMulti: {
                  type: 'array',
                  description: 'Select multiple options',
                  minItems: 1,
                  maxItems: 3,
                  items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
                },
                titledMulti: {
                  type: 'array',
                  description: 'Select multiple options with titles',
                  minItems: 1,
                  maxItems: 3,
                  items: {
                    anyOf: [
                      { const: 'value1', title: 'First Choice' },
                      { const: 'value2', title: 'Second Choice' },
                      { const: 'value3', title: 'Third Choice' },
                    ],
                  },
                },
              },
              required: [],
            },
          },
        }, ElicitResultSchema);
        return text(`Elicitation completed: ${elicitText(r)}`);
      } catch (e) {
        return text(`Elicitation not supported or error: ${e.message}`);
      }
    },
  },
  json_schema_2020_12_tool: {
    description: 'Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)',
    inputSchema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      $defs: {
        address: { type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } },
      },
      properties: { name: { type: 'string' }, address: { $ref: '#/$defs/address' } },
      additionalProperties: false,
    },
    run: async (args) => text(`JSON Schema 2020-12 tool called with: ${JSON.stringify(args)}`),
  },
};

server.setRequestHandler(ListToolsRequestSchema, async () => ({
  tools: Object.entries(TOOLS).map(([name, t]) => ({
    name,
    description: t.description,
    inputSchema: t.inputSchema ?? noArgs,
  })),
}));

server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
  const tool = TOOLS[request.params.name];
  if (!tool) throw new McpError(ErrorCode.InvalidParams, `Tool ${request.params.name} not found`);
  const args = request.params.arguments ?? {};
  for (const key of tool.inputSchema?.required ?? []) {
    if (typeof args[key] !== 'string') throw new McpError(ErrorCode.InvalidParams, `argument "${key}" (a string) is required`);
  }
  return tool.run(args, { ...extra, _meta: request.params._meta });
});

// ---------------------------------------------------------------------------
// Resources

const RESOURCES = {
  'test://static-text': {
    name: 'static-text',
    title: 'Static Text Resource',
    description: 'A static text resource for testing',
    mimeType: 'text/plain',
    contents: { text: 'This is the content of the static text resource.' },
  },
  'test://static-binary': {
    name: 'static-binary',
    title: 'Static Binary Resource',
    description: 'A static binary resource (image) for testing',
    mimeType: 'image/png',
    contents: { blob: TEST_IMAGE_BASE64 },
  },
  'test://watched-resource': {
    name: 'watched-resource',
    title: 'Watched Resource',
    description: 'A resource that can be subscribed to',
    mimeType: 'text/plain',
    contents: { text: 'Watched resource content' },
  },
};
const TEMPLATE = /^test:\/\/template\/([^/]+)\/data$/;

server.setRequestHandler(ListResourcesRequestSchema, async () => ({
  resources: Object.entries(RESOURCES).map(([uri, r]) => ({
    uri, name: r.name, title: r.title, description: r.description, mimeType: r.mimeType,
  })),
}));

server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
  resourceTemplates: [{
    uriTemplate: 'test://template/{id}/data',
    name: 'template',
    title: 'Resource Template',
    description: 'A resource template with parameter substitution',
    mimeType: 'application/json',
  }],
}));

server.setRequestHandler(ReadResourceRequestSchema, async (request) => {
  const { uri } = request.params;
  const r = RESOURCES[uri];
  if (r) return { contents: [{ uri, mimeType: r.mimeType, ...r.contents }] };
  const m = TEMPLATE.exec(uri);
  if (m) {
    const id = decodeURIComponent(m[1]);
    return {
      contents: [{
        uri,
        mimeType: 'application/json',
        text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }),
      }],
    };
  }
  throw new McpError(-32002, `Resource ${uri} not found`);
});

server.setRequestHandler(SubscribeRequestSchema, async (request, extra) => {
  subscriptions.add(request.params.uri);
  await log(extra.sendNotification, 'info', `Subscribed to resource: ${request.params.uri}`);
  return {};
});

server.setRequestHandler(UnsubscribeRequestSchema, async (request, extra) => {
  subscriptions.delete(request.params.uri);
  await log(extra.sendNotification, 'info', `Unsubscribed from resource: ${request.params.uri}`);
  return {};
});

// ---------------------------------------------------------------------------
// Prompts

const PROMPTS = {
  test_simple_prompt: {
    title: 'Simple Test Prompt',
    description: 'A simple prompt without arguments',
    arguments: [],
    get: () => [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }],
  },
  test_prompt_with_arguments: {
    title: 'Prompt With Arguments',
    description: 'A prompt with required arguments',
    arguments: [
      { name: 'arg1', description: 'First test argument', required: true },
      { name: 'arg2', description: 'Second test argument', required: true },
    ],
    get: (a) => [{
      role: 'user',
      content: { type: 'text', text: `Prompt with arguments: arg1='${a.arg1}', arg2='${a.arg2}'` },
    }],
  },
  test_prompt_with_embedded_resource: {
    title: 'Prompt With Embedded Resource',
    description: 'A prompt that includes an embedded resource',
    arguments: [{ name: 'resourceUri', description: 'URI of the resource to embed', required: true }],
    get: (a) => [
      {
        role: 'user',
        content: {
          type: 'resource',
          resource: { uri: a.resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' },
        },
      },
      { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
    ],
  },
  test_prompt_with_image: {
    title: 'Prompt With Image',
    description: 'A prompt that includes image content',
    arguments: [],
    get: () => [
      { role: 'user', content: { type: 'image', data: TEST_IMAGE_BASE64, mimeType: 'image/png' } },
      { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
    ],
  },
};

server.setRequestHandler(ListPromptsRequestSchema, async () => ({
  prompts: Object.entries(PROMPTS).map(([name, p]) => ({
    name, title: p.title, description: p.description, arguments: p.arguments,
  })),
}));

server.setRequestHandler(GetPromptRequestSchema, async (request) => {
  const p = PROMPTS[request.params.name];
  if (!p) throw new McpError(ErrorCode.InvalidParams, `Prompt ${request.params.name} not found`);
  const args = request.params.arguments ?? {};
  for (const a of p.arguments) {
    if (a.required && typeof args[a.name] !== 'string') {
      throw new McpError(ErrorCode.InvalidParams, `argument "${a.name}" is required`);
    }
  }
  return { description: p.description, messages: p.get(args) };
});

// ---------------------------------------------------------------------------
// Logging and completion

server.setRequestHandler(SetLevelRequestSchema, async (request, extra) => {
  minLevel = request.params.level;
  await log(extra.sendNotification, 'info', `Log level set to: ${minLevel}`);
  return {};
});

server.setRequestHandler(CompleteRequestSchema, async (request) => {
  // Values for the arguments of test_prompt_with_arguments; empty elsewhere.
  const { ref, argument } = request.params;
  let values = [];
  if (ref?.type === 'ref/prompt' && ref.name === 'test_prompt_with_arguments') {
    values = ['alpha', 'beta', 'gamma'].filter((v) => v.startsWith(argument?.value ?? ''));
  }
  return { completion: { values, total: values.length, hasMore: false } };
});

// ---------------------------------------------------------------------------

const transport = new StdioServerTransport();
// The SDK closes the transport on stdin EOF; exit then, as a stdio server should.
transport.onclose = () => process.exit(0);
await server.connect(transport);
process.stdin.on('end', () => process.exit(0));
