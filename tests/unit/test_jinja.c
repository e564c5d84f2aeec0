/* The Jinja interpreter (src/text/jinja*.c). Expected outputs are what Python's Jinja2 3.1
 * renders under transformers' chat-template settings (trim_blocks, lstrip_blocks,
 * loopcontrols, tojson = json.dumps(ensure_ascii=False)); they were written down from
 * Jinja2's documented semantics and checked against Jinja2 itself. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "text/chat.h"
#include "text/jinja.h"

static json_t *ctx_of(const char *json) {
    if (!json) return NULL;
    json_error_t err;
    json_t *j = json_loads(json, 0, &err);
    cr_assert_not_null(j, "bad test context JSON: %s", err.text);
    return j;
}

/* Renders `tmpl` with the context JSON (or none); fails the test on any error. */
static char *render_ok(const char *tmpl, const char *ctx_json) {
    df_jinja_template *t = NULL;
    df_status st = df_jinja_parse(tmpl, strlen(tmpl), &t);
    cr_assert_eq(st, DF_OK, "parse failed: %s\ntemplate: %s", df_last_error(), tmpl);
    json_t *ctx = ctx_of(ctx_json);
    char *out = NULL;
    size_t len = 0;
    st = df_jinja_render(t, ctx, NULL, &out, &len);
    cr_assert_eq(st, DF_OK, "render failed: %s\ntemplate: %s", df_last_error(), tmpl);
    cr_assert_eq(strlen(out), len, "length mismatch");
    json_decref(ctx);
    df_jinja_free(t);
    return out;
}

static void expect(const char *tmpl, const char *ctx_json, const char *want) {
    char *got = render_ok(tmpl, ctx_json);
    cr_expect_str_eq(got, want, "template: %s", tmpl);
    free(got);
}

/* Expects the parse (stage 0) or the render (stage 1) to fail with `st` and a message
 * containing `needle`. */
static void expect_error(const char *tmpl, const char *ctx_json, int stage, df_status want_st,
                         const char *needle) {
    df_jinja_template *t = NULL;
    df_status st = df_jinja_parse(tmpl, strlen(tmpl), &t);
    if (stage == 0) {
        cr_expect_eq(st, want_st, "expected a parse error (%d), got %d for: %s", want_st, st, tmpl);
        cr_expect(strstr(df_last_error(), needle), "message '%s' lacks '%s'", df_last_error(), needle);
        cr_expect_null(t);
        df_jinja_free(t);
        return;
    }
    cr_assert_eq(st, DF_OK, "parse failed: %s", df_last_error());
    json_t *ctx = ctx_of(ctx_json);
    char *out = NULL;
    st = df_jinja_render(t, ctx, NULL, &out, NULL);
    cr_expect_eq(st, want_st, "expected a render error for: %s (got output '%s')", tmpl, out ? out : "");
    cr_expect_null(out);
    cr_expect(strstr(df_last_error(), needle), "message '%s' lacks '%s'", df_last_error(), needle);
    free(out);
    json_decref(ctx);
    df_jinja_free(t);
}

Test(jinja, arithmetic_follows_python) {
    expect("{{ 1 + 2 * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 7 / 2 }}|{{ 2 ** 10 }}|{{ 2 ** -1 }}", NULL,
           "7|3|-4|2|3.5|1024|0.5");
    expect("{{ -2 ** 2 }}|{{ 2 * 3 ** 2 }}|{{ 10 - 2 - 3 }}|{{ 2 ** 3 ** 2 }}", NULL, "4|18|5|64");
    expect("{{ 'ab' * 3 }}|{{ [1, 2] + [3] }}|{{ 1 == 1.0 }}{{ true == 1 }}", NULL, "ababab|[1, 2, 3]|TrueTrue");
}

/* Floor division and modulo of random integers, against the definition (round toward
 * negative infinity; the remainder takes the divisor's sign). */
