/*
 * gpu_counter.cu - a CUDA workload for the real-GPU check (scripts/gpu-device-check.sh).
 *
 * It keeps two kinds of state in device memory that a checkpoint must carry:
 *   - a buffer of --mib MiB filled on the GPU from a seeded hash of each word's index;
 *   - a counter in device memory that a kernel bumps every tick.
 * Every tick it prints "tick T counter C" (C read back from the device). On SIGUSR1 it
 * verifies the whole buffer on the GPU and prints "verify ok words=N checksum=X" or
 * "verify FAIL mismatches=M ...". Plain cudaMalloc only: no managed/UVM memory, which the
 * driver's checkpoint does not support.
 *
 * Build: nvcc -O2 -arch=sm_90 -gencode ... gpu_counter.cu -o gpu_counter
 * (cudart is linked statically by default; only the driver's libcuda.so.1 is needed).
 */
#include <cuda_runtime.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__device__ unsigned long long counter;
__device__ unsigned long long mismatches;
__device__ unsigned long long checksum;

__host__ __device__ static inline uint32_t word_hash(uint64_t seed, uint64_t i)
{
	uint64_t x = seed ^ (i * 0x9E3779B97F4A7C15ull);

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return (uint32_t)x;
}

__global__ void fill(uint32_t *buf, size_t n, uint64_t seed)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		buf[i] = word_hash(seed, i);
}

__global__ void verify(const uint32_t *buf, size_t n, uint64_t seed)
{
	unsigned long long bad = 0, sum = 0;

	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		bad += buf[i] != word_hash(seed, i);
		sum += buf[i];
	}
	atomicAdd(&mismatches, bad);
	atomicAdd(&checksum, sum);
}

__global__ void bump(void)
{
	counter++;
}

static volatile sig_atomic_t want_verify;

static void on_usr1(int sig)
{
	(void)sig;
	want_verify = 1;
}

#define CK(call)                                                                            \
	do {                                                                                \
		cudaError_t e_ = (call);                                                    \
		if (e_ != cudaSuccess) {                                                    \
			printf("cuda error %s at %s:%d: %s\n", cudaGetErrorName(e_), __FILE__, \
			       __LINE__, cudaGetErrorString(e_));                           \
			fflush(stdout);                                                     \
			exit(2);                                                            \
		}                                                                           \
	} while (0)

static void run_verify(const uint32_t *buf, size_t n, uint64_t seed)
{
	unsigned long long zero = 0, bad = 0, sum = 0;
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	CK(cudaMemcpyToSymbol(mismatches, &zero, sizeof(zero)));
	CK(cudaMemcpyToSymbol(checksum, &zero, sizeof(zero)));
	verify<<<1024, 256>>>(buf, n, seed);
	CK(cudaGetLastError());
	CK(cudaMemcpyFromSymbol(&bad, mismatches, sizeof(bad)));
	CK(cudaMemcpyFromSymbol(&sum, checksum, sizeof(sum)));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("verify %s words=%zu mismatches=%llu checksum=%llx ms=%ld\n", bad ? "FAIL" : "ok",
	       n, bad, sum, (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	size_t mib = 1024;
	uint64_t seed = 12345;
	int tick_ms = 100;
	uint32_t *buf;
	size_t n;
	struct sigaction sa;
	unsigned long long c = 0;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--mib"))
			mib = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--seed"))
			seed = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--tick-ms"))
			tick_ms = atoi(argv[i + 1]);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);

	n = mib * (1024 * 1024 / sizeof(uint32_t));
	CK(cudaMalloc((void **)&buf, n * sizeof(uint32_t)));
	fill<<<1024, 256>>>(buf, n, seed);
	CK(cudaGetLastError());
	CK(cudaMemcpyToSymbol(counter, &c, sizeof(c)));
	CK(cudaDeviceSynchronize());
	printf("ready pid=%d mib=%zu seed=%llu\n", (int)getpid(), mib, (unsigned long long)seed);
	fflush(stdout);
	for (unsigned long long t = 1;; t++) {
		bump<<<1, 1>>>();
		CK(cudaGetLastError());
		CK(cudaMemcpyFromSymbol(&c, counter, sizeof(c)));
		printf("tick %llu counter %llu\n", t, c);
		fflush(stdout);
		if (want_verify) {
			want_verify = 0;
			run_verify(buf, n, seed);
		}
		usleep((useconds_t)tick_ms * 1000);
	}
}
