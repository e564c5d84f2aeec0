// The official OpenAI client against `dflash serve`: chat, streaming chat, completions, and
// errors surfacing as the client's typed errors with status and param.
// usage: node server_openai_client.mjs BASE_URL MODEL API_KEY
import OpenAI from "openai";

const [base, model, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base, apiKey, maxRetries: 0, timeout: 60000 });
const fail = (msg) => { console.error("FAIL: " + msg); process.exit(1); };
let passed = 0;

// 1. chat, non-streaming
const chat = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Say hi" }], max_tokens: 12, temperature: 0,
});
if (chat.object !== "chat.completion") fail("object " + chat.object);
if (chat.choices.length !== 1 || chat.choices[0].message.role !== "assistant") fail("choices " + JSON.stringify(chat.choices));
if (!["stop", "length"].includes(chat.choices[0].finish_reason)) fail("finish_reason " + chat.choices[0].finish_reason);
if (!(chat.usage.completion_tokens >= 1 && chat.usage.completion_tokens <= 12)) fail("usage " + JSON.stringify(chat.usage));
if (chat.usage.total_tokens !== chat.usage.prompt_tokens + chat.usage.completion_tokens) fail("usage sum");
passed++;

// 2. chat, streaming: the deltas joined equal the non-streaming greedy answer
const stream = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Say hi" }], max_tokens: 12, temperature: 0, stream: true,
  stream_options: { include_usage: true },
});
let text = "", finish = null, usage = null, chunks = 0;
for await (const chunk of stream) {
  chunks++;
  if (chunk.object !== "chat.completion.chunk") fail("chunk object " + chunk.object);
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    if (c.delta.content) text += c.delta.content;
    if (c.delta.reasoning_content) text += c.delta.reasoning_content;
    if (c.finish_reason) finish = c.finish_reason;
  }
}
const whole = (chat.choices[0].message.reasoning_content ?? "") + (chat.choices[0].message.content ?? "");
if (chunks < 2) fail("stream had " + chunks + " chunks");
if (finish !== chat.choices[0].finish_reason) fail(`stream finish ${finish} vs ${chat.choices[0].finish_reason}`);
if (!usage || usage.completion_tokens !== chat.usage.completion_tokens) fail("stream usage " + JSON.stringify(usage));
if (text !== whole) fail(`streamed text ${JSON.stringify(text)} != ${JSON.stringify(whole)}`);
passed++;

// 3. legacy completions
const comp = await client.completions.create({ model, prompt: "def f(", max_tokens: 5, temperature: 0 });
if (comp.object !== "text_completion" || typeof comp.choices[0].text !== "string") fail("completion " + JSON.stringify(comp));
passed++;

// 4. a tools round trip: tools offered, then the conversation continued with an assistant
// tool call and the tool's result (what a client sends after running a tool); both answer a
// well-formed completion, and any tool call the model makes has the client's shape.
const tools = [{ type: "function", function: { name: "read_file", description: "Read a file",
  parameters: { type: "object", properties: { path: { type: "string" } }, required: ["path"] } } }];
const first = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Show me setup.py" }], tools, tool_choice: "auto",
  max_tokens: 16, temperature: 0,
});
const m1 = first.choices[0].message;
if (m1.role !== "assistant") fail("tools: role " + m1.role);
for (const call of m1.tool_calls ?? []) {
  if (call.type !== "function" || typeof call.id !== "string" || typeof call.function.name !== "string" ||
      typeof call.function.arguments !== "string") fail("tools: call shape " + JSON.stringify(call));
}
if (m1.tool_calls?.length && first.choices[0].finish_reason !== "tool_calls") fail("tools: finish_reason");
const second = await client.chat.completions.create({
  model, tools, max_tokens: 16, temperature: 0, messages: [
    { role: "user", content: "Show me setup.py" },
    { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function",
      function: { name: "read_file", arguments: JSON.stringify({ path: "setup.py" }) } }] },
    { role: "tool", tool_call_id: "call_1", content: "from setuptools import setup\nsetup(name='demo')\n" },
  ],
});
if (second.object !== "chat.completion" || second.choices[0].message.role !== "assistant") fail("tools: second turn");
if (!(second.usage.prompt_tokens > first.usage.prompt_tokens)) fail("tools: the tool result was not in the prompt");
passed++;

// 5. errors: a bad sampling value, an unknown model
try {
  await client.chat.completions.create({ model, messages: [{ role: "user", content: "x" }], temperature: 7 });
  fail("temperature 7 accepted");
} catch (e) {
  if (!(e instanceof OpenAI.BadRequestError)) fail("not a BadRequestError: " + e);
  if (e.status !== 400 || e.param !== "temperature" || !/temperature/.test(e.message)) fail(`error ${e.status} ${e.param} ${e.message}`);
}
try {
  await client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "x" }] });
  fail("unknown model accepted");
} catch (e) {
  if (!(e instanceof OpenAI.NotFoundError) || e.code !== "model_not_found") fail("unknown model: " + e);
}
const models = await client.models.list();
if (!models.data.some((m) => m.id === model)) fail("models.list lacks " + model);
passed++;
console.log(`openai client: ${passed} passed`);