Test(jinja, random_integer_division) {
    df_rng rng;
    df_rng_seed(&rng, 20250611);
    for (int k = 0; k < 40; k++) {
        int64_t a = (int64_t)(df_rng_u64(&rng) % 2000001) - 1000000;
        int64_t b = (int64_t)(df_rng_u64(&rng) % 2001) - 1000;
        if (b == 0) b = 7;
        int64_t q = a / b, r = a % b;
        if (r != 0 && ((r < 0) != (b < 0))) {
            q -= 1;
            r += b;
        }
        char ctx[128], want[128];
        snprintf(ctx, sizeof ctx, "{\"a\": %" PRId64 ", \"b\": %" PRId64 "}", a, b);
        snprintf(want, sizeof want, "%" PRId64 " %" PRId64 " %" PRId64, q, r, a * b + a - b);
        expect("{{ a // b }} {{ a % b }} {{ a * b + a - b }}", ctx, want);
    }
}

Test(jinja, strings_and_concatenation) {
    expect("{{ 'a' ~ 1 ~ none ~ true ~ missing }}", NULL, "a1NoneTrue");
    expect("{{ \"a\" 'b' \"c\" }}|{{ '\\x41\\u00e9\\n'|length }}|{{ 'it\\'s' }}", NULL, "abc|3|it's");
    expect("{{ 'héllo'|length }}|{{ 'héllo'[1:3] }}|{{ 'abc'[-1] }}|{{ 'abcdef'[4:1:-1] }}", NULL, "5|él|c|edc");
    expect("{{ 1 < 2 < 3 }}{{ 1 < 3 < 2 }}{{ 'b' in 'abc' }}{{ 2 in [1, 2] }}{{ 'k' in {'k': 1} }}{{ 'x' not in 'abc' }}",
           NULL, "TrueFalseTrueTrueTrueTrue");
}

Test(jinja, logic_returns_operands) {
    expect("{{ 0 or 'dflt' }}|{{ [] and 1 }}|{{ 'y' if x else 'n' }}|{{ 'y' if false }}|{{ not x }}|{{ not 1 == 2 }}",
           "{\"x\": 0}", "dflt|[]|n||True|True");
}

Test(jinja, values_print_like_python) {
    expect("{{ {'a': 1, 'b': [true, none, 1.5, \"it's\"]} }}", NULL, "{'a': 1, 'b': [True, None, 1.5, \"it's\"]}");
    expect("{{ (1, 2) }}|{{ (1,) }}|{{ () }}|{{ {'b': 1, 'a': 2}|dictsort }}", NULL,
           "(1, 2)|(1,)|()|[('a', 2), ('b', 1)]");
    expect("{{ true|string }}|{{ none|string }}|{{ none }}|{{ missing|string }}|{{ 2.5|string }}", NULL,
           "True|None|None||2.5");
}

Test(jinja, floats_print_as_python_repr) {
    expect("{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1.5e-7 }} {{ 123456789.0 }} {{ 1e15 }} {{ 0.0001 }} {{ -0.0 }}", NULL,
           "1.0 0.30000000000000004 1e+16 1.5e-07 123456789.0 1000000000000000.0 0.0001 -0.0");
    /* A JSON 1.0 stays a float (Python), where JavaScript would read the integer 1. */
    expect("{{ x }} {{ x|tojson }} {{ y|tojson }} {{ z|tojson }}", "{\"x\": 2.50, \"y\": 1.0, \"z\": [1e-7, -0.5, 1e300]}",
           "2.5 2.5 1.0 [1e-07, -0.5, 1e+300]");
}

Test(jinja, tojson_matches_json_dumps) {
    const char *ctx = "{\"x\": {\"z\": 1, \"a\": [true, null, \"ü\"], \"m\": {}}}";
    expect("{{ x|tojson }}", ctx, "{\"z\": 1, \"a\": [true, null, \"ü\"], \"m\": {}}");
    expect("{{ x|tojson(indent=2) }}", ctx,
           "{\n  \"z\": 1,\n  \"a\": [\n    true,\n    null,\n    \"ü\"\n  ],\n  \"m\": {}\n}");
    expect("{{ x|tojson(sort_keys=true) }}", ctx, "{\"a\": [true, null, \"ü\"], \"m\": {}, \"z\": 1}");
    expect("{{ 'é\"\\\\\\n\\t\\u0001'|tojson }}", NULL, "\"é\\\"\\\\\\n\\t\\u0001\"");
    expect("{{ 'é😀'|tojson(ensure_ascii=true) }}|{{ []|tojson(indent=2) }}|{{ [1, [2, {}]]|tojson(separators=(',', ':')) }}",
           NULL, "\"\\u00e9\\ud83d\\ude00\"|[]|[1,[2,{}]]");
}

