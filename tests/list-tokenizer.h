/* list-tokenizer.h -- tests of the tokenizer module(s); included by test-list.h */
TEST_ENTRY(tokenizer_qwen3_valid_corpus)
TEST_ENTRY(tokenizer_llama_valid_corpus)
TEST_ENTRY(tokenizer_golden_prompts)
TEST_ENTRY(tokenizer_spec_build)
TEST_ENTRY(tokenizer_special_tokens)
TEST_ENTRY(tokenizer_detok_stream)
TEST_ENTRY(tokenizer_malformed_json)
TEST_ENTRY(tokenizer_arbitrary_bytes)
