/* The incremental parser of model output into reasoning, content and tool calls.
 *
 * Input accumulates in `in`; process() consumes it from the front as far as it can be
 * classified. What it cannot classify yet is a suffix that could still grow into a tag
 * ("<tool_ca"), which stays until more input (or the end) decides. Because a tag is only
 * ever recognised whole, in the same place whichever way the input was split, the output
 * does not depend on the split. */
#define _GNU_SOURCE /* memmem, strncasecmp */
#include "text/chat_parse.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "text/chat_json.h"

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static bool sb_put(sbuf *b, const char *s, size_t n) {
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n < n + 1) {
            if (cap > ((size_t)1 << 46)) return false;
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return true;
}

/* A trimmed stream (reasoning or content): leading whitespace is dropped, trailing
 * whitespace is held until more text shows it was not trailing. */
typedef struct seg {
    bool started;
    sbuf ws;
} seg;

enum { ST_CONTENT, ST_REASONING, ST_TOOL };

struct df_chat_parser {
    json_t *tools;
    uint64_t id_seed;
    int state;
    bool saw_reasoning, finished, nomem;
    sbuf in;
    size_t in_pos;
    sbuf reasoning, content, tool;
    seg rs, cs;
    df_chat_tool_call *calls;
    size_t ncalls, capcalls;
    size_t nwarn;
    char warn[240];
    df_chat_delta_fn fn;
    void *user;
};

static bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

static void warn(df_chat_parser *p, const char *fmt, const char *detail) {
    p->nwarn++;
    snprintf(p->warn, sizeof p->warn, fmt, detail);
}

/* ---- output ---- */

static bool out_text(df_chat_parser *p, bool reasoning, const char *s, size_t n) {
    if (!n) return true;
    if (!sb_put(reasoning ? &p->reasoning : &p->content, s, n)) return false;
    if (p->fn) {
        df_chat_delta d = {.kind = reasoning ? DF_CHAT_DELTA_REASONING : DF_CHAT_DELTA_CONTENT,
                           .text = s, .len = n, .tool_index = -1};
        p->fn(p->user, &d);
    }
    return true;
}

static bool seg_emit(df_chat_parser *p, bool reasoning, const char *s, size_t n) {
    seg *g = reasoning ? &p->rs : &p->cs;
    size_t i = 0;
    if (!g->started) {
        while (i < n && is_ws(s[i])) i++;
        if (i == n) return true;
        g->started = true;
    }
    size_t end = n;
    while (end > i && is_ws(s[end - 1])) end--;
    if (end > i) {
        if (!out_text(p, reasoning, g->ws.p, g->ws.n)) return false;
        g->ws.n = 0;
        if (!out_text(p, reasoning, s + i, end - i)) return false;
    }
    return sb_put(&g->ws, s + end, n - end);
}

/* ---- tool calls ---- */

static void make_id(uint64_t seed, size_t index, char out[32]) {
    uint64_t x = seed + 0x9E3779B97F4A7C15ull * (index + 1), words[2];
    for (int k = 0; k < 2; k++) { /* splitmix64 */
        x += 0x9E3779B97F4A7C15ull;
        uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        words[k] = z ^ (z >> 31);
    }
    snprintf(out, 32, "call_%016llx%08llx", (unsigned long long)words[0], (unsigned long long)(words[1] >> 32));
}

/* Records a parsed call and emits it. Takes ownership of `args` (a JSON object). */
static bool add_call(df_chat_parser *p, const char *name, size_t name_len, json_t *args) {
    char *text = df_json_dumps(args, true);
    json_decref(args);
    if (!text) {
        /* only a non-finite real or absurd nesting gets here: JSON parsing produced args */
        text = strdup("{}");
        if (!text) return false;
    }
    if (p->ncalls == p->capcalls) {
        size_t cap = p->capcalls ? p->capcalls * 2 : 4;
        df_chat_tool_call *c = realloc(p->calls, cap * sizeof *c);
        if (!c) {
            free(text);
            return false;
        }
        p->calls = c;
        p->capcalls = cap;
    }
    df_chat_tool_call *c = &p->calls[p->ncalls];
    c->name = strndup(name, name_len);
    if (!c->name) {
        free(text);
        return false;
    }
    c->arguments = text;
    make_id(p->id_seed, p->ncalls, c->id);
    int index = (int)p->ncalls++;
    if (p->fn) {
        df_chat_delta start = {.kind = DF_CHAT_DELTA_TOOL_START, .tool_index = index, .tool_id = c->id, .tool_name = c->name};
        p->fn(p->user, &start);
        df_chat_delta args_d = {.kind = DF_CHAT_DELTA_TOOL_ARGS, .tool_index = index, .text = c->arguments,
                                .len = strlen(c->arguments)};
        p->fn(p->user, &args_d);
    }
    return true;
}

