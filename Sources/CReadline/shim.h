// GNU readline: line editing and history for the REPL.
#include <stdio.h>
#include <readline/readline.h>
#include <readline/history.h>

// readline is configured through global variables, which Swift 6 does not let code touch
// directly; these accessors do it on the REPL's one thread.

static inline void skellab_rl_configure(rl_completion_func_t *complete) {
  rl_readline_name = "skellab";
  rl_catch_signals = 0;  // SkelLab's own SIGINT handler sets a flag; the REPL acts on it
  rl_catch_sigwinch = 1;
  rl_attempted_completion_function = complete;
  rl_completer_word_break_characters = " \t\n\"\\'`@$><=;|&{([,+-*/%:.";
}

// Completion replaces readline's file-name fallback and adds no space after a match
// (`depth=` is followed by its value).
static inline void skellab_rl_completion_flags(void) {
  rl_attempted_completion_over = 1;
  rl_completion_append_character = '\0';
  rl_sort_completion_matches = 0;  /* ours come in order: a call's keyword arguments first */
}

static inline const char *skellab_rl_line_buffer(void) { return rl_line_buffer; }
