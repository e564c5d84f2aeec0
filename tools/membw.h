/* Memory bandwidth of this machine, measured the way decode uses memory: streaming reads of
 * a buffer far larger than the caches, on all threads. Reported next to decode speed so
 * that "fraction of the memory roofline" is a ratio of two numbers from the same run. */
#ifndef DF_TOOLS_MEMBW_H
#define DF_TOOLS_MEMBW_H

#include <stddef.h>

typedef struct membw_result {
    double read_gbs;  /* bytes read per second / 1e9 */
    double copy_gbs;  /* (bytes read + bytes written) per second / 1e9 */
} membw_result;

/* Returns 0 and fills out, or -1 when the buffers cannot be allocated. */
int membw_measure(size_t bytes, int n_threads, membw_result *out);

struct df_backend;
/* The same for a backend's own memory (a GPU's): best of several device-to-device copies
 * through the op table. A copy reads and writes, so read_gbs is copy_gbs / 2. */
int membw_measure_backend(struct df_backend *be, size_t bytes, membw_result *out);

#endif
