/* The model-output parser (src/text/chat_parse.c): reasoning, content and tool calls, in
 * one piece and streamed in pieces split anywhere. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "text/chat_parse.h"

/* What a stream of deltas adds up to. */
typedef struct collected {
    char reasoning[8192], content[8192];
    size_t nr, nc;
    int starts, args;
    char names[8][64];
    char arguments[8][1024];
    char ids[8][32];
    bool partial_tag_in_content; /* a content delta that ends inside a tag name */
} collected;

static void append(char *dst, size_t *n, size_t cap, const char *s, size_t len) {
    cr_assert_lt(*n + len, cap, "test buffer too small");
    memcpy(dst + *n, s, len);
    *n += len;
    dst[*n] = '\0';
}

static void on_delta(void *user, const df_chat_delta *d) {
    collected *c = user;
    switch (d->kind) {
    case DF_CHAT_DELTA_REASONING: append(c->reasoning, &c->nr, sizeof c->reasoning, d->text, d->len); break;
    case DF_CHAT_DELTA_CONTENT: append(c->content, &c->nc, sizeof c->content, d->text, d->len); break;
    case DF_CHAT_DELTA_TOOL_START:
        cr_assert_eq(d->tool_index, c->starts, "tool calls must start in order");
        cr_assert_lt(c->starts, 8);
        snprintf(c->names[c->starts], sizeof c->names[0], "%s", d->tool_name);
        snprintf(c->ids[c->starts], sizeof c->ids[0], "%s", d->tool_id);
        c->arguments[c->starts][0] = '\0';
        c->starts++;
        break;
    case DF_CHAT_DELTA_TOOL_ARGS: {
        cr_assert_eq(d->tool_index, c->starts - 1, "arguments for a call that has not started");
        size_t n = strlen(c->arguments[d->tool_index]);
        append(c->arguments[d->tool_index], &n, sizeof c->arguments[0], d->text, d->len);
        c->args++;
        break;
    }
    }
}

typedef struct result {
    char reasoning[8192], content[8192];
    size_t ncalls, nwarn;
    char names[8][64], arguments[8][1024], ids[8][32];
} result;

/* Feeds `text` cut at the given offsets (ascending), then finishes; checks that the deltas
 * add up to the parser's final message and returns that message. */
static void parse_split(const char *text, const size_t *cuts, size_t ncuts, const df_chat_parse_options *opt,
                        result *r) {
    df_chat_parser *p;
    cr_assert_eq(df_chat_parser_new(opt, &p), DF_OK);
    collected *c = calloc(1, sizeof *c);
    size_t len = strlen(text), prev = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t at = k < ncuts ? cuts[k] : len;
        cr_assert_eq(df_chat_parser_feed(p, text + prev, at - prev, on_delta, c), DF_OK);
        prev = at;
    }
    cr_assert_eq(df_chat_parser_finish(p, on_delta, c), DF_OK);
    memset(r, 0, sizeof *r);
    size_t n;
    const char *s = df_chat_parser_reasoning(p, &n);
    cr_assert_lt(n, sizeof r->reasoning);
    memcpy(r->reasoning, s, n);
    s = df_chat_parser_content(p, &n);
    cr_assert_lt(n, sizeof r->content);
    memcpy(r->content, s, n);
    r->ncalls = df_chat_parser_tool_count(p);
    r->nwarn = df_chat_parser_warning_count(p);
    cr_assert_leq(r->ncalls, 8);
    for (size_t i = 0; i < r->ncalls; i++) {
        const df_chat_tool_call *t = df_chat_parser_tool(p, i);
        snprintf(r->names[i], sizeof r->names[0], "%s", t->name);
        snprintf(r->arguments[i], sizeof r->arguments[0], "%s", t->arguments);
        snprintf(r->ids[i], sizeof r->ids[0], "%s", t->id);
    }
    /* the deltas are the message */
    cr_expect_str_eq(c->reasoning, r->reasoning);
    cr_expect_str_eq(c->content, r->content);
    cr_expect_eq((size_t)c->starts, r->ncalls);
    cr_expect_eq((size_t)c->args, r->ncalls);
    for (size_t i = 0; i < r->ncalls; i++) {
        cr_expect_str_eq(c->names[i], r->names[i]);
        cr_expect_str_eq(c->arguments[i], r->arguments[i]);
        cr_expect_str_eq(c->ids[i], r->ids[i]);
    }
    free(c);
    df_chat_parser_free(p);
}

