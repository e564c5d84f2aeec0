/* Building a chat template's context from an OpenAI-style request, and rendering it. */
#include <string.h>

#include "text/chat.h"

df_chat_options df_chat_default_options(void) {
    return (df_chat_options){.add_generation_prompt = true, .enable_thinking = -1};
}

/* A deep copy of one message with the adjustments described in chat.h. */
static df_status adjust_message(const json_t *msg, size_t index, json_t **out) {
    json_t *m = json_deep_copy(msg);
    if (!m) return df_fail(DF_ERR_NOMEM, "messages[%zu]: out of memory", index);
    json_t *content = json_object_get(m, "content");
    if (!content || json_is_null(content)) json_object_set_new(m, "content", json_string(""));
    json_t *calls = json_object_get(m, "tool_calls");
    for (size_t i = 0; json_is_array(calls) && i < json_array_size(calls); i++) {
        json_t *fn = json_object_get(json_array_get(calls, i), "function");
        json_t *args = json_object_get(fn, "arguments");
        if (!json_is_string(args)) continue;
        json_t *parsed = json_loadb(json_string_value(args), json_string_length(args), JSON_DECODE_ANY, NULL);
        if (json_is_object(parsed)) json_object_set(fn, "arguments", parsed);
        json_decref(parsed);
    }
    *out = m;
    return DF_OK;
}

static df_status check_messages(const json_t *messages) {
    if (!json_is_array(messages)) return df_fail(DF_ERR_INVALID, "messages: expected an array of message objects");
    for (size_t i = 0; i < json_array_size(messages); i++) {
        const json_t *m = json_array_get(messages, i);
        if (!json_is_object(m)) return df_fail(DF_ERR_INVALID, "messages[%zu]: expected an object", i);
        if (!json_is_string(json_object_get(m, "role")))
            return df_fail(DF_ERR_INVALID, "messages[%zu].role: expected a string", i);
        const json_t *calls = json_object_get(m, "tool_calls");
        if (calls && !json_is_null(calls) && !json_is_array(calls))
            return df_fail(DF_ERR_INVALID, "messages[%zu].tool_calls: expected an array", i);
        for (size_t k = 0; json_is_array(calls) && k < json_array_size(calls); k++)
            if (!json_is_object(json_array_get(calls, k)))
                return df_fail(DF_ERR_INVALID, "messages[%zu].tool_calls[%zu]: expected an object", i, k);
    }
    return DF_OK;
}

df_status df_chat_build_context(const json_t *messages, const json_t *tools, const df_chat_options *opt,
                                json_t **out) {
    *out = NULL;
    df_chat_options def = df_chat_default_options();
    if (!opt) opt = &def;
    DF_TRY(check_messages(messages));
    if (tools && !json_is_null(tools) && !json_is_array(tools))
        return df_fail(DF_ERR_INVALID, "tools: expected an array of tool definitions");
    if (opt->extra && !json_is_object(opt->extra))
        return df_fail(DF_ERR_INVALID, "chat_template_kwargs: expected an object");

    json_t *ctx = json_object();
    json_t *msgs = json_array();
    if (!ctx || !msgs) {
        json_decref(ctx);
        json_decref(msgs);
        return df_fail(DF_ERR_NOMEM, "chat: out of memory");
    }
    json_object_set_new(ctx, "messages", msgs);
    for (size_t i = 0; i < json_array_size(messages); i++) {
        json_t *m = NULL;
        if (opt->raw_messages) {
            m = json_incref(json_array_get(messages, i));
        } else {
            df_status st = adjust_message(json_array_get(messages, i), i, &m);
            if (st != DF_OK) {
                json_decref(ctx);
                return st;
            }
        }
        json_array_append_new(msgs, m);
    }
    if (tools && json_is_array(tools)) json_object_set(ctx, "tools", (json_t *)tools);
    json_object_set_new(ctx, "add_generation_prompt", json_boolean(opt->add_generation_prompt));
    if (opt->enable_thinking >= 0) json_object_set_new(ctx, "enable_thinking", json_boolean(opt->enable_thinking));
    if (opt->bos_token) json_object_set_new(ctx, "bos_token", json_string(opt->bos_token));
    if (opt->eos_token) json_object_set_new(ctx, "eos_token", json_string(opt->eos_token));
    if (opt->extra) json_object_update(ctx, (json_t *)opt->extra);
    *out = ctx;
    return DF_OK;
}

df_status df_chat_render(const df_jinja_template *tmpl, const json_t *messages, const json_t *tools,
                         const df_chat_options *opt, char **prompt, size_t *prompt_len) {
    *prompt = NULL;
    json_t *ctx;
    DF_TRY(df_chat_build_context(messages, tools, opt, &ctx));
    df_status st = df_jinja_render(tmpl, ctx, opt ? opt->limits : NULL, prompt, prompt_len);
    json_decref(ctx);
    return st;
}

const char *df_chat_template_from_config(const json_t *cfg, const char *name) {
    const json_t *t = json_object_get(cfg, "chat_template");
    if (json_is_string(t)) return json_string_value(t);
    if (json_is_array(t)) {
        const char *fallback = NULL;
        for (size_t i = 0; i < json_array_size(t); i++) {
            const json_t *e = json_array_get(t, i);
            const char *n = json_string_value(json_object_get(e, "name"));
            const char *body = json_string_value(json_object_get(e, "template"));
            if (!n || !body) continue;
            if (name && !strcmp(n, name)) return body;
            if (!strcmp(n, "default")) fallback = body;
        }
        if (fallback && !name) return fallback;
        df_fail(DF_ERR_NOT_FOUND, "chat_template: no template named '%s'", name ? name : "default");
        return NULL;
    }
    df_fail(DF_ERR_NOT_FOUND, "chat_template: the tokenizer config has no chat_template string");
    return NULL;
}

static const char *last_occurrence(const char *s, size_t n, const char *needle) {
    size_t m = strlen(needle);
    for (size_t i = n >= m ? n - m + 1 : 0; i-- > 0;)
        if (!memcmp(s + i, needle, m)) return s + i;
    return NULL;
}

bool df_chat_prompt_opens_reasoning(const char *prompt, size_t len) {
    const char *open = last_occurrence(prompt, len, "<think>");
    if (!open) return false;
    const char *close = last_occurrence(prompt, len, "</think>");
    if (close && close > open) return false;
    for (const char *p = open + 7; p < prompt + len; p++)
        if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r') return false;
    return true;
}
