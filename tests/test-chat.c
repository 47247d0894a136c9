/* test-chat.c -- the chat-template interpreter (shard/chat.c) against independent references:
 * the bundled model's template against the prompt built by hand from the template's meaning
 * (and its tokens against the special-token ids of tokenizer.json), every construct of the
 * subset against outputs worked out by hand from Jinja2's documented semantics (HF settings:
 * trim_blocks, lstrip_blocks, no trailing newline), every refusal with the construct named and
 * its offset counted by hand, the limits, message text that looks like template syntax, and
 * properties: determinism, no read past the template's NUL (a guard page; ASan in that build). */
#include <jansson.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <unistd.h>

#include "chat.h"
#include "model.h"
#include "test.h"
#include "tokenizer.h"

/* ------------------------------------------------------------------ helpers */

static const ttq_chat_msg MSGS3[] = {
    {"system", "Be brief."}, {"user", "  Hi!\n"}, {"assistant", "Hello."}};

/* Prints s with C escapes (for failure messages). */
static void put_escaped(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\n') fputs("\\n", stderr);
    else if (c == '\r') fputs("\\r", stderr);
    else if (c == '\t') fputs("\\t", stderr);
    else if (c < 0x20) fprintf(stderr, "\\x%02x", c);
    else fputc(c, stderr);
  }
}

/* Renders tmpl over msgs (bos "<s>", eos "</s>") and compares with want. 0 or 1. */
static int check_render(const char *tmpl, const ttq_chat_msg *msgs, size_t n, bool gen,
                        const char *want, int line) {
  char *out = NULL;
  size_t len = 0;
  ttq_diag d = {0};
  int rc = ttq_chat_render(tmpl, msgs, n, gen, "<s>", "</s>", &out, &len, &d);
  if (rc != 0 || len != strlen(want) || memcmp(out, want, len) != 0 || out[len] != 0) {
    fprintf(stderr, "test-chat.c:%d: template \"", line);
    put_escaped(tmpl, strlen(tmpl));
    fprintf(stderr, "\"\n  want \"");
    put_escaped(want, strlen(want));
    if (rc) {
      fprintf(stderr, "\"\n  got error %d: %s\n", rc, d.msg);
    } else {
      fprintf(stderr, "\"\n  got  \"");
      put_escaped(out, len);
      fprintf(stderr, "\"\n");
    }
    free(out);
    return 1;
  }
  free(out);
  return 0;
}

/* Renders tmpl over MSGS3 and expects failure `code` with a message naming `what` and
 * "at offset <off>". 0 or 1. */
static int check_refusal(const char *tmpl, int code, const char *what, size_t off, int line) {
  char *out = (char *)1;
  size_t len = 7;
  ttq_diag d = {0};
  int rc = ttq_chat_render(tmpl, MSGS3, 3, true, "<s>", "</s>", &out, &len, &d);
  char at[48];
  snprintf(at, sizeof at, "at offset %zu", off);
  if (rc != code || out != NULL || len != 0 || d.code != code || !strstr(d.msg, what) ||
      !strstr(d.msg, at)) {
    fprintf(stderr, "test-chat.c:%d: template \"", line);
    put_escaped(tmpl, strlen(tmpl));
    fprintf(stderr, "\"\n  want code %d naming \"%s\" %s\n  got  code %d: %s\n", code, what, at,
            rc, rc ? d.msg : "(rendered)");
    if (rc == 0) free(out);
    return 1;
  }
  return 0;
}

/* ------------------------------------------------------------------ the bundled model */

static const char *const BUNDLED_TEMPLATE =
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/* The prompt the bundled template means: per message "<|im_start|>" role "\n" content
 * "<|im_end|>\n", then "<|im_start|>assistant\n" when a generation prompt is asked for.
 * malloc'd. */
static char *chatml_by_hand(const ttq_chat_msg *msgs, size_t n, bool gen) {
  size_t cap = 64;
  for (size_t i = 0; i < n; i++) cap += strlen(msgs[i].role) + strlen(msgs[i].content) + 32;
  char *s = malloc(cap);
  s[0] = 0;
  for (size_t i = 0; i < n; i++) {
    strcat(s, "<|im_start|>");
    strcat(s, msgs[i].role);
    strcat(s, "\n");
    strcat(s, msgs[i].content);
    strcat(s, "<|im_end|>\n");
  }
  if (gen) strcat(s, "<|im_start|>assistant\n");
  return s;
}

