/* list-quant.h -- tests of the quantizer and the quantized kernels; included by test-list.h */
TEST_ENTRY(quant_matches_naive)
TEST_ENTRY(quant_pack_layout)
TEST_ENTRY(quant_kernels_match_reference)
TEST_ENTRY(quant_error_bounds)
TEST_ENTRY(quant_check_refuses)
TEST_ENTRY(quant_near_ties_exact)
TEST_ENTRY(quant_placed_matches_allocated)
