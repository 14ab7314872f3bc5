/**
 * The README's quick start: an agent with the agent toolset runs one bash command in a sandbox
 * and answers, streamed through the official Anthropic SDK from a local Corral.
 *
 *   npx tsx scripts/quickstart.ts
 *
 * CORRAL_URL (default http://127.0.0.1:4000) and CORRAL_API_KEY (default: the key `npm start`
 * generated in ./.corral/api-key) say where Corral is.
 */
import Anthropic from '@anthropic-ai/sdk';
import { readFileSync } from 'node:fs';

const apiKey = process.env.CORRAL_API_KEY ?? readFileSync('.corral/api-key', 'utf8').trim();
const client = new Anthropic({ baseURL: process.env.CORRAL_URL ?? 'http://127.0.0.1:4000', apiKey });

const agent = await client.beta.agents.create({
  name: 'quickstart',
  model: 'claude-sonnet-4-6',
  tools: [{ type: 'agent_toolset_20260401' }],
});
const environment = await client.beta.environments.create({ name: 'quickstart', config: { type: 'cloud' } });
const session = await client.beta.sessions.create({ agent: agent.id, environment_id: environment.id });

const stream = await client.beta.sessions.events.stream(session.id);
await client.beta.sessions.events.send(session.id, {
  events: [{ type: 'user.message', content: [{ type: 'text', text: 'Use bash to run `uname -a` and tell me what it says.' }] }],
});
for await (const event of stream) {
  if (event.type === 'agent.tool_use') console.log(`[tool_use] ${event.name} ${JSON.stringify(event.input)}`);
  else if (event.type === 'agent.tool_result') console.log(`[tool_result] ${JSON.stringify(event.content).slice(0, 200)}`);
  else if (event.type === 'agent.message') console.log(`[message] ${event.content.map((b) => ('text' in b ? b.text : '')).join('')}`);
  else console.log(`[${event.type}]`);
  if (event.type === 'session.status_idle') break;
}