/* Id of an added token by its content in tokenizer.json's added_tokens, or -1. */
static int added_token_id(const char *tokenizer_json, const char *content) {
  json_error_t err;
  json_t *j = json_load_file(tokenizer_json, 0, &err);
  if (!j) return -1;
  int id = -1;
  size_t i;
  json_t *t;
  json_array_foreach(json_object_get(j, "added_tokens"), i, t) {
    if (strcmp(json_string_value(json_object_get(t, "content")), content) == 0)
      id = (int)json_integer_value(json_object_get(t, "id"));
  }
  json_decref(j);
  return id;
}

static size_t count_id(const int32_t *ids, size_t n, int id) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) k += ids[i] == id;
  return k;
}

TEST_IMPL(chat_bundled_template) {
  char *dir = test_src_path("models/tinyqwen3-mix");
  char *tj = test_src_path("models/tinyqwen3-mix/tokenizer.json");
  ttq_model *m = NULL;
  ttq_diag d = {0};
  ASSERTF(ttq_model_load(dir, &m, &d) == 0, "%s", d.msg);
  ASSERT(m->chat_template && strcmp(m->chat_template, BUNDLED_TEMPLATE) == 0);
  int im_start = added_token_id(tj, "<|im_start|>"), im_end = added_token_id(tj, "<|im_end|>");
  ASSERT(im_start >= 0 && im_end >= 0 && im_start != im_end);

  const ttq_chat_msg msgs[] = {{"system", "You are terse."},
                               {"user", "What is 2+2? {{ not a tag }} {% endfor %}"},
                               {"assistant", "4"},
                               {"user", "Thanks <3 \xc3\xa9t\xc3\xa9"}};
  const size_t n = sizeof msgs / sizeof msgs[0];
  for (int gen = 0; gen <= 1; gen++) {
    char *want = chatml_by_hand(msgs, n, gen), *out = NULL;
    size_t len = 0;
    int rc = ttq_chat_render(m->chat_template, msgs, n, gen, NULL, "<|im_end|>", &out, &len, &d);
    ASSERTF(rc == 0, "%s", d.msg);
    ASSERTF(len == strlen(want) && strcmp(out, want) == 0, "got \"%s\"", out);

    /* the markers become single special tokens; the text round-trips through the ids */
    int32_t *ids = NULL;
    size_t n_ids = 0;
    ASSERT_OK(ttq_tokenize(m->tok, out, len, true, &ids, &n_ids, &d));
    ASSERT(n_ids > 0 && ids[0] == im_start);
    ASSERT(count_id(ids, n_ids, im_start) == n + (size_t)gen);
    ASSERT(count_id(ids, n_ids, im_end) == n);
    ASSERT(gen ? ids[n_ids - 1] != im_end : ids[n_ids - 1] != im_start);
    char *back = calloc(len + 1, 1);
    size_t at = 0;
    for (size_t i = 0; i < n_ids; i++) {
      int k = ttq_token_bytes(m->tok, ids[i], back + at, len - at);
      ASSERT(k >= 0 && at + (size_t)k <= len);
      at += (size_t)k;
    }
    ASSERT(at == len && memcmp(back, out, len) == 0);
    free(ids);
    /* as plain text the same markers are never the special ids */
    ASSERT_OK(ttq_tokenize(m->tok, out, len, false, &ids, &n_ids, &d));
    ASSERT(count_id(ids, n_ids, im_start) == 0 && count_id(ids, n_ids, im_end) == 0);
    free(ids);
    free(back);
    free(out);
    free(want);
  }

  /* no messages: only the generation prompt */
  char *out = NULL;
  ASSERT_OK(ttq_chat_render(m->chat_template, NULL, 0, true, NULL, NULL, &out, NULL, &d));
  ASSERT(strcmp(out, "<|im_start|>assistant\n") == 0);
  free(out);
  ttq_model_free(m);
  free(dir);
  free(tj);
  return 0;
}

/* ------------------------------------------------------------------ the subset */

typedef struct render_case {
  const char *tmpl, *want;
} render_case;

/* Over MSGS3 = system "Be brief.", user "  Hi!\n", assistant "Hello."; bos "<s>", eos "</s>",
 * add_generation_prompt true. Each expectation is worked out by hand in its comment. */
