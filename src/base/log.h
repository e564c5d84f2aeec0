/* Leveled logging to stderr. The level comes from DFLASH_LOG (error|warn|info|debug) or
 * df_log_set_level(); the default is info. */
#ifndef DF_BASE_LOG_H
#define DF_BASE_LOG_H

typedef enum { DF_LOG_ERROR = 0, DF_LOG_WARN, DF_LOG_INFO, DF_LOG_DEBUG } df_log_level;

void df_log_set_level(df_log_level level);
df_log_level df_log_get_level(void);
void df_log(df_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define DF_ERROR(...) df_log(DF_LOG_ERROR, __VA_ARGS__)
#define DF_WARN(...) df_log(DF_LOG_WARN, __VA_ARGS__)
#define DF_INFO(...) df_log(DF_LOG_INFO, __VA_ARGS__)
#define DF_DEBUG(...) df_log(DF_LOG_DEBUG, __VA_ARGS__)

#endif
