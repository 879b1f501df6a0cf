/* A function in a code section aligned at 64 KiB: GNU ld gives that section
 * a segment of its own after a gap, so the program's segments are not
 * contiguous (as stress-ng's, whose icache_callee section is so aligned).
 * glibc's _dl_find_object then bounds the program by its first code segment
 * only, which leaves out .eh_frame_hdr (doorbell_test's guest_split). */
__attribute__((section("split_text"), aligned(65536), noinline, used)) int split_seg(int x)
{
    return x + 1;
}
