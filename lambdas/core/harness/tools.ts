import type { AgentToolDefinition } from '../resources/agents.js';
import type { PermissionPolicy } from '../api/schemas.js';
import { SANDBOX_TOOLS, type SandboxToolName } from '../sandbox/types.js';
import { mcpToolName, type McpServerRef, type McpToolInfo } from '../mcp/gateway.js';

/** How the harness handles a tool the model may call. */
export type ToolRoute =
  | { kind: 'sandbox'; tool: SandboxToolName; policy: PermissionPolicy }
  | { kind: 'custom'; policy: PermissionPolicy }
  /** Corral's own: the harness reads the session log back for the model. */
  | { kind: 'log'; policy: PermissionPolicy }
  /** A tool of one of the agent's MCP servers, called through the credential proxy. */
  | { kind: 'mcp'; server: McpServerRef; tool: string; policy: PermissionPolicy }
  /** A server tool (web_search, web_fetch): the model provider runs it inside the model's answer. */
  | { kind: 'server'; policy: PermissionPolicy };

export const READ_LOG_TOOL = 'read_session_log';

/** Offered when part of the session is out of the model's view (summarised or elided). */
export const READ_LOG_SPEC: ToolSpec = {
  name: READ_LOG_TOOL,
  description:
    'Read events of this session back from its log, by position (the numbers that summaries and ' +
    '"not shown" notes give). Returns at most 50 events.',
  input_schema: {
    type: 'object',
    properties: {
      from_position: { type: 'integer', minimum: 1 },
      to_position: { type: 'integer', minimum: 1, description: 'Last position to read (inclusive). Default from_position.' },
    },
    required: ['from_position'],
  },
};

export interface ToolSpec {
  name: string;
  description: string;
  input_schema: Record<string, unknown>;
}

const SANDBOX_NOTE =
  ' Runs in the session sandbox (a Linux workspace that persists between calls).' +
  ' Pass "sandbox" to address a named sandbox; calls without it go to "default".';

const sandboxProp = {
  sandbox: {
    type: 'string',
    description: 'Name of the sandbox to run in (letters, digits, - and _). Created on first use. Default "default".',
  },
};

/** Model-facing definitions of the agent toolset (`agent_toolset_20260401`). */
export const SANDBOX_TOOL_SPECS: Record<SandboxToolName, ToolSpec> = {
  bash: {
    name: 'bash',
    description: 'Run a bash command and return its combined stdout and stderr.' + SANDBOX_NOTE,
    input_schema: {
      type: 'object',
      properties: {
        command: { type: 'string', description: 'The command to run.' },
        timeout_ms: { type: 'integer', description: 'Timeout in milliseconds (default 120000, max 600000).' },
        restart: { type: 'boolean', description: 'Restart the shell.' },
        ...sandboxProp,
      },
      required: ['command'],
    },
  },
  read: {
    name: 'read',
    description: 'Read a text file, with line numbers.' + SANDBOX_NOTE,
    input_schema: {
      type: 'object',
      properties: {
        file_path: { type: 'string' },
        view_range: { type: 'array', items: { type: 'integer' }, description: '[first line, last line], 1-based; -1 for the end.' },
        ...sandboxProp,
      },
      required: ['file_path'],
    },
  },
  write: {
    name: 'write',
    description: 'Create or overwrite a file.' + SANDBOX_NOTE,
    input_schema: {
      type: 'object',
      properties: { file_path: { type: 'string' }, content: { type: 'string' }, ...sandboxProp },
      required: ['file_path', 'content'],
    },
  },
  edit: {
    name: 'edit',
    description: 'Replace an exact string in a file (it must occur once unless replace_all).' + SANDBOX_NOTE,
    input_schema: {
      type: 'object',
      properties: {
        file_path: { type: 'string' },
        old_string: { type: 'string' },
        new_string: { type: 'string' },
        replace_all: { type: 'boolean' },
        ...sandboxProp,
      },
      required: ['file_path', 'old_string', 'new_string'],
    },
  },
  glob: {
    name: 'glob',
    description: 'List files matching a glob pattern such as **/*.ts.' + SANDBOX_NOTE,
    input_schema: {
      type: 'object',
      properties: { pattern: { type: 'string' }, path: { type: 'string' }, ...sandboxProp },
      required: ['pattern'],
    },
  },
  grep: {
    name: 'grep',
    description: 'Search file contents with a regular expression; prints path:line:text.' + SANDBOX_NOTE,
    input_schema: {
      type: 'object',
      properties: { pattern: { type: 'string' }, path: { type: 'string' }, ...sandboxProp },
      required: ['pattern'],
    },
  },
};

