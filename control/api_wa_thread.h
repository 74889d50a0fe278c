/* GET /v1/whatsapp/thread (control/api_wa_thread.c). */
#ifndef VACS_CONTROL_API_WA_THREAD_H
#define VACS_CONTROL_API_WA_THREAD_H

/* Registers the route. Main thread, before ctl_init. 0 or -errno. */
int api_wa_thread_init(void);

#endif
