/* notify.h -- readiness and stopping notices to the service manager (systemd's sd_notify
 * datagram protocol, spoken directly: one datagram to the AF_UNIX socket in $NOTIFY_SOCKET).
 * Without $NOTIFY_SOCKET it does nothing. It can't fail in a way the caller must handle. */
#ifndef TTQD_NOTIFY_H
#define TTQD_NOTIFY_H

/* state: e.g. "READY=1", "STOPPING=1", "STATUS=serving". */
void ttqd_notify(const char *state);

#endif
