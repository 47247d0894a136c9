/* list-chat.h -- tests of shard/chat.c (chat template rendering). */
