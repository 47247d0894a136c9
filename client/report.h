/* report.h -- how generation results are shown: the one-line figures of a Done (stderr), and
 * the --json lines of chunks, Done and errors (stdout, one object per line, flushed).
 * Only fields the daemon set are printed in the figures line; JSON prints every Done field,
 * null when the daemon did not set it. Nothing here allocates or keeps state. */
#ifndef TTQC_REPORT_H
#define TTQC_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include "ttq.pb-c.h"

/* "ttq W4 g32 r0 alpha 0.50 lambda 0.40 head W8" / "rtn W3 g32 r0 head fp" / "fp" (the set
 * fields only). */
void ttqc_report_quant_str(const Ttq__Quantization *q, char *buf, size_t n);
/* "[ttq CMD] prompt 12 tokens | generated 64 tokens | ttft ... | finish: length | ..." + \n */
void ttqc_report_done_text(FILE *f, const char *cmd, const Ttq__Done *d);
/* {"type":"chunk","index":N,"text":"...","token_ids":[...]} + \n */
void ttqc_report_chunk_json(FILE *f, const Ttq__TokenChunk *c);
/* {"type":"done","request_id":..., every Done field, "quant":{...}} + \n */
void ttqc_report_done_json(FILE *f, const char *id, const Ttq__Done *d);
/* {"type":"error","request_id":...,"code":"INVALID_ARGUMENT","message":...} + \n */
void ttqc_report_error_json(FILE *f, const char *id, const char *code, const char *msg);

#endif
