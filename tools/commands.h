/* The subcommands of the dflash CLI. Each takes argv with argv[0] = the command's name and
 * returns the process exit status (0 ok, 1 failure, 2 bad usage). */
#ifndef DF_TOOLS_COMMANDS_H
#define DF_TOOLS_COMMANDS_H

int cmd_bench(int argc, char **argv);
int cmd_chat_template(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

#endif
