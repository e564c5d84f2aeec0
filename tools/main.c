/* dflash: one binary, one subcommand per job. Each subcommand lives in tools/cmd_<name>.c and
 * is listed in the table below. */
#include <stdio.h>
#include <string.h>

#include "tools/commands.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} g_commands[] = {
    {"bench", cmd_bench, "measure prefill and decode speed against the memory bandwidth"},
    {"chat-template", cmd_chat_template, "render messages with a chat template (prints the prompt)"},
    {"convert", cmd_convert, "convert a Hugging Face checkpoint to GGUF (f32 ... q4_k_m)"},
    {"generate", cmd_generate, "generate text or tokens from a prompt"},
    {"inspect", cmd_inspect, "show a model file's architecture, metadata and tensors"},
    {"mkmodel", cmd_mkmodel, "write a random-weight model in a published model's shape (benchmarks)"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server (chat and completions, streaming)"},
    {"tokenize", cmd_tokenize, "text to token ids and back (tokenizer.json or GGUF)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: dflash <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof g_commands / sizeof g_commands[0]; i++)
        fprintf(f, "  %-10s %s\n", g_commands[i].name, g_commands[i].summary);
    fprintf(f, "\n'dflash <command> --help' describes a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof g_commands / sizeof g_commands[0]; i++)
        if (!strcmp(argv[1], g_commands[i].name)) return g_commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "dflash: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
