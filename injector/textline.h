/* One line of a table or a dump, built byte by byte: tens of thousands of
 * lines through printf (a listing's rows, a dump's frames) were a fifth of
 * the injector's time, all of it after the last reply had come. Each
 * helper writes what the printf conversion named beside it would. */
#ifndef KSI_TEXTLINE_H
#define KSI_TEXTLINE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes B[0, N); what does not fit is dropped (callers size lines well
 * under it). */
struct ksi_line {
    char b[1024];
    size_t n;
};

void ksi_line_put(struct ksi_line *l, const char *s, size_t n);
void ksi_line_str(struct ksi_line *l, const char *s);          /* %s */
void ksi_line_pad(struct ksi_line *l, size_t w, size_t n);    /* W-N blanks */
void ksi_line_left(struct ksi_line *l, const char *s, size_t w);    /* %-Ws */
void ksi_line_right(struct ksi_line *l, const char *s, size_t w);   /* %Ws */
void ksi_line_dec(struct ksi_line *l, long long v);           /* %lld */
void ksi_line_hex(struct ksi_line *l, unsigned long long v, int width);   /* %0Wllx, 0: %llx */

/* The decimal digits of V ending at END; returns where they start. */
char *ksi_line_digits(char *end, unsigned long long v);

#ifdef __cplusplus
}
#endif
#endif
