/* libFuzzer target: the model-output parser. The first byte picks the options (start in
 * reasoning, tool schemas) and a split point; the rest is model output. The output is parsed
 * in one piece, in two pieces at the split point and one byte at a time, and the three
 * results must be identical: streaming may never change what a message is. */
#include <stdlib.h>
#include <string.h>

#include "text/chat_parse.h"

static const char *g_tools =
    "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"object\", \"properties\":"
    " {\"s\": {\"type\": \"string\"}, \"i\": {\"type\": \"integer\"}, \"n\": {\"type\": \"number\"},"
    " \"b\": {\"type\": \"boolean\"}, \"o\": {\"type\": \"object\"}, \"u\": {\"type\": [\"string\", \"null\"]}}}}}]";

static char *message_of(const uint8_t *data, size_t size, const df_chat_parse_options *opt, size_t mode, size_t cut) {
    df_chat_parser *p;
    if (df_chat_parser_new(opt, &p) != DF_OK) __builtin_trap();
    df_status st = DF_OK;
    if (mode == 0) {
        st = df_chat_parser_feed(p, (const char *)data, size, NULL, NULL);
    } else if (mode == 1) {
        st = df_chat_parser_feed(p, (const char *)data, cut, NULL, NULL);
        if (st == DF_OK) st = df_chat_parser_feed(p, (const char *)data + cut, size - cut, NULL, NULL);
    } else {
        for (size_t i = 0; i < size && st == DF_OK; i++) st = df_chat_parser_feed(p, (const char *)data + i, 1, NULL, NULL);
    }
    if (st == DF_OK) st = df_chat_parser_finish(p, NULL, NULL);
    if (st != DF_OK) __builtin_trap(); /* only memory can fail */
    /* a text form of everything the parser decided, to compare across modes */
    json_t *m = df_chat_parser_message(p);
    char *s = NULL;
    if (m) {
        json_object_set_new(m, "warnings", json_integer((json_int_t)df_chat_parser_warning_count(p)));
        s = json_dumps(m, JSON_SORT_KEYS);
        json_decref(m);
    } else {
        s = strdup("invalid");
    }
    df_chat_parser_free(p);
    if (!s) __builtin_trap();
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static json_t *tools;
    if (!tools) tools = json_loads(g_tools, 0, NULL);
    if (size < 1) return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    df_chat_parse_options opt = {.starts_in_reasoning = sel & 1, .tools = (sel & 2) ? tools : NULL, .id_seed = sel};
    size_t cut = size ? (size_t)(sel >> 2) * size / 64 : 0;
    char *a = message_of(data, size, &opt, 0, 0);
    char *b = message_of(data, size, &opt, 1, cut);
    char *c = message_of(data, size, &opt, 2, 0);
    if (strcmp(a, b) || strcmp(a, c)) __builtin_trap();
    free(a);
    free(b);
    free(c);
    return 0;
}
