/* list-chat.h -- tests of shard/chat.c (chat template rendering). */
TEST_ENTRY(chat_bundled_template)
TEST_ENTRY(chat_constructs)
TEST_ENTRY(chat_message_text_is_literal)
TEST_ENTRY(chat_refusals)
TEST_ENTRY(chat_raise_exception)
TEST_ENTRY(chat_bad_arguments)
TEST_ENTRY(chat_limits)
TEST_ENTRY(chat_properties)