static const render_case CASES[] = {
    /* text outside tags is copied verbatim; {{ }} prints */
    {"plain text, no tags: } { % # }", "plain text, no tags: } { % # }"},
    {"{{ 'a' }}{{ \"b\" }}", "ab"},
    /* escapes: \n \t \\ \' \" in single quotes, ' inside double quotes */
    {"{{ 'x\\ny\\tz\\\\w\\'q\\\"' }}", "x\ny\tz\\w'q\""},
    {"{{ \"d'q\" ~ 'e\"f' }}", "d'qe\"f"},
    {"{{ 'ab' \"cd\" }}", "abcd"}, /* adjacent literals join */
    /* integers, booleans, none print as Python; undefined prints nothing */
    {"{{ 0 }}{{ 42 }}{{ -7 }}{{ true }}{{ False }}{{ none }}{{ undefined_name }}.",
     "042-7TrueFalseNone."},
    {"{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ messages|length }}",
     "<s>|</s>|True|3"},
    /* member access: ['key'], .key, [0], [-1] */
    {"{{ messages[0]['role'] }} {{ messages[0].content }} {{ messages[-1].role }} "
     "{{ messages[1]['content']|trim }}",
     "system Be brief. assistant Hi!"},
    /* a missing key or index is undefined */
    {"{{ messages[0].name is defined }} {{ messages[3] is defined }} "
     "{{ messages[-4] is undefined }} [{{ messages[0]['tool_calls'] }}]",
     "False False True []"},
    /* for over messages */
    {"{% for m in messages %}[{{ m.role }}]{% endfor %}", "[system][user][assistant]"},
    /* loop.index, index0, revindex, revindex0, length, first, last per iteration:
     * 1 0 3 2 3 F; 2 1 2 1 3; 3 2 1 0 3 L */
    {"{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
     "{{ loop.revindex0 }}{{ loop.length }}{% if loop.first %}F{% endif %}"
     "{% if loop.last %}L{% endif %};{% endfor %}",
     "10323F;21213;32103L;"},
    /* `loop` is the innermost loop's */
    {"{% for a in messages %}{% for b in messages %}{{ loop.index }}{% endfor %}"
     "{{ loop.index }} {% endfor %}",
     "1231 1232 1233 "},
    /* if / elif / else */
    {"{% for m in messages %}{% if m.role == 'system' %}S{% elif m['role'] == 'user' %}U"
     "{% else %}A{% endif %}{% endfor %}",
     "SUA"},
    {"{% if false %}a{% elif none %}b{% elif '' %}c{% endif %}.", "."},
    /* truthiness: non-empty list, 0, non-empty string, undefined, a message */
    {"{% if messages %}1{% endif %}{% if 0 %}2{% endif %}{% if 'x' %}3{% endif %}"
     "{% if undefined_name %}4{% endif %}{% if messages[0] %}5{% endif %}",
     "135"},
    /* and / or give the deciding operand (Python); not gives a boolean */
    {"{{ 'x' and 'y' }}|{{ '' and 'y' }}|{{ '' or 'z' }}|{{ not true }}|{{ not nothing }}|"
     "{{ none or nothing }}|",
     "y||z|False|True||"},
    {"{{ nothing is defined and nothing.x }}", "False"}, /* short-circuit */
    /* == and != (1 == true as in Python; equal messages) */
    {"{{ 'a' == 'a' }}{{ 'a' != 'a' }}{{ 1 == true }}{{ none == none }}{{ 'a' == none }}"
     "{{ messages[0] == messages[0] }}{{ messages[0] != messages[1] }}",
     "TrueFalseTrueTrueFalseTrueTrue"},
    {"{{ not 'a' == 'b' }}", "True"}, /* not binds looser than == */
    /* is defined / undefined / none / string, with not */
    {"{{ bos_token is defined }}{{ nothing is defined }}{{ nothing is not defined }}"
     "{{ none is none }}{{ 'x' is not none }}{{ nothing is not none }}{{ 'x' is string }}"
     "{{ 1 is string }}{{ nothing is undefined }}",
     "TrueFalseTrueTrueTrueTrueTrueFalseTrue"},
    /* + joins strings or adds integers; ~ joins the text of anything */
    {"{{ 'a' + 'b' }}{{ 'a' ~ 1 ~ true ~ none ~ nothing }}{{ 1 + 2 }}", "aba1TrueNone3"},
    /* trim (Python whitespace, incl. U+3000 and U+00A0) and length (code points) */
    {"[{{ '  a b \\n'|trim }}][{{ messages[1].content|trim }}][{{ 'h\xc3\xa9llo'|length }}]"
     "[{{ ''|length }}][{{ nothing|length }}][{{ 'x'|trim|length }}]"
     "[{{ '\xe3\x80\x80x\xc2\xa0'|trim }}][{{ messages|count }}]",
     "[a b][Hi!][5][0][0][1][x][3]"},
    {"{{ 'ab' ~ 'cd'|length }}", "ab2"}, /* a filter binds tighter than ~ */
    {"{{ ('a' ~ 'b')|length }}{{ (1 + 2) ~ 'x' }}", "23x"},
    /* set: strings, booleans, expressions */
    {"{% set x = 'v' %}{% set flag = true %}{% set y = x ~ '!' %}{{ x }}{{ flag }}{{ y }}",
     "vTruev!"},
    /* a set inside a loop lasts for that iteration only; inside an if it does not scope */
    {"{% set x = 'out' %}{% for m in messages %}{% if loop.first %}{% set x = 'in' %}"
     "{% endif %}{{ x }},{% endfor %}{{ x }}",
     "in,out,out,out"},
    {"{% if true %}{% set x = 1 %}{% endif %}{{ x }}", "1"},
    /* comments vanish, template syntax inside them too */
    {"a{# note {{ x }} {% if %} #}b", "ab"},
    /* whitespace control: - strips all whitespace (newlines too) on its side */
    {"a  {{- 'b' -}}  \n c", "abc"},
    {"a \n {%- if true -%} \n b \n {%- endif -%} \n c", "abc"},
    {"a \n {#- c -#} \n b", "ab"},
    /* trim_blocks: one newline after a block tag goes */
    {"{% if true %}\nx\n{% endif %}\ny", "x\ny"},
    /* lstrip_blocks: spaces before a block tag alone on its line go; not before {{ }}, not
     * after other text, not with {%+ ; +%} keeps the newline */
    {"a\n    {% if true %}b{% endif %}", "a\nb"},
    {"a  {% if true %}b{% endif %}", "a  b"},
    {"a\n  {{ 'b' }}", "a\n  b"},
    {"a\n  {%+ if true %}b{% endif %}", "a\n  b"},
    {"{% if true +%}\nb{% endif %}", "\nb"},
    {"{% for m in messages %}\n  {{ m.role }}\n{% endfor %}\n", "  system\n  user\n  assistant\n"},
    /* newlines are normalized; one final newline of the template is dropped */
    {"a\r\nb\rc", "a\nb\nc"},
    {"a\n", "a"},
    {"a\n\n", "a\n"},
    {"", ""},
    /* iterating an undefined value gives nothing */
    {"{% for x in nothing %}x{% endfor %}.", "."},
    /* tools and documents are none, as transformers passes them */
    {"{{ tools is none }}{{ documents is none }}", "TrueTrue"},
};

