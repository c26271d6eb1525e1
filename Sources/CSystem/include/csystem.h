#ifndef SKELLAB_CSYSTEM_H
#define SKELLAB_CSYSTEM_H

/// Pins the calling thread to one CPU. Returns 0 on success, an errno value otherwise
/// (always ENOSYS where thread affinity does not exist).
int skellab_pin_current_thread(int cpu);

/// The CPU the calling thread is running on, or -1 where that cannot be known.
int skellab_current_cpu(void);

#endif
