/*
 * walk_c_ns: the C counterpart of walk_4level_ns (src/hw/bench.ts benchWalk4Level), for
 * walk_c_ratio = walk_4level_ns / walk_c_ns. Usage: walk. Prints
 *   ns_per_walk X checksum Y tables Z
 * where checksum is the sum of the output page numbers of one pass over the samples and tables
 * the number of page-table frames (bench/run.ts checks both against the model's).
 * `walk --serve` (what bench/run.ts uses) builds the table, warms up, prints
 *   ready checksum Y tables Z
 * then times one round for each line it reads on stdin ("round CPU": on that CPU) and prints its
 * ns per walk, so that the model's rounds and the C rounds can alternate.
 *
 * The same miss walk over the same table:
 *  - Format: VT-d second-stage paging, 4 levels (AW 48), 64-bit entries: R bit 0, W bit 1, X bit 2,
 *    PS bit 7 (a leaf at levels 2 and 3; a PS entry at level 4 is a reserved-bit fault), address
 *    bits 51:12; an entry is present iff R or W. R/W/X of every table entry on the path limit the
 *    access, as the leaf's do. No accessed/dirty updates (SSADE off: the model's default).
 *  - Table: 512 chunks of 2 MiB at distinct random 2 MiB-aligned IOVAs below 8 TiB, each mapped
 *    with 512 4 KiB leaves onto the same 512 data pages (not 2 MiB aligned, so no large leaves);
 *    tables are allocated in the model's order from the model's frame counter (root at pfn
 *    0x1000, the data run after it, then each table as the first map that needs it).
 *  - Accesses: the model's xorshift32 (seed 0x5eed) picks the chunks, then 65536 samples (chunk,
 *    page); each round translates all samples 8 times for a read, 2 warm-up rounds, then the
 *    median of 9 rounds (or, with --serve, a round per request).
 *  - Memory: page-table pages live in one block of 4 KiB slots (the model's FrameArena: one
 *    shared memory for every table frame), slot 0 a frame of zeros that is never a table, the
 *    others handed out in allocation order; a frame's slot comes from a flat array of 32-bit
 *    offsets indexed by pfn (FrameArena.slot), 0 for a frame without one, which then
 *    reads as not present (as the model's lean path, which leaves such frames to its slow path).
 *    The root's frame is looked up once (the model's engine keeps its root's slot).
 *    Every walk checks the input size, each entry's present bit, the leaf level and the
 *    permissions, and returns the output page number or -1, as the model's translate does.
 *  - No dead code: every result is added to a sum that is printed, and the access type is read
 *    from a volatile so the compiler cannot specialise the permission check away.
 *
 * Compiled by bench/run.ts with `cc -O2`.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FIRST_PFN 0x1000u
#define CHUNK 512u
#define CHUNKS 512u
#define SAMPLES (1u << 16)
#define LEVELS 4
#define ADDR_MASK 0x000ffffffffff000ull
#define PRESENT 3ull /* R | W */
#define PS (1ull << 7)
#define ACC_READ 1

static uint64_t *arena;    /* the slots: slot s is arena[s * 512 .. s * 512 + 511]; slot 0 stays zero */
static uint32_t arena_slots; /* slots allocated, and slots in use (slot 0 included) */
static uint32_t used_slots = 1;
static uint32_t *slot_of;  /* slot_of[pfn]: the frame's first entry in arena, 0 for none */
static uint32_t nslot_of;  /* its size */
static uint32_t next_pfn = FIRST_PFN;
static uint32_t table_frames;

static uint32_t alloc_run(uint32_t count)
{
	uint32_t first = next_pfn;
	next_pfn += count;
	return first;
}

static uint32_t alloc_table(void)
{
	uint32_t pfn = alloc_run(1);
	uint32_t i = pfn;
	if (used_slots >= arena_slots) {
		uint32_t n = arena_slots ? 2 * arena_slots : 16;
		arena = realloc(arena, (size_t)n * 4096);
		if (!arena)
			abort();
		memset(arena + (size_t)arena_slots * 512, 0, (size_t)(n - arena_slots) * 4096);
		arena_slots = n;
	}
	if (i >= nslot_of) {
		uint32_t n = nslot_of ? nslot_of : 2 * FIRST_PFN;
		while (n <= i)
			n *= 2;
		slot_of = realloc(slot_of, n * sizeof(*slot_of));
		if (!slot_of)
			abort();
		memset(slot_of + nslot_of, 0, (n - nslot_of) * sizeof(*slot_of));
		nslot_of = n;
	}
	slot_of[i] = used_slots++ * 512;
	table_frames++;
	return pfn;
}

/* The frame's entries in the arena (slot 0, all zeros, for a frame without a slot). */
static inline uint64_t *frame(uint64_t pfn)
{
	return arena + (pfn < nslot_of ? slot_of[pfn] : 0);
}

static uint32_t root;
static const uint64_t *root_frame; /* frame(root), once the tables are built (the arena no longer moves) */

/* Map [vpn, vpn+n) to [ppn, ppn+n) with 4 KiB leaves, R and W. */
static void map4k(uint64_t vpn, uint64_t ppn, uint32_t n)
{
	for (uint32_t k = 0; k < n; k++) {
		uint64_t v = vpn + k;
		uint64_t tbl = root;
		for (int l = 0; l < LEVELS - 1; l++) {
			uint64_t i = (v >> (9 * (LEVELS - 1 - l))) & 511;
			if (!(frame(tbl)[i] & PRESENT)) {
				uint64_t t = alloc_table(); /* may move the arena */
				frame(tbl)[i] = (t << 12) | PRESENT;
			}
			tbl = (frame(tbl)[i] & ADDR_MASK) >> 12;
		}
		frame(tbl)[v & 511] = ((ppn + k) << 12) | PRESENT;
	}
}

