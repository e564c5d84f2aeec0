/* Internals of the Jinja interpreter (src/text/jinja_*.c): the arena every render and
 * parse allocates from, the value model, tokens, the syntax tree and the evaluation
 * context. Nothing outside src/text/jinja_*.c includes this. Internal names start dj_. */
#ifndef DF_TEXT_JINJA_INTERNAL_H
#define DF_TEXT_JINJA_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "text/jinja.h"

/* ---- arena -------------------------------------------------------------------------
 * A parse allocates its tree, and a render all of its values, from one arena that is freed
 * at once: values are shared freely (a list element, a variable, a namespace attribute may
 * all be the same dict) without reference counts, and error paths free nothing by hand.
 * The arena refuses to grow past its limit, which is how a render's memory is bounded. */
typedef struct dj_block dj_block;
typedef struct dj_arena {
    dj_block *head;
    size_t used;   /* bytes handed out, summed over blocks */
    size_t limit;  /* 0 = no limit */
} dj_arena;

void dj_arena_init(dj_arena *a, size_t limit);
void *dj_arena_alloc(dj_arena *a, size_t n); /* 16-byte aligned, uninitialised; NULL at limit */
void *dj_arena_zalloc(dj_arena *a, size_t n);
void dj_arena_release(dj_arena *a);

/* ---- strings and buffers ----------------------------------------------------------- */
typedef struct dj_str {
    const char *p;
    size_t n;
} dj_str;

#define DJ_LIT(s) ((dj_str){(s), sizeof(s) - 1})

bool dj_str_eq(dj_str a, dj_str b);
bool dj_str_eqc(dj_str a, const char *c);

/* A growable byte buffer in an arena, bounded by `limit` bytes. */
typedef struct dj_buf {
    dj_arena *arena;
    char *p;
    size_t n, cap, limit;
    bool overflow; /* a put failed: past `limit`, or the arena is spent (then nomem too) */
    bool nomem;
} dj_buf;