TEST_IMPL(chat_constructs) {
  int failed = 0;
  for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++)
    failed |= check_render(CASES[i].tmpl, MSGS3, 3, true, CASES[i].want, __LINE__);
  ASSERT(!failed);

  /* add_generation_prompt false; content NULL is none; bos/eos NULL are undefined */
  const ttq_chat_msg none_content[] = {{"assistant", NULL}};
  ASSERT(!check_render("{{ add_generation_prompt }}", MSGS3, 3, false, "False", __LINE__));
  ASSERT(!check_render("{{ messages[0].content }}|{{ messages[0].content is none }}",
                       none_content, 1, true, "None|True", __LINE__));
  char *out = NULL;
  ttq_diag d = {0};
  ASSERT_OK(ttq_chat_render("{{ bos_token is defined }}[{{ eos_token }}]", MSGS3, 3, true, NULL,
                            NULL, &out, NULL, &d));
  ASSERT(strcmp(out, "False[]") == 0);
  free(out);
  return 0;
}

/* Message text is data: template syntax in a role or content is copied, never run. */
TEST_IMPL(chat_message_text_is_literal) {
  const ttq_chat_msg msgs[] = {
      {"user", "{{ raise_exception('boom') }} {% for x in messages %}{% endfor %} {# #} }} {%"},
      {"{{ role }}", "{%- if true -%}\n  {{- '\\n' -}}"},
      {"assistant", "<|im_start|>{% endif %}"}};
  char *want = chatml_by_hand(msgs, 3, true);
  int rc = check_render(BUNDLED_TEMPLATE, msgs, 3, true, want, __LINE__);
  free(want);
  ASSERT(rc == 0);
  /* the same through filters and concatenation */
  ASSERT(!check_render("{{ (messages[0].content ~ messages[1].role)|trim }}", msgs, 3, true,
                       "{{ raise_exception('boom') }} {% for x in messages %}{% endfor %} {# #} "
                       "}} {%{{ role }}",
                       __LINE__));
  return 0;
}

/* ------------------------------------------------------------------ refusals */

typedef struct refusal {
  const char *tmpl;
  const char *what; /* must appear in the message */
  size_t off;       /* byte offset counted by hand */
} refusal;

