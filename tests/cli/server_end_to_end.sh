#!/usr/bin/env bash
# dflash serve end to end on the embedded pair (models/, served with no -m: speculative):
# health, curl chat (plain and SSE), the official openai npm client, a load test, greedy
# output equal to plain AR `dflash generate`, the API key (401), the body limit (413), and a
# clean exit on SIGTERM.
# usage: server_end_to_end.sh PATH_TO_DFLASH SOURCE_DIR
set -euo pipefail
dflash=$1
src=$2
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$work/serve.log" ] && sed 's/^/  serve: /' "$work/serve.log" >&2; exit 1; }
passed=0
ok() { passed=$((passed + 1)); }

probe=$("$dflash" serve -m "$work/none.gguf" 2>&1 || true)
if grep -q 'without libmicrohttpd' <<< "$probe"; then
  echo "0 passed, 0 failed (dflash was built without libmicrohttpd: no server to test)"
  exit 0
fi

export DFLASH_MODELS="$src/models"
target="$src/models/dflash-code-25m-q8_0.gguf"
name=dflash-code-25m-q8_0
key="test-key-$RANDOM$RANDOM"
# Port 0: the kernel picks a free loopback port, which the server prints.
"$dflash" serve --port 0 --parallel 2 --threads 2 --api-key "$key" --max-body 65536 \
  2> "$work/serve.log" &
pid=$!
port=
for _ in $(seq 1 200); do
  port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/serve.log")
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || fail "the server exited at start"
  sleep 0.1
done
[ -n "$port" ] || fail "the server did not say where it listens"
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  curl -sf "$base/health" > /dev/null && break
  sleep 0.1
done
curl -sf "$base/health" | grep -q '"ok"' || fail "/health"
grep -q "model '$name' (2 sessions in parallel, .*speculative)" "$work/serve.log" \
  || fail "with no -m the server should serve the embedded pair, two sessions in parallel"
ok

auth=(-H "Authorization: Bearer $key")
post() { curl -s -o "$work/$1" -w '%{http_code}' --max-time 60 "${auth[@]}" -H 'Content-Type: application/json' \
  "$base$2" -d "$3" || true; }

# Chat, not streamed.
code=$(post chat.json /v1/chat/completions \
  '{"model":"'$name'","messages":[{"role":"user","content":"hello"}],"max_tokens":8,"temperature":0}')
[ "$code" = 200 ] || fail "chat status $code: $(cat "$work/chat.json")"
node -e '
const j = JSON.parse(require("fs").readFileSync(process.argv[1]));
if (j.object !== "chat.completion" || j.choices[0].message.role !== "assistant") throw new Error("shape");
if (!["stop","length"].includes(j.choices[0].finish_reason)) throw new Error("finish_reason");
if (j.usage.completion_tokens < 1 || j.usage.completion_tokens > 8) throw new Error("usage");
' "$work/chat.json" || fail "chat body: $(cat "$work/chat.json")"
ok

# Chat, streamed: every event a JSON data line, the last [DONE].
code=$(post stream.txt /v1/chat/completions \
  '{"messages":[{"role":"user","content":"hello"}],"max_tokens":8,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}')
[ "$code" = 200 ] || fail "stream status $code"
node -e '
const t = require("fs").readFileSync(process.argv[1], "utf8");
if (!t.endsWith("\n\n")) throw new Error("stream does not end with a blank line");
const ev = t.split("\n\n").filter(e => e.length);
if (ev.at(-1) !== "data: [DONE]") throw new Error("last event is not [DONE]");
let usage = false, finish = false;
for (const e of ev.slice(0, -1)) {
  if (!e.startsWith("data: ")) throw new Error("not a data line: " + e);
  const j = JSON.parse(e.slice(6));
  if (j.usage) usage = true;
  if (j.choices[0]?.finish_reason) finish = true;
}
if (!usage || !finish) throw new Error("no usage or no finish_reason");
' "$work/stream.txt" || fail "SSE stream: $(head -c 600 "$work/stream.txt")"
ok

# Errors: OpenAI-style objects with the right status and the field named.
code=$(post err.json /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"top_p":"high"}')
[ "$code" = 400 ] && grep -q '"param":"top_p"' "$work/err.json" || fail "bad top_p: $code $(cat "$work/err.json")"
code=$(post err.json /v1/chat/completions '{"messages":[{"role":"user","content":"x"}')
[ "$code" = 400 ] && grep -q 'not valid JSON' "$work/err.json" || fail "malformed JSON: $code"
code=$(post err.json /v1/completions '{"prompt":"x","model":"gpt-9"}')
[ "$code" = 404 ] && grep -q 'model_not_found' "$work/err.json" || fail "unknown model: $code"
long=$(printf 'a b %.0s' $(seq 1 6000)) # about 12000 tokens: over the 4096 context
code=$(post err.json /v1/completions "{\"prompt\":\"$long\"}")
[ "$code" = 400 ] && grep -q 'context_length_exceeded' "$work/err.json" || fail "prompt over the context: $code $(head -c 300 "$work/err.json")"
ok

