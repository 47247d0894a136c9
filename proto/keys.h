/* keys.h -- CURVE key files shared by ttq and ttqd: generating, writing and reading them.
 * Self-contained (needs only libzmq and libc): the one parser of the format for both sides.
 *
 * A key is 32 bytes written as 40 characters of ZeroMQ's Z85 alphabet (zmq_z85_encode).
 *
 * File formats (ASCII text, lines end in '\n'; a '\r' before it, blank lines and lines whose
 * first non-blank character is '#' are ignored by every reader):
 *
 *   PREFIX.key   a key pair, mode 0600, two lines in this order:
 *                  public <Z85 public key>
 *                  secret <Z85 secret key>
 *                The public key must be the one the secret key derives (zmq_curve_public);
 *                readers check it. `ttq keygen` without --out prints this same text.
 *   PREFIX.pub   a public key alone, one line:
 *                  <Z85 public key>
 *   authorized   (the daemon's list of client keys) one Z85 public key per line, optionally
 *                followed by blanks and a free-text comment, or a .key file's
 *                "public <key>" line; ttq_keys_parse_line reads one line of it.
 *
 * Every function returns 0 or -1; on -1 it has written a one-line reason (naming the file)
 * into err (errlen bytes, NUL-terminated, may be truncated). Output key buffers hold the 40
 * characters and a NUL. Nothing here keeps state; all functions are thread-safe. */
#ifndef TTQ_KEYS_H
#define TTQ_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#define TTQ_KEY_Z85_LEN 40

typedef struct {
  char pub[TTQ_KEY_Z85_LEN + 1];
  char sec[TTQ_KEY_Z85_LEN + 1];
} ttq_keypair;

/* True when s is exactly 40 Z85 characters (that decode to 32 bytes). */
bool ttq_key_is_z85(const char *s);

/* A new random key pair (zmq_curve_keypair). Fails when ZeroMQ lacks CURVE. */
int ttq_keys_generate(ttq_keypair *kp, char *err, size_t errlen);

/* Writes PREFIX.key (mode 0600, created with that mode and re-chmodded when overwritten) and
 * PREFIX.pub (mode 0644). Refuses when either file exists unless force. */
int ttq_keys_write(const char *prefix, const ttq_keypair *kp, bool force, char *err,
                    size_t errlen);

/* Reads a .key file (both lines required, checked to match). */
int ttq_keys_read_pair(const char *path, ttq_keypair *kp, char *err, size_t errlen);

/* A public key from spec: the 40-character Z85 key itself (when no file of that name
 * exists), or a file: a .pub file, or a .key file (its public line). */
int ttq_keys_read_public(const char *spec, char pub[TTQ_KEY_Z85_LEN + 1], char *err,
                          size_t errlen);

/* One line of an authorized-keys file (without its '\n'): 1 and the key in pub when the line
 * holds a key, 0 when it is blank or a comment, -1 when it is malformed. */
int ttq_keys_parse_line(const char *line, char pub[TTQ_KEY_Z85_LEN + 1]);

#endif
