/* list-quant.h -- tests of the quantizer and the quantized kernels; included by test-list.h */