/** The Messages API's server tools for the agent toolset's web tools: the model provider runs them. */
export const SERVER_TOOL_TYPES = { web_search: 'web_search_20250305', web_fetch: 'web_fetch_20250910' } as const;

/** A server tool as the Messages API takes it: its `type`, `name` and settings. */
export interface ServerToolSpec {
  type: (typeof SERVER_TOOL_TYPES)[keyof typeof SERVER_TOOL_TYPES];
  name: keyof typeof SERVER_TOOL_TYPES;
  [setting: string]: unknown;
}

export interface Toolbox {
  specs: Array<ToolSpec | ServerToolSpec>;
  routes: Map<string, ToolRoute>;
}

/** The server tool for a web tool's config: every setting the agent stores that the tool takes. */
export function serverToolSpec(name: keyof typeof SERVER_TOOL_TYPES, config: Record<string, unknown> | undefined): ServerToolSpec {
  const spec: ServerToolSpec = { type: SERVER_TOOL_TYPES[name], name };
  const settings = name === 'web_search' ? ['allowed_domains', 'blocked_domains', 'user_location'] : ['allowed_domains', 'blocked_domains', 'max_content_tokens'];
  for (const key of settings) if (config?.[key] != null) spec[key] = config[key];
  const sources = config?.url_sources as Record<string, unknown> | null | undefined;
  if (name === 'web_fetch' && sources) {
    // The agent names every source (null: not set); the request leaves a source out for "all".
    const set = Object.fromEntries(Object.entries(sources).filter(([, v]) => v != null));
    if (Object.keys(set).length) spec.url_sources = set;
  }
  return spec;
}

/**
 * The tools offered to the model for an agent's tool definitions: the sandbox tools, the web tools
 * as server tools (the provider runs them inside the answer, so one whose policy asks first is
 * not offered: nobody could be asked), custom tools, and the tools of MCP servers that listed.
 */
export function buildToolbox(
  tools: AgentToolDefinition[],
  opts: {
    readLog?: boolean;
    /** The agent's MCP servers, and the tools each listed (servers that could not be listed are absent). */
    mcpServers?: McpServerRef[];
    mcpTools?: Map<string, McpToolInfo[]>;
  } = {},
): Toolbox {
  const specs: Toolbox['specs'] = [];
  const routes = new Map<string, ToolRoute>();
  if (opts.readLog) {
    specs.push(READ_LOG_SPEC);
    routes.set(READ_LOG_TOOL, { kind: 'log', policy: { type: 'always_allow' } });
  }
  for (const def of tools) {
    if (def.type === 'agent_toolset_20260401') {
      for (const name of SANDBOX_TOOLS) {
        const config = def.configs.find((c) => c.name === name);
        const enabled = config?.enabled ?? def.default_config.enabled;
        if (!enabled || routes.has(name)) continue;
        specs.push(SANDBOX_TOOL_SPECS[name]);
        routes.set(name, { kind: 'sandbox', tool: name, policy: config?.permission_policy ?? def.default_config.permission_policy });
      }
      for (const name of Object.keys(SERVER_TOOL_TYPES) as Array<keyof typeof SERVER_TOOL_TYPES>) {
        const config = def.configs.find((c) => c.name === name);
        const policy = config?.permission_policy ?? def.default_config.permission_policy;
        if (!(config?.enabled ?? def.default_config.enabled) || policy.type === 'always_ask' || routes.has(name)) continue;
        specs.push(serverToolSpec(name, config));
        routes.set(name, { kind: 'server', policy });
      }
    } else if (def.type === 'mcp_toolset') {
      const server = opts.mcpServers?.find((m) => m.name === def.mcp_server_name);
      for (const info of (server && opts.mcpTools?.get(server.name)) || []) {
        const config = def.configs.find((c) => c.name === info.name);
        if (!(config?.enabled ?? def.default_config.enabled)) continue;
        const name = mcpToolName(server!.name, info.name);
        if (routes.has(name)) continue;
        specs.push({ name, description: info.description ?? `${info.name} (MCP server ${server!.name})`, input_schema: info.input_schema });
        routes.set(name, { kind: 'mcp', server: server!, tool: info.name, policy: config?.permission_policy ?? def.default_config.permission_policy });
      }
    } else if (def.type === 'custom') {
      if (routes.has(def.name)) continue;
      specs.push({ name: def.name, description: def.description, input_schema: def.input_schema });
      routes.set(def.name, { kind: 'custom', policy: { type: 'always_allow' } });
    }
  }
  return { specs, routes };
}
