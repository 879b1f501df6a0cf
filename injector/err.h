/* The injector's one way to say what went wrong: a line on stderr. Every
 * file of the CLI reports through it; it calls nothing of theirs. */
#ifndef KSI_ERR_H
#define KSI_ERR_H

/* One-line error on stderr: "killshim-inject: ...". */
void ksi_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