static void parse_whole(const char *text, const df_chat_parse_options *opt, result *r) {
    parse_split(text, NULL, 0, opt, r);
}

static void expect_same(const result *a, const result *b, const char *text, size_t cut) {
    cr_expect_str_eq(a->reasoning, b->reasoning, "reasoning differs when split at %zu: %s", cut, text);
    cr_expect_str_eq(a->content, b->content, "content differs when split at %zu: %s", cut, text);
    cr_expect_eq(a->ncalls, b->ncalls, "call count differs when split at %zu: %s", cut, text);
    cr_expect_eq(a->nwarn, b->nwarn, "warning count differs when split at %zu: %s", cut, text);
    for (size_t i = 0; i < a->ncalls && i < b->ncalls; i++) {
        cr_expect_str_eq(a->names[i], b->names[i]);
        cr_expect_str_eq(a->arguments[i], b->arguments[i]);
        cr_expect_str_eq(a->ids[i], b->ids[i]);
    }
}

static const char *weather_tools =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\","
    " \"properties\": {\"city\": {\"type\": \"string\"}, \"days\": {\"type\": \"integer\"},"
    " \"hourly\": {\"type\": \"boolean\"}, \"ratio\": {\"type\": \"number\"}, \"tags\": {\"type\": \"array\"}}}}}]";

Test(chat_parse, qwen3_thinking_then_answer) {
    result r;
    parse_whole("<think>\nLet me think: 2 + 2.\n</think>\n\nThe answer is 4.", NULL, &r);
    cr_expect_str_eq(r.reasoning, "Let me think: 2 + 2.");
    cr_expect_str_eq(r.content, "The answer is 4.");
    cr_expect_eq(r.ncalls, 0);
    cr_expect_eq(r.nwarn, 0);
}

Test(chat_parse, prompt_opened_reasoning) {
    df_chat_parse_options opt = {.starts_in_reasoning = true};
    result r;
    parse_whole("The user greets me.\n</think>\n\nHello! How can I help?", &opt, &r);
    cr_expect_str_eq(r.reasoning, "The user greets me.");
    cr_expect_str_eq(r.content, "Hello! How can I help?");
    /* cut off while still thinking: it all stays reasoning */
    parse_whole("Still thinking about <tool_call> things", &opt, &r);
    cr_expect_str_eq(r.reasoning, "Still thinking about <tool_call> things");
    cr_expect_str_eq(r.content, "");
    cr_expect_eq(r.ncalls, 0);
}

Test(chat_parse, json_tool_calls) {
    result r;
    parse_whole("I'll check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n"
                "</tool_call>",
                NULL, &r);
    cr_expect_str_eq(r.content, "I'll check.");
    cr_assert_eq(r.ncalls, 1);
    cr_expect_str_eq(r.names[0], "get_weather");
    cr_expect_str_eq(r.arguments[0], "{\"city\": \"Paris\", \"days\": 2}");
    cr_expect_eq(strncmp(r.ids[0], "call_", 5), 0);
    cr_expect_eq(strlen(r.ids[0]), 29);

    parse_whole("<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n"
                "{\"name\": \"b\", \"arguments\": \"{\\\"x\\\":[1,2.5,null]}\"}\n</tool_call>",
                NULL, &r);
    cr_expect_str_eq(r.content, "");
    cr_assert_eq(r.ncalls, 2);
    cr_expect_str_eq(r.names[1], "b");
    cr_expect_str_eq(r.arguments[0], "{}");
    cr_expect_str_eq(r.arguments[1], "{\"x\": [1, 2.5, null]}");
    cr_expect_str_neq(r.ids[0], r.ids[1]);
}

