/* ttq.c -- the thin client. It never loads a model; it talks to ttqd over ZeroMQ.
 * This version provides `ttq keygen` and `ttq version`; the request commands (generate, chat,
 * health, stats, cancel, bench) arrive with the service. */
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "ttq.pb-c.h"

#define TTQ_CLIENT_VERSION "0.1.0"

static const char usage[] = "usage: ttq COMMAND\n"
                            "  keygen   print a new CURVE key pair (public, secret; Z85)\n"
                            "  version  print the version\n";

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(usage, stderr);
    return 2;
  }
  if (!strcmp(argv[1], "version")) {
    int a, b, c;
    zmq_version(&a, &b, &c);
    printf("ttq %s (ZeroMQ %d.%d.%d, protobuf-c %s)\n", TTQ_CLIENT_VERSION, a, b, c,
           protobuf_c_version());
    return 0;
  }
  if (!strcmp(argv[1], "keygen")) {
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec) != 0) {
      fprintf(stderr, "ttq keygen: this ZeroMQ has no CURVE support\n");
      return 1;
    }
    printf("public %s\nsecret %s\n", pub, sec);
    return 0;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
    fputs(usage, stdout);
    return 0;
  }
  fprintf(stderr, "ttq: unknown command '%s'\n%s", argv[1], usage);
  return 2;
}
