#ifndef SKELLAB_CSYSTEM_H
#define SKELLAB_CSYSTEM_H

/// Pins the calling thread to one CPU. Returns 0 on success, an errno value otherwise
/// (always ENOSYS where thread affinity does not exist).
int skellab_pin_current_thread(int cpu);

/// The CPU the calling thread is running on, or -1 where that cannot be known.
int skellab_current_cpu(void);

/// Asks the CPU to bring the cache line at `address` into its caches ahead of a read (GCC's
/// and Clang's `__builtin_prefetch`, which Swift cannot call). A hint: nothing faults.
static inline void skellab_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

/// Opens a pseudo-terminal pair: returns the master descriptor and writes the slave's path
/// into `name` (`size` bytes). Returns -1 on failure. (The REPL tests drive skellab with it.)
int skellab_open_pty(char *name, unsigned long size);

/// Writes text to C's stdout stream and flushes it (the stream readline draws prompts on).
void skellab_write_stdout(const char *text);

/// Flushes stdout, then writes text to stderr and flushes it.
void skellab_write_stderr(const char *text);

/// Installs a SIGINT handler that only sets a flag (async-signal-safe). Returns 0 on success.
int skellab_install_interrupt_handler(void);

/// A file descriptor that becomes readable when SIGINT arrives (the self-pipe trick: the
/// handler writes a byte to it), so a thread waiting for input wakes up whichever thread the
/// signal was delivered to. -1 before the handler is installed.
int skellab_interrupt_fd(void);

/// Reads away the bytes the handler wrote to the interrupt descriptor.
void skellab_drain_interrupt_fd(void);

/// Whether SIGINT arrived since the last clear.
int skellab_interrupt_pending(void);

/// The signal that last interrupted (SIGINT, or SIGTERM/SIGHUP, which stay once seen); 0 if none.
int skellab_interrupt_signal(void);

/// Forgets a pending SIGINT.
void skellab_clear_interrupt(void);

/// Sets the flag as SIGINT would (tests, and the REPL's own Ctrl-C handling).
void skellab_raise_interrupt(void);

#endif
