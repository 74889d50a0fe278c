/* libFuzzer harness for VAPI webhook bodies: any input must parse or fail with a reason,
 * without leaks, and a parsed message must hold what vapi.h promises.
 *   clang -std=c11 -D_GNU_SOURCE -g -fsanitize=fuzzer,address,undefined -I. \
 *         tests/fuzz/fuzz_hook.c build/libvacs.a $(pkg-config --libs ...) -o fuzz_hook */
#include "core/mem.h"
#include "vapi/vapi.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly the input, so a sanitizer sees any read past the end. */
	char *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	long live = mem_live_blocks();
	struct vapi_hook_msg m;
	const char *why = NULL;
	int rc = vapi_hook_parse(buf, size, &m, &why);
	if (rc == 0) {
		if (memchr(m.type_name, '\0', sizeof(m.type_name)) == NULL)
			__builtin_trap();
		if (m.n_tools && !m.tools)
			__builtin_trap();
		for (unsigned i = 0; i < m.n_tools; i++)
			if (!m.tools[i].id || !m.tools[i].name || !m.tools[i].arguments ||
			    m.tools[i].arguments[0] != '{')
				__builtin_trap();
		/* The answer to whatever came in is valid to build. */
		struct vapi_hook_result r[4];
		unsigned n = m.n_tools < 4 ? m.n_tools : 4;
		for (unsigned i = 0; i < n; i++)
			r[i] = (struct vapi_hook_result){.id = m.tools[i].id,
			                                 .name = m.tools[i].name,
			                                 .result = m.tools[i].arguments};
		char *s = vapi_hook_results_json(r, n, NULL);
		if (!s)
			__builtin_trap();
		mem_free(s);
	} else if (rc != -EINVAL || !why) {
		__builtin_trap();
	}
	vapi_hook_msg_free(&m);
	if (mem_live_blocks() != live)
		__builtin_trap();
	free(buf);
	return 0;
}