/* Python's str methods honour their arguments: strip('\n') strips newlines only (the
 * Qwen templates rely on this; @huggingface/jinja strips all whitespace here). */
Test(jinja, string_methods_follow_python) {
    expect("[{{ '\\n\\n x \\n'.lstrip('\\n') }}]|{{ ' \\nx\\n '.strip() }}|{{ 'xxhixx'.strip('x') }}", NULL, "[ x \n]|x|hi");
    expect("{{ '<think>a</think>b'.split('</think>') }}|{{ 'a  b c '.split() }}|{{ 'a,b,c'.split(',', 1) }}|"
           "{{ 'a,b,c'.rsplit(',', 1) }}|{{ ' a b  c '.split(None, 1) }}",
           NULL, "['<think>a', 'b']|['a', 'b', 'c']|['a', 'b,c']|['a,b', 'c']|['a', 'b  c ']");
    expect("{{ 'abc'.upper() }}|{{ 'hello world'.title() }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'abc'.replace('', '-') }}",
           NULL, "ABC|Hello World|bba|-a-b-c-");
    expect("{{ 'abcabc'.find('c') }}|{{ 'abcabc'.rfind('c') }}|{{ 'abcabc'.count('bc') }}|{{ '-'.join(['a', 'b']) }}|"
           "{{ 'a\\nb\\r\\nc'.splitlines() }}|{{ 'abc'.startswith(('x', 'a')) }}|{{ 'abc'.startswith('b', 1) }}",
           NULL, "2|5|2|a-b|['a', 'b', 'c']|True|True");
    const char *ctx = "{\"content\": \"<think>\\n  reasoning  \\n\\n</think>\\n\\n  answer  \"}";
    expect("[{{ content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}]"
           "[{{ content.split('</think>')[-1].lstrip('\\n') }}]",
           ctx, "[  reasoning  ][  answer  ]");
}

Test(jinja, filters) {
    expect("{{ x|trim }}|{{ 'xxtxx'|trim('x') }}|{{ [3,1,2]|sort }}|{{ ['b','A','a']|sort }}|{{ ['b','A','a']|unique|list }}|"
           "{{ [1,2,3]|first }}{{ [1,2,3]|last }}|{{ [1,2]|join('-') }}|{{ 'abc'|list }}|{{ missing|default('dv') }}|"
           "{{ ''|default('dv') }}|{{ ''|default('dv', true) }}",
           "{\"x\": \"  hi \\n\"}", "hi|t|[1, 2, 3]|['A', 'a', 'b']|['b', 'A']|13|1-2|['a', 'b', 'c']|dv||dv");
    const char *users = "{\"users\": [{\"name\": \"ann\", \"age\": 31, \"admin\": true},"
                        " {\"name\": \"bob\", \"age\": 25, \"admin\": false}]}";
    expect("{{ users|map(attribute='name')|join(',') }}|{{ users|selectattr('age', 'gt', 30)|map(attribute='name')|list }}|"
           "{{ users|rejectattr('admin')|map(attribute='name')|list }}|{{ users|sort(attribute='age')|map(attribute='name')|list }}",
           users, "ann,bob|['ann']|['bob']|['bob', 'ann']");
    expect("{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ '<a href=\"x\">&'|e }}|{{ '42'|int + 1 }}|{{ '3.5'|float }}|{{ 'x'|int }}|{{ -3|abs }}",
           NULL, "a\n  b\n\n  c|&lt;a href=&#34;x&#34;&gt;&amp;|43|3.5|0|3");
    expect("{{ ['a', 'b']|map('upper')|list }}|{{ [1, 2, 3, 4]|select('odd')|list }}|{{ [1, 2, 3, 4]|reject('odd')|list }}|"
           "{{ [1, 2, 3]|sum }}|{{ [4, 9, 2]|max }}|{{ 'abc'|reverse }}|{{ 2.5|round }}|{{ 3.5|round }}",
           NULL, "['A', 'B']|[1, 3]|[2, 4]|6|9|cba|2.0|4.0");
    expect("{{ d|items|list }}|{{ missing|items|list }}|{{ d|length }}|{{ missing|length }}", "{\"d\": {\"b\": 1, \"a\": 2}}",
           "[('b', 1), ('a', 2)]|[]|2|0");
}

