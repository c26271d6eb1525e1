// OpenBLAS's C interface: cblas_sgemm and friends, plus openblas_set_num_threads.
#include <cblas.h>