# Auth: everything but /health needs the key.
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/v1/models")
[ "$code" = 401 ] || fail "no key: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer wrong$key" "$base/v1/models")
[ "$code" = 401 ] || fail "wrong key: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$base/v1/models")
[ "$code" = 200 ] || fail "right key: $code"
ok

# Body limit (65536 here): 413.
head -c 70000 /dev/zero | tr '\0' 'x' | sed 's/^/{"prompt":"/; s/$/"}/' > "$work/big.json"
code=$(curl -s -o "$work/err.json" -w '%{http_code}' "${auth[@]}" "$base/v1/completions" --data-binary @"$work/big.json")
[ "$code" = 413 ] && grep -q 'request_too_large' "$work/err.json" || fail "big body: $code"
ok

# Greedy: the server's completion equals `dflash generate` on the same text.
prompt='def quicksort(arr):'
"$dflash" generate -m "$target" -p "$prompt" -n 24 --json > "$work/gen.json" 2>/dev/null || fail "generate"
code=$(post comp.json /v1/completions "{\"prompt\":\"$prompt\",\"max_tokens\":24,\"temperature\":0}")
[ "$code" = 200 ] || fail "completion status $code"
node -e '
const fs = require("fs");
const g = JSON.parse(fs.readFileSync(process.argv[1])), s = JSON.parse(fs.readFileSync(process.argv[2]));
if (s.choices[0].text !== g.text) throw new Error(JSON.stringify(s.choices[0].text) + " != " + JSON.stringify(g.text));
if (s.usage.completion_tokens !== g.n_gen) throw new Error("token counts differ");
' "$work/gen.json" "$work/comp.json" || fail "server output differs from dflash generate"
ok

# The official client, then load: 8 concurrent clients x 20 requests.
js="$src/tests/js"
if [ -d "$js/node_modules/openai" ]; then
  node "$js/server_openai_client.mjs" "$base/v1" "$name" "$key" || fail "openai client"
  ok
else
  echo "note: tests/js/node_modules/openai missing (run npm install in tests/js); client test skipped" >&2
fi
timeout 300 node "$js/server_load.mjs" "$base/v1" "$name" "$key" 8 20 || fail "load"
ok

# A client that hangs up cancels its generation: 4000 tokens asked, the stream dropped after
# its first bytes; the generation must end cancelled, well short of 4000 tokens.
metric() { curl -sf "${auth[@]}" "$base/metrics" | sed -n "s/^$1 //p"; }
gens=$(metric dflash_generations_total)
toks=$(metric dflash_generated_tokens_total)
curl -sN "${auth[@]}" "$base/v1/completions" \
  -d '{"prompt":"hi","max_tokens":4000,"ignore_eos":true,"stream":true}' | head -c 200 > /dev/null || true
for _ in $(seq 1 300); do [ "$(metric dflash_generations_total)" -gt "$gens" ] && break; sleep 0.1; done
[ "$(metric dflash_generations_total)" -gt "$gens" ] || fail "the dropped stream's generation did not end"
c=$(metric dflash_generations_cancelled_total)
[ "$c" = 1 ] || fail "the dropped stream was not counted as cancelled (cancelled: $c)"
made=$(( $(metric dflash_generated_tokens_total) - toks ))
[ "$made" -lt 4000 ] || fail "the dropped stream generated all $made tokens"
ok

# Metrics reflect the traffic.
curl -sf "${auth[@]}" "$base/metrics" > "$work/metrics.txt" || fail "/metrics"
grep -q '^dflash_requests_total{route="/v1/completions",status="413"} 1$' "$work/metrics.txt" || fail "metrics 413"
grep -Eq '^dflash_generated_tokens_total [1-9][0-9]*$' "$work/metrics.txt" || fail "metrics tokens"
ok

# SIGTERM with generations in flight and queued: a clean exit (under ASan this also checks
# for leaks); their clients get an answer or a closed stream, never a hang.
for i in 1 2 3; do
  curl -sN "${auth[@]}" --max-time 60 "$base/v1/completions" \
    -d '{"prompt":"hi","max_tokens":4000,"ignore_eos":true,"stream":true}' > "$work/inflight$i.txt" 2>/dev/null &
done
curl -s "${auth[@]}" --max-time 60 "$base/v1/completions" \
  -d '{"prompt":"hi","max_tokens":4000,"ignore_eos":true}' > "$work/inflight4.txt" 2>/dev/null &
for _ in $(seq 1 100); do [ -s "$work/inflight1.txt" ] && break; sleep 0.05; done
kill -TERM "$pid"
rc=0
for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "the server did not exit on SIGTERM"
wait "$pid" || rc=$?
pid=
[ "$rc" = 0 ] || fail "exit status $rc after SIGTERM"
wait  # the in-flight clients: each ends once the server is gone
ok
echo "$passed passed, 0 failed"
