// System calls that Swift cannot reach without _GNU_SOURCE.
#define _GNU_SOURCE
#include "csystem.h"

#include <errno.h>
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
