// For the tests of the exception-table reader (lsda_test) and the landing
// pad scan (lpad_test): from inside a call, finds the frame of the function
// under test the way an unwind does (_Unwind_Backtrace), and keeps its LSDA,
// start and the IP of the call it is in. Set g_cap (want_start, which)
// before the call; a probe called from the function runs Trace.
#ifndef KS_TESTS_UNIT_LSDA_CAPTURE_H
#define KS_TESTS_UNIT_LSDA_CAPTURE_H

#include <unwind.h>

#include <cstdint>

namespace ks::lsda_capture {

struct Capture {
  uintptr_t want_start = 0;   // the function under test
  int which = 0;              // which of its calls to capture (the probe's to check)
  bool found = false;
  const uint8_t* lsda = nullptr;
  uintptr_t start = 0, ip = 0;
};
inline Capture g_cap;

inline _Unwind_Reason_Code Trace(struct _Unwind_Context* ctx, void*) {
  if (_Unwind_GetRegionStart(ctx) != g_cap.want_start) return _URC_NO_REASON;
  int before = 0;
  uintptr_t ip = _Unwind_GetIPInfo(ctx, &before);
  g_cap.found = true;
  g_cap.lsda = static_cast<const uint8_t*>(_Unwind_GetLanguageSpecificData(ctx));
  g_cap.start = _Unwind_GetRegionStart(ctx);
  g_cap.ip = before ? ip : ip - 1;
  return _URC_END_OF_STACK;
}

}  // namespace ks::lsda_capture

#endif
