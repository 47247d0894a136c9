/* list-gemm.h -- tests of the prefill GEMM (shard/gemm.h); included by test-list.h */
TEST_ENTRY(gemm_matches_reference)
TEST_ENTRY(gemm_api_contract)
