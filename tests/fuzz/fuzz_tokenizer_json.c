/* fuzz_tokenizer_json.c -- libFuzzer harness for building a tokenizer from tokenizer.json
 * (ttq_tokenizer_from_json in shard/tokenizer.c: JSON shape checks, vocabulary / added
 * tokens / merges validation, pre-tokenizer regex compilation).
 *
 * Input: the bytes of a tokenizer.json file, handed over through a memfd (the function takes a
 * path). A tokenizer that builds is then exercised, so the tables and the compiled regex it
 * was built from are used, not just parsed: a fixed sample text and the input's own first
 * bytes are tokenized with and without special tokens.
 *
 * Oracle (besides ASan/UBSan/LSan):
 *   - failure returns a negative TTQ_E* code with a matching diag and *out == NULL;
 *   - success: 0 < n_vocab <= input size; every id's ttq_token_bytes is consistent (same
 *     length with and without a buffer), out-of-range ids are refused; tokenizing succeeds
 *     (or, only for the regex, fails with TTQ_ERANGE / TTQ_EFORMAT and a diag) with every id
 *     in range;
 *   - when the vocabulary is byte-complete (each of the 256 byte characters is a token that
 *     stands for that byte, so tokenize cannot drop or replace a byte), decoding gives back
 *     the text exactly. */
#include "fuzz_util.h"
#include "tokenizer.h"

/* UTF-8 of the GPT-2 byte-level character of byte b (the bytes_to_unicode table). */
static int byte_char(uint8_t b, char out[3]) {
  uint32_t cp = b;
  if (b <= 0x20) cp = 0x100u + b;
  else if (b >= 0x7f && b <= 0xa0) cp = 0x121u + (b - 0x7fu);
  else if (b == 0xad) cp = 0x143u;
  if (cp < 0x80) {
    out[0] = (char)cp;
    out[1] = 0;
    return 1;
  }
  out[0] = (char)(0xc0 | (cp >> 6));
  out[1] = (char)(0x80 | (cp & 0x3f));
  out[2] = 0;
  return 2;
}

static bool byte_complete(const ttq_tokenizer *t) {
  for (int b = 0; b < 256; b++) {
    char c[3], raw[4];
    byte_char((uint8_t)b, c);
    int id = ttq_tokenizer_find(t, c);
    if (id < 0 || ttq_token_bytes(t, id, raw, sizeof raw) != 1 || (uint8_t)raw[0] != b) return false;
  }
  return true;
}

static void encode_check(const ttq_tokenizer *t, const uint8_t *text, size_t len, bool lossless) {
  int nv = ttq_tokenizer_n_vocab(t);
  for (int special = 0; special < 2; special++) {
    int32_t *ids = NULL;
    size_t n = 0;
    ttq_diag d = {0};
    int rc = ttq_tokenize(t, (const char *)text, len, special, &ids, &n, &d);
    if (rc) { /* only the regex may refuse text: a failed match (e.g. its match limit) is
               * TTQ_ERANGE, a reversed match TTQ_EFORMAT; never a crash */
      FUZZ_CHECKF(rc == TTQ_ERANGE || rc == TTQ_EFORMAT, "tokenize: %d %s", rc, d.msg);
      FUZZ_CHECK(d.code == rc && d.msg[0]);
      FUZZ_CHECK(ids == NULL && n == 0);
      continue;
    }
    FUZZ_CHECK(ids);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
      FUZZ_CHECK(ids[i] >= 0 && ids[i] < nv);
      int l = ttq_token_bytes(t, ids[i], NULL, 0);
      FUZZ_CHECK(l >= 0);
      total += (size_t)l;
    }
    if (lossless) {
      FUZZ_CHECKF(total == len, "decode(encode(x)) has %zu bytes for %zu (parse_special %d)",
                  total, len, special);
      char *buf = malloc(total + 1);
      FUZZ_CHECK(buf);
      size_t o = 0;
      for (size_t i = 0; i < n; i++)
        o += (size_t)ttq_token_bytes(t, ids[i], buf + o, total - o);
      FUZZ_CHECKF(o == len && (len == 0 || memcmp(buf, text, len) == 0),
                  "decode(encode(x)) != x (parse_special %d)", special);
      free(buf);
    }
    free(ids);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static fuzz_file in;
  const char *path = fuzz_file_set(&in, "tokjson-in", data, size);
  ttq_tokenizer *t = (ttq_tokenizer *)1;
  ttq_diag d = {0};
  int rc = ttq_tokenizer_from_json(path, &t, &d);
  if (rc) {
    FUZZ_CHECK(rc < 0 && rc >= TTQ_ERANGE);
    FUZZ_CHECK(d.code == rc);
    FUZZ_CHECK(memchr(d.msg, 0, sizeof d.msg) != NULL && d.msg[0]);
    FUZZ_CHECK(t == NULL);
    return 0;
  }
  FUZZ_CHECK(t);
  int nv = ttq_tokenizer_n_vocab(t);
  FUZZ_CHECK(nv > 0 && (size_t)nv <= size);
  char buf[64];
  for (int32_t id = 0; id < nv; id++) {
    int l = ttq_token_bytes(t, id, NULL, 0);
    FUZZ_CHECK(l >= 0 && (size_t)l <= size);
    FUZZ_CHECK(ttq_token_bytes(t, id, buf, sizeof buf) == l);
  }
  FUZZ_CHECK(ttq_token_bytes(t, -1, buf, sizeof buf) == TTQ_EINVAL);
  FUZZ_CHECK(ttq_token_bytes(t, nv, buf, sizeof buf) == TTQ_EINVAL);

  bool lossless = byte_complete(t);
  static const char sample[] = "Hello, world! It's 2024: x=3.14;\n\tdef f():\n  return 'ok'  \r\n"
                               "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80 <|im_start|>user<|endoftext|>"
                               "\xff\xc3 \xed\xa0\x80\xe1\xa0\x8e ";
  encode_check(t, (const uint8_t *)sample, sizeof sample - 1, lossless);
  encode_check(t, data, size < 256 ? size : 256, lossless);
  ttq_tokenizer_free(t);
  return 0;
}
