/* libFuzzer harness for what wa/ reads from the network: the webhook envelope (wa_parse),
 * the signature header, an LLM answer, and the rules engine over the text of a message.
 *   clang -std=c11 -D_GNU_SOURCE -g -fsanitize=fuzzer,address,undefined -I. \
 *         tests/fuzz/fuzz_wa.c build/libvacs.a $(pkg-config --libs ...) -o fuzz_wa */
#include "wa/wa_int.h"

#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct wa_rules *rules;
static int rules_tried;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	/* the envelope: either parsed, or refused with a reason */
	json_t *root = json_loadb(buf, size, 0, NULL);
	if (root) {
		json_t *out = NULL;
		char why[128];
		int rc = wa_parse(root, &out, why, sizeof(why));
		if ((rc == 0) != (out != NULL) || (rc != 0 && rc != -EINVAL && rc != -ENOMEM))
			abort();
		json_decref(out);
		json_decref(root);
	}
	/* the header as the signature, the body as itself */
	int rc = wa_sig_check("secret", buf, size, buf);
	if (rc != -ENOENT && rc != -EACCES && rc != 0)
		abort();
	struct wa_extract x;
	rc = wa_llm_parse(buf, &x);
	if (rc != 0 && rc != -EINVAL)
		abort();
	if (!rules_tried) {
		char why[256];
		rules_tried = 1;
		if (access("conf/discovery-rules.json", R_OK) == 0)
			wa_rules_load("conf/discovery-rules.json", &rules, why, sizeof(why));
	}
	if (rules) {
		static const char *const states[] = {"new",     "destination", "dates",    "party",
		                                     "consent", "phone",       "qualified"};
		wa_rules_extract(rules, buf, size > 4 ? buf + size - 4 : NULL, states[size % 7],
		                 &x);
		if (strlen(x.destination) >= sizeof(x.destination) || x.party < 0 || x.party > 99)
			abort();
	}
	free(buf);
	return 0;
}
