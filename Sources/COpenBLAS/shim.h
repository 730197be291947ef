// OpenBLAS for Core: cblas_sgemm for the layers, and the thread-count control.
// Debian installs cblas.h under the multiarch include directory (an alternatives link to
// openblas-pthread/cblas.h), which the compiler searches by default.
#include <cblas.h>

// Declared by OpenBLAS's cblas.h but not by the reference one that the alternatives system may
// select instead; the library exports it either way.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
