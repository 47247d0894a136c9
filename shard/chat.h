/* chat.h -- renders chat messages into a prompt with a model's Jinja chat template (the
 * `chat_template` of tokenizer_config.json or GGUF `tokenizer.chat_template`), by a small,
 * strict interpreter written for the subset of Jinja2 that chat templates use.
 *
 * Semantics are those of Hugging Face transformers' apply_chat_template: Jinja2 with
 * trim_blocks and lstrip_blocks on, keep_trailing_newline off, no autoescaping, and the
 * variables `messages` (a list of {role, content} mappings), `add_generation_prompt`,
 * `bos_token`, `eos_token` (undefined when NULL), `tools` and `documents` (both none) and the
 * function `raise_exception(message)`.
 *
 * Invariants:
 *   - the output is exactly what Jinja2 gives for the same template and variables, or the
 *     call fails: a construct outside the subset is refused (TTQ_EUNSUPPORTED, naming the
 *     construct and its byte offset in the template), never approximated;
 *   - the whole template is parsed before anything is rendered, so a malformed or
 *     unsupported template fails whatever the messages are;
 *   - message text is data: `{{` or `{%` inside a role or content is copied literally;
 *   - rendering is bounded (the TTQ_CHAT_MAX_* limits below), reads no byte of the template
 *     past its NUL, holds no global state and is deterministic; threads may render at once.
 *
 * The subset:
 *   text; {{ expr }}; {# comment #}; {% for NAME in expr %}...{% endfor %};
 *   {% if expr %}...{% elif expr %}...{% else %}...{% endif %}; {% set NAME = expr %};
 *   whitespace control {%- -%} {{- -}} {#- -#} and {%+ +%};
 *   expressions: 'string' "string" (escapes \n \t \r \a \b \f \v \\ \' \"; adjacent literals
 *   join), integers, true/false/none (also True/False/None), names, loop.index, loop.index0,
 *   loop.revindex, loop.revindex0, loop.first, loop.last, loop.length, loop.depth,
 *   loop.depth0, x.name, x['key'], x[int] (negative counts from the end), (expr),
 *   == != and or not, + (strings or integers), ~, unary -, `is [not] defined|undefined|
 *   none|string`, filters | trim, | length (alias | count), raise_exception(expr).
 *   Everything else (macros, ternaries, slices, list/dict literals, other filters, tests,
 *   operators and tags, method calls, namespace(), loop filters, for-else, ...) is refused.
 *
 * Errors (the diag names the offset in the template where there is one):
 *   TTQ_EINVAL       bad arguments (NULL template, message role NULL, ...), or the template
 *                    failed on these messages: raise_exception (the diag carries its
 *                    message), attribute of an undefined value, type errors such as 'a' + 1;
 *   TTQ_EFORMAT      malformed template: unclosed tag or comment, unterminated string,
 *                    unmatched endfor/endif/elif/else, syntax error, invalid UTF-8;
 *   TTQ_EUNSUPPORTED a construct outside the subset;
 *   TTQ_ERANGE       a limit below was exceeded;
 *   TTQ_ENOMEM       out of memory. */
#ifndef TTQ_CHAT_H
#define TTQ_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "ttq.h"

#define TTQ_CHAT_MAX_TEMPLATE (256u << 10) /* bytes of template */
#define TTQ_CHAT_MAX_OUTPUT (16u << 20)    /* bytes of rendered text */
#define TTQ_CHAT_MAX_ITERATIONS (1u << 20) /* loop-body runs in one render, all loops */
#define TTQ_CHAT_MAX_NESTING 64            /* for/if blocks inside one another */
#define TTQ_CHAT_MAX_EXPR_DEPTH 128        /* depth of one expression's tree or brackets */
#define TTQ_CHAT_MAX_WORK (64u << 20)      /* bytes of strings built while rendering */

/* One chat message. Both strings are UTF-8, NUL-terminated and borrowed for the call.
 * role must not be NULL; content NULL is Jinja's none (and prints as "None", as in Python). */
typedef struct ttq_chat_msg {
  const char *role;
  const char *content;
} ttq_chat_msg;

/* Renders msgs[0..n_msgs) with the template tmpl (UTF-8, NUL-terminated). bos_token and
 * eos_token are the tokenizer's special-token strings, or NULL when it has none (the
 * template then sees them undefined). On success *out is the rendered text, malloc'd and
 * NUL-terminated (caller frees with free()), and *out_len (if out_len is non-NULL) its
 * length in bytes, not counting the NUL. On failure *out is NULL, *out_len 0, and the return
 * is a negative TTQ_E* code with d (if non-NULL) filled. */
int ttq_chat_render(const char *tmpl, const ttq_chat_msg *msgs, size_t n_msgs,
                    bool add_generation_prompt, const char *bos_token, const char *eos_token,
                    char **out, size_t *out_len, ttq_diag *d);

#endif