Test(chat_parse, xml_tool_calls_typed_by_schema) {
    const char *out = "<tool_call>\n<function=get_weather>\n<parameter=city>\nSão Paulo\n</parameter>\n"
                      "<parameter=days>\n3\n</parameter>\n<parameter=hourly>\nTrue\n</parameter>\n"
                      "<parameter=ratio>\n0.25\n</parameter>\n<parameter=tags>\n[\"a\", \"b\"]\n</parameter>\n"
                      "<parameter=note>\nnull\n</parameter>\n</function>\n</tool_call>";
    json_t *tools = json_loads(weather_tools, 0, NULL);
    df_chat_parse_options opt = {.tools = tools};
    result r;
    parse_whole(out, &opt, &r);
    cr_assert_eq(r.ncalls, 1);
    cr_expect_str_eq(r.names[0], "get_weather");
    cr_expect_str_eq(r.arguments[0],
                     "{\"city\": \"São Paulo\", \"days\": 3, \"hourly\": true, \"ratio\": 0.25, \"tags\": [\"a\", \"b\"],"
                     " \"note\": null}");
    /* without a schema every value stays a string (except null) */
    parse_whole(out, NULL, &r);
    cr_expect_str_eq(r.arguments[0],
                     "{\"city\": \"São Paulo\", \"days\": \"3\", \"hourly\": \"True\", \"ratio\": \"0.25\","
                     " \"tags\": \"[\\\"a\\\", \\\"b\\\"]\", \"note\": null}");
    json_decref(tools);
}

Test(chat_parse, xml_multiline_values_and_parallel_calls) {
    df_chat_parse_options opt = {.starts_in_reasoning = true};
    result r;
    parse_whole("I should write the file, then run it.\n</think>\n\nWriting it now.\n\n<tool_call>\n<function=write>\n"
                "<parameter=path>\na.py\n</parameter>\n<parameter=code>\ndef f():\n    return 1\n\n</parameter>\n"
                "</function>\n</tool_call>\n<tool_call>\n<function=run>\n<parameter=cmd>\npython a.py\n</parameter>\n"
                "</function>\n</tool_call>",
                &opt, &r);
    cr_expect_str_eq(r.reasoning, "I should write the file, then run it.");
    cr_expect_str_eq(r.content, "Writing it now.");
    cr_assert_eq(r.ncalls, 2);
    cr_expect_str_eq(r.names[0], "write");
    cr_expect_str_eq(r.arguments[0], "{\"path\": \"a.py\", \"code\": \"def f():\\n    return 1\\n\"}");
    cr_expect_str_eq(r.names[1], "run");
    cr_expect_str_eq(r.arguments[1], "{\"cmd\": \"python a.py\"}");
}

Test(chat_parse, text_that_only_looks_like_tags) {
    result r;
    parse_whole("If a < b then <tool> is not <tool_call without a close, and <thinking> is no tag.", NULL, &r);
    cr_expect_str_eq(r.content, "If a < b then <tool> is not <tool_call without a close, and <thinking> is no tag.");
    cr_expect_str_eq(r.reasoning, "");
    /* <think> after content is content; so is a stray </think> */
    parse_whole("Hi <think>x</think> there", NULL, &r);
    cr_expect_str_eq(r.content, "Hi <think>x</think> there");
    cr_expect_str_eq(r.reasoning, "");
    /* whitespace between pieces of content survives, the ends do not */
    parse_whole("\n\n  A\n<tool_call>{\"name\": \"f\"}</tool_call>\nB  \n", NULL, &r);
    cr_expect_str_eq(r.content, "A\n\nB");
    cr_expect_eq(r.ncalls, 1);
}

