// System calls that Swift cannot reach without _GNU_SOURCE.
#define _GNU_SOURCE
#define _XOPEN_SOURCE 600
#include "csystem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

int skellab_pin_current_thread(int cpu) {
#if defined(__linux__)
  if (cpu < 0 || cpu >= CPU_SETSIZE) return EINVAL;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
#else
  (void)cpu;
  return ENOSYS;
#endif
}

int skellab_current_cpu(void) {
#if defined(__linux__)
  return sched_getcpu();
#else
  return -1;
#endif
}

// Atomics, not just sig_atomic_t: the kernel may run the handler on any thread (an OpenBLAS
// worker, say) while the interpreter's thread reads the flag. Lock-free atomics are
// async-signal-safe.
static atomic_int interrupt_flag = 0;
static atomic_int interrupt_signal = 0;
static int interrupt_pipe[2] = {-1, -1};

static void on_interrupt(int signal_number) {
  atomic_store(&interrupt_flag, 1);
  // A termination request outranks Ctrl-C: once SIGTERM, SIGHUP or SIGUSR1 came, it stays the
  // cause.
  int previous = atomic_load(&interrupt_signal);
  if (previous != SIGTERM && previous != SIGHUP && previous != SIGUSR1)
    atomic_store(&interrupt_signal, signal_number);
  if (interrupt_pipe[1] >= 0) {
    int saved = errno;
    ssize_t written = write(interrupt_pipe[1], "!", 1);  // async-signal-safe
    (void)written;
    errno = saved;
  }
}

int skellab_install_interrupt_handler(void) {
  if (interrupt_pipe[0] < 0 && pipe(interrupt_pipe) == 0) {
    for (int i = 0; i < 2; i++) {
      fcntl(interrupt_pipe[i], F_SETFL, fcntl(interrupt_pipe[i], F_GETFL) | O_NONBLOCK);
      fcntl(interrupt_pipe[i], F_SETFD, FD_CLOEXEC);
    }
  }
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: a blocking read returns EINTR so the REPL sees it
  // SIGTERM and SIGHUP stop the running statement as Ctrl-C does (so a fit saves its
  // checkpoint), and then end the process with 128 + the signal's number. SIGUSR1 does the same:
  // mpirun passes it on to every rank without ending the job itself (its SIGTERM kills the
  // ranks a second later), and batch schedulers send it ahead of a time limit.
  int status = sigaction(SIGINT, &action, NULL);
  if (status == 0) status = sigaction(SIGTERM, &action, NULL);
  if (status == 0) status = sigaction(SIGHUP, &action, NULL);
  if (status == 0) status = sigaction(SIGUSR1, &action, NULL);
  return status;
}

int skellab_interrupt_signal(void) { return atomic_load(&interrupt_signal); }

int skellab_interrupt_pending(void) { return atomic_load(&interrupt_flag) != 0; }

void skellab_clear_interrupt(void) { atomic_store(&interrupt_flag, 0); }

void skellab_raise_interrupt(void) { atomic_store(&interrupt_flag, 1); }

int skellab_interrupt_fd(void) { return interrupt_pipe[0]; }

void skellab_drain_interrupt_fd(void) {
  char buffer[64];
  if (interrupt_pipe[0] < 0) return;
  while (read(interrupt_pipe[0], buffer, sizeof(buffer)) > 0) {
  }
}

void skellab_write_stdout(const char *text) {
  fputs(text, stdout);
  fflush(stdout);
}

void skellab_write_stderr(const char *text) {
  fflush(stdout);
  fputs(text, stderr);
  fflush(stderr);
}

int skellab_open_pty(char *name, unsigned long size) {
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0) return -1;
  if (grantpt(master) != 0 || unlockpt(master) != 0) {
    close(master);
    return -1;
  }
  const char *slave = ptsname(master);
  if (slave == NULL || strlen(slave) + 1 > size) {
    close(master);
    return -1;
  }
  strcpy(name, slave);
  return master;
}
