// Handing memory the C allocator holds free back to the OS (glibc's malloc_trim, in the addon):
// after sessions are released, what they held stays in the allocator's arenas otherwise.
import { native } from './addon.js';

/** Whether any memory was handed back; false where the addon or the call is missing. */
export function trimMemory(): boolean {
  try {
    return native().trimMemory?.() ?? false;
  } catch {
    return false;
  }
}
