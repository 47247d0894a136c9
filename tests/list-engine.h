/* list-engine.h -- tests of the engine module(s); included by test-list.h */
