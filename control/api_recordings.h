/* GET /v1/recordings/{call_id} (control/api_recordings.c). */
#ifndef VACS_CONTROL_API_RECORDINGS_H
#define VACS_CONTROL_API_RECORDINGS_H

/* Registers the route. Main thread, before ctl_init. 0 or -errno. */
int api_recordings_init(void);

#endif
