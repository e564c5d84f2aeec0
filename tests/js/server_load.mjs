// Load: C concurrent clients x R requests each (mixed chat / completions, streaming or not)
// on loopback; every response must be complete and well-formed, and greedy completions,
// generated while other sessions interleave with them token by token, must equal the same
// completions generated alone.
// usage: node server_load.mjs BASE_URL MODEL API_KEY CLIENTS REQUESTS
const [base, model, apiKey, clients, requests] = process.argv.slice(2);
const headers = { "Content-Type": "application/json", Authorization: `Bearer ${apiKey}` };
const fail = (msg) => { console.error("FAIL: " + msg); process.exit(1); };

const prompts = ["def quicksort(arr):", "Once upon a time", "The capital of France is", "int main(void) {"];
const reference = [];

async function one(c, r) {
  const chat = (c + r) % 2 === 0, stream = r % 3 === 0;
  const body = chat
    ? { model, messages: [{ role: "user", content: `client ${c} request ${r}` }], max_tokens: 6, stream, seed: c * 100 + r }
    : { model, prompt: prompts[(c + r) % 4], max_tokens: 10, stream, temperature: 0 };
  const res = await fetch(`${base}/${chat ? "chat/completions" : "completions"}`, {
    method: "POST", headers, body: JSON.stringify(body), signal: AbortSignal.timeout(120000),
  });
  const text = await res.text();
  if (res.status !== 200) fail(`client ${c} request ${r}: status ${res.status}: ${text}`);
  if (!stream) {
    const j = JSON.parse(text);
    if (!j.choices?.[0]?.finish_reason || !j.usage) fail("incomplete: " + text);
    if (!chat && j.choices[0].text !== reference[(c + r) % 4]) fail(`greedy text differs under load: ${text}`);
    return;
  }
  const events = text.split("\n\n").filter((e) => e.length);
  if (events.at(-1) !== "data: [DONE]") fail("stream does not end with [DONE]: " + text.slice(-200));
  let finished = false, joined = "";
  for (const e of events.slice(0, -1)) {
    if (!e.startsWith("data: ")) fail("not an SSE data line: " + e);
    const j = JSON.parse(e.slice(6));
    if (j.choices?.[0]?.finish_reason) finished = true;
    if (!chat) joined += j.choices?.[0]?.text ?? "";
  }
  if (!finished) fail("stream without finish_reason");
  if (!chat && joined !== reference[(c + r) % 4]) fail(`greedy streamed text differs under load: ${JSON.stringify(joined)}`);
}

for (const prompt of prompts) { // alone, one at a time
  const res = await fetch(`${base}/completions`, { method: "POST", headers,
    body: JSON.stringify({ model, prompt, max_tokens: 10, temperature: 0 }), signal: AbortSignal.timeout(120000) });
  if (res.status !== 200) fail("reference status " + res.status);
  reference.push((await res.json()).choices[0].text);
}
const t0 = Date.now();
await Promise.all(Array.from({ length: +clients }, async (_, c) => {
  for (let r = 0; r < +requests; r++) await one(c, r);
}));
console.log(`load: ${clients}x${requests} requests ok in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