static const refusal UNSUPPORTED[] = {
    {"{% macro f() %}x{% endmacro %}", "tag '{% macro %}'", 0},
    {"ab{{ x if y else z }}", "conditional expression", 7},
    {"{{ messages[1:] }}", "slice", 11},
    {"{{ messages|tojson }}", "filter 'tojson'", 12},
    {"{% set ns = namespace(a=1) %}", "function 'namespace'", 12},
    {"{{ x * 2 }}", "operator '*'", 5},
    {"{{ 3 - 2 }}", "operator '-'", 5},
    {"{{ 1 < 2 }}", "comparison '<'", 5},
    {"{{ 'a' in 'abc' }}", "comparison 'in'", 7},
    {"{{ 'a' == 'a' == 'a' }}", "chained comparison", 14},
    {"{{ [1] }}", "list literal", 3},
    {"{{ {'a': 1} }}", "dict literal", 3},
    {"{{ 1.5 }}", "number literal '1.5'", 3},
    {"{{ 'a\\x41' }}", "escape '\\x'", 5},
    {"{{ m.content.strip() }}", "method call", 18},
    {"{% for m in messages %}{% else %}{% endfor %}", "'{% else %}' in a for loop", 23},
    {"{% for m in messages if m.role %}{% endfor %}", "loop filter", 21},
    {"{% set x %}a{% endset %}", "block assignment", 0},
    {"{% set a, b = 1, 2 %}", "tuple assignment", 8},
    {"{% raw %}{{ x }}{% endraw %}", "tag '{% raw %}'", 0},
    {"x{% break %}", "tag '{% break %}'", 1},
    {"{% generation %}{% endgeneration %}", "tag '{% generation %}'", 0},
    {"{{ x is divisibleby 3 }}", "test 'divisibleby'", 8},
    {"{{ x|trim('.') }}", "arguments to a filter", 9},
    {"{{ range(3) }}", "function 'range'", 3},
    {"{{ raise_exception }}", "raise_exception used as a value", 3},
    {"{{ x.__class__ }}", "'__class__'", 4},
    /* found while rendering: still named, with the offset */
    {"{% for m in messages %}{{ loop.previtem }}{% endfor %}", "'previtem' of a loop", 30},
    {"{{ messages[0].content[0] }}", "attribute or item of a str", 22},
    {"{{ messages[0].keys }}", "'keys' of a message", 14},
    {"{% for c in 'abc' %}{% endfor %}", "iterating over a str", 12},
    {"{{ messages }}", "converting a list to text", 3},
};

static const refusal MALFORMED[] = {
    {"ab{{ x", "'{{' is never closed", 2},
    {"{% if true %}x{% endif", "'{%' is never closed", 14},
    {"a{# note", "comment '{#' is never closed", 1},
    {"{{ 'abc }}", "unterminated string", 3},
    {"{% for m in messages %}x", "'{% for %}' is never closed", 0},
    {"{% if true %}x", "'{% if %}' is never closed", 0},
    {"x{% endfor %}", "'{% endfor %}' has no matching opening tag", 1},
    {"{% endif %}", "'{% endif %}' has no matching opening tag", 0},
    {"{% else %}", "'{% else %}' has no matching opening tag", 0},
    {"{% for m in messages %}{% endif %}{% endfor %}", "'{% endif %}' inside a for loop", 23},
    {"{% if true %}{% endfor %}", "'{% endfor %}' inside an if", 13},
    {"{% if true %}{% else %}{% elif true %}{% endif %}", "after '{% else %}'", 23},
    {"{% if true %}{% else if x %}{% endif %}", "found 'if'", 21},
    {"{{ }}", "expected an expression", 3},
    {"{% %}", "expected a tag name", 3},
    {"{{ x y }}", "found 'y'", 5},
    {"{{ (x }}", "unexpected '}', expected ')'", 6},
    {"{{ x) }}", "unexpected ')'", 4},
    {"ab\xff", "invalid UTF-8", 2},
    {"{% set true = 1 %}", "cannot assign to 'true'", 7},
    {"{% for loop in messages %}{% endfor %}", "'loop'", 0},
    {"{{ 02 }}", "leading zero", 3},
};