/* The IOTLB-miss walk: the output page number, or -1 on a fault. */
static int64_t translate(uint64_t vpn, unsigned access)
{
	if (vpn >= (1ull << 36))
		return -1; /* beyond the 48-bit input */
	const uint64_t *f = root_frame;
	uint64_t bad = 0; /* R/W/X bits clear in some table entry on the path */
	uint64_t e;
	int l;
	for (l = 0;; l++) {
		e = f[(vpn >> (9 * (LEVELS - 1 - l))) & 511];
		if (!(e & PRESENT))
			return -1;
		if (l == LEVELS - 1 || (e & PS))
			break;
		bad |= ~e & 7;
		f = frame((e & ADDR_MASK) >> 12);
	}
	if (l == 0)
		return -1; /* PS in a level-4 entry: reserved */
	bad |= ~e & 7;
	if (bad & access)
		return -1;
	unsigned shift = 9 * (LEVELS - 1 - l);
	uint64_t pages = 1ull << shift;
	return (int64_t)((((e & ADDR_MASK) >> 12) & ~(pages - 1)) + (vpn & (pages - 1)));
}

static uint32_t xs = 0x5eed;

/* xorshift32, as src/hw/bench.ts rng(): the next value as an unsigned 32-bit integer. */
static uint32_t next(void)
{
	xs ^= xs << 13;
	xs ^= xs >> 17;
	xs ^= xs << 5;
	return xs;
}

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static volatile unsigned access_v = ACC_READ;

static double round_ns(const uint64_t *samples, int64_t *sink)
{
	unsigned access = access_v;
	double t0 = now_ns();
	int64_t s = 0;
	for (int k = 0; k < 8; k++)
		for (uint32_t i = 0; i < SAMPLES; i++)
			s += translate(samples[i], access);
	double t = now_ns() - t0;
	*sink += s;
	return t / (8.0 * SAMPLES);
}

int main(int argc, char **argv)
{
	int serve = argc > 1 && strcmp(argv[1], "--serve") == 0;
	root = alloc_table();
	uint32_t data = alloc_run(CHUNK + 1) + 1;
	/* Chunks: floor(r() * 2^22) with r() = x / 2^32 is x >> 10. */
	uint64_t bases[CHUNKS];
	uint8_t *seen = calloc(1u << 22, 1);
	if (!seen)
		abort();
	for (uint32_t n = 0; n < CHUNKS;) {
		uint32_t c = next() >> 10;
		if (seen[c])
			continue;
		seen[c] = 1;
		bases[n++] = (uint64_t)c * CHUNK;
	}
	free(seen);
	uint64_t *samples = malloc(sizeof(uint64_t) * SAMPLES);
	if (!samples)
		abort();
	for (uint32_t i = 0; i < SAMPLES; i++) {
		uint32_t c = (uint32_t)(((uint64_t)next() * CHUNKS) >> 32);
		uint32_t p = (uint32_t)(((uint64_t)next() * CHUNK) >> 32);
		samples[i] = bases[c] + p;
	}
	for (uint32_t k = 0; k < CHUNKS; k++)
		map4k(bases[k], data, CHUNK);
	root_frame = frame(root);

	int64_t checksum = 0;
	for (uint32_t i = 0; i < SAMPLES; i++) {
		int64_t p = translate(samples[i], ACC_READ);
		if (p < 0) {
			fprintf(stderr, "walk: unmapped sample %llu\n", (unsigned long long)samples[i]);
			return 1;
		}
		checksum += p;
	}
	int64_t sink = 0;
	double per[9];
	for (int r = 0; r < 2; r++)
		round_ns(samples, &sink);
	if (serve) {
		/* One round per line read from stdin, its ns per walk on a line of its own. "round CPU"
		 * runs it on that CPU (the one the model's rounds just ran on: this VM's two vCPUs are
		 * not always equally fast). */
		char line[64];
		printf("ready checksum %lld tables %u\n", (long long)checksum, table_frames);
		fflush(stdout);
		long rounds = 0;
		while (fgets(line, sizeof line, stdin)) {
			int cpu;
			if (sscanf(line, "round %d", &cpu) == 1 && cpu >= 0 && cpu < CPU_SETSIZE) {
				cpu_set_t set;
				CPU_ZERO(&set);
				CPU_SET(cpu, &set);
				sched_setaffinity(0, sizeof set, &set); /* best effort */
			}
			printf("%.3f\n", round_ns(samples, &sink));
			fflush(stdout);
			rounds++;
		}
		if (sink != checksum * 8 * (2 + rounds)) {
			fprintf(stderr, "walk: rounds disagree with the first pass\n");
			return 1;
		}
		return 0;
	}
	for (int r = 0; r < 9; r++)
		per[r] = round_ns(samples, &sink);
	qsort(per, 9, sizeof(double), cmp);
	if (sink != checksum * 8 * 11) {
		fprintf(stderr, "walk: rounds disagree with the first pass\n");
		return 1;
	}
	printf("ns_per_walk %.3f checksum %lld tables %u\n", per[4], (long long)checksum, table_frames);
	return 0;
}