Test(chat_parse, malformed_blocks_become_content) {
    result r;
    const char *bad_json = "Let me try.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {oops}\n</tool_call>";
    parse_whole(bad_json, NULL, &r);
    cr_expect_eq(r.ncalls, 0);
    cr_expect_eq(r.nwarn, 1);
    cr_expect_str_eq(r.content, "Let me try.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {oops}\n</tool_call>");

    const char *cases[] = {
        "<tool_call>\n{\"arguments\": {}}\n</tool_call>",                      /* no name */
        "<tool_call>\n{\"name\": \"f\", \"arguments\": 5}\n</tool_call>",      /* arguments not an object */
        "<tool_call></tool_call>",                                             /* empty */
        "<tool_call>\nplain words\n</tool_call>",                              /* neither format */
        "<tool_call>\n<function=f>\n<parameter=a>\n1\n</parameter>\njunk\n</function>\n</tool_call>",
        "<tool_call>\n<function=>\n</function>\n</tool_call>",                 /* empty name */
        "<tool_call>\n<function=f\n</tool_call>",                              /* unterminated tag */
        "<tool_call>\n[]\n</tool_call>",                                       /* empty array */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        parse_whole(cases[i], NULL, &r);
        cr_expect_eq(r.ncalls, 0, "case %zu made a call", i);
        cr_expect_eq(r.nwarn, 1, "case %zu: no warning", i);
        cr_expect_str_eq(r.content, cases[i], "case %zu was not kept as content", i);
    }

    /* cut off inside a call: a call if what arrived parses, content otherwise */
    parse_whole("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}", NULL, &r);
    cr_expect_eq(r.ncalls, 1);
    cr_expect_eq(r.nwarn, 1);
    parse_whole("<tool_call>\n{\"name\": \"f\", \"argu", NULL, &r);
    cr_expect_eq(r.ncalls, 0);
    cr_expect_str_eq(r.content, "<tool_call>\n{\"name\": \"f\", \"argu");
}

static const char *g_outputs[] = {
    "<think>\nLet me think: 2 + 2.\n</think>\n\nThe answer is 4.",
    "  <think>\n\n</think>\n\nNo reasoning this time.",
    "I'll check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n"
    "</function>\n</tool_call>\n<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n</function>\n"
    "</tool_call>",
    "Hi <think>x</think> <tool_call>{bad}</tool_call> and <tool_call>{\"name\": \"g\"}</tool_call> end\n\n",
    "Text with <tool_ and </think and <thin and < and <<tool_call>{\"name\": \"h\", \"arguments\": {\"k\": \"<v>\"}}</tool_call>",
    "<think>thinking ends without a close and <tool_call> inside",
    "Unclosed call <tool_call>\n{\"name\": \"f\", \"arguments\": {}}",
    "unicode: héllo 世界 🎉 <tool_call>\n<function=say>\n<parameter=text>\n¡hola! 🎉\n</parameter>\n</function>\n</tool_call>",
};

/* Every 2-way split of each output must parse the same as the whole output. */
Test(chat_parse, every_two_way_split_matches_one_shot) {
    json_t *tools = json_loads(weather_tools, 0, NULL);
    df_chat_parse_options opts[2] = {{.id_seed = 42, .tools = tools}, {.id_seed = 7, .starts_in_reasoning = true}};
    for (size_t o = 0; o < 2; o++) {
        for (size_t k = 0; k < sizeof g_outputs / sizeof g_outputs[0]; k++) {
            const char *text = g_outputs[k];
            result whole, part;
            parse_whole(text, &opts[o], &whole);
            for (size_t cut = 0; cut <= strlen(text); cut++) {
                parse_split(text, &cut, 1, &opts[o], &part);
                expect_same(&whole, &part, text, cut);
            }
        }
    }
    json_decref(tools);
}

/* Random many-way splits, including one byte at a time. */
Test(chat_parse, random_splits_match_one_shot) {
    df_rng rng;
    df_rng_seed(&rng, 0xC0FFEE);
    for (size_t k = 0; k < sizeof g_outputs / sizeof g_outputs[0]; k++) {
        const char *text = g_outputs[k];
        size_t len = strlen(text);
        result whole, part;
        parse_whole(text, NULL, &whole);
        size_t *cuts = malloc((len + 1) * sizeof *cuts);
        for (size_t i = 0; i < len; i++) cuts[i] = i + 1;
        parse_split(text, cuts, len ? len - 1 : 0, NULL, &part); /* one byte at a time */
        expect_same(&whole, &part, text, 1);
        for (int trial = 0; trial < 30; trial++) {
            size_t n = 0;
            for (size_t i = 1; i < len; i++)
                if (df_rng_below(&rng, 4) == 0) cuts[n++] = i;
            parse_split(text, cuts, n, NULL, &part);
            expect_same(&whole, &part, text, n);
        }
        free(cuts);
    }
}

