/* test-list.h -- the one list of tests. Each TEST_ENTRY(name) is a function
 * `TEST_IMPL(name)` in some tests/test-*.c and becomes one ctest test of the same name.
 * Module owners keep their entries in their own block. */

/* util */
TEST_ENTRY(util_half_conversions)

/* formats: safetensors, gguf */
#include "list-formats.h"

/* tokenizer */
#include "list-tokenizer.h"

/* model, forward, tools */
#include "list-engine.h"

/* prefill GEMM (bf16 / AMX / sgemm variants) */
#include "list-gemm.h"

/* quantizer, packed storage, quantized kernels */
#include "list-quant.h"

/* statistics, per-prompt quantization, low-rank, AWQ */
#include "list-ttq.h"

/* tensor parallelism (the multi-rank runs are in tests/cli/tp.sh) */
#include "list-tp.h"

/* chat templates */
#include "list-chat.h"
