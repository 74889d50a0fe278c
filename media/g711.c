/* G.711 µ-law/A-law by table lookup. */
#include "media/media_int.h"

uint8_t media_g711_ulaw_enc_tab[16384];
uint8_t media_g711_alaw_enc_tab[8192];
int16_t media_g711_ulaw_dec_tab[256];
int16_t media_g711_alaw_dec_tab[256];
uint8_t media_g711_ulaw_to_alaw_tab[256];
uint8_t media_g711_alaw_to_ulaw_tab[256];

/* Reference segment encoders (ITU-T G.711; the classic Sun implementation), used only
 * to fill the tables. Input is 14-bit (µ-law) or 13-bit (A-law) two's complement. */
static uint8_t ulaw_from_14(int v)
{
	static const int seg_end[8] = {0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff};
	int mask = 0xff;
	if (v < 0) {
		v = -v;
		mask = 0x7f;
	}
	if (v > 8159)
		v = 8159;
	v += 33; /* bias 0x84 >> 2 */
	int seg = 0;
	while (seg < 8 && v > seg_end[seg])
		seg++;
	if (seg >= 8)
		return (uint8_t)(0x7f ^ mask);
	int u = (seg << 4) | ((v >> (seg + 1)) & 0x0f);
	return (uint8_t)(u ^ mask);
}

static uint8_t alaw_from_13(int v)
{
	static const int seg_end[8] = {0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff};
	int mask = 0xd5;
	if (v < 0) {
		mask = 0x55;
		v = -v - 1;
	}
	int seg = 0;
	while (seg < 8 && v > seg_end[seg])
		seg++;
	if (seg >= 8)
		return (uint8_t)(0x7f ^ mask);
	int a = seg << 4;
	a |= seg < 2 ? (v >> 1) & 0x0f : (v >> seg) & 0x0f;
	return (uint8_t)(a ^ mask);
}

static int16_t ulaw_to_linear(uint8_t u)
{
	u = (uint8_t)~u;
	int t = ((u & 0x0f) << 3) + 0x84;
	t <<= (u & 0x70) >> 4;
	return (int16_t)((u & 0x80) ? 0x84 - t : t - 0x84);
}

static int16_t alaw_to_linear(uint8_t a)
{
	a ^= 0x55;
	int t = (a & 0x0f) << 4;
	int seg = (a & 0x70) >> 4;
	if (seg == 0)
		t += 8;
	else if (seg == 1)
		t += 0x108;
	else
		t = (t + 0x108) << (seg - 1);
	return (int16_t)((a & 0x80) ? t : -t);
}

/* Runs before main: the tables are read-only from then on, so every thread may use them. */
__attribute__((constructor)) static void g711_tables_init(void)
{
	for (unsigned i = 0; i < 16384; i++) {
		int v = i < 8192 ? (int)i : (int)i - 16384;
		media_g711_ulaw_enc_tab[i] = ulaw_from_14(v);
	}
	for (unsigned i = 0; i < 8192; i++) {
		int v = i < 4096 ? (int)i : (int)i - 8192;
		media_g711_alaw_enc_tab[i] = alaw_from_13(v);
	}
	for (unsigned i = 0; i < 256; i++) {
		media_g711_ulaw_dec_tab[i] = ulaw_to_linear((uint8_t)i);
		media_g711_alaw_dec_tab[i] = alaw_to_linear((uint8_t)i);
	}
	for (unsigned i = 0; i < 256; i++) {
		media_g711_ulaw_to_alaw_tab[i] = media_g711_alaw_encode(media_g711_ulaw_dec_tab[i]);
		media_g711_alaw_to_ulaw_tab[i] = media_g711_ulaw_encode(media_g711_alaw_dec_tab[i]);
	}
}

void media_g711_encode(enum media_codec c, const int16_t *pcm, uint8_t *out, size_t n)
{
	if (c == MEDIA_CODEC_PCMA) {
		for (size_t i = 0; i < n; i++)
			out[i] = media_g711_alaw_encode(pcm[i]);
	} else {
		for (size_t i = 0; i < n; i++)
			out[i] = media_g711_ulaw_encode(pcm[i]);
	}
}

void media_g711_decode(enum media_codec c, const uint8_t *in, int16_t *pcm, size_t n)
{
	const int16_t *tab =
	    c == MEDIA_CODEC_PCMA ? media_g711_alaw_dec_tab : media_g711_ulaw_dec_tab;
	for (size_t i = 0; i < n; i++)
		pcm[i] = tab[in[i]];
}

void media_g711_transcode(enum media_codec from, enum media_codec to, uint8_t *buf, size_t n)
{
	const uint8_t *tab;
	if (from == to || from == MEDIA_CODEC_NONE || to == MEDIA_CODEC_NONE)
		return;
	tab = from == MEDIA_CODEC_PCMU ? media_g711_ulaw_to_alaw_tab : media_g711_alaw_to_ulaw_tab;
	for (size_t i = 0; i < n; i++)
		buf[i] = tab[buf[i]];
}
