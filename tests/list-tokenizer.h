/* list-tokenizer.h -- tests of the tokenizer module(s); included by test-list.h */