Test(jinja, tests) {
    expect("{{ 1 is odd }}{{ 4 is even }}{{ 9 is divisibleby(3) }}{{ 9 is divisibleby 4 }}{{ 'a' is string }}"
           "{{ {} is mapping }}{{ [] is sequence }}{{ 'x' is iterable }}{{ {} is iterable }}{{ 1 is number }}"
           "{{ true is number }}{{ true is integer }}{{ none is none }}{{ 2 is in [1,2] }}{{ 3 is eq 3 }}"
           "{{ false is false }}{{ missing is undefined }}{{ 'ab' is lower }}",
           NULL, "TrueTrueTrueFalseTrueTrueTrueTrueTrueTrueTrueFalseTrueTrueTrueTrueTrueTrue");
    expect("{{ x is defined }}{{ x.y is defined }}{{ d.missing is defined }}{{ none.attr is defined }}{{ [1][5] is defined }}",
           "{\"x\": {\"z\": 1}, \"d\": {}}", "TrueFalseFalseFalseFalse");
}

Test(jinja, undefined_values) {
    expect("[{{ missing }}]|{{ d.get('a') }}|{{ d.get('q', 'dv') }}|{{ d['a'] }}|{% for x in missing %}no{% else %}none{% endfor %}",
           "{\"d\": {\"a\": 7}}", "[]|7|dv|7|none");
    /* Reading an attribute of an undefined value is an error in Jinja2, not "" */
    expect_error("{{ missing.attr }}", NULL, 1, DF_ERR_INVALID, "'missing' is undefined");
    expect_error("{{ missing + 1 }}", NULL, 1, DF_ERR_INVALID, "'missing' is undefined");
}

Test(jinja, whitespace_control) {
    expect("  {% if true %}\nX\n  {% endif %}\nY", NULL, "X\nY"); /* lstrip_blocks + trim_blocks */
    expect("a  {%- if true %}  b  {% endif -%}  c", NULL, "a  b  c");
    expect("{%+ if true %}k{% endif %}\n  {%+ if true %}k{% endif %}", NULL, "k  k");
    expect("{# comment #}\nA {#- c -#} B\n{{ 'x' -}}\n   {{ 'y' }}", NULL, "AB\nxy");
    expect("{% if true %}\n    indented {{ 'v' }}\n{% endif %}\n  {%- if true %} trail{% endif %}\n\nend", NULL,
           "    indented v\n trail\nend");
    expect("abc\n", NULL, "abc");     /* one trailing newline is dropped */
    expect("abc\n\n", NULL, "abc\n");
    expect("a\r\nb\rc", NULL, "a\nb\nc"); /* newlines normalised */
    expect("{% raw %}{{ not rendered }}{% endraw %}|{%- raw -%}  x  {%- endraw -%}  |", NULL, "{{ not rendered }}|x|");
    expect("{% set x %}\n  line1\n  {{- ' v ' -}}\n  line2\n{% endset %}[{{ x }}]", NULL, "[  line1 v line2\n]");
}

Test(jinja, loops) {
    expect("{% for x in items %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }}"
           "{{ loop.revindex }}{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}",
           "{\"items\": [\"a\", \"b\", \"c\"]}", "01TrueFalse33b;12FalseFalse32ac;23FalseTrue31b;");
    expect("{% for x in [] %}no{% else %}empty{% endfor %}|{% for x in [1,2,3,4,5] if x is odd %}{{ x }}{{ loop.length }}{% endfor %}|"
           "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}",
           NULL, "empty|133353|0134");
    expect("{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}|{% for k in d %}{{ k }}{% endfor %}|"
           "{% for k, v in d.items() %}{{ k }}{% endfor %}",
           "{\"d\": {\"b\": 1, \"a\": 2}}", "b=1;a=2;|ba|ba");
    expect("{% for i in range(3) %}{{ loop.cycle('odd', 'even') }}{% endfor %}|{{ range(1, 10, 3)|list }}|{{ range(5, 0, -2)|list }}",
           NULL, "oddevenodd|[1, 4, 7]|[5, 3, 1]");
    expect("{% for m in messages[::-1] %}{{ m }}{% endfor %}", "{\"messages\": [1, 2, 3]}", "321");
}

