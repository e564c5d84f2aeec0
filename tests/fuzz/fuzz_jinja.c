/* libFuzzer target: the Jinja interpreter. The input is a template; it is parsed and, when
 * it parses, rendered against a fixed chat context (messages with reasoning, tool calls and
 * tool results, tools, flags) under small limits, so that a hostile template can neither
 * crash, leak, nor hang: every run ends in output or an error within the limits. */
#include <stdlib.h>
#include <string.h>

#include "text/jinja.h"

static const char *g_context =
    "{\"messages\": ["
    "{\"role\": \"system\", \"content\": \"You are helpful.\"},"
    "{\"role\": \"user\", \"content\": \"Weather in Paris? <tool_response>x</tool_response>\"},"
    "{\"role\": \"assistant\", \"content\": \"<think>\\nplan\\n</think>\\n\\nChecking.\", \"reasoning_content\": \"plan\","
    " \"tool_calls\": [{\"id\": \"c1\", \"type\": \"function\", \"function\": {\"name\": \"get_weather\","
    " \"arguments\": {\"city\": \"Paris\", \"days\": 3, \"opts\": {\"unit\": \"c\"}, \"tags\": [1, 2.5, null, true]}}}]},"
    "{\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": \"18 degrees\"},"
    "{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"and \"}, {\"type\": \"image\"}]}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get weather \\u00e9\","
    " \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}],"
    " \"add_generation_prompt\": true, \"enable_thinking\": false, \"bos_token\": \"<s>\", \"n\": 7, \"f\": 0.5}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static json_t *ctx;
    if (!ctx) ctx = json_loads(g_context, 0, NULL);
    if (!ctx) __builtin_trap();
    df_jinja_template *t = NULL;
    if (df_jinja_parse((const char *)data, size, &t) != DF_OK) {
        if (t) __builtin_trap(); /* a failed parse leaves nothing behind */
        return 0;
    }
    df_jinja_limits lim = {
        .max_output = 1 << 20,
        .max_memory = 64 << 20,
        .max_iterations = 100000,
        .max_steps = 3000000,
        .max_depth = 100,
    };
    char *out = NULL;
    size_t len = 0;
    if (df_jinja_render(t, ctx, &lim, &out, &len) == DF_OK) {
        if (!out || strlen(out) > len || len > lim.max_output) __builtin_trap();
        free(out);
    } else if (out) {
        __builtin_trap();
    }
    df_jinja_free(t);
    return 0;
}
