/** The console's stylesheet (inlined into the page; see `page.ts`). */
export const CONSOLE_CSS = String.raw`
:root {
  --bg: #f6f7f9; --card: #fff; --ink: #1d2330; --muted: #667085; --line: #e3e6ec;
  --accent: #c8553d; --run: #2563eb; --ok: #15803d; --warn: #b45309; --err: #b42318;
  --model: #6d5bd0; --tools: #0e9384;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { display: flex; align-items: center; gap: 12px; padding: 10px 20px; background: #1d2330; color: #fff; }
header .brand { font-weight: 700; letter-spacing: .02em; color: #fff; text-decoration: none; }
header .brand span { color: var(--accent); }
header #crumb { color: #c9ced8; }
header #crumb a { color: #fff; }
header button { background: transparent; color: #c9ced8; border: 1px solid #4a5163; }
main { max-width: 1100px; margin: 0 auto; padding: 16px 20px 40px; }
a { color: var(--run); }
h2 { margin: 0; font-size: 18px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; margin-bottom: 12px; }
.row { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; }
.spacer { flex: 1; }
.muted { color: var(--muted); }
.mono, code, pre { font-family: var(--mono); font-size: 12.5px; }
.error { color: var(--err); margin: 6px 0 0; }
.error:empty { display: none; }
button { font: inherit; padding: 6px 12px; border-radius: 6px; border: 1px solid var(--line); background: #fff; cursor: pointer; }
button[type=submit] { background: var(--ink); color: #fff; border-color: var(--ink); }
button.danger { color: var(--err); border-color: #f1b5ae; }
button:disabled { opacity: .45; cursor: default; }
input, textarea { font: inherit; width: 100%; padding: 8px 10px; border: 1px solid var(--line); border-radius: 6px; }
.key-form { max-width: 460px; margin: 40px auto; display: grid; gap: 10px; }
table.sessions { width: 100%; border-collapse: collapse; margin-top: 10px; }
table.sessions th, table.sessions td { text-align: left; padding: 7px 8px; border-bottom: 1px solid var(--line); }
table.sessions th { color: var(--muted); font-weight: 500; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600; background: #eef0f4; color: var(--muted); }
.status-running { background: #dbe7ff; color: var(--run); }
.status-idle { background: #dcf5e3; color: var(--ok); }
.status-rescheduling { background: #fdf0d5; color: var(--warn); }
.status-terminated { background: #eceef2; color: #475467; }
.conn { font-size: 12px; color: var(--muted); }
.conn-live::before { content: "● "; color: var(--ok); }
.conn-reconnecting::before { content: "● "; color: var(--warn); }
.chips { display: inline-flex; gap: 4px; flex-wrap: wrap; }
.chip { display: inline-block; padding: 0 7px; border-radius: 4px; background: #eef4f3; color: var(--tools); font-size: 12px; font-family: var(--mono); }
.chip:empty { display: none; }
.legend { font-size: 12px; margin: 0 2px 10px; }
ol.timeline, ol.step-body { list-style: none; margin: 0; padding: 0; }
.ev { position: relative; display: grid; grid-template-columns: 92px 74px 1fr; gap: 8px; align-items: start; padding: 6px 0; }
.ev .time { color: var(--muted); font-family: var(--mono); font-size: 11.5px; padding-top: 2px; }
.ev .label { font-size: 12px; font-weight: 600; color: var(--muted); padding-top: 1px; }
.ev .body pre, .tool pre { margin: 0; white-space: pre-wrap; word-break: break-word; }
.ev .body pre.text { font-family: inherit; font-size: 14px; }
.ev-user .body { background: #fff7f4; border: 1px solid #f3d4cb; border-radius: 8px; padding: 8px 10px; }
.ev-user .label { color: var(--accent); }
.ev-agent .body { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px 10px; }
.ev-agent .label { color: var(--model); }
.ev-agent.preview .body { border-style: dashed; color: var(--muted); }
.ev-error .body { color: var(--err); background: #fef3f2; border: 1px solid #fecdca; border-radius: 8px; padding: 6px 10px; }
.ev-error .label { color: var(--err); }
.ev-verdict .body { background: #f0faf3; border: 1px solid #c8e6d0; border-radius: 8px; padding: 6px 10px; }
.ev-verdict.ev-error .body { background: #fef3f2; border-color: #fecdca; }
.outcomes { list-style: none; margin: 8px 0 0; padding: 0; display: grid; gap: 4px; }
.outcomes .explanation { margin: 2px 0 0 4px; font-size: 12px; }
.outcome-ok { background: #dcf5e3; color: var(--ok); }
.outcome-open { background: #fdf3d8; color: var(--warn); }
.outcome-bad { background: #fef3f2; color: var(--err); }
.divider { grid-template-columns: 92px 1fr; color: var(--muted); font-size: 12px; }
.divider .text::before { content: "— "; }
.divider.warn { color: var(--warn); }
.step { display: block; background: #fbfbfd; border: 1px solid var(--line); border-left: 3px solid var(--model); border-radius: 8px; padding: 6px 10px 4px; margin: 6px 0; }
.step-head { display: grid; grid-template-columns: 92px 74px 1fr; gap: 8px; align-items: center; }
.step-head .label { color: var(--model); }
.strip { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; font-size: 12px; }
.lat { background: #f0eefb; border-radius: 4px; padding: 0 6px; font-family: var(--mono); font-size: 11.5px; }
.lat b { font-family: system-ui, sans-serif; font-weight: 600; color: var(--muted); }
.lat-tools { background: #e6f4f2; }
.bar { display: inline-flex; width: 160px; height: 6px; border-radius: 3px; overflow: hidden; background: #eceef2; }
.seg-model { background: var(--model); }
.seg-tools { background: var(--tools); }
.step-body .ev { grid-template-columns: 92px 74px 1fr; }
.tool { display: block; border: 1px solid var(--line); border-left: 3px solid var(--tools); border-radius: 8px; background: #fff; padding: 6px 10px; margin: 4px 0; }
.tool.is-error { border-left-color: var(--err); }
.tool-head { display: flex; align-items: center; gap: 8px; }
.tool-head .time { width: 84px; }
.tool-name { font-weight: 700; color: var(--tools); }
.tool-summary { color: var(--ink); background: #f4f5f7; padding: 0 6px; border-radius: 4px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; max-width: 520px; }
.tool-state { font-size: 12px; font-weight: 600; color: var(--run); }
.tool.is-done .tool-state { color: var(--ok); }
.tool.is-error .tool-state { color: var(--err); }
.tool-ms { font-family: var(--mono); font-size: 11.5px; color: var(--muted); }
.tool-io, .tool-result { display: grid; grid-template-columns: 52px 1fr; gap: 6px; margin-top: 4px; }
.tool-result:empty { display: none; }
.io-label { font-size: 11px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); padding-top: 2px; }
.tool pre.json, .tool pre.out { background: #f6f7f9; border-radius: 4px; padding: 4px 8px; }
.tool.is-error pre.out { background: #fef3f2; color: var(--err); }
header #menu { display: flex; gap: 12px; }
header #menu a { color: #c9ced8; text-decoration: none; }
header #menu a:hover { color: #fff; }
a.button { display: inline-block; padding: 6px 12px; border-radius: 6px; background: var(--ink); color: #fff; text-decoration: none; }
button.small { padding: 2px 8px; font-size: 12px; }
h3 { margin: 0 0 4px; font-size: 15px; }
table.list { width: 100%; border-collapse: collapse; margin-top: 10px; }
table.list th, table.list td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
table.list th { color: var(--muted); font-weight: 500; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
table.list td.actions { display: flex; gap: 6px; }
form.form { display: grid; gap: 10px; max-width: 760px; }
.field { display: grid; gap: 3px; }
.field-label { font-size: 12px; font-weight: 600; color: var(--muted); }
.hint { font-size: 12px; }
.sub { display: grid; gap: 10px; padding-left: 12px; border-left: 2px solid var(--line); }
.sub[hidden] { display: none; }
.pair { display: grid; grid-template-columns: 3fr 1fr; gap: 10px; align-items: start; }
.check { display: flex; align-items: center; gap: 6px; }
.check input { width: auto; }
fieldset { border: 1px solid var(--line); border-radius: 6px; display: grid; gap: 6px; }
legend { font-size: 12px; font-weight: 600; color: var(--muted); }
select { font: inherit; padding: 6px 8px; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
textarea { font-family: var(--mono); font-size: 12.5px; }
.composer textarea { font: inherit; }
details.more summary { cursor: pointer; color: var(--run); font-size: 12px; margin-top: 2px; }
.composer { position: sticky; bottom: 0; background: var(--bg); padding: 10px 0 4px; display: grid; grid-template-columns: 1fr auto; gap: 8px; align-items: end; }
.composer .buttons { display: flex; gap: 6px; }
.composer .error { grid-column: 1 / -1; }
`;
