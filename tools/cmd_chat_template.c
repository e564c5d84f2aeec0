/* dflash chat-template: renders a conversation with a Jinja chat template and prints the
 * prompt, byte for byte. For checking a template against other renderers and for seeing
 * exactly what a model will be given. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/chat.h"
#include "tools/commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: dflash chat-template --template FILE --messages FILE [options]\n"
            "\n"
            "Renders OpenAI-style messages with a chat template and prints the prompt.\n"
            "\n"
            "  --template FILE     a Jinja template, or a tokenizer_config.json holding one\n"
            "  --messages FILE     a JSON array of messages, or an object with \"messages\" and\n"
            "                      optionally \"tools\", \"add_generation_prompt\",\n"
            "                      \"enable_thinking\" and \"chat_template_kwargs\"\n"
            "  --tools FILE        a JSON array of tool definitions (overrides the file's)\n"
            "  --no-generation-prompt   do not end with the assistant header\n"
            "  --thinking on|off   set enable_thinking (default: the template's default)\n"
            "  --bos TEXT, --eos TEXT   bos_token / eos_token\n"
            "  --raw               pass messages to the template without adjustment\n");
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "dflash chat-template: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (n < cap - 1) break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    if (!buf || ferror(f)) {
        fprintf(stderr, "dflash chat-template: %s: read failed\n", path);
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static json_t *load_json(const char *path) {
    json_error_t err;
    json_t *j = json_load_file(path, JSON_DECODE_ANY, &err);
    if (!j) fprintf(stderr, "dflash chat-template: %s:%d:%d: %s\n", path, err.line, err.column, err.text);
    return j;
}

int cmd_chat_template(int argc, char **argv) {
    const char *template_path = NULL, *messages_path = NULL, *tools_path = NULL;
    df_chat_options opt = df_chat_default_options();
    bool no_gen = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--template") && has_value) {
            template_path = argv[++i];
        } else if (!strcmp(a, "--messages") && has_value) {
            messages_path = argv[++i];
        } else if (!strcmp(a, "--tools") && has_value) {
            tools_path = argv[++i];
        } else if (!strcmp(a, "--no-generation-prompt")) {
            no_gen = true;
        } else if (!strcmp(a, "--thinking") && has_value) {
            const char *v = argv[++i];
            if (!strcmp(v, "on")) opt.enable_thinking = 1;
            else if (!strcmp(v, "off")) opt.enable_thinking = 0;
            else {
                fprintf(stderr, "dflash chat-template: --thinking takes on or off, not '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--bos") && has_value) {
            opt.bos_token = argv[++i];
        } else if (!strcmp(a, "--eos") && has_value) {
            opt.eos_token = argv[++i];
        } else if (!strcmp(a, "--raw")) {
            opt.raw_messages = true;
        } else {
            fprintf(stderr, "dflash chat-template: unknown or incomplete option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!template_path || !messages_path) {
        usage(stderr);
        return 2;
    }

    int rc = 1;
    size_t src_len = 0;
    char *src = read_file(template_path, &src_len);
    json_t *conv = NULL, *tools_file = NULL, *config = NULL;
    df_jinja_template *tmpl = NULL;
    char *prompt = NULL;
    if (!src) goto done;

    /* A tokenizer_config.json carries the template as a JSON string. */
    const char *text = src;
    size_t text_len = src_len;
    if (src_len && src[0] == '{') {
        config = json_loadb(src, src_len, 0, NULL);
        if (json_is_object(config)) {
            text = df_chat_template_from_config(config, NULL);
            if (!text) {
                fprintf(stderr, "dflash chat-template: %s: %s\n", template_path, df_last_error());
                goto done;
            }
            text_len = strlen(text);
        }
    }
    if (df_jinja_parse(text, text_len, &tmpl) != DF_OK) {
        fprintf(stderr, "dflash chat-template: %s: %s\n", template_path, df_last_error());
        goto done;
    }

    conv = load_json(messages_path);
    if (!conv) goto done;
    const json_t *messages = conv, *tools = NULL;
    if (json_is_object(conv)) {
        messages = json_object_get(conv, "messages");
        tools = json_object_get(conv, "tools");
        const json_t *agp = json_object_get(conv, "add_generation_prompt");
        if (json_is_boolean(agp)) opt.add_generation_prompt = json_is_true(agp);
        const json_t *et = json_object_get(conv, "enable_thinking");
        if (json_is_boolean(et) && opt.enable_thinking < 0) opt.enable_thinking = json_is_true(et);
        const json_t *kw = json_object_get(conv, "chat_template_kwargs");
        if (kw) opt.extra = kw;
    }
    if (no_gen) opt.add_generation_prompt = false;
    if (tools_path) {
        tools_file = load_json(tools_path);
        if (!tools_file) goto done;
        tools = tools_file;
    }
    size_t len = 0;
    if (df_chat_render(tmpl, messages, tools, &opt, &prompt, &len) != DF_OK) {
        fprintf(stderr, "dflash chat-template: %s\n", df_last_error());
        goto done;
    }
    if (fwrite(prompt, 1, len, stdout) != len || fflush(stdout) != 0) {
        fprintf(stderr, "dflash chat-template: writing the prompt failed\n");
        goto done;
    }
    rc = 0;
done:
    free(prompt);
    df_jinja_free(tmpl);
    json_decref(conv);
    json_decref(tools_file);
    json_decref(config);
    free(src);
    return rc;
}
