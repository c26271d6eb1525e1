#ifndef SKELLAB_CSYSTEM_H
#define SKELLAB_CSYSTEM_H

/// Pins the calling thread to one CPU. Returns 0 on success, an errno value otherwise
/// (always ENOSYS where thread affinity does not exist).
int skellab_pin_current_thread(int cpu);

/// The CPU the calling thread is running on, or -1 where that cannot be known.
int skellab_current_cpu(void);

/// Installs a SIGINT handler that only sets a flag (async-signal-safe). Returns 0 on success.
int skellab_install_interrupt_handler(void);

/// Whether SIGINT arrived since the last clear.
int skellab_interrupt_pending(void);

/// Forgets a pending SIGINT.
void skellab_clear_interrupt(void);

/// Sets the flag as SIGINT would (tests, and the REPL's own Ctrl-C handling).
void skellab_raise_interrupt(void);

#endif
