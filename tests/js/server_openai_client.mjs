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

// 4. errors: a bad sampling value, an unknown model
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
