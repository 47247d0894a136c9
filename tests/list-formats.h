/* list-formats.h -- tests of the formats module(s); included by test-list.h */
TEST_ENTRY(st_read_real)
TEST_ENTRY(st_roundtrip)
TEST_ENTRY(st_malformed)
TEST_ENTRY(gguf_read_real)
TEST_ENTRY(gguf_roundtrip)
TEST_ENTRY(gguf_malformed)
