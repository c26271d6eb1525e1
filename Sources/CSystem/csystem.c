// System calls that Swift cannot reach without _GNU_SOURCE.
#define _GNU_SOURCE
#include "csystem.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
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

static volatile sig_atomic_t interrupt_flag = 0;

static void on_interrupt(int signal_number) {
  (void)signal_number;
  interrupt_flag = 1;
}

int skellab_install_interrupt_handler(void) {
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: a blocking read returns EINTR so the REPL sees it
  return sigaction(SIGINT, &action, NULL);
}

int skellab_interrupt_pending(void) { return interrupt_flag != 0; }

void skellab_clear_interrupt(void) { interrupt_flag = 0; }

void skellab_raise_interrupt(void) { interrupt_flag = 1; }