TEST_IMPL(chat_refusals) {
  int failed = 0;
  for (size_t i = 0; i < sizeof UNSUPPORTED / sizeof UNSUPPORTED[0]; i++)
    failed |= check_refusal(UNSUPPORTED[i].tmpl, TTQ_EUNSUPPORTED, UNSUPPORTED[i].what,
                            UNSUPPORTED[i].off, __LINE__);
  for (size_t i = 0; i < sizeof MALFORMED / sizeof MALFORMED[0]; i++)
    failed |= check_refusal(MALFORMED[i].tmpl, TTQ_EFORMAT, MALFORMED[i].what, MALFORMED[i].off,
                            __LINE__);
  /* errors of Jinja at render time: undefined.attr, type errors */
  failed |= check_refusal("{{ nothing.role }}", TTQ_EINVAL, "'role' of an undefined value", 10,
                          __LINE__);
  failed |= check_refusal("{{ 'a' + 1 }}", TTQ_EINVAL, "'+' of 'str' and 'int'", 7, __LINE__);
  failed |= check_refusal("{{ 5|length }}", TTQ_EINVAL, "has no length", 5, __LINE__);
  /* the whole template is parsed first: an error in a branch never taken still refuses */
  failed |= check_refusal("{% if false %}{{ x|upper }}{% endif %}", TTQ_EUNSUPPORTED,
                          "filter 'upper'", 19, __LINE__);
  ASSERT(!failed);
  return 0;
}

TEST_IMPL(chat_raise_exception) {
  const char *tmpl =
      "{% for m in messages %}{% if m.role == 'system' and not loop.first %}"
      "{{ raise_exception('System message must come first, not at ' ~ loop.index) }}"
      "{% endif %}{{ m.content }};{% endfor %}";
  const ttq_chat_msg bad[] = {{"user", "u"}, {"system", "s"}};
  const ttq_chat_msg good[] = {{"system", "s"}, {"user", "u"}};
  char *out = (char *)1;
  size_t len = 9;
  ttq_diag d = {0};
  int rc = ttq_chat_render(tmpl, bad, 2, true, NULL, NULL, &out, &len, &d);
  ASSERT(rc == TTQ_EINVAL && out == NULL && len == 0);
  ASSERTF(strstr(d.msg, "System message must come first, not at 2") &&
              strstr(d.msg, "raise_exception at offset 72"),
          "%s", d.msg);
  ASSERT(!check_render(tmpl, good, 2, true, "s;u;", __LINE__));
  ASSERT(check_refusal("{{ raise_exception('a', 'b') }}", TTQ_EINVAL, "takes 1 argument", 3,
                       __LINE__) == 0);
  return 0;
}

TEST_IMPL(chat_bad_arguments) {
  char *out = (char *)1;
  ttq_diag d = {0};
  const ttq_chat_msg no_role[] = {{NULL, "x"}};
  ASSERT(ttq_chat_render(NULL, MSGS3, 3, true, NULL, NULL, &out, NULL, &d) == TTQ_EINVAL);
  ASSERT(out == NULL);
  ASSERT(ttq_chat_render("x", NULL, 2, true, NULL, NULL, &out, NULL, &d) == TTQ_EINVAL);
  ASSERT(ttq_chat_render("x", no_role, 1, true, NULL, NULL, &out, NULL, &d) == TTQ_EINVAL);
  ASSERT(strstr(d.msg, "message 0 has no role"));
  ASSERT(ttq_chat_render("x", MSGS3, 3, true, NULL, NULL, NULL, NULL, NULL) == TTQ_EINVAL);
  return 0;
}

/* ------------------------------------------------------------------ limits */

/* A template of `reps` copies of `unit` between head and tail; malloc'd. */
static char *repeat(const char *head, const char *unit, size_t reps, const char *tail) {
  size_t n = strlen(head) + strlen(unit) * reps + strlen(tail) + 1;
  char *s = malloc(n), *p = s;
  p += sprintf(p, "%s", head);
  for (size_t i = 0; i < reps; i++) p += sprintf(p, "%s", unit);
  sprintf(p, "%s", tail);
  return s;
}

static int render_rc(const char *tmpl, const ttq_chat_msg *msgs, size_t n, ttq_diag *d,
                     size_t *len) {
  char *out = NULL;
  int rc = ttq_chat_render(tmpl, msgs, n, true, NULL, NULL, &out, len, d);
  if (rc == 0 && !out) return -100;
  if (rc != 0 && out) return -101;
  free(out);
  return rc;
}