void dj_buf_init(dj_buf *b, dj_arena *a, size_t limit);
bool dj_buf_put(dj_buf *b, const char *s, size_t n);
bool dj_buf_putc(dj_buf *b, char c);
bool dj_buf_puts(dj_buf *b, const char *s);
bool dj_buf_printf(dj_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* UTF-8: the next code point at s[*i] (advancing *i); a malformed byte reads as itself so
 * that scanning never stalls on bad input. */
uint32_t dj_utf8_next(const char *s, size_t n, size_t *i);
size_t dj_utf8_put(char out[4], uint32_t cp);
size_t dj_utf8_count(const char *s, size_t n);
/* Python's str.isspace() for one code point. */
bool dj_is_space(uint32_t cp);

/* ---- values -------------------------------------------------------------------------- */
typedef enum dj_type {
    DJ_UNDEF, /* a missing variable or attribute; u.s holds its name for messages */
    DJ_NONE,
    DJ_BOOL,
    DJ_INT,
    DJ_FLOAT,
    DJ_STR,
    DJ_LIST,  /* lists and tuples */
    DJ_DICT,  /* insertion-ordered, string keys */
    DJ_NS,    /* namespace(): a dict whose attributes {% set ns.x %} may assign */
    DJ_FUNC,  /* a global function, a macro or a bound method */
    DJ_LOOP,  /* the `loop` variable of a for loop */
} dj_type;

struct dj_list;
struct dj_dict;
struct dj_func;
struct dj_loop;

typedef struct dj_value {
    dj_type type;
    union {
        bool b;
        int64_t i;
        double f;
        dj_str s;
        struct dj_list *list;
        struct dj_dict *dict;
        struct dj_func *fn;
        struct dj_loop *loop;
    } u;
} dj_value;

typedef struct dj_list {
    dj_value *v;
    size_t n, cap;
    bool tuple; /* prints as (a, b) and never equals a list, as in Python */
} dj_list;

typedef struct dj_entry {
    dj_str key;
    dj_value val;
} dj_entry;

typedef struct dj_dict {
    dj_entry *e;
    size_t n, cap;
    uint32_t *slots; /* open-addressing index of entry positions + 1, built past 8 entries */
    size_t nslots;
} dj_dict;

typedef struct dj_loop {
    const dj_value *items;
    size_t n, i;
} dj_loop;

static inline dj_value dj_undef(dj_str name) { return (dj_value){.type = DJ_UNDEF, .u.s = name}; }
static inline dj_value dj_none(void) { return (dj_value){.type = DJ_NONE}; }
static inline dj_value dj_bool(bool b) { return (dj_value){.type = DJ_BOOL, .u.b = b}; }
static inline dj_value dj_int(int64_t i) { return (dj_value){.type = DJ_INT, .u.i = i}; }
static inline dj_value dj_float(double f) { return (dj_value){.type = DJ_FLOAT, .u.f = f}; }
static inline dj_value dj_strv(dj_str s) { return (dj_value){.type = DJ_STR, .u.s = s}; }

/* ---- tokens -------------------------------------------------------------------------- */
typedef enum dj_tok_type {
    DJ_T_EOF,
    DJ_T_TEXT,
    DJ_T_VAR_BEGIN,
    DJ_T_VAR_END,
    DJ_T_BLOCK_BEGIN,
    DJ_T_BLOCK_END,
    DJ_T_NAME,
    DJ_T_INT,
    DJ_T_FLOAT,
    DJ_T_STRING,
    DJ_T_OP,
} dj_tok_type;

typedef enum dj_op {
    DJ_OP_NONE,
    DJ_OP_ADD, DJ_OP_SUB, DJ_OP_MUL, DJ_OP_DIV, DJ_OP_FLOORDIV, DJ_OP_MOD, DJ_OP_POW,
    DJ_OP_TILDE,
    DJ_OP_EQ, DJ_OP_NE, DJ_OP_LT, DJ_OP_LE, DJ_OP_GT, DJ_OP_GE, DJ_OP_IN, DJ_OP_NOTIN,
    DJ_OP_LPAREN, DJ_OP_RPAREN, DJ_OP_LBRACKET, DJ_OP_RBRACKET, DJ_OP_LBRACE, DJ_OP_RBRACE,
    DJ_OP_ASSIGN, DJ_OP_DOT, DJ_OP_COLON, DJ_OP_PIPE, DJ_OP_COMMA, DJ_OP_SEMICOLON,
} dj_op;

typedef struct dj_token {
    dj_tok_type type;
    dj_op op;
    uint32_t line, col;
    dj_str s;  /* TEXT, NAME, STRING (decoded) */
    int64_t i; /* INT */
    double f;  /* FLOAT */
} dj_token;

typedef struct dj_tokens {
    dj_token *v;
    size_t n;
} dj_tokens;

/* ---- syntax tree ------------------------------------------------------------------- */
typedef enum dj_kind {
    /* statements */
    DJ_S_TEXT,        /* value: the text */
    DJ_S_OUTPUT,      /* {{ a }} */
    DJ_S_IF,          /* a: test; body; orelse (an elif is a nested IF in orelse) */
    DJ_S_FOR,         /* a: target; b: iterable; c: filter condition or NULL; body; orelse */
    DJ_S_SET,         /* a: target (NAME, TUPLE or ATTR of a namespace); b: value */
    DJ_S_SETBLOCK,    /* a: target; body */
    DJ_S_MACRO,       /* name; args: parameters (NAME or KWARG with default); body */
    DJ_S_BREAK,
    DJ_S_CONTINUE,
    DJ_S_FILTERBLOCK, /* a: a FILTER node whose operand is the rendered body; body */
    DJ_S_WITH,        /* args: SET statements run in a new scope; body */
    DJ_S_GENERATION,  /* transformers' {% generation %}: renders its body */
    /* expressions */
    DJ_E_CONST,       /* value */
    DJ_E_NAME,        /* name */
    DJ_E_LIST,        /* args: items */
    DJ_E_TUPLE,       /* args: items */
    DJ_E_DICT,        /* args: key, value, key, value... */
    DJ_E_ATTR,        /* a.name */
    DJ_E_ITEM,        /* a[b] */
    DJ_E_SLICE,       /* a[b:c:d], NULL for an omitted part */
    DJ_E_CALL,        /* a(args) */
    DJ_E_FILTER,      /* a|name(args); impl: the filter */
    DJ_E_TEST,        /* a is [not] name(args); op: 1 when negated; impl: the test */
    DJ_E_NOT,         /* not a */
    DJ_E_NEG,         /* -a */
    DJ_E_POS,         /* +a */
    DJ_E_BIN,         /* a op b: arithmetic, ~ */
    DJ_E_AND,         /* a and b */
    DJ_E_OR,          /* a or b */
    DJ_E_COMPARE,     /* args[0] ops[0] args[1] ops[1] args[2]... (Python's chained compare) */
    DJ_E_COND,        /* a if b else c (c may be NULL) */
    DJ_E_KWARG,       /* name=a, inside args of CALL / FILTER / TEST / MACRO parameters */
} dj_kind;

struct dj_node;
typedef struct dj_nodes {
    struct dj_node **v;
    size_t n;
} dj_nodes;

typedef struct dj_node {
    dj_kind kind;
    int op;
    uint32_t line, col;
    dj_value value;
    dj_str name;
    const void *impl;
    struct dj_node *a, *b, *c, *d;
    dj_nodes args;
    dj_op *ops; /* COMPARE: args.n - 1 operators */
    dj_nodes body, orelse;
} dj_node;

struct df_jinja_template {
    dj_arena arena; /* the tree, its strings and the normalised source */
    dj_nodes body;
};

/* ---- evaluation context -------------------------------------------------------------- */
typedef struct dj_scope {
    struct dj_scope *parent;
    dj_dict vars;
} dj_scope;

typedef struct dj_ctx {
    dj_arena *arena;
    df_jinja_limits lim;
    dj_buf *out;        /* where output goes now (a capture while in a macro or set block) */
    int depth;
    uint64_t iterations, steps;
    bool failed;
    df_status st;
    uint32_t err_line, err_col;
    char err[400];
} dj_ctx;

/* Function arguments after evaluation: positional first, then keywords. */
typedef struct dj_args {
    const dj_value *pos;
    size_t npos;
    const dj_str *kwname;
    const dj_value *kw;
    size_t nkw;
} dj_args;

typedef bool (*dj_native_fn)(dj_ctx *c, const dj_node *at, dj_value self, const dj_args *a,
                             dj_value *out);

typedef struct dj_func {
    const char *name;
    dj_native_fn native;       /* a global function or a bound method */
    dj_value self;             /* the bound object of a method */
    const dj_node *macro;      /* a macro: its definition */
    dj_scope *closure;         /* a macro: the scope it was defined in */
} dj_func;

typedef bool (*dj_filter_fn)(dj_ctx *c, const dj_node *at, dj_value in, const dj_args *a,
                             dj_value *out);
typedef bool (*dj_test_fn)(dj_ctx *c, const dj_node *at, dj_value in, const dj_args *a,
                           bool *out);

typedef struct dj_filter_def {
    const char *name;
    dj_filter_fn fn;
} dj_filter_def;

typedef struct dj_test_def {
    const char *name;
    dj_test_fn fn;
} dj_test_def;

const dj_filter_def *dj_find_filter(dj_str name);
const dj_test_def *dj_find_test(dj_str name);

/* Records the first error of a render (with the node's line and column) and returns false,
 * so that failure paths read `return dj_fail(c, at, DF_ERR_INVALID, "...", ...);`. */
bool dj_fail(dj_ctx *c, const dj_node *at, df_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
bool dj_fail_nomem(dj_ctx *c, const dj_node *at);
/* Charges `n` units to the step budget; false (with the error recorded) when spent. */
bool dj_charge(dj_ctx *c, const dj_node *at, uint64_t n);

/* ---- value operations (jinja_value.c) -------------------------------------------------- */
const char *dj_type_name(dj_value v);
bool dj_truthy(dj_value v);
bool dj_equal(dj_value a, dj_value b, int depth);
/* Python ordering for <, <=, ...: *cmp is -1, 0 or 1; false when the types do not order. */
bool dj_compare(dj_ctx *c, const dj_node *at, dj_value a, dj_value b, int *cmp);

dj_list *dj_list_new(dj_ctx *c, size_t cap);
bool dj_list_push(dj_ctx *c, dj_list *l, dj_value v);
dj_dict *dj_dict_new(dj_ctx *c);
const dj_value *dj_dict_get(const dj_dict *d, dj_str key);
bool dj_dict_set(dj_arena *a, dj_dict *d, dj_str key, dj_value v);

bool dj_str_dup(dj_ctx *c, const char *p, size_t n, dj_str *out);
bool dj_str_from_buf(dj_ctx *c, const dj_buf *b, dj_str *out);

/* Converts a Jansson value into interpreter values (strings are referenced, not copied). */
bool dj_from_json(dj_ctx *c, const json_t *j, dj_value *out, int depth);

/* str(v), repr(v) and json.dumps(v, ...) as Python writes them, appended to b. */
bool dj_write_str(dj_ctx *c, const dj_node *at, dj_buf *b, dj_value v, int depth);
bool dj_write_repr(dj_ctx *c, const dj_node *at, dj_buf *b, dj_value v, int depth);
typedef struct dj_json_opts {
    int indent;         /* < 0: single line */
    dj_str indent_str;  /* used when indent_str.p != NULL (a string indent) */
    bool ensure_ascii;
    bool sort_keys;
    dj_str item_sep, key_sep;
} dj_json_opts;
bool dj_write_json(dj_ctx *c, const dj_node *at, dj_buf *b, dj_value v,
                   const dj_json_opts *o, int level);
bool dj_to_str(dj_ctx *c, const dj_node *at, dj_value v, dj_str *out);

/* Python's repr() of a float. */
void dj_format_float(double f, char out[40]);

/* ---- methods and global functions (jinja_methods.c) ------------------------------------ */
/* Looks up a method of a str, dict or loop: true with *fn set when there is one. */
bool dj_find_method(dj_value self, dj_str name, dj_native_fn *fn);
bool dj_make_globals(dj_ctx *c, dj_dict *globals);

/* String helpers shared by methods and filters (Python semantics, code points). */
bool dj_strip(dj_ctx *c, dj_str s, const dj_value *chars, bool left, bool right, dj_str *out);
bool dj_replace(dj_ctx *c, const dj_node *at, dj_str s, dj_str old, dj_str new_, int64_t count,
                dj_str *out);
bool dj_upper_lower(dj_ctx *c, dj_str s, int mode, dj_str *out); /* 0 lower 1 upper 2 title 3 capitalize */
bool dj_iterate(dj_ctx *c, const dj_node *at, dj_value v, dj_list **out);
bool dj_splitlines(dj_ctx *c, const dj_node *at, dj_str s, bool keepends, dj_list **out);
bool dj_dict_items(dj_ctx *c, const dj_node *at, const dj_dict *d, dj_value *out);
bool dj_slice(dj_ctx *c, const dj_node *at, dj_value v, const dj_value *start,
              const dj_value *stop, const dj_value *step, dj_value *out);

/* Arguments: the i-th positional or the keyword `name`, else NULL. */
const dj_value *dj_arg(const dj_args *a, size_t i, const char *name);
/* Fails naming the callee when an argument list has more than npos positionals or a
 * keyword not among `names` (NULL-terminated). */
bool dj_check_args(dj_ctx *c, const dj_node *at, const char *callee, const dj_args *a,
                   size_t npos, const char *const *names);

/* ---- lexer, parser, evaluator ------------------------------------------------------------ */
/* Errors of the lexer and parser: "chat template line L column C: msg". */
df_status dj_syntax_error(df_status st, uint32_t line, uint32_t col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
df_status dj_lex(dj_arena *a, const char *src, size_t len, dj_tokens *out);
df_status dj_parse(dj_arena *a, const dj_tokens *toks, dj_nodes *out);

/* Evaluates an expression node; calls a macro or function value. */
bool dj_eval(dj_ctx *c, dj_scope *s, const dj_node *n, dj_value *out);
bool dj_call_value(dj_ctx *c, const dj_node *at, dj_value fn, const dj_args *a, dj_value *out);
/* `needle in hay` with Python's meaning. */
bool dj_contains(dj_ctx *c, const dj_node *at, dj_value needle, dj_value hay, bool *out);

enum {
    DJ_MAX_PARSE_DEPTH = 128, /* nesting of brackets, operators and tags in a template */
    DJ_MAX_VALUE_DEPTH = 256, /* nesting of lists and dicts when printing or comparing */
};

#endif