static void count_content_deltas(void *user, const df_chat_delta *d) {
    if (d->kind == DF_CHAT_DELTA_CONTENT) (*(int *)user)++;
}

/* Fed a byte at a time, a tool call never leaks "<", "<t", "<to"... as content. */
Test(chat_parse, no_partial_tag_reaches_content) {
    const char *text = "\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"q\": 1}}\n</tool_call>\n";
    df_chat_parser *p;
    cr_assert_eq(df_chat_parser_new(NULL, &p), DF_OK);
    int content_deltas = 0;
    for (size_t i = 0; text[i]; i++) cr_assert_eq(df_chat_parser_feed(p, text + i, 1, count_content_deltas, &content_deltas), DF_OK);
    cr_assert_eq(df_chat_parser_finish(p, count_content_deltas, &content_deltas), DF_OK);
    cr_expect_eq(content_deltas, 0);
    cr_expect_eq(df_chat_parser_tool_count(p), 1);
    df_chat_parser_free(p);
}

Test(chat_parse, openai_message) {
    json_t *m = NULL;
    const char *out = "<think>\nplan\n</think>\n\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": \"b\"}}\n</tool_call>";
    df_chat_parse_options opt = {.id_seed = 99};
    cr_assert_eq(df_chat_parse(out, strlen(out), &opt, &m), DF_OK);
    cr_expect_str_eq(json_string_value(json_object_get(m, "role")), "assistant");
    cr_expect(json_is_null(json_object_get(m, "content")));
    cr_expect_str_eq(json_string_value(json_object_get(m, "reasoning_content")), "plan");
    json_t *call = json_array_get(json_object_get(m, "tool_calls"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(call, "type")), "function");
    cr_expect_eq(strncmp(json_string_value(json_object_get(call, "id")), "call_", 5), 0);
    json_t *fn = json_object_get(call, "function");
    cr_expect_str_eq(json_string_value(json_object_get(fn, "name")), "f");
    json_t *args = json_loads(json_string_value(json_object_get(fn, "arguments")), 0, NULL);
    cr_expect_str_eq(json_string_value(json_object_get(args, "a")), "b");
    json_decref(args);
    json_decref(m);

    /* no tool calls: content is a string, even empty; no reasoning_content key */
    cr_assert_eq(df_chat_parse("", 0, NULL, &m), DF_OK);
    cr_expect_str_eq(json_string_value(json_object_get(m, "content")), "");
    cr_expect_null(json_object_get(m, "reasoning_content"));
    cr_expect_null(json_object_get(m, "tool_calls"));
    json_decref(m);

    /* invalid UTF-8 is an error, not a crash */
    const char bad[] = "abc \xff\xfe def";
    cr_expect_eq(df_chat_parse(bad, sizeof bad - 1, NULL, &m), DF_ERR_INVALID);
    cr_expect_null(m);
}

Test(chat_parse, ids_follow_the_seed) {
    const char *out = "<tool_call>{\"name\": \"f\"}</tool_call><tool_call>{\"name\": \"g\"}</tool_call>";
    df_chat_parse_options a = {.id_seed = 1}, b = {.id_seed = 2};
    result r1, r2, r3;
    parse_whole(out, &a, &r1);
    parse_whole(out, &a, &r2);
    parse_whole(out, &b, &r3);
    cr_expect_str_eq(r1.ids[0], r2.ids[0]);
    cr_expect_str_neq(r1.ids[0], r1.ids[1]);
    cr_expect_str_neq(r1.ids[0], r3.ids[0]);
}

Test(chat_parse, feeding_after_finish_is_an_error) {
    df_chat_parser *p;
    cr_assert_eq(df_chat_parser_new(NULL, &p), DF_OK);
    cr_assert_eq(df_chat_parser_finish(p, NULL, NULL), DF_OK);
    cr_expect_eq(df_chat_parser_feed(p, "x", 1, NULL, NULL), DF_ERR_INVALID);
    df_chat_parser_free(p);
}
