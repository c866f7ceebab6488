/*
 * Runs an ioctl script on one /dev/iommu fd (test/server/errnos.test.ts runs the same script on
 * the library). Each stdin line: REQUEST MODE ARG [OFFSET:HEX ...]
 *   REQUEST  the ioctl number (hex)
 *   MODE     p: arg is the arena (a 64 KiB page-aligned buffer at a fixed address), n: NULL,
 *            i: the integer ARG (hex), a: arena + ARG
 *   OFFSET:HEX  bytes to put at arena + OFFSET (hex) before the call; the arena is zeroed first
 * Prints per line: RET ERRNO HEX(arena[0, 256)) HEX(arena[4096, 4096 + 256)).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define ARENA ((void *)0x200000000ul)
#define ARENA_SIZE 65536

static void hex(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", p[i]);
}

int main(void)
{
	unsigned char *a = mmap(ARENA, ARENA_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (a != ARENA) {
		perror("mmap arena");
		return 2;
	}
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0) {
		perror("open /dev/iommu");
		return 2;
	}
	char line[65536];
	while (fgets(line, sizeof(line), stdin)) {
		char *save = NULL;
		char *req = strtok_r(line, " \n", &save), *mode = strtok_r(NULL, " \n", &save), *arg = strtok_r(NULL, " \n", &save);
		if (!req || !mode || !arg)
			continue;
		memset(a, 0, ARENA_SIZE);
		for (char *seg; (seg = strtok_r(NULL, " \n", &save));) {
			char *colon = strchr(seg, ':');
			if (!colon)
				continue;
			size_t off = strtoul(seg, NULL, 16);
			for (char *h = colon + 1; h[0] && h[1] && off < ARENA_SIZE; h += 2) {
				char b[3] = { h[0], h[1], 0 };
				a[off++] = (unsigned char)strtoul(b, NULL, 16);
			}
		}
		unsigned long r = strtoul(req, NULL, 16), v = strtoul(arg, NULL, 16);
		unsigned long p = mode[0] == 'p' ? (unsigned long)a : mode[0] == 'n' ? 0 : mode[0] == 'a' ? (unsigned long)a + v : v;
		errno = 0;
		int ret = ioctl(fd, r, p);
		printf("%d %d ", ret, ret < 0 ? errno : 0);
		hex(a, 256);
		printf(" ");
		hex(a + 4096, 256);
		printf("\n");
		fflush(stdout);
	}
	return 0;
}
