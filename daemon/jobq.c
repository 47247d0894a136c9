/* jobq.c -- generation jobs and their bounded queue; see jobq.h. */
#include "jobq.h"

#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void ttqd_job_free(ttqd_job *j) {
  if (!j) return;
  free(j->ids);
  for (int i = 0; i < j->n_stops; i++) free(j->stops[i]);
  free(j);
}

void ttqd_job_cancel(ttqd_job *j, ttqd_cancel why) {
  int none = TTQD_CANCEL_NONE;
  atomic_compare_exchange_strong(&j->cancel, &none, (int)why);
}

bool ttqd_job_claim_reply(ttqd_job *j) {
  int no = 0;
  return atomic_compare_exchange_strong(&j->replied, &no, 1);
}

int ttqd_jobq_init(ttqd_jobq *q, int cap) {
  memset(q, 0, sizeof *q);
  if (!(q->ring = calloc((size_t)cap, sizeof *q->ring))) return -1;
  q->cap = cap;
  pthread_mutex_init(&q->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&q->cv, &ca);
  pthread_condattr_destroy(&ca);
  return 0;
}

void ttqd_jobq_free(ttqd_jobq *q) {
  for (int i = 0; i < q->n; i++) ttqd_job_free(q->ring[(q->head + i) % q->cap]);
  free(q->ring);
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->cv);
  memset(q, 0, sizeof *q);
}

static ttqd_job *at(ttqd_jobq *q, int i) { return q->ring[(q->head + i) % q->cap]; }

/* Removes queue entry i (0 = oldest), keeping order. */
static ttqd_job *remove_at(ttqd_jobq *q, int i) {
  ttqd_job *j = at(q, i);
  for (int k = i; k + 1 < q->n; k++) q->ring[(q->head + k) % q->cap] = at(q, k + 1);
  q->n--;
  return j;
}

int ttqd_jobq_push(ttqd_jobq *q, ttqd_job *j) {
  int rc = 0;
  pthread_mutex_lock(&q->mu);
  if (q->closed) {
    rc = 2;
  } else if (q->running && !strcmp(q->running->id, j->id)) {
    rc = 3;
  } else {
    for (int i = 0; i < q->n; i++)
      if (!strcmp(at(q, i)->id, j->id)) rc = 3;
    if (!rc && q->n == q->cap) rc = 1;
  }
  if (!rc) {
    q->ring[(q->head + q->n) % q->cap] = j;
    q->n++;
    pthread_cond_signal(&q->cv);
  }
  pthread_mutex_unlock(&q->mu);
  return rc;
}

ttqd_job *ttqd_jobq_pop(ttqd_jobq *q, int timeout_ms, bool *closed) {
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += timeout_ms / 1000;
  until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  ttqd_job *j = NULL;
  pthread_mutex_lock(&q->mu);
  while (q->n == 0 && !q->closed)
    if (pthread_cond_timedwait(&q->cv, &q->mu, &until) == ETIMEDOUT) break;
  if (q->n > 0) {
    j = remove_at(q, 0);
    q->running = j;
    ttqd_jobq_progress(q, ttqd_now_ms());
  }
  *closed = q->closed && q->n == 0 && !j;
  pthread_mutex_unlock(&q->mu);
  return j;
}

void ttqd_jobq_finish(ttqd_jobq *q, ttqd_job *j) {
  pthread_mutex_lock(&q->mu);
  if (q->running == j) q->running = NULL;
  pthread_mutex_unlock(&q->mu);
}

int ttqd_jobq_cancel_id(ttqd_jobq *q, const char *id, ttqd_cancel why, ttqd_job **removed) {
  int found = 0;
  *removed = NULL;
  pthread_mutex_lock(&q->mu);
  if (q->running && !strcmp(q->running->id, id)) {
    ttqd_job_cancel(q->running, why);
    found = 1;
  }
  for (int i = 0; !found && i < q->n; i++)
    if (!strcmp(at(q, i)->id, id)) {
      *removed = remove_at(q, i);
      found = 1;
    }
  pthread_mutex_unlock(&q->mu);
  return found;
}

static int same_peer(const ttqd_job *j, const uint8_t *peer, size_t len) {
  return j->peer_len == len && memcmp(j->peer, peer, len) == 0;
}

/* Moves matching queued jobs (all when peer is NULL) into a malloc'd array. */
static void take(ttqd_jobq *q, const uint8_t *peer, size_t len, ttqd_job ***removed, int *n) {
  *removed = NULL;
  *n = 0;
  ttqd_job **out = malloc((size_t)(q->n ? q->n : 1) * sizeof *out);
  if (!out) return; /* jobs stay queued; they fail at their first send instead */
  for (int i = 0; i < q->n;)
    if (!peer || same_peer(at(q, i), peer, len))
      out[(*n)++] = remove_at(q, i);
    else
      i++;
  if (*n)
    *removed = out;
  else
    free(out);
}

int ttqd_jobq_cancel_peer(ttqd_jobq *q, const uint8_t *peer, size_t peer_len, ttqd_cancel why,
                          ttqd_job ***removed, int *n_removed) {
  int found = 0;
  pthread_mutex_lock(&q->mu);
  if (q->running && same_peer(q->running, peer, peer_len)) {
    ttqd_job_cancel(q->running, why);
    found++;
  }
  take(q, peer, peer_len, removed, n_removed);
  found += *n_removed;
  pthread_mutex_unlock(&q->mu);
  return found;
}

void ttqd_jobq_abort_all(ttqd_jobq *q, ttqd_cancel why, ttqd_job ***removed, int *n_removed) {
  pthread_mutex_lock(&q->mu);
  if (q->running) ttqd_job_cancel(q->running, why);
  take(q, NULL, 0, removed, n_removed);
  pthread_mutex_unlock(&q->mu);
}

void ttqd_jobq_status(ttqd_jobq *q, int *depth, bool *running, char id_out[TTQD_ID_MAX + 1]) {
  pthread_mutex_lock(&q->mu);
  *depth = q->n;
  *running = q->running != NULL;
  if (id_out) {
    id_out[0] = '\0';
    if (q->running) memcpy(id_out, q->running->id, sizeof q->running->id);
  }
  pthread_mutex_unlock(&q->mu);
}

void ttqd_jobq_progress(ttqd_jobq *q, double now_ms) {
  atomic_store(&q->progress_ms, (long long)now_ms);
}

double ttqd_jobq_stalled_ms(ttqd_jobq *q, double now_ms) {
  pthread_mutex_lock(&q->mu);
  bool running = q->running != NULL;
  pthread_mutex_unlock(&q->mu);
  return running ? now_ms - (double)atomic_load(&q->progress_ms) : 0;
}

int ttqd_jobq_claim_running(ttqd_jobq *q, ttqd_cancel why, char id[TTQD_ID_MAX + 1],
                            uint8_t peer[TTQD_PEER_MAX], size_t *peer_len, bool *envelope) {
  int claimed = 0;
  pthread_mutex_lock(&q->mu);
  ttqd_job *j = q->running;
  if (j && ttqd_job_claim_reply(j)) {
    ttqd_job_cancel(j, why);
    memcpy(id, j->id, sizeof j->id);
    memcpy(peer, j->peer, j->peer_len);
    *peer_len = j->peer_len;
    *envelope = j->envelope;
    claimed = 1;
  }
  pthread_mutex_unlock(&q->mu);
  return claimed;
}

void ttqd_jobq_close(ttqd_jobq *q) {
  pthread_mutex_lock(&q->mu);
  q->closed = true;
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
}
