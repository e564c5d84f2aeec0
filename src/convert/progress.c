/* Progress of a long conversion. A terminal gets one line redrawn in place (bar, percent,
 * elapsed time, the tensor being written); anything else (a log file, CI output) gets a plain
 * line at each tenth, so that logs stay short and readable. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "convert/convert_internal.h"

enum { BAR_WIDTH = 30 };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void df_progress_begin(df_progress *p, FILE *f, bool enabled, const char *label, uint64_t total) {
    p->f = f ? f : stderr;
    p->enabled = enabled;
    p->tty = enabled && isatty(fileno(p->f));
    p->label = label;
    p->total = total ? total : 1;
    p->done = 0;
    p->last_tenth = 0;
    p->last_permil = -1;
    p->t0 = now_s();
}

static void draw(df_progress *p, const char *what) {
    int permil = (int)(p->done * 1000 / p->total);
    if (permil == p->last_permil) return;
    p->last_permil = permil;
    int fill = permil * BAR_WIDTH / 1000;
    char bar[BAR_WIDTH + 1];
    for (int i = 0; i < BAR_WIDTH; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[BAR_WIDTH] = 0;
    /* \033[K clears what a longer tensor name left behind. */
    fprintf(p->f, "\r%s [%s] %3d%% %6.1fs %.40s\033[K", p->label, bar, permil / 10, now_s() - p->t0,
            what ? what : "");
    fflush(p->f);
}

void df_progress_add(df_progress *p, uint64_t amount, const char *what) {
    p->done += amount;
    if (p->done > p->total) p->done = p->total;
    if (!p->enabled) return;
    if (p->tty) {
        draw(p, what);
        return;
    }
    int tenth = (int)(p->done * 10 / p->total);
    if (tenth > p->last_tenth) {
        p->last_tenth = tenth;
        fprintf(p->f, "dflash convert: %s %d%% (%.1fs)\n", p->label, tenth * 10, now_s() - p->t0);
        fflush(p->f);
    }
}

void df_progress_end(df_progress *p) {
    if (!p->enabled) return;
    if (p->tty) {
        p->done = p->total;
        p->last_permil = -1;
        draw(p, "done");
        fputc('\n', p->f);
        fflush(p->f);
    } else if (p->last_tenth < 10) {
        p->last_tenth = 10;
        fprintf(p->f, "dflash convert: %s 100%% (%.1fs)\n", p->label, now_s() - p->t0);
    }
}
