/* A small Jinja interpreter for chat templates.
 *
 * Why an interpreter and not a native renderer per model family: a GGUF or a Hugging Face
 * checkpoint ships its chat template as Jinja source (tokenizer.chat_template), and models
 * in the wild carry many variants of "the same" template — Qwen3, Qwen3.5, the Unsloth and
 * llama.cpp fixes of them, fine-tunes that add a system prompt or a `preserve_thinking`
 * switch. A renderer that recognises known templates and re-implements them in C drifts
 * from each variant by a byte here and there (a newline before <tool_call>, whether old
 * reasoning is kept), and the model sees a prompt it was not trained on. Interpreting the
 * template the model ships renders every variant exactly, and a template we cannot
 * interpret fails loudly with a line and column instead of rendering something plausible.
 *
 * Semantics follow Python's Jinja2 as configured by transformers for chat templates (the
 * renderer the models were trained with): trim_blocks and lstrip_blocks on, loop controls
 * (break/continue) on, a single trailing newline of the source dropped, `tojson` being
 * json.dumps(ensure_ascii=False) with insertion-ordered keys and ", " / ": " separators,
 * globals raise_exception() and strftime_now(). Where @huggingface/jinja (our test oracle)
 * differs from Python — str(True) is "True" not "true", strip('\n') honours its argument,
 * None prints as "None", a float from JSON such as 1.0 stays a float — we follow Python;
 * the oracle fixtures avoid those corners and the unit tests pin them down.
 *
 * Not supported (a clear error names the construct): {% call %}, {% include %},
 * {% extends %}, {% block %}, {% import %}, recursive loops, `*args` / `**kwargs` in calls,
 * Python's %-formatting of strings.
 *
 * Untrusted templates are safe to render: output size, memory, loop iterations, evaluation
 * steps and nesting depth are all bounded (df_jinja_limits), and exceeding a bound is an
 * error, never a hang or a crash. */
#ifndef DF_TEXT_JINJA_H
#define DF_TEXT_JINJA_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

typedef struct df_jinja_template df_jinja_template;

typedef struct df_jinja_limits {
    size_t max_output;         /* bytes of rendered text (also bounds each captured block) */
    size_t max_memory;         /* bytes of working memory one render may use */
    uint64_t max_iterations;   /* loop iterations over the whole render */
    uint64_t max_steps;        /* evaluation steps (expressions, statements, scanned bytes/64) */
    int max_depth;             /* nesting of evaluation: macro calls, expressions, values */
} df_jinja_limits;

/* The limits used when a caller passes NULL: generous for real prompts (64 MiB of output,
 * 512 MiB of memory), small enough that a hostile template fails in seconds. */
df_jinja_limits df_jinja_default_limits(void);

/* Parses template source (UTF-8, `len` bytes, need not be NUL-terminated). On error returns
 * DF_ERR_FORMAT (syntax) or DF_ERR_UNSUPPORTED (unknown tag, filter or test) with a message
 * "chat template line L column C: ..." (columns count bytes from 1). */
df_status df_jinja_parse(const char *src, size_t len, df_jinja_template **out);

/* Renders with the variables of `context` (a JSON object: messages, tools,
 * add_generation_prompt, ...). On success *out is a NUL-terminated malloc'd string of
 * *out_len bytes (free() it). Errors: DF_ERR_INVALID for a template that fails at run time
 * (raise_exception(), a type error, a limit), with the line and column of the expression.
 * A parsed template is immutable: several threads may render it at once. */
df_status df_jinja_render(const df_jinja_template *t, const json_t *context,
                          const df_jinja_limits *limits, char **out, size_t *out_len);

void df_jinja_free(df_jinja_template *t);

#endif