/* A parsed call before it is committed: calls are committed only when the whole block
 * parsed, so that a block is either all calls or all content. */
typedef struct pending_call {
    char *name; /* owned: the text it came from may be gone by the time it is committed */
    size_t name_len;
    json_t *args;
} pending_call;

typedef struct call_list {
    pending_call v[16];
    size_t n;
    const char *why;
} call_list;

static void call_list_free(call_list *l) {
    for (size_t i = 0; i < l->n; i++) {
        json_decref(l->v[i].args);
        free(l->v[i].name);
    }
    l->n = 0;
}

static bool call_list_add(call_list *l, const char *name, size_t name_len, json_t *args) {
    if (l->n == sizeof l->v / sizeof l->v[0]) {
        json_decref(args);
        l->why = "more than 16 calls in one <tool_call> block";
        return false;
    }
    char *copy = strndup(name, name_len);
    if (!copy) {
        json_decref(args);
        l->why = "out of memory";
        return false;
    }
    l->v[l->n++] = (pending_call){copy, name_len, args};
    return true;
}

/* {"name": ..., "arguments": {...}} (Qwen3, Hermes). `arguments` may also be a JSON string
 * holding an object, or be called `parameters`. */
static bool json_call(const json_t *o, call_list *l) {
    const json_t *name = json_object_get(o, "name");
    if (!json_is_string(name) || json_string_length(name) == 0) {
        l->why = "the JSON has no \"name\" string";
        return false;
    }
    json_t *args = json_object_get(o, "arguments");
    if (!args) args = json_object_get(o, "parameters");
    json_t *obj;
    if (!args) {
        obj = json_object();
    } else if (json_is_object(args)) {
        obj = json_incref(args);
    } else if (json_is_string(args)) {
        obj = json_loadb(json_string_value(args), json_string_length(args), 0, NULL);
        if (!json_is_object(obj)) {
            json_decref(obj);
            l->why = "\"arguments\" is a string that does not hold a JSON object";
            return false;
        }
    } else {
        l->why = "\"arguments\" is not an object";
        return false;
    }
    if (!obj) {
        l->why = "out of memory";
        return false;
    }
    return call_list_add(l, json_string_value(name), json_string_length(name), obj);
}

static bool parse_json_block(const char *s, size_t n, call_list *l) {
    json_error_t err;
    json_t *j = json_loadb(s, n, 0, &err);
    if (!j) {
        l->why = "the JSON inside <tool_call> does not parse";
        return false;
    }
    bool ok = true;
    if (json_is_object(j)) {
        ok = json_call(j, l);
    } else { /* an array of calls */
        for (size_t i = 0; ok && i < json_array_size(j); i++) {
            const json_t *e = json_array_get(j, i);
            if (!json_is_object(e)) {
                l->why = "an element of the JSON array is not an object";
                ok = false;
            } else {
                ok = json_call(e, l);
            }
        }
        if (ok && l->n == 0) {
            l->why = "an empty JSON array";
            ok = false;
        }
    }
    json_decref(j);
    return ok;
}

/* The JSON schema type of parameter `param` of tool `fn` in the request's tools, or NULL
 * when the tool or the parameter is not declared (the value then stays a string). */
static const char *param_type(const json_t *tools, const char *fn, size_t fn_len, const char *param, size_t param_len,
                              bool *declared) {
    *declared = false;
    for (size_t i = 0; json_is_array(tools) && i < json_array_size(tools); i++) {
        const json_t *f = json_object_get(json_array_get(tools, i), "function");
        const json_t *name = json_object_get(f, "name");
        if (!json_is_string(name) || json_string_length(name) != fn_len || memcmp(json_string_value(name), fn, fn_len))
            continue;
        const json_t *params = json_object_get(f, "parameters");
        const json_t *props = json_object_get(params, "properties");
        if (!json_is_object(props)) props = params;
        if (!json_is_object(props)) return NULL;
        const char *key;
        const json_t *schema;
        json_object_foreach((json_t *)props, key, schema) {
            if (strlen(key) != param_len || memcmp(key, param, param_len)) continue;
            *declared = true;
            const json_t *type = json_object_get(schema, "type");
            if (json_is_string(type)) return json_string_value(type);
            if (json_is_array(type)) return "union"; /* neither a string type nor a scalar one */
            return "string";
        }
        return NULL;
    }
    return NULL;
}