Test(jinja, scoping_and_namespace) {
    /* A variable set in a loop body lives for that iteration only; a namespace carries
     * values out. */
    expect("{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = x + 10 %}{{ x }};{% endfor %}{{ x }}|"
           "{% set ns = namespace(n=0) %}{% for i in [1,2,3] %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}",
           NULL, "111;111;1|6");
    expect("{% set ns = namespace(a=namespace(b=1)) %}{% set ns.c = 5 %}{{ ns.a.b }}{{ ns.c }}|"
           "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]|{% filter upper %}shout {{ 'it' }}{% endfilter %}",
           NULL, "15|3[]|SHOUT IT");
    expect("{% set a, b = [1, 2] %}{{ a }}{{ b }}", NULL, "12");
    expect_error("{% set d = {} %}{% set d.x = 1 %}", NULL, 1, DF_ERR_INVALID, "only of a namespace");
}

Test(jinja, macros) {
    expect("{% macro m(x, y='d') %}[{{ x }}{{ y }}]{% endmacro %}{{ m(1) }}{{ m(2, 'z') }}{{ m(y='k', x=3) }}", NULL,
           "[1d][2z][3k]");
    expect("{% macro outer() %}{% macro inner() %}in{% endmacro %}[{{ inner() }}{{ g }}]{% endmacro %}{% set g = 'G' %}{{ outer() }}",
           NULL, "[inG]");
    expect("{% macro r(x) %}{{ x|trim }}{% endmacro %}{% set v = r('  a  ')|trim %}<{{ v }}>", NULL, "<a>");
    expect_error("{% macro m(x) %}{% endmacro %}{{ m(1, 2) }}", NULL, 1, DF_ERR_INVALID, "takes not more than 1");
    expect_error("{% macro m(x) %}{% endmacro %}{{ m(y=2) }}", NULL, 1, DF_ERR_INVALID, "no keyword argument 'y'");
}

Test(jinja, errors_carry_line_and_column) {
    expect_error("line one\n{% frobnicate %}", NULL, 0, DF_ERR_UNSUPPORTED, "line 2 column 4: unknown tag 'frobnicate'");
    expect_error("{{ x | nosuchfilter }}", NULL, 0, DF_ERR_UNSUPPORTED, "line 1 column 8: no filter named 'nosuchfilter'");
    expect_error("{% if x is nosuchtest %}{% endif %}", NULL, 0, DF_ERR_UNSUPPORTED, "no test named 'nosuchtest'");
    expect_error("a\n  {% if x %}\nb", NULL, 0, DF_ERR_FORMAT, "line 2 column 3: '{% if %}' is never closed");
    expect_error("{{ 'abc }}", NULL, 0, DF_ERR_FORMAT, "line 1 column 4: unterminated string");
    expect_error("{% endfor %}", NULL, 0, DF_ERR_FORMAT, "unexpected '{% endfor %}'");
    expect_error("{{ 1 + }}", NULL, 0, DF_ERR_FORMAT, "expected an expression");
    expect_error("{% include 'x' %}", NULL, 0, DF_ERR_UNSUPPORTED, "{% include %} tag is not supported");
    expect_error("{% break %}", NULL, 0, DF_ERR_FORMAT, "outside of a for loop");
    expect_error("ok\n\n   {{ raise_exception('boom') }}", NULL, 1, DF_ERR_INVALID,
                 "line 3 column 7: the template raised an exception: boom");
    expect_error("{{ 'a' + 1 }}", NULL, 1, DF_ERR_INVALID, "line 1 column 8: unsupported operand types for +: str and int");
    expect_error("{{ 1 < 'a' }}", NULL, 1, DF_ERR_INVALID, "cannot order");
    expect_error("{{ 7 % 0 }}", NULL, 1, DF_ERR_INVALID, "modulo by zero");
    expect_error("{{ x ** 100 }}", "{\"x\": 3}", 1, DF_ERR_INVALID, "integer overflow");
}

