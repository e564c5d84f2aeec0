/* Sessions with threads of their own (dflash_session_params.n_threads > 0: a CPU backend lane)
 * generate at the same time on one model, and each writes exactly what it writes alone. The
 * model is the embedded pair (models/), so speculative decoding with a real drafter runs in
 * every thread at once. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "dflash.h"

#define N_SESSIONS 3
#define N_GEN 40

static const char *k_prompts[N_SESSIONS] = {
    "def read_config(path):\n    \"\"\"Load a JSON file.\"\"\"\n",
    "class Queue:\n    def __init__(self):\n",
    "import os\n\nfor name in os.listdir('.'):\n",
};

typedef struct {
    dflash_session *s;
    const char *prompt;
    int32_t out[N_GEN];
    int n, rc;
    pthread_barrier_t *start;
} job;

static int keep(void *user, int32_t token, const char *text, size_t len) {
    job *j = user;
    if (j->n < N_GEN) j->out[j->n++] = token;
    return 0;
}

static void run_job(job *j) {
    dflash_gen_params gp = dflash_gen_default_params();
    gp.n_predict = N_GEN;
    gp.ignore_eos = true;
    j->n = 0;
    j->rc = dflash_session_reset(j->s);
    if (j->rc == 0) j->rc = dflash_generate_text(j->s, j->prompt, &gp, keep, j, NULL);
}

static void *thread_main(void *p) {
    job *j = p;
    pthread_barrier_wait(j->start);
    run_job(j);
    return NULL;
}

Test(session_lanes, parallel_sessions_write_what_each_writes_alone) {
    dflash_model_params mp = dflash_model_default_params();
    mp.path = DFLASH_SOURCE_DIR "/models/dflash-code-25m-q8_0.gguf";
    mp.draft_path = DFLASH_SOURCE_DIR "/models/dflash-code-25m-drafter-q8_0.gguf";
    mp.n_threads = 2;
    dflash_model *m;
    cr_assert_eq(dflash_model_load(&mp, &m), 0, "%s", dflash_last_error());

    /* Alone, one after the other, on the model's own threads. */
    dflash_session_params sp = dflash_session_default_params();
    sp.n_ctx = 256;
    dflash_session *shared;
    cr_assert_eq(dflash_session_create(m, &sp, &shared), 0, "%s", dflash_last_error());
    cr_assert_not(dflash_session_is_independent(shared));
    job alone[N_SESSIONS];
    for (int i = 0; i < N_SESSIONS; i++) {
        alone[i] = (job){.s = shared, .prompt = k_prompts[i]};
        run_job(&alone[i]);
        cr_assert_eq(alone[i].rc, 0, "%s", dflash_last_error());
        cr_assert_eq(alone[i].n, N_GEN);
    }
    dflash_session_free(shared);

    /* Together: each session on one thread of its own, started at once, twice over. */
    sp.n_threads = 1;
    dflash_session *own[N_SESSIONS];
    for (int i = 0; i < N_SESSIONS; i++) {
        cr_assert_eq(dflash_session_create(m, &sp, &own[i]), 0, "%s", dflash_last_error());
        cr_assert(dflash_session_is_independent(own[i]));
    }
    for (int round = 0; round < 2; round++) {
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, N_SESSIONS);
        job together[N_SESSIONS];
        pthread_t th[N_SESSIONS];
        for (int i = 0; i < N_SESSIONS; i++) {
            /* rotate which session serves which prompt between rounds */
            together[i] = (job){.s = own[(i + round) % N_SESSIONS], .prompt = k_prompts[i], .start = &start};
            cr_assert_eq(pthread_create(&th[i], NULL, thread_main, &together[i]), 0);
        }
        for (int i = 0; i < N_SESSIONS; i++) pthread_join(th[i], NULL);
        pthread_barrier_destroy(&start);
        for (int i = 0; i < N_SESSIONS; i++) {
            cr_assert_eq(together[i].rc, 0, "round %d, prompt %d failed", round, i);
            cr_assert_eq(together[i].n, N_GEN);
            cr_assert_arr_eq(together[i].out, alone[i].out, sizeof alone[i].out,
                             "round %d, prompt %d: the parallel tokens differ from the lone ones",
                             round, i);
        }
    }
    for (int i = 0; i < N_SESSIONS; i++) dflash_session_free(own[i]);
    dflash_model_free(m);
}