static bool starts_with_ci(const char *s, const char *prefix) {
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* Python's int() of a string: surrounding whitespace, a sign, digits with single
 * underscores between them. */
static bool parse_int(const char *s, size_t n, json_int_t *out) {
    size_t b = 0, e = n;
    while (b < e && isspace((unsigned char)s[b])) b++;
    while (e > b && isspace((unsigned char)s[e - 1])) e--;
    char buf[32];
    size_t o = 0;
    if (b < e && (s[b] == '+' || s[b] == '-')) buf[o++] = s[b++];
    if (b == e) return false;
    for (size_t i = b; i < e; i++) {
        if (s[i] == '_' && i > b && i + 1 < e && isdigit((unsigned char)s[i - 1]) && isdigit((unsigned char)s[i + 1]))
            continue;
        if (!isdigit((unsigned char)s[i]) || o >= sizeof buf - 1) return false;
        buf[o++] = s[i];
    }
    buf[o] = '\0';
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (*end) return false;
    *out = v;
    return true;
}

static json_t *convert_value(const char *v, size_t n, const char *type, bool declared) {
    if (n == 4 && strncasecmp(v, "null", 4) == 0) return json_null();
    if (!declared || !type) return json_stringn(v, n);
    char t[32];
    size_t k = 0;
    while (type[k] && k < sizeof t - 1 && !isspace((unsigned char)type[k])) {
        t[k] = (char)tolower((unsigned char)type[k]);
        k++;
    }
    t[k] = '\0';
    static const char *const strings[] = {"string", "str", "text", "varchar", "char", "enum"};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        if (!strcmp(t, strings[i])) return json_stringn(v, n);
    if (starts_with_ci(t, "int") || starts_with_ci(t, "uint") || starts_with_ci(t, "long") ||
        starts_with_ci(t, "short") || starts_with_ci(t, "unsigned")) {
        json_int_t i;
        return parse_int(v, n, &i) ? json_integer(i) : json_stringn(v, n);
    }
    if (starts_with_ci(t, "num") || starts_with_ci(t, "float")) {
        char buf[64];
        size_t b = 0, e = n;
        while (b < e && isspace((unsigned char)v[b])) b++;
        while (e > b && isspace((unsigned char)v[e - 1])) e--;
        if (e - b == 0 || e - b >= sizeof buf) return json_stringn(v, n);
        memcpy(buf, v + b, e - b);
        buf[e - b] = '\0';
        char *end;
        double d = strtod(buf, &end);
        if (*end || !isfinite(d)) return json_stringn(v, n);
        if (d == floor(d) && fabs(d) < 9.0e15) return json_integer((json_int_t)d);
        return json_real(d);
    }
    if (!strcmp(t, "boolean") || !strcmp(t, "bool") || !strcmp(t, "binary"))
        return json_boolean(n == 4 && strncasecmp(v, "true", 4) == 0);
    /* object, array and anything else: a JSON value if it is one, else the string */
    json_t *j = json_loadb(v, n, JSON_DECODE_ANY, NULL);
    return j ? j : json_stringn(v, n);
}

static const char *find(const char *s, const char *end, const char *needle) {
    return memmem(s, (size_t)(end - s), needle, strlen(needle));
}

static bool only_ws(const char *s, const char *e) {
    for (; s < e; s++)
        if (!is_ws(*s)) return false;
    return true;
}

/* <function=NAME> (<parameter=KEY>VALUE</parameter>)* </function>, one or more times.
 * As in vLLM, a parameter also ends where the next <parameter= or </function> begins. */
static bool parse_xml_block(const char *s, size_t n, const json_t *tools, call_list *l) {
    const char *p = s, *end = s + n;
    for (;;) {
        const char *f = find(p, end, "<function=");
        if (!f) {
            if (!only_ws(p, end)) {
                l->why = "text outside <function=...> in <tool_call>";
                return false;
            }
            break;
        }
        if (!only_ws(p, f)) {
            l->why = "text before <function=...> in <tool_call>";
            return false;
        }
        const char *name = f + 10;
        const char *gt = memchr(name, '>', (size_t)(end - name));
        if (!gt || gt == name || memchr(name, '<', (size_t)(gt - name)) || memchr(name, '\n', (size_t)(gt - name))) {
            l->why = "a malformed <function=NAME> tag";
            return false;
        }
        json_t *name_check = json_stringn(name, (size_t)(gt - name)); /* NULL unless UTF-8 */
        if (!name_check) {
            l->why = "a function name that is not UTF-8";
            return false;
        }
        json_decref(name_check);
        const char *fend = find(gt + 1, end, "</function>");
        const char *region_end = fend ? fend : end;
        json_t *args = json_object();
        if (!args) {
            l->why = "out of memory";
            return false;
        }
        const char *q = gt + 1;
        bool no_more_close = false; /* once no "</parameter>" is left, stop looking for one */
        for (;;) {
            const char *ps = find(q, region_end, "<parameter=");
            if (!ps) {
                if (!only_ws(q, region_end)) {
                    json_decref(args);
                    l->why = "text outside <parameter=...> in <function=...>";
                    return false;
                }
                break;
            }
            if (!only_ws(q, ps)) {
                json_decref(args);
                l->why = "text between parameters in <function=...>";
                return false;
            }
            const char *key = ps + 11;
            const char *kgt = memchr(key, '>', (size_t)(region_end - key));
            if (!kgt || kgt == key || memchr(key, '<', (size_t)(kgt - key))) {
                json_decref(args);
                l->why = "a malformed <parameter=NAME> tag";
                return false;
            }
            const char *v = kgt + 1;
            const char *close = no_more_close ? NULL : find(v, region_end, "</parameter>");
            no_more_close = !close;
            /* the next parameter can only matter before this one's close */
            const char *next = find(v, close ? close : region_end, "<parameter=");
            const char *vend = region_end;
            if (close && close < vend) vend = close;
            if (next && next < vend) vend = next;
            q = vend == close ? close + 12 : vend;
            if (vend > v && *v == '\n') v++;
            if (vend > v && vend[-1] == '\n') vend--;
            bool declared;
            const char *type = param_type(tools, name, (size_t)(gt - name), key, (size_t)(kgt - key), &declared);
            json_t *val = convert_value(v, (size_t)(vend - v), type, declared);
            char *k = strndup(key, (size_t)(kgt - key));
            if (!val || !k || json_object_set_new(args, k, val)) {
                free(k);
                json_decref(args);
                l->why = "out of memory (or a parameter name that is not UTF-8)";
                return false;
            }
            free(k);
        }
        if (!call_list_add(l, name, (size_t)(gt - name), args)) return false;
        if (!fend) break;
        p = fend + 11;
    }
    if (l->n == 0) {
        l->why = "no <function=...> in <tool_call>";
        return false;
    }
    return true;
}

/* The body of a <tool_call> block is complete (closed or cut off): calls or content. */
static bool finish_block(df_chat_parser *p, bool closed) {
    const char *s = p->tool.p ? p->tool.p : "";
    size_t n = p->tool.n;
    size_t b = 0, e = n;
    while (b < e && is_ws(s[b])) b++;
    while (e > b && is_ws(s[e - 1])) e--;
    call_list l = {.why = "an empty <tool_call> block"};
    bool ok = false;
    if (e > b && (s[b] == '{' || s[b] == '[')) ok = parse_json_block(s + b, e - b, &l);
    else if (e > b) ok = parse_xml_block(s + b, e - b, p->tools, &l);
    bool good = true;
    if (ok) {
        for (size_t i = 0; i < l.n; i++) {
            if (good) good = add_call(p, l.v[i].name, l.v[i].name_len, l.v[i].args);
            else json_decref(l.v[i].args);
            l.v[i].args = NULL;
        }
        for (size_t i = 0; i < l.n; i++) free(l.v[i].name);
        l.n = 0;
        if (!closed) warn(p, "%s", "a <tool_call> block was not closed before the end; it was kept as a call");
    } else {
        call_list_free(&l);
        warn(p, "%s; the block was kept as content", l.why);
        good = seg_emit(p, false, "<tool_call>", 11) && seg_emit(p, false, s, n) &&
               (!closed || seg_emit(p, false, "</tool_call>", 12));
    }
    p->tool.n = 0;
    if (p->tool.p) p->tool.p[0] = '\0';
    return good;
}

/* ---- the state machine ---- */

/* The length of the longest suffix of s that is a proper prefix of one of the tags. */
static size_t partial_tag(const char *s, size_t n, const char *const *tags, size_t ntags) {
    size_t best = 0;
    for (size_t t = 0; t < ntags; t++) {
        size_t m = strlen(tags[t]);
        for (size_t k = m - 1 < n ? m - 1 : n; k > best; k--)
            if (!memcmp(s + n - k, tags[t], k)) {
                best = k;
                break;
            }
    }
    return best;
}

static bool sink(df_chat_parser *p, const char *s, size_t n) {
    switch (p->state) {
    case ST_REASONING: return seg_emit(p, true, s, n);
    case ST_CONTENT: return seg_emit(p, false, s, n);
    default: return sb_put(&p->tool, s, n);
    }
}

static bool process(df_chat_parser *p, bool final) {
    for (;;) {
        const char *s = p->in.p + p->in_pos;
        size_t n = p->in.n - p->in_pos;
        if (n == 0) break;
        const char *tags[2];
        size_t ntags = 0;
        /* "<think>" opens reasoning only when nothing but whitespace came before it: that
         * is decided by the text in front of it, so it holds whatever the split. */
        bool think = false;
        if (p->state == ST_REASONING) {
            tags[ntags++] = "</think>";
        } else if (p->state == ST_TOOL) {
            tags[ntags++] = "</tool_call>";
        } else {
            tags[ntags++] = "<tool_call>";
            think = !p->saw_reasoning && !p->cs.started && p->ncalls == 0;
        }
        const char *hit = NULL;
        size_t which = 0;
        for (size_t t = 0; t < ntags; t++) {
            const char *h = memmem(s, n, tags[t], strlen(tags[t]));
            if (h && (!hit || h < hit)) {
                hit = h;
                which = t;
            }
        }
        if (think) {
            const char *h = memmem(s, n, "<think>", 7);
            if (h && only_ws(s, h) && (!hit || h < hit)) {
                hit = h;
                tags[ntags] = "<think>";
                which = ntags;
            }
        }
        if (!hit) {
            size_t hold = final ? 0 : partial_tag(s, n, tags, ntags);
            if (!final && think) {
                static const char *const think_tag[] = {"<think>"};
                size_t k = partial_tag(s, n, think_tag, 1);
                if (k > hold && only_ws(s, s + n - k)) hold = k;
            }
            if (!sink(p, s, n - hold)) return false;
            p->in_pos += n - hold;
            break;
        }
        size_t before = (size_t)(hit - s);
        if (!sink(p, s, before)) return false;
        p->in_pos += before + strlen(tags[which]);
        if (p->state == ST_REASONING) {
            p->state = ST_CONTENT;
        } else if (p->state == ST_TOOL) {
            p->state = ST_CONTENT;
            if (!finish_block(p, true)) return false;
        } else if (think && which == ntags) {
            p->state = ST_REASONING;
            p->saw_reasoning = true;
        } else {
            p->state = ST_TOOL;
        }
    }
    /* drop what was consumed once it is most of the buffer */
    if (p->in_pos && p->in_pos * 2 >= p->in.n) {
        memmove(p->in.p, p->in.p + p->in_pos, p->in.n - p->in_pos);
        p->in.n -= p->in_pos;
        p->in.p[p->in.n] = '\0';
        p->in_pos = 0;
    }
    return true;
}

df_status df_chat_parser_new(const df_chat_parse_options *opt, df_chat_parser **out) {
    *out = NULL;
    df_chat_parser *p = calloc(1, sizeof *p);
    if (!p) return df_fail(DF_ERR_NOMEM, "chat parser: out of memory");
    if (opt) {
        p->id_seed = opt->id_seed;
        if (opt->starts_in_reasoning) {
            p->state = ST_REASONING;
            p->saw_reasoning = true;
        }
        if (opt->tools) p->tools = json_incref((json_t *)opt->tools);
    }
    *out = p;
    return DF_OK;
}

void df_chat_parser_free(df_chat_parser *p) {
    if (!p) return;
    json_decref(p->tools);
    free(p->in.p);
    free(p->reasoning.p);
    free(p->content.p);
    free(p->tool.p);
    free(p->rs.ws.p);
    free(p->cs.ws.p);
    for (size_t i = 0; i < p->ncalls; i++) {
        free(p->calls[i].name);
        free(p->calls[i].arguments);
    }
    free(p->calls);
    free(p);
}

static df_status run(df_chat_parser *p, bool final, df_chat_delta_fn fn, void *user) {
    p->fn = fn;
    p->user = user;
    bool ok = process(p, final);
    if (ok && final && p->state == ST_TOOL) ok = finish_block(p, false);
    p->fn = NULL;
    p->user = NULL;
    if (!ok) {
        p->nomem = true;
        return df_fail(DF_ERR_NOMEM, "chat parser: out of memory");
    }
    return DF_OK;
}

df_status df_chat_parser_feed(df_chat_parser *p, const char *text, size_t len, df_chat_delta_fn fn, void *user) {
    if (p->finished) return df_fail(DF_ERR_INVALID, "chat parser: fed after finish");
    if (p->nomem) return df_fail(DF_ERR_NOMEM, "chat parser: out of memory earlier");
    if (!sb_put(&p->in, text, len)) {
        p->nomem = true;
        return df_fail(DF_ERR_NOMEM, "chat parser: out of memory");
    }
    return run(p, false, fn, user);
}

df_status df_chat_parser_finish(df_chat_parser *p, df_chat_delta_fn fn, void *user) {
    if (p->finished) return DF_OK;
    if (p->nomem) return df_fail(DF_ERR_NOMEM, "chat parser: out of memory earlier");
    p->finished = true;
    return run(p, true, fn, user);
}

const char *df_chat_parser_reasoning(const df_chat_parser *p, size_t *len) {
    if (len) *len = p->reasoning.n;
    return p->reasoning.p ? p->reasoning.p : "";
}

const char *df_chat_parser_content(const df_chat_parser *p, size_t *len) {
    if (len) *len = p->content.n;
    return p->content.p ? p->content.p : "";
}

size_t df_chat_parser_tool_count(const df_chat_parser *p) { return p->ncalls; }

const df_chat_tool_call *df_chat_parser_tool(const df_chat_parser *p, size_t i) {
    return i < p->ncalls ? &p->calls[i] : NULL;
}

size_t df_chat_parser_warning_count(const df_chat_parser *p) { return p->nwarn; }

const char *df_chat_parser_last_warning(const df_chat_parser *p) { return p->nwarn ? p->warn : ""; }

json_t *df_chat_parser_message(const df_chat_parser *p) {
    json_t *m = json_object();
    if (!m) return NULL;
    bool ok = !json_object_set_new(m, "role", json_string("assistant"));
    if (p->content.n || p->ncalls == 0)
        ok = ok && !json_object_set_new(m, "content", json_stringn(df_chat_parser_content(p, NULL), p->content.n));
    else
        ok = ok && !json_object_set_new(m, "content", json_null());
    if (p->reasoning.n)
        ok = ok && !json_object_set_new(m, "reasoning_content", json_stringn(p->reasoning.p, p->reasoning.n));
    if (ok && p->ncalls) {
        json_t *calls = json_array(); /* set_new takes it, even when it fails */
        ok = calls && !json_object_set_new(m, "tool_calls", calls);
        for (size_t i = 0; ok && i < p->ncalls; i++) {
            json_t *fn = json_pack("{s:s, s:s}", "name", p->calls[i].name, "arguments", p->calls[i].arguments);
            json_t *c = fn ? json_pack("{s:s, s:s, s:o}", "id", p->calls[i].id, "type", "function", "function", fn) : NULL;
            ok = c && !json_array_append_new(calls, c);
        }
    }
    if (!ok) {
        json_decref(m);
        return NULL;
    }
    return m;
}

df_status df_chat_parse(const char *text, size_t len, const df_chat_parse_options *opt, json_t **message) {
    *message = NULL;
    df_chat_parser *p;
    DF_TRY(df_chat_parser_new(opt, &p));
    df_status st = df_chat_parser_feed(p, text, len, NULL, NULL);
    if (st == DF_OK) st = df_chat_parser_finish(p, NULL, NULL);
    if (st == DF_OK) {
        *message = df_chat_parser_message(p);
        if (!*message)
            st = df_fail(DF_ERR_INVALID, "chat parser: the output is not valid UTF-8 (or memory ran out)");
    }
    df_chat_parser_free(p);
    return st;
}
