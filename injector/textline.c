/* See textline.h. */
#include "textline.h"

#include <string.h>

void ksi_line_put(struct ksi_line *l, const char *s, size_t n)
{
    if (n > sizeof l->b - 1 - l->n)
        n = sizeof l->b - 1 - l->n;
    memcpy(l->b + l->n, s, n);
    l->n += n;
}

void ksi_line_str(struct ksi_line *l, const char *s) { ksi_line_put(l, s, strlen(s)); }

void ksi_line_pad(struct ksi_line *l, size_t w, size_t n)
{
    for (; n < w && l->n < sizeof l->b - 1; n++)
        l->b[l->n++] = ' ';
}

void ksi_line_left(struct ksi_line *l, const char *s, size_t w)
{
    size_t n = strlen(s);
    ksi_line_put(l, s, n);
    ksi_line_pad(l, w, n);
}

void ksi_line_right(struct ksi_line *l, const char *s, size_t w)
{
    size_t n = strlen(s);
    ksi_line_pad(l, w, n);
    ksi_line_put(l, s, n);
}

char *ksi_line_digits(char *end, unsigned long long v)
{
    do
        *--end = (char)('0' + v % 10);
    while (v /= 10);
    return end;
}

void ksi_line_dec(struct ksi_line *l, long long v)
{
    char d[24], *p = ksi_line_digits(d + sizeof d, v < 0 ? 0 - (unsigned long long)v
                                                        : (unsigned long long)v);
    if (v < 0)
        *--p = '-';
    ksi_line_put(l, p, (size_t)(d + sizeof d - p));
}

void ksi_line_hex(struct ksi_line *l, unsigned long long v, int width)
{
    char d[24], *p = d + sizeof d;
    do
        *--p = "0123456789abcdef"[v & 15];
    while (v >>= 4);
    while (d + sizeof d - p < width && p > d)
        *--p = '0';
    ksi_line_put(l, p, (size_t)(d + sizeof d - p));
}
