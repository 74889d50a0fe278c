/* libFuzzer harness for the configuration loader: any file must load or fail cleanly, without
 * leaks. */
#include "conf/conf.h"
#include "core/mem.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[] = "/tmp/vacs-fuzz-conf-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		unlink(path);
		return 0;
	}
	close(fd);
	long live = mem_live_blocks();
	char err[4096];
	struct conf *c = NULL;
	if (conf_load(path, &c, err, sizeof(err)) == 0)
		conf_unref(c);
	unlink(path);
	if (mem_live_blocks() != live)
		__builtin_trap();
	return 0;
}
