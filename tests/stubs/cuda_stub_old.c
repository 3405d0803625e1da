/*
 * cuda_stub_old.c - the stand-in driver library as a driver from before the
 * process-checkpoint API (CUDA 12.4, r550): it loads and initialises, but
 * dlsym() of the cuCheckpointProcess* entry points fails, as it does there.
 */
#define STUB_OLD_DRIVER 1
#include "cuda_stub.c"
