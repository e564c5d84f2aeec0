/* Parsing what a Qwen-family model writes into an OpenAI assistant message: reasoning
 * (between <think> and </think>), content, and tool calls.
 *
 * Tool calls come in two formats, both inside <tool_call>...</tool_call>, and both are
 * recognised whatever the template:
 *   - JSON (Qwen3):   {"name": "f", "arguments": {"x": 1}}
 *   - XML (Qwen3.5, Qwen3-Coder):
 *         <function=f>
 *         <parameter=x>
 *         1
 *         </parameter>
 *         </function>
 *     A parameter's value loses one leading and one trailing newline. It stays a string
 *     unless the tool's JSON schema (passed in the options) gives the parameter another
 *     type: integer, number, boolean, object or array values are converted (a value that
 *     does not convert stays a string), and "null" becomes null. These are the rules of
 *     vLLM's qwen3_coder parser, which the Qwen models are served with.
 * Each call becomes {id, type: "function", function: {name, arguments}} with `arguments`
 * a JSON string written like Python's json.dumps ({"x": 1}).
 *
 * The parser is incremental: feed it text pieces split anywhere (inside a tag name, inside
 * a multi-byte character) and it emits deltas as soon as they are certain. Text that might
 * be the start of a tag is held back until the next piece decides, so a partial tag never
 * reaches the content. A tool call is emitted whole when its closing tag arrives, because
 * until then it may still turn out malformed — and a malformed block (bad JSON, no
 * function name) is given back as content, with a warning, never dropped and never a
 * crash. The concatenated deltas always equal the final message, however the text was
 * split.
 *
 * Whitespace: reasoning and content are each trimmed at both ends (the newlines around
 * the tags are formatting); whitespace between two pieces of content, say around a tool
 * call, is kept. "<think>" opens reasoning only before any content. */
#ifndef DF_TEXT_CHAT_PARSE_H
#define DF_TEXT_CHAT_PARSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

typedef enum df_chat_delta_kind {
    DF_CHAT_DELTA_REASONING,  /* text: more reasoning */
    DF_CHAT_DELTA_CONTENT,    /* text: more content */
    DF_CHAT_DELTA_TOOL_START, /* a tool call begins: tool_index, tool_id, tool_name */
    DF_CHAT_DELTA_TOOL_ARGS,  /* text: (more of) the arguments JSON of call tool_index */
} df_chat_delta_kind;

typedef struct df_chat_delta {
    df_chat_delta_kind kind;
    const char *text;
    size_t len;
    int tool_index;
    const char *tool_id;
    const char *tool_name;
} df_chat_delta;

typedef void (*df_chat_delta_fn)(void *user, const df_chat_delta *d);

typedef struct df_chat_parse_options {
    bool starts_in_reasoning; /* the prompt opened <think> (df_chat_prompt_opens_reasoning) */
    const json_t *tools;      /* the request's tools (array) or NULL: types XML parameters */
    uint64_t id_seed;         /* tool call ids are "call_" + 24 hex digits from this seed */
} df_chat_parse_options;

typedef struct df_chat_tool_call {
    char id[32];
    char *name;
    char *arguments; /* JSON text of an object */
} df_chat_tool_call;

typedef struct df_chat_parser df_chat_parser;

df_status df_chat_parser_new(const df_chat_parse_options *opt, df_chat_parser **out);
void df_chat_parser_free(df_chat_parser *p);

/* Feeds the next piece of model output; `fn` (may be NULL) receives the deltas it makes
 * certain. After finish, feeding is an error. Errors: DF_ERR_NOMEM only. */
df_status df_chat_parser_feed(df_chat_parser *p, const char *text, size_t len, df_chat_delta_fn fn, void *user);

/* The output has ended: what was held back is decided (an unclosed <think> stays
 * reasoning; an unclosed <tool_call> becomes a call if it parses, else content). */
df_status df_chat_parser_finish(df_chat_parser *p, df_chat_delta_fn fn, void *user);

/* The message so far (final after finish). Strings stay valid until the next feed. */
const char *df_chat_parser_reasoning(const df_chat_parser *p, size_t *len);
const char *df_chat_parser_content(const df_chat_parser *p, size_t *len);
size_t df_chat_parser_tool_count(const df_chat_parser *p);
const df_chat_tool_call *df_chat_parser_tool(const df_chat_parser *p, size_t i);
/* Malformed blocks kept as content, and unclosed blocks: how many, and the last reason. */
size_t df_chat_parser_warning_count(const df_chat_parser *p);
const char *df_chat_parser_last_warning(const df_chat_parser *p);

/* The OpenAI assistant message: {"role": "assistant", "content": ..., "reasoning_content":
 * ... (when there is reasoning), "tool_calls": [...] (when there are calls)}. content is
 * null when empty and there are tool calls. A new reference, NULL when out of memory. */
json_t *df_chat_parser_message(const df_chat_parser *p);

/* One-shot: parse a whole output into an OpenAI assistant message. */
df_status df_chat_parse(const char *text, size_t len, const df_chat_parse_options *opt, json_t **message);

#endif
