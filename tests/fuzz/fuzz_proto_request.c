/* fuzz_proto_request.c -- libFuzzer harness for the daemon's request decoder:
 * ttq__request__unpack (protoc-c output for proto/ttq.proto, library ttqproto, on top of
 * libprotobuf-c) on arbitrary bytes, the first thing ttqd does with a client's message.
 *
 * Input: one serialized ttq.Request (or any bytes).
 *
 * Oracle (besides ASan/UBSan/LSan):
 *   - an unpacked message passes protobuf_c_message_check (required fields present, e.g.
 *     ChatMessage.role/content, CancelRequest.target_id);
 *   - every field of every (nested) message can be read: the walk is driven by the message
 *     descriptors, so fields added to ttq.proto later are walked too without touching this
 *     file: present scalars, strings (NUL-terminated), bytes, repeated arrays (count and
 *     pointer consistent), the selected member of each oneof, sub-messages, unknown fields;
 *   - the oneof `kind` is consistent: its case names a set, non-NULL member;
 *   - canonical round trip: pack(unpack(x)) unpacks again, and packing that gives the same
 *     bytes (pack is a function of the decoded message; the first pack may differ from x,
 *     which may have had fields twice, out of order or in non-minimal varints); not asserted
 *     for messages that kept an unknown field number 0 (a libprotobuf-c 1.4.1 bug, see
 *     has_unknown_tag0);
 *   - get_packed_size agrees with what pack writes;
 *   - everything is freed (LeakSanitizer). */
#include "fuzz_util.h"
#include "ttq.pb-c.h"

/* Size of one element of a repeated field of type t, as protobuf-c stores it. */
static size_t elem_size(ProtobufCType t) {
  switch (t) {
  case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_FLOAT:
  case PROTOBUF_C_TYPE_ENUM:
    return 4;
  case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
    return 8;
  case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
  case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
  case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
  case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
  }
  FUZZ_CHECK(!"unknown protobuf-c field type");
  return 0;
}

static void walk_message(const ProtobufCMessage *m, int depth);

/* Reads one value of field fd stored at p; returns a checksum so nothing is optimized out. */
static unsigned walk_value(const ProtobufCFieldDescriptor *fd, const void *p, int depth) {
  unsigned sum = 0;
  switch (fd->type) {
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(const char *const *)p;
    if (s) sum += (unsigned)strlen(s);
    break;
  }
  case PROTOBUF_C_TYPE_BYTES: {
    const ProtobufCBinaryData *b = p;
    FUZZ_CHECK(b->len == 0 || b->data);
    for (size_t i = 0; i < b->len; i++) sum += b->data[i];
    break;
  }
  case PROTOBUF_C_TYPE_MESSAGE: {
    const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)p;
    if (sub) {
      FUZZ_CHECK(sub->descriptor == fd->descriptor);
      walk_message(sub, depth + 1);
    }
    break;
  }
  default: {
    const uint8_t *b = p;
    for (size_t i = 0; i < elem_size(fd->type); i++) sum += b[i];
    break;
  }
  }
  return sum;
}

static void walk_message(const ProtobufCMessage *m, int depth) {
  FUZZ_CHECK(depth < 64);
  const ProtobufCMessageDescriptor *desc = m->descriptor;
  FUZZ_CHECK(desc && desc->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
  const char *base = (const char *)m;
  unsigned sum = 0;
  for (unsigned i = 0; i < desc->n_fields; i++) {
    const ProtobufCFieldDescriptor *fd = &desc->fields[i];
    const void *member = base + fd->offset;
    if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
      uint32_t which;
      memcpy(&which, base + fd->quantifier_offset, sizeof which);
      if (which != fd->id) continue;
      if (fd->type == PROTOBUF_C_TYPE_MESSAGE || fd->type == PROTOBUF_C_TYPE_STRING)
        FUZZ_CHECK(*(const void *const *)member != NULL); /* the selected member is set */
      sum += walk_value(fd, member, depth);
    } else if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n;
      memcpy(&n, base + fd->quantifier_offset, sizeof n);
      const char *arr = *(const char *const *)member;
      FUZZ_CHECK(n == 0 || arr);
      size_t es = elem_size(fd->type);
      for (size_t k = 0; k < n; k++) sum += walk_value(fd, arr + k * es, depth);
    } else if (fd->label == PROTOBUF_C_LABEL_OPTIONAL && fd->quantifier_offset) {
      protobuf_c_boolean has;
      memcpy(&has, base + fd->quantifier_offset, sizeof has);
      if (has) sum += walk_value(fd, member, depth);
    } else { /* required, or optional string/message (NULL or default when unset) */
      sum += walk_value(fd, member, depth);
    }
  }
  FUZZ_CHECK(m->n_unknown_fields == 0 || m->unknown_fields);
  for (unsigned i = 0; i < m->n_unknown_fields; i++) {
    const ProtobufCMessageUnknownField *u = &m->unknown_fields[i];
    FUZZ_CHECK(u->len == 0 || u->data);
    for (size_t k = 0; k < u->len; k++) sum += u->data[k];
  }
  (void)sum;
}

