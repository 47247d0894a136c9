/* list-tp.h -- tests of tensor-parallel planning, slicing and per-shard quantization. */
TEST_ENTRY(tp_plan_partitions)
TEST_ENTRY(tp_shard_quant_bit_identical)