TEST_IMPL(chat_limits) {
  ttq_diag d = {0};
  size_t len = 0;
  /* output: 16 messages of 1 MiB + 1 byte exceed the 16 MiB cap; 15 fit; exactly 16 MiB fits */
  size_t big = ((size_t)1 << 20) + 1;
  char *content = malloc(big + 1);
  memset(content, 'a', big);
  content[big] = 0;
  ttq_chat_msg msgs[16];
  for (int i = 0; i < 16; i++) msgs[i] = (ttq_chat_msg){"user", content};
  const char *all = "{% for m in messages %}{{ m.content }}{% endfor %}";
  ASSERT(render_rc(all, msgs, 15, &d, &len) == 0 && len == 15 * big);
  ASSERT(render_rc(all, msgs, 16, &d, &len) == TTQ_ERANGE && len == 0);
  ASSERTF(strstr(d.msg, "would exceed"), "%s", d.msg);
  content[big - 1] = 0;
  ASSERT(render_rc(all, msgs, 16, &d, &len) == 0 && len == TTQ_CHAT_MAX_OUTPUT);
  free(content);

  /* loop iterations: three nested loops over 128 messages are 2M iterations > 1M */
  ttq_chat_msg many[128];
  for (int i = 0; i < 128; i++) many[i] = (ttq_chat_msg){"user", ""};
  const char *cube = "{% for a in messages %}{% for b in messages %}{% for c in messages %}"
                     "{% endfor %}{% endfor %}{% endfor %}";
  ASSERT(render_rc(cube, many, 128, &d, &len) == TTQ_ERANGE);
  ASSERTF(strstr(d.msg, "loop iterations"), "%s", d.msg);
  ASSERT(render_rc(cube, many, 64, &d, &len) == 0); /* 266304 iterations */

  /* block nesting: 64 nested ifs render, 65 are refused */
  char *t64 = repeat("", "{% if true %}", 64, ""), *t65 = repeat("", "{% if true %}", 65, "");
  char *ok = repeat(t64, "{% endif %}", 64, ""), *deep = repeat(t65, "{% endif %}", 65, "");
  ASSERT(render_rc(ok, MSGS3, 3, &d, &len) == 0);
  ASSERT(render_rc(deep, MSGS3, 3, &d, &len) == TTQ_ERANGE);
  ASSERTF(strstr(d.msg, "nested deeper than 64") && strstr(d.msg, "at offset 832"), "%s", d.msg);
  free(t64), free(t65), free(ok), free(deep);

  /* expressions: 100 nots are fine, 200 are too deep; so are 200 brackets and a chain of
   * 200 concatenations */
  char *nots = repeat("{{ ", "not ", 100, "true }}");
  ASSERT(render_rc(nots, MSGS3, 3, &d, &len) == 0);
  free(nots);
  const char *units[] = {"not ", "(", "'a' ~ "};
  const char *tails[] = {"true }}", "1 }}", "'a' }}"};
  for (int k = 0; k < 3; k++) {
    char *t = repeat("{{ ", units[k], 200, tails[k]);
    ASSERT(render_rc(t, MSGS3, 3, &d, &len) == TTQ_ERANGE);
    free(t);
  }

  /* strings built while rendering: doubling a string 30 times exceeds the working memory */
  char *dbl = repeat("{% set x = 'abcdefghijklmnop' %}", "{% set x = x ~ x %}", 30,
                     "{{ x|length }}");
  ASSERT(render_rc(dbl, MSGS3, 3, &d, &len) == TTQ_ERANGE);
  ASSERTF(strstr(d.msg, "working memory"), "%s", d.msg);
  free(dbl);

  /* template size */
  char *huge = malloc(TTQ_CHAT_MAX_TEMPLATE + 2);
  memset(huge, 'x', TTQ_CHAT_MAX_TEMPLATE + 1);
  huge[TTQ_CHAT_MAX_TEMPLATE + 1] = 0;
  ASSERT(render_rc(huge, MSGS3, 3, &d, &len) == TTQ_ERANGE);
  huge[TTQ_CHAT_MAX_TEMPLATE] = 0;
  ASSERT(render_rc(huge, MSGS3, 3, &d, &len) == 0 && len == TTQ_CHAT_MAX_TEMPLATE);
  free(huge);
  return 0;
}

/* ------------------------------------------------------------------ properties */

/* The template copied to the very end of a readable page, the next page unmapped: any read
 * past its NUL faults. */
typedef struct guarded {
  char *base;
  size_t size;
  char *s;
} guarded;

static int guard_copy(guarded *g, const char *src, size_t n) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = (n + 1 + page - 1) / page;
  g->size = (pages + 1) * page;
  g->base = mmap(NULL, g->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (g->base == MAP_FAILED) return -1;
  if (mprotect(g->base + pages * page, page, PROT_NONE) != 0) return -1;
  g->s = g->base + pages * page - (n + 1);
  memcpy(g->s, src, n);
  g->s[n] = 0;
  return 0;
}

static void guard_free(guarded *g) { munmap(g->base, g->size); }

typedef struct outcome {
  int rc;
  char *out;
  size_t len;
  char msg[768];
} outcome;