/* Whether m or a message inside it kept an unknown field with field number 0. libprotobuf-c
 * 1.4.1 refuses tag 0 only when the tag varint is one byte long: a non-minimal tag such as
 * 82 00 (field 0, length-delimited) is accepted and kept as an unknown field, then packed
 * back as the one-byte tag 02, which the same library refuses to unpack. That is a library
 * bug (reported in docs/FUZZING.md), not ours: the round-trip property is not asserted for
 * such messages (everything else still is). */
static bool has_unknown_tag0(const ProtobufCMessage *m) {
  for (unsigned i = 0; i < m->n_unknown_fields; i++)
    if (m->unknown_fields[i].tag == 0) return true;
  const ProtobufCMessageDescriptor *desc = m->descriptor;
  const char *base = (const char *)m;
  for (unsigned i = 0; i < desc->n_fields; i++) {
    const ProtobufCFieldDescriptor *fd = &desc->fields[i];
    if (fd->type != PROTOBUF_C_TYPE_MESSAGE) continue;
    const void *member = base + fd->offset;
    if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
      uint32_t which;
      memcpy(&which, base + fd->quantifier_offset, sizeof which);
      if (which != fd->id) continue;
    }
    if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n;
      memcpy(&n, base + fd->quantifier_offset, sizeof n);
      const ProtobufCMessage *const *arr = *(const ProtobufCMessage *const *const *)member;
      for (size_t k = 0; k < n; k++)
        if (has_unknown_tag0(arr[k])) return true;
    } else {
      const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)member;
      if (sub && has_unknown_tag0(sub)) return true;
    }
  }
  return false;
}

/* The typed view the daemon uses. */
static void check_request(const Ttq__Request *r) {
  switch (r->kind_case) {
  case TTQ__REQUEST__KIND__NOT_SET: break;
  case TTQ__REQUEST__KIND_GENERATE: FUZZ_CHECK(r->generate); break;
  case TTQ__REQUEST__KIND_CANCEL: FUZZ_CHECK(r->cancel && r->cancel->target_id); break;
  case TTQ__REQUEST__KIND_HEALTH: FUZZ_CHECK(r->health); break;
  case TTQ__REQUEST__KIND_STATS: FUZZ_CHECK(r->stats); break;
  default: FUZZ_CHECKF(0, "kind_case %d", (int)r->kind_case);
  }
  if (r->kind_case == TTQ__REQUEST__KIND_GENERATE) {
    const Ttq__GenerateRequest *g = r->generate;
    for (size_t i = 0; i < g->n_messages; i++)
      FUZZ_CHECK(g->messages[i] && g->messages[i]->role && g->messages[i]->content);
    for (size_t i = 0; i < g->n_stop; i++) FUZZ_CHECK(g->stop[i]);
  }

  /* The daemon's validation of decoded requests is fuzzed by fuzz_request.c. */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Ttq__Request *r = ttq__request__unpack(NULL, size, data);
  if (!r) return 0;
  FUZZ_CHECK(protobuf_c_message_check(&r->base));
  walk_message(&r->base, 0);
  check_request(r);

  size_t n1 = ttq__request__get_packed_size(r);
  uint8_t *b1 = malloc(n1 ? n1 : 1);
  FUZZ_CHECK(b1);
  FUZZ_CHECK(ttq__request__pack(r, b1) == n1);
  if (has_unknown_tag0(&r->base)) { /* see has_unknown_tag0 */
    free(b1);
    ttq__request__free_unpacked(r, NULL);
    return 0;
  }
  Ttq__Request *r2 = ttq__request__unpack(NULL, n1, b1);
  FUZZ_CHECKF(r2, "the packed form of a decoded request (%zu bytes) does not decode", n1);
  FUZZ_CHECK(protobuf_c_message_check(&r2->base));
  walk_message(&r2->base, 0);
  check_request(r2);
  size_t n2 = ttq__request__get_packed_size(r2);
  uint8_t *b2 = malloc(n2 ? n2 : 1);
  FUZZ_CHECK(b2);
  FUZZ_CHECK(ttq__request__pack(r2, b2) == n2);
  FUZZ_CHECKF(n1 == n2 && memcmp(b1, b2, n1) == 0,
              "pack(unpack(pack(unpack(x)))) != pack(unpack(x)) (%zu vs %zu bytes)", n2, n1);
  free(b2);
  free(b1);
  ttq__request__free_unpacked(r2, NULL);
  ttq__request__free_unpacked(r, NULL);
  return 0;
}
