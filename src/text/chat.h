/* Chat prompts: OpenAI-style messages and tools, rendered by the model's own chat template.
 *
 * The context a template sees is what transformers passes to apply_chat_template:
 * `messages`, `tools` (only when given), `add_generation_prompt`, `enable_thinking` (only
 * when the caller sets it, so a template's own default applies otherwise), `bos_token` and
 * `eos_token` when known, and any extra chat_template_kwargs.
 *
 * Before rendering, messages get the two adjustments serving stacks make (vLLM and
 * llama.cpp do the same), because templates are written for them:
 *   - a `content` that is null or missing becomes "" (an assistant turn that only calls
 *     tools has content null in the OpenAI format; Qwen3's template would fail on it);
 *   - a tool call's `function.arguments` given as a JSON string (the OpenAI wire format)
 *     is parsed into an object when it holds one: templates iterate the arguments
 *     (Qwen3.5: `arguments|items`) or print them with tojson, and Hugging Face asks for
 *     dicts. A string that is not a JSON object is left as it is.
 * Set raw_messages to pass messages through untouched. */
#ifndef DF_TEXT_CHAT_H
#define DF_TEXT_CHAT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/status.h"
#include "text/jinja.h"

typedef struct df_chat_options {
    bool add_generation_prompt; /* end with the assistant header (default true) */
    int enable_thinking;        /* -1 leave undefined (default), 0 false, 1 true */
    const char *bos_token;      /* NULL: undefined */
    const char *eos_token;      /* NULL: undefined */
    const json_t *extra;        /* chat_template_kwargs, an object merged last; may be NULL */
    bool raw_messages;          /* skip the two adjustments above */
    const df_jinja_limits *limits; /* NULL: df_jinja_default_limits() */
} df_chat_options;

df_chat_options df_chat_default_options(void);

/* Checks the shape of `messages` (an array of objects with a string role; tool_calls, when
 * present, an array) and of `tools` (NULL or an array), and builds the template context.
 * Errors name the offending element ("messages[2].role: ..."). *out is a new reference. */
df_status df_chat_build_context(const json_t *messages, const json_t *tools, const df_chat_options *opt,
                                json_t **out);

/* df_chat_build_context + df_jinja_render. *prompt is malloc'd (free() it). */
df_status df_chat_render(const df_jinja_template *tmpl, const json_t *messages, const json_t *tools,
                         const df_chat_options *opt, char **prompt, size_t *prompt_len);

/* The template text of a tokenizer_config.json object: its "chat_template" string, or,
 * when that is a list of {name, template}, the one named "default" (or, when there is
 * none, `name` if given). Returns a borrowed string or NULL with the error recorded. */
const char *df_chat_template_from_config(const json_t *tokenizer_config, const char *name);

/* True when a rendered prompt leaves the model inside a reasoning block: its last
 * "<think>" comes after its last "</think>" and only whitespace follows it (Qwen3.5 with
 * thinking on ends the prompt with "<think>\n"). The output parser then starts in
 * reasoning. */
bool df_chat_prompt_opens_reasoning(const char *prompt, size_t len);

#endif
