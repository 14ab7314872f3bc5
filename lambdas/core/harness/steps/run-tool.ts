import type { AgentToolDefinition } from '../../resources/agents.js';
import type { SandboxToolName } from '../../sandbox/types.js';
import { append } from '../append.js';
import { resultFor, toolResultBody } from '../bodies.js';
import type { OpenTool } from '../state.js';
import type { StepContext } from '../step.js';
import { buildToolbox } from '../tools.js';
import { runMcpTool } from './tool-mcp.js';
import { runReadLog } from './tool-read-log.js';
import { runSandboxTool } from './tool-sandbox.js';
import { runThreadTool } from './tool-thread.js';
import { THREAD_TOOLS } from '../../threads/multiagent.js';
import { withSpan } from '../../telemetry/trace.js';

/** Who answers an open tool call the harness is to run. */
export type ToolCallRoute =
  /** The user denied it when asked: it is answered with an error at once. */
  | { kind: 'denied'; message: string }
  /** A tool of one of the agent's MCP servers (tool-mcp.ts). */
  | { kind: 'mcp' }
  /** `read_session_log`, answered by the harness from the log (tool-read-log.ts). */
  | { kind: 'log' }
  /** A tool of the agent toolset, run in a sandbox (tool-sandbox.ts). */
  | { kind: 'sandbox'; tool: SandboxToolName }
  /**
   * A name the agent has no runnable tool for. Custom tools are the client's to answer
   * (`agent.custom_tool_use`, which `decide` waits on and never runs): an `agent.tool_use` that
   * names one lands here too.
   */
  | { kind: 'unknown' };

/** Route an open tool call by its kind, its confirmation and the agent's tool definitions. Pure. */
export function routeToolCall(tool: OpenTool, agentTools: AgentToolDefinition[]): ToolCallRoute {
  if (tool.confirmation?.result === 'deny') {
    const why = tool.confirmation.deny_message ? `: ${tool.confirmation.deny_message}` : '.';
    return { kind: 'denied', message: `The user denied this tool call${why}` };
  }
  if (tool.type === 'agent.mcp_tool_use') return { kind: 'mcp' };
  // The log reader is routed even when the current view would not offer it: the model was offered it when it called.
  const route = buildToolbox(agentTools, { readLog: true }).routes.get(tool.name);
  // A server tool's call never waits here: the provider ran it inside the answer that made it.
  if (!route || route.kind === 'custom' || route.kind === 'mcp' || route.kind === 'server') return { kind: 'unknown' };
  if (route.kind === 'log') return { kind: 'log' };
  return { kind: 'sandbox', tool: route.tool };
}

/** Run one open tool call (a decision of `decide`), and write its result after the last position read. */
export async function runTool(ctx: StepContext, tool: OpenTool) {
  // A coordinator's own tools (threads/multiagent.ts), unless the user denied the call.
  if (ctx.session.thread_roster && THREAD_TOOLS.includes(tool.name) && tool.type === 'agent.tool_use' && tool.confirmation?.result !== 'deny') {
    return withSpan('tool_call', { attributes: { 'corral.session.id': ctx.session.id, 'corral.tool_use.id': tool.id, 'corral.tool.name': tool.name, 'corral.tool.route': 'thread' } }, () =>
      runThreadTool(ctx, tool),
    );
  }
  const route = routeToolCall(tool, ctx.session.agent.tools);
  // The tool call's span: the tool's name and route, the call's id; never its input or output.
  const attributes = { 'corral.session.id': ctx.session.id, 'corral.tool_use.id': tool.id, 'corral.tool.name': tool.name, 'corral.tool.route': route.kind };
  return withSpan('tool_call', { attributes }, () => routeTool(ctx, tool, route));
}

async function routeTool(ctx: StepContext, tool: OpenTool, route: ToolCallRoute) {
  const sessionId = ctx.session.id;
  const tail = ctx.state.position;
  switch (route.kind) {
    case 'denied':
      await append(ctx.deps, sessionId, tail, [resultFor(tool, route.message, true)]);
      return;
    case 'mcp':
      return runMcpTool(ctx, tool);
    case 'unknown':
      await append(ctx.deps, sessionId, tail, [toolResultBody(tool.id, `Unknown tool ${JSON.stringify(tool.name)}.`, true)]);
      return;
    case 'log':
      return runReadLog(ctx, tool);
    case 'sandbox':
      return runSandboxTool(ctx, tool, route.tool);
  }
}