static int render_guarded(const char *src, size_t n, outcome *o) {
  guarded g;
  if (guard_copy(&g, src, n) != 0) return -1;
  ttq_diag d = {0};
  o->out = NULL;
  o->rc = ttq_chat_render(g.s, MSGS3, 3, true, "<s>", "</s>", &o->out, &o->len, &d);
  snprintf(o->msg, sizeof o->msg, "%s", o->rc ? d.msg : "");
  guard_free(&g);
  return 0;
}

/* The offset an error message names must lie within the template. */
static bool offset_within(const char *msg, size_t n) {
  const char *at = strstr(msg, "at offset ");
  return !at || strtoull(at + 10, NULL, 10) <= n;
}

static const char *const SEEDS[] = {
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    "{{ bos_token }}{%- for m in messages -%}\n  {%- if m.role == 'user' and not loop.last -%}"
    "{{ '[U] ' + m.content|trim }}{% elif m.role != 'system' %}{{ m.content ~ eos_token }}"
    "{% else %}{# sys #}{% set s = m.content %}{% endif %}\n{% endfor %}{{ s is defined }}",
    "a{{- 'x\\n' -}} \n {#+ c +#}{% if messages|length == 3 %}{{ messages[-1]['role'] }}"
    "{% endif +%}\r\n{{ raise_exception('stop') if false }}'\"\\",
};

TEST_IMPL(chat_properties) {
  /* prefixes of every seed: each renders or fails cleanly, never reads past the NUL */
  for (size_t s = 0; s < sizeof SEEDS / sizeof SEEDS[0]; s++) {
    size_t n = strlen(SEEDS[s]);
    for (size_t k = 0; k <= n; k++) {
      outcome o;
      ASSERT(render_guarded(SEEDS[s], k, &o) == 0);
      ASSERT(o.rc == 0 ? o.out != NULL : o.out == NULL && o.msg[0]);
      ASSERTF(offset_within(o.msg, k), "%s", o.msg);
      free(o.out);
    }
  }
  /* random mutations: rendering twice gives the same bytes or the same error */
  static const char alphabet[] = "{}%#-+ \n\r'\"\\()[]|.=~!<>abimnorstlu019_";
  uint64_t rng = 0xc4a7;
  char buf[512];
  for (int iter = 0; iter < 3000; iter++) {
    const char *seed = SEEDS[test_rand_u64(&rng) % (sizeof SEEDS / sizeof SEEDS[0])];
    size_t n = strlen(seed);
    memcpy(buf, seed, n);
    for (int e = 1 + (int)(test_rand_u64(&rng) % 4); e > 0; e--) {
      size_t at = test_rand_u64(&rng) % (n + 1);
      char c = alphabet[test_rand_u64(&rng) % (sizeof alphabet - 1)];
      if (test_rand_u64(&rng) % 2 && n < sizeof buf - 1) {
        memmove(buf + at + 1, buf + at, n - at);
        buf[at] = c;
        n++;
      } else if (at < n) {
        memmove(buf + at, buf + at + 1, n - at - 1);
        n--;
      }
    }
    outcome a, b;
    ASSERT(render_guarded(buf, n, &a) == 0 && render_guarded(buf, n, &b) == 0);
    ASSERT(a.rc == b.rc && strcmp(a.msg, b.msg) == 0);
    ASSERT(a.rc != 0 || (a.len == b.len && memcmp(a.out, b.out, a.len) == 0));
    ASSERT(a.rc == 0 || a.rc == TTQ_EFORMAT || a.rc == TTQ_EUNSUPPORTED || a.rc == TTQ_EINVAL ||
           a.rc == TTQ_ERANGE);
    ASSERTF(offset_within(a.msg, n), "%s", a.msg);
    free(a.out);
    free(b.out);
  }
  /* random messages through the bundled template equal the prompt built by hand */
  for (int iter = 0; iter < 200; iter++) {
    char texts[4][40];
    ttq_chat_msg msgs[2];
    for (int t = 0; t < 4; t++) {
      int len = (int)(test_rand_u64(&rng) % 39);
      for (int i = 0; i < len; i++)
        texts[t][i] = alphabet[test_rand_u64(&rng) % (sizeof alphabet - 1)];
      texts[t][len] = 0;
    }
    msgs[0] = (ttq_chat_msg){texts[0], texts[1]};
    msgs[1] = (ttq_chat_msg){texts[2], texts[3]};
    bool gen = test_rand_u64(&rng) % 2;
    char *want = chatml_by_hand(msgs, 2, gen);
    int rc = check_render(BUNDLED_TEMPLATE, msgs, 2, gen, want, __LINE__);
    free(want);
    ASSERT(rc == 0);
  }
  return 0;
}