Test(jinja, limits_stop_runaway_templates) {
    df_jinja_limits lim = df_jinja_default_limits();
    lim.max_iterations = 10000;
    lim.max_output = 4096;
    lim.max_depth = 64;
    lim.max_memory = 8 << 20;
    struct {
        const char *tmpl, *needle;
    } cases[] = {
        {"{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", "loop iterations"},
        {"{% for i in range(5000) %}xxxxxxxx{% endfor %}", "more than 4096 bytes"},
        {"{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nests deeper"},
        {"{{ range(100000000) }}", "iteration limit"},
        {"{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "bytes"},
        {"{% set ns = namespace() %}{% set ns.me = ns %}{{ ns|tojson }}", "JSON serializable"},
        {"{{ 'ab' * 100000000000 }}", "longer than"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        df_jinja_template *t = NULL;
        cr_assert_eq(df_jinja_parse(cases[i].tmpl, strlen(cases[i].tmpl), &t), DF_OK, "%s", df_last_error());
        char *out = NULL;
        df_status st = df_jinja_render(t, NULL, &lim, &out, NULL);
        cr_expect_neq(st, DF_OK, "a runaway template rendered: %s", cases[i].tmpl);
        cr_expect(strstr(df_last_error(), cases[i].needle), "'%s' lacks '%s'", df_last_error(), cases[i].needle);
        free(out);
        df_jinja_free(t);
    }
    /* Deep nesting is refused by the parser, not by the C stack. */
    char deep[2200];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "{{ ");
    for (int i = 0; i < 1000; i++) deep[n++] = '(';
    deep[n++] = '1';
    for (int i = 0; i < 1000; i++) deep[n++] = ')';
    memcpy(deep + n, " }}", 4);
    df_jinja_template *t = NULL;
    cr_expect_eq(df_jinja_parse(deep, strlen(deep), &t), DF_ERR_FORMAT);
    cr_expect(strstr(df_last_error(), "nests deeper"), "%s", df_last_error());
    df_jinja_free(t);
}

Test(jinja, template_is_reusable) {
    const char *src = "{% for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}";
    df_jinja_template *t = NULL;
    cr_assert_eq(df_jinja_parse(src, strlen(src), &t), DF_OK);
    for (int k = 0; k < 3; k++) {
        char ctx_s[128];
        snprintf(ctx_s, sizeof ctx_s, "{\"messages\": [{\"role\": \"user\", \"content\": \"m%d\"}]}", k);
        json_t *ctx = ctx_of(ctx_s);
        char *out = NULL, want[32];
        cr_assert_eq(df_jinja_render(t, ctx, NULL, &out, NULL), DF_OK, "%s", df_last_error());
        snprintf(want, sizeof want, "user:m%d;", k);
        cr_expect_str_eq(out, want);
        free(out);
        json_decref(ctx);
    }
    df_jinja_free(t);
}

static char *read_fixture(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/tests/fixtures/chat/%s", DFLASH_SOURCE_DIR, name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    char *buf = malloc(1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Content as a list of parts, which Qwen3.5's render_content macro handles (the oracle
 * fixtures leave it out because @huggingface/jinja renders it differently). */
Test(jinja, qwen35_multipart_content) {
    char *src = read_fixture("qwen3.5.jinja");
    df_jinja_template *t = NULL;
    cr_assert_eq(df_jinja_parse(src, strlen(src), &t), DF_OK, "%s", df_last_error());
    json_t *msgs = ctx_of("[{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Look: \"},"
                          " {\"type\": \"image\"}, {\"type\": \"text\", \"text\": \" what is it?\"}]}]");
    df_chat_options opt = df_chat_default_options();
    opt.enable_thinking = 0;
    char *prompt = NULL;
    cr_assert_eq(df_chat_render(t, msgs, NULL, &opt, &prompt, NULL), DF_OK, "%s", df_last_error());
    cr_expect_str_eq(prompt, "<|im_start|>user\nLook: <|vision_start|><|image_pad|><|vision_end|> what is it?<|im_end|>\n"
                             "<|im_start|>assistant\n<think>\n\n</think>\n\n");
    free(prompt);
    json_decref(msgs);
    df_jinja_free(t);
    free(src);
}

/* Qwen3.5 tool-call arguments print with Python's str(): True, not true. */
Test(jinja, qwen35_boolean_argument_prints_like_python) {
    char *src = read_fixture("qwen3.5.jinja");
    df_jinja_template *t = NULL;
    cr_assert_eq(df_jinja_parse(src, strlen(src), &t), DF_OK, "%s", df_last_error());
    json_t *msgs = ctx_of("[{\"role\": \"user\", \"content\": \"go\"}, {\"role\": \"assistant\", \"content\": null,"
                          " \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"f\","
                          " \"arguments\": \"{\\\"flag\\\": true, \\\"n\\\": null}\"}}]}]");
    df_chat_options opt = df_chat_default_options();
    opt.add_generation_prompt = false;
    char *prompt = NULL;
    cr_assert_eq(df_chat_render(t, msgs, NULL, &opt, &prompt, NULL), DF_OK, "%s", df_last_error());
    cr_expect_str_eq(prompt, "<|im_start|>user\ngo<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
                             "<tool_call>\n<function=f>\n<parameter=flag>\nTrue\n</parameter>\n<parameter=n>\nNone\n"
                             "</parameter>\n</function>\n</tool_call><|im_end|>\n");
    free(prompt);
    json_decref(msgs);
    df_jinja_free(t);
    free(src);
}

Test(jinja, chat_context_checks_and_adjusts) {
    json_t *ctx = NULL;
    json_t *bad = ctx_of("[{\"content\": \"no role\"}]");
    cr_expect_eq(df_chat_build_context(bad, NULL, NULL, &ctx), DF_ERR_INVALID);
    cr_expect(strstr(df_last_error(), "messages[0].role"), "%s", df_last_error());
    json_decref(bad);

    json_t *msgs = ctx_of("[{\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"function\": {\"name\": \"f\","
                          " \"arguments\": \"{\\\"a\\\": 1}\"}}, {\"function\": {\"name\": \"g\", \"arguments\": \"oops\"}}]}]");
    df_chat_options opt = df_chat_default_options();
    opt.enable_thinking = 1;
    cr_assert_eq(df_chat_build_context(msgs, NULL, &opt, &ctx), DF_OK, "%s", df_last_error());
    json_t *m = json_array_get(json_object_get(ctx, "messages"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(m, "content")), "");
    json_t *calls = json_object_get(m, "tool_calls");
    json_t *a0 = json_object_get(json_object_get(json_array_get(calls, 0), "function"), "arguments");
    json_t *a1 = json_object_get(json_object_get(json_array_get(calls, 1), "function"), "arguments");
    cr_expect(json_is_object(a0) && json_integer_value(json_object_get(a0, "a")) == 1);
    cr_expect_str_eq(json_string_value(a1), "oops");
    cr_expect(json_is_true(json_object_get(ctx, "enable_thinking")));
    cr_expect(json_is_true(json_object_get(ctx, "add_generation_prompt")));
    cr_expect_null(json_object_get(ctx, "tools"));
    /* the caller's messages are not modified */
    cr_expect(json_is_null(json_object_get(json_array_get(msgs, 0), "content")));
    json_decref(ctx);
    json_decref(msgs);
}

Test(jinja, prompt_opens_reasoning) {
    const char *open = "<|im_start|>assistant\n<think>\n";
    const char *closed = "<|im_start|>assistant\n<think>\n\n</think>\n\n";
    const char *none = "<|im_start|>assistant\n";
    cr_expect(df_chat_prompt_opens_reasoning(open, strlen(open)));
    cr_expect_not(df_chat_prompt_opens_reasoning(closed, strlen(closed)));
    cr_expect_not(df_chat_prompt_opens_reasoning(none, strlen(none)));
}
