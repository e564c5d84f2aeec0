/* dflash: the public C API. The CLI and the server use nothing else.
 *
 *   dflash_model *m;
 *   dflash_model_params mp = dflash_model_default_params();
 *   mp.path = "target.gguf";
 *   if (dflash_model_load(&mp, &m) != 0) { fprintf(stderr, "%s\n", dflash_last_error()); ... }
 *   dflash_session *s;
 *   dflash_session_params sp = dflash_session_default_params();
 *   dflash_session_create(m, &sp, &s);
 *   dflash_gen_params gp = dflash_gen_default_params();
 *   gp.n_predict = 64;
 *   dflash_generate_text(s, "def quicksort(", &gp, on_token, user, &stats);
 *
 * Every function that can fail returns 0 on success or a non-zero status; the message,
 * naming what was wrong, is in dflash_last_error() (per thread). */
#ifndef DFLASH_H
#define DFLASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dflash_model dflash_model;
typedef struct dflash_session dflash_session;

const char *dflash_last_error(void);
const char *dflash_version(void);

/* ---- models ------------------------------------------------------------------------------ */

typedef struct dflash_model_params {
    const char *path;        /* target GGUF */
    const char *draft_path;  /* DFlash drafter (GGUF or z-lab directory); NULL: none */
    int n_threads;           /* CPU threads; 0: one per online CPU */
    const char *device;      /* "cpu" (NULL: the same), "cuda" (= "cuda:0") or "cuda:N"; a
                                build without CUDA refuses "cuda" with a message saying so */
} dflash_model_params;

dflash_model_params dflash_model_default_params(void);
int dflash_model_load(const dflash_model_params *p, dflash_model **out);
void dflash_model_free(dflash_model *m);

int32_t dflash_model_n_vocab(const dflash_model *m);
int32_t dflash_model_n_ctx_train(const dflash_model *m);
/* Bytes of weights one decode step reads (every matrix once). */
uint64_t dflash_model_weight_bytes(const dflash_model *m);
/* True when the model has a tokenizer (text in and out); false for bare test models. */
bool dflash_model_has_tokenizer(const dflash_model *m);
/* True when a drafter was loaded: greedy generation then uses speculative decoding. */
bool dflash_model_has_drafter(const dflash_model *m);
/* The drafter's own block size (0 without a drafter). */
int32_t dflash_model_draft_block(const dflash_model *m);
/* True for end-of-generation tokens (EOS, <|im_end|>, <|endoftext|>). */
bool dflash_model_is_eog(const dflash_model *m, int32_t token);

/* The chat template the GGUF carries (tokenizer.chat_template), malloc'd and NUL-terminated
 * (free() it); NULL when the file has none or on out of memory. */
char *dflash_model_chat_template(const dflash_model *m);

/* Appends the ids of text to *ids (realloc'd; free() it). parse_special: match control
 * tokens like <|im_start|> in the text. */
int dflash_tokenize(const dflash_model *m, const char *text, size_t len, bool parse_special,
                    int32_t **ids, size_t *n_ids);

/* ---- sessions ---------------------------------------------------------------------------- */

typedef struct dflash_session_params {
    int32_t n_ctx;           /* context capacity in tokens; 0: min(training context, 4096) */
    int32_t max_batch;       /* tokens per forward call (prefill chunk); 0: 256 */
    bool kv_f32;             /* keep the KV cache in f32 instead of f16 */
    int32_t block_size;      /* speculative block (bonus + drafts); 0: the drafter's own, at
                                most 4 on the CPU (engine/spec.h: DF_SPEC_CPU_BLOCK) */
    bool no_spec;            /* plain AR even when the model has a drafter */
    bool capture_f16;        /* roll back speculative steps from per-token GDN states kept in
                                f16 (the capture rollback; rounds the state) instead of the
                                default replay of the accepted tokens (f32, exact, smaller);
                                see docs/ARCHITECTURE.md */
    int32_t n_threads;       /* 0: run on the model's threads (sessions then take turns);
                                N > 0: this session gets N CPU threads of its own and can
                                generate at the same time as other sessions (the CPU backend;
                                elsewhere it is ignored and sessions take turns) */
    bool sync_phases;        /* speculative decoding waits for the device at the end of each
                                commit, so draft_s / verify_s hold their own phase's work and
                                not the commit's (asynchronous on a GPU); for measurements,
                                it costs a little speed */
} dflash_session_params;

dflash_session_params dflash_session_default_params(void);
int dflash_session_create(dflash_model *m, const dflash_session_params *p, dflash_session **out);
void dflash_session_free(dflash_session *s);
/* The context capacity in tokens the session was created with. */
int32_t dflash_session_n_ctx(const dflash_session *s);
/* Forgets the conversation: the next generation starts from an empty context. */
int dflash_session_reset(dflash_session *s);
/* Whether the session runs on threads of its own (n_threads > 0 on a backend with lanes), so
 * that it may generate while other sessions do. */
bool dflash_session_is_independent(const dflash_session *s);

/* ---- generation ---------------------------------------------------------------------------- */

typedef struct dflash_gen_params {
    int32_t n_predict;       /* most tokens to generate; < 0: until EOS or the context is full */
    float temperature;       /* <= 0: greedy */
    int32_t top_k;           /* <= 0: off */
    float top_p;             /* >= 1: off */
    float min_p;             /* <= 0: off */
    uint64_t seed;
    const char *const *stop; /* stop strings (not included in the output) */
    int32_t n_stop;
    bool ignore_eos;
} dflash_gen_params;

dflash_gen_params dflash_gen_default_params(void);

typedef enum dflash_stop_reason {
    DFLASH_STOP_LENGTH = 0,  /* n_predict reached */
    DFLASH_STOP_EOS,
    DFLASH_STOP_STRING,
    DFLASH_STOP_CONTEXT,     /* the context is full */
    DFLASH_STOP_CALLBACK,    /* the callback asked to stop */
} dflash_stop_reason;

typedef struct dflash_gen_stats {
    int32_t n_prompt, n_gen;
    double prefill_s, decode_s;
    double prefill_tok_s, decode_tok_s;
    dflash_stop_reason stop;
    /* speculative decoding (n_verify == 0 when it was not used) */
    int64_t n_verify;            /* target verify passes */
    double mean_accept_len;      /* tokens committed per verify (accepted drafts + 1) */
    int64_t accept_hist[32];     /* verifies by tokens committed - 1 */
    double draft_s, verify_s;    /* time in the drafter and in target verifies */
    int64_t n_replayed;          /* target forwards replayed from a recording (CUDA graphs) */
} dflash_gen_stats;

/* Called once per generated token with the text it releases (whole UTF-8 characters only;
 * empty while a character is incomplete or while the text could still become a stop string,
 * and always empty for models without a tokenizer). At the end, text still held back comes
 * in a last call with token -1. Return non-zero to stop. */
typedef int (*dflash_token_fn)(void *user, int32_t token, const char *text, size_t len);

/* Generates after prompt[0..n_prompt), which is appended to what the session holds. */
int dflash_generate(dflash_session *s, const int32_t *prompt, size_t n_prompt,
                    const dflash_gen_params *p, dflash_token_fn cb, void *user,
                    dflash_gen_stats *stats);

/* The same from text (tokenized with control tokens parsed). */
int dflash_generate_text(dflash_session *s, const char *prompt, const dflash_gen_params *p,
                         dflash_token_fn cb, void *user, dflash_gen_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
