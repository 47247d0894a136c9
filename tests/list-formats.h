/* list-formats.h -- tests of the formats module(s); included by test-list.h */
