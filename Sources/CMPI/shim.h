// Open MPI's C interface. MPI_COMM_WORLD, MPI_FLOAT, MPI_BYTE, MPI_INT, MPI_SUM and MPI_MAX
// are macros over the addresses of globals, which Swift does not import: these functions return
// them.
#include <mpi.h>

static inline MPI_Comm skellab_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype skellab_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype skellab_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype skellab_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype skellab_mpi_int(void) { return MPI_INT; }
static inline MPI_Op skellab_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op skellab_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Errhandler skellab_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int skellab_mpi_success(void) { return MPI_SUCCESS; }
static inline int skellab_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline void *skellab_mpi_in_place(void) { return MPI_IN_PLACE; }
