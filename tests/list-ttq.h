/* list-ttq.h -- tests of statistics, per-prompt quantization, low-rank factors, AWQ. */
TEST_ENTRY(stats_match_recomputation)
TEST_ENTRY(lowrank_reconstructs_and_caches)
TEST_ENTRY(awq_file_roundtrip)
TEST_ENTRY(ttq_8bit_matches_fp_qwen3)
TEST_ENTRY(ttq_8bit_matches_fp_llama)
TEST_ENTRY(ttq_quantized_decode_consistent)
TEST_ENTRY(ttq_decode_step_matches_general_layer)
TEST_ENTRY(ttq_fused_matches_separate)
